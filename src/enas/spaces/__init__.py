"""Search spaces as plain data (no torch). ``get(name)`` returns the space's module, which offers:

``Space`` dataclass defaults, ``decisions``, ``program``, ``validate``, ``sample_uniform``,
``arch_from_actions``, ``actions_from_arch``, ``to_dict``, ``from_dict``, ``from_enas_string``,
``to_enas_string`` and ``describe``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .base import ArchError, Decision, Step  # noqa: F401

SPACES = ("micro", "macro", "rnn")


def get(name: str) -> ModuleType:
    if name not in SPACES:
        raise ArchError(f"space: unknown search space {name!r}; choose one of {', '.join(SPACES)}")
    return importlib.import_module(f"enas.spaces.{name}")
