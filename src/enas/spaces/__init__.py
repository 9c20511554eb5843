"""Search spaces as plain data (no torch). ``get(name)`` returns the space's module, which offers:

``NAME``, ``KIND`` (``"image"`` or ``"text"``: which task trains its networks), the ``Space`` dataclass,
``from_config(num_nodes, num_layers, ops)``, ``decisions``, ``program``, ``validate``, ``sample_uniform``,
``arch_from_actions``, ``actions_from_arch``, ``to_dict``, ``from_dict``, ``from_enas_string``,
``to_enas_string``, ``read_string`` (the published string format, whatever its flavor), ``describe``,
``candidate_names``, ``network_words``, ``space_of`` and ``infer_space``.

Code outside ``spaces/`` and ``models/`` never branches on a space's name: it asks the module.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .base import ArchError, Decision, Step  # noqa: F401

SPACES = ("micro", "macro", "rnn", "nb201")


def get(name: str) -> ModuleType:
    if name not in SPACES:
        raise ArchError(f"space: unknown search space {name!r}; choose one of {', '.join(SPACES)}")
    return importlib.import_module(f"enas.spaces.{name}")


def is_text(name: str) -> bool:
    """Whether the space's networks are language models (trained by the text task) rather than image models."""
    return get(name).KIND == "text"
