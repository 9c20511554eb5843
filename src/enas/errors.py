"""The one base class of enas's errors (layer 0: pure Python, imports nothing).

Every error that enas raises for bad input or a refused operation derives from ``EnasError``, so a script can
catch them all with one ``except enas.EnasError`` and the CLI turns any of them into one line on stderr and the
class's ``exit_code`` (2, "the input's fault", unless the class says otherwise). Each subclass also keeps the
builtin base it had before (``ValueError`` for bad input, ``RuntimeError`` for a run that cannot go on), so
``except ValueError`` in existing scripts keeps working.
"""

from __future__ import annotations


class EnasError(Exception):
    """Base of enas's own errors; ``exit_code`` is what ``enas`` exits with when one reaches the command line."""

    exit_code = 2
