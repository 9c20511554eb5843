"""Search spaces as plain data (no torch). ``get(name)`` returns the space's module (``SpaceModule`` below).

Code outside ``spaces/`` and ``models/`` never branches on a space's name: it asks the module. A space of one's own
is a module (or any object) with the attributes of ``SpaceModule``, added with ``register_space`` (or
``enas.register_space(module, model)``, which also registers the torch network that trains it); from then on
``cfg.space`` may name it and search, derive, training and the commands' Python counterparts work with it.
``examples/custom_space.py`` is a complete small one.
"""

from __future__ import annotations

import importlib
import random
from types import ModuleType
from typing import Any, Callable, Protocol

from .base import ArchError, Decision, OpNames, Step  # noqa: F401

BUILTIN_SPACES = ("micro", "macro", "rnn", "nb201")
_CUSTOM: dict[str, Any] = {}  # name -> space module registered by register_space
_MODELS: dict[str, Callable[..., Any]] = {}  # name -> network builder of a registered space (called by enas.models)
# every space cfg.space may name: the built-in ones, then the registered ones (a live view)
SPACES = OpNames(lambda: BUILTIN_SPACES + tuple(_CUSTOM))


class SpaceModule(Protocol):
    """What a search space module offers (``enas.spaces.micro`` and the others; a space of one's own too).

    Attributes: ``NAME`` (the ``cfg.space`` name), ``KIND`` (``"image"``; a registered space must be an image
    space: the text task is the recurrent space's alone). The space object that ``from_config`` and
    ``default_space`` return is a frozen dataclass with a ``check() -> list[str]`` method (every problem, empty
    when valid); an architecture is a frozen dataclass of plain values. ``program`` uses the ``Step`` kinds of
    ``enas.spaces.base`` (a space of op choices only needs ``Step("op", size, group="op")`` per decision);
    ``enas.spaces.base.check_program`` checks that a program consumes ``decisions`` one to one.
    """

    NAME: str
    KIND: str

    def from_config(self, num_nodes: int, num_layers: int, ops: tuple[str, ...]) -> Any:
        """The space from ``space_cfg`` (``ops`` empty: the space's default ops)."""

    def default_space(self) -> Any:
        """The space with its default size and candidates."""

    def decisions(self, space: Any) -> list[Decision]:
        """The ordered categorical choices that make one architecture."""

    def program(self, space: Any) -> list[Step]:
        """The controller's walk over ``decisions``."""

    def validate(self, arch: Any, space: Any) -> list[str]:
        """Every problem of ``arch`` in ``space`` (empty when valid)."""

    def sample_uniform(self, space: Any, rng: random.Random) -> Any:
        """An architecture drawn uniformly."""

    def arch_from_actions(self, actions: list[int], space: Any) -> Any:
        """The architecture of one integer per decision (raises ``ArchError``)."""

    def actions_from_arch(self, arch: Any, space: Any) -> list[int]:
        """The inverse of ``arch_from_actions``."""

    def to_dict(self, arch: Any) -> dict:
        """JSON form, with ``"space": NAME`` and ``"format": 1``."""

    def from_dict(self, d: object, space: Any) -> Any:
        """Read the JSON form (raises ``ArchError`` listing every problem)."""

    def from_enas_string(self, text: str, space: Any) -> Any:
        """Read an integer string (e.g. the actions, space-separated)."""

    def to_enas_string(self, arch: Any, space: Any) -> str:
        """Write the integer string."""

    def read_string(self, text: str, space: Any) -> Any:
        """Read the space's published string format (often ``from_enas_string``)."""

    def describe(self, arch: Any) -> str:
        """A readable text form."""

    def candidate_names(self, space: Any) -> tuple[str, ...]:
        """The names the op decisions choose among (op frequencies, the collapse alarm)."""

    def network_words(self, arch: Any, num_layers: int) -> str:
        """How ``enas show`` describes the depth of the final network."""

    def space_of(self, arch: Any, default: Any) -> Any:
        """The space an architecture lives in (its size from the architecture, the rest from ``default``)."""

    def infer_space(self, obj: object, default: Any) -> Any:
        """The space implied by a JSON object or integer list read from a file (``default`` when unknown)."""


REQUIRED = tuple(n for n in SpaceModule.__annotations__) + tuple(
    n for n, v in vars(SpaceModule).items() if callable(v) and not n.startswith("_"))


def missing_attributes(module: Any) -> list[str]:
    """The ``SpaceModule`` attributes that ``module`` lacks."""
    return [n for n in REQUIRED if not hasattr(module, n)]


def register_space(module: Any, model: Callable[..., Any] | None = None) -> None:
    """Add a search space of one's own: ``module`` offers ``SpaceModule``'s attributes (all are checked).

    ``model(space, net, *, num_classes, in_channels, arch)`` builds its network from a ``NetConfig`` (``arch``
    None: the supernet; else the fixed model); layer 0 stores it without calling it, for ``enas.models``.
    Registering a name again replaces it; a built-in name is refused."""
    missing = missing_attributes(module)
    if missing:
        raise ValueError(f"register_space: the space module lacks {', '.join(missing)} (see enas.spaces.SpaceModule)")
    name = module.NAME
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"register_space: NAME must be an identifier, got {name!r}")
    if name in BUILTIN_SPACES:
        raise ValueError(f"register_space: {name!r} is a built-in space; choose another NAME")
    if module.KIND != "image":
        raise ValueError(f"register_space: {name}: KIND must be 'image' (got {module.KIND!r}); only the built-in "
                         "rnn space is trained as a language model")
    if model is not None and not callable(model):
        raise ValueError(f"register_space: {name}: model must be callable (space, net, *, num_classes, "
                         "in_channels, arch) -> module")
    _CUSTOM[name] = module
    if model is not None:
        _MODELS[name] = model


def unregister_space(name: str) -> None:
    """Remove a space added by ``register_space`` (nothing happens for other names)."""
    _CUSTOM.pop(name, None)
    _MODELS.pop(name, None)


def model_builder(name: str) -> Callable[..., Any] | None:
    """The network builder registered with space ``name`` (None for built-in spaces and spaces without one)."""
    return _MODELS.get(name)


def get(name: str) -> ModuleType:
    if name in _CUSTOM:
        return _CUSTOM[name]
    if name not in BUILTIN_SPACES:
        raise ArchError(f"space: unknown search space {name!r}; choose one of {', '.join(SPACES)}")
    return importlib.import_module(f"enas.spaces.{name}")


def is_text(name: str) -> bool:
    """Whether the space's networks are language models (trained by the text task) rather than image models."""
    return get(name).KIND == "text"
