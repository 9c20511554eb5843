"""Shared vocabulary of the search spaces: decisions, controller programs and errors.

Pure Python: this module (and every ``enas.spaces`` module) must not import torch.

A search space is described twice, from two points of view:

* ``decisions(space)`` is the flat, ordered list of categorical choices that make one architecture. An
  architecture is exactly one integer per decision (``actions``); ``arch_from_actions`` and
  ``actions_from_arch`` are a bijection between the two.
* ``program(space)`` is the controller's walk over those decisions: the LSTM steps, where it stores
  "anchors" (hidden states that later input choices attend over) and which vocabulary each op choice uses.
  Every decision is consumed by exactly one program step, in order (a ``skips`` step consumes ``size``
  binary decisions).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import EnasError

FORMAT_VERSION = 1


# ------------------------------------------------------------------------------------------------ op registry
# The one table of op names: which space may use each op, whether it has weights, and (for an op registered with
# ``register_op``) its builder. Spaces validate their ``ops`` against it (``known_ops``), ``enas.ops.build`` and
# the models build from it, and the collapse rule (``enas.stats``), the report's colours and the drawings read
# ``PARAMETER_FREE`` from it. Built-in ops are built by ``enas.ops`` (micro) and ``enas.models`` (macro, nb201);
# their builder here is None. A builder is stored as an opaque callable: this module never calls it (no torch).

@dataclass(frozen=True)
class OpSpec:
    """One entry of the op table."""

    name: str
    parameter_free: bool
    spaces: tuple[str, ...]  # the spaces whose ``ops`` may name it
    builder: Callable[..., Any] | None = None  # ``builder(channels, reducible) -> module(x, stride)``; None: built-in


_BUILTIN_SPACE_OPS = {
    "micro": ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "identity",
              "sep_conv_7x7", "dil_conv_3x3", "dil_conv_5x5", "conv_3x3", "conv_1x1"),
    "macro": ("conv_3x3", "sep_conv_3x3", "conv_5x5", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3",
              "conv_1x1", "conv_7x7", "sep_conv_7x7"),
    "nb201": ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"),
}
_BUILTIN_FREE = ("avg_pool_3x3", "max_pool_3x3", "identity", "none", "skip_connect")
BUILTIN_OPS = tuple(dict.fromkeys(op for ops in _BUILTIN_SPACE_OPS.values() for op in ops))
# spaces a registered op may join by default: those whose networks build ops from ``enas.ops.build``
# (nb201's ops are fixed by its benchmark table; the recurrent space chooses activations, not ops)
EXTENSIBLE_SPACES = ("micro", "macro")
_OP_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _builtin_table() -> dict[str, OpSpec]:
    return {op: OpSpec(op, op in _BUILTIN_FREE, tuple(s for s, ops in _BUILTIN_SPACE_OPS.items() if op in ops))
            for op in BUILTIN_OPS}


_TABLE: dict[str, OpSpec] = _builtin_table()
_SPACE_ORDER: dict[str, list[str]] = {s: list(ops) for s, ops in _BUILTIN_SPACE_OPS.items()}


def register_op(name: str, builder: Callable[..., Any], *, parameter_free: bool = False,
                spaces: tuple[str, ...] | list[str] = EXTENSIBLE_SPACES) -> OpSpec:
    """Add an op to the one op table; from then on ``space_cfg.ops`` may name it in ``spaces``.

    ``builder(channels, reducible)`` returns a torch module called as ``module(x, stride)`` whose output has the
    shape of ``x`` at ``stride=1`` and half its height and width at ``stride=2`` (only asked of it where
    ``reducible`` is True: in the micro space, on a reduction cell's inputs). ``parameter_free`` says the op has
    no weights: the collapse alarm, the report's colours and the drawings count it with pooling and identity.
    Registering a name again replaces the entry (a notebook cell run twice); a built-in name is refused. In a
    space of one's own (``register_space``) an op is available when that space's name is in ``spaces``.
    Returns the table entry."""
    if not isinstance(name, str) or not _OP_NAME.fullmatch(name):
        raise ValueError(f"register_op: op name must be letters, digits and '_' starting with a letter, got {name!r}")
    if name in BUILTIN_OPS:
        raise ValueError(f"register_op: {name!r} is a built-in op; choose another name")
    if not callable(builder):
        raise ValueError(f"register_op: builder of {name!r} must be callable (channels, reducible) -> module")
    if isinstance(spaces, str):
        spaces = (spaces,)
    spaces = tuple(dict.fromkeys(spaces))
    if not spaces or not all(isinstance(s, str) and s for s in spaces):
        raise ValueError(f"register_op: spaces must name at least one space, got {spaces!r}")
    if "nb201" in spaces:
        raise ValueError("register_op: the nb201 space's ops are fixed by its benchmark table")
    if "rnn" in spaces:
        raise ValueError("register_op: the rnn space chooses activations, not ops (spaces.rnn lists them)")
    unregister_op(name)
    spec = OpSpec(name, bool(parameter_free), spaces, builder)
    _TABLE[name] = spec
    for s in spaces:
        _SPACE_ORDER.setdefault(s, []).append(name)
    return spec


def unregister_op(name: str) -> None:
    """Remove an op added by ``register_op`` (nothing happens for a name never registered; built-ins stay)."""
    if name in BUILTIN_OPS or name not in _TABLE:
        return
    del _TABLE[name]
    for names in _SPACE_ORDER.values():
        if name in names:
            names.remove(name)


def known_ops(space: str) -> tuple[str, ...]:
    """The op names space ``space`` may use: its built-in ones, then the registered ones, in registration order."""
    return tuple(_SPACE_ORDER.get(space, ()))


def op_spec(name: str) -> OpSpec | None:
    """The table entry of ``name`` (None for a name not in the table)."""
    return _TABLE.get(name)


def registered_ops() -> dict[str, OpSpec]:
    """The ops added by ``register_op`` (name -> entry), in registration order."""
    return {n: s for n, s in _TABLE.items() if s.builder is not None}


class OpNames:
    """A live, read-only collection of op names (``in``, iteration, ``len``): it follows the op table, so a module
    that imported it by name sees ops registered later."""

    def __init__(self, names: Callable[[], tuple[str, ...] | list[str]]):
        self._names = names

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._names()))

    def __len__(self) -> int:
        return len(self._names())

    def __repr__(self) -> str:
        return f"OpNames({tuple(self._names())!r})"


# Ops without weights, in every space (the one list: the collapse rule in ``enas.stats``, the report's colours
# and the drawings use it). A controller that samples mostly these is collapsing.
PARAMETER_FREE = OpNames(lambda: [n for n, s in _TABLE.items() if s.parameter_free])


class ArchError(EnasError, ValueError):
    """An architecture (JSON, integer string or action list) is invalid. ``errors`` lists every problem."""

    def __init__(self, errors: list[str] | str):
        if isinstance(errors, str):
            errors = [errors]
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


@dataclass(frozen=True)
class Decision:
    """One categorical choice of an architecture."""

    name: str  # readable position, e.g. "normal.node3.x.op"
    size: int  # number of options; the action is an int in [0, size)
    kind: str  # "op" | "input" | "skip"


@dataclass(frozen=True)
class Step:
    """One step of the controller's walk.

    kind:
      * ``"anchor"``: one LSTM step that makes no choice; its hidden state becomes a new anchor.
      * ``"reset"``: forget all anchors (start of a new cell); no LSTM step.
      * ``"op"``: choose among ``size`` ops with the softmax head and embedding of vocabulary ``group``.
        ``bias`` is a fixed additive logit bias (not learned), ``init_bias`` the initial value of the
        group's learned bias (the first step of a group sets it).
      * ``"input"``: choose one of the first ``size`` anchors by attention. With ``distance_prior`` the
        logit of anchor j is lowered by (size - j)**2 / 6 (the recurrent space's prior towards recent nodes).
      * ``"skips"``: ``size`` independent Bernoulli choices, one per existing anchor (macro skip connections).
    anchor: after this step, store its hidden state as a new anchor.
    """

    kind: str
    size: int = 0
    group: str = ""
    bias: tuple[float, ...] = ()
    init_bias: tuple[float, ...] = ()
    distance_prior: bool = False
    anchor: bool = False


def check_program(program: list[Step], decisions: list[Decision]) -> None:
    """Assert that a program consumes the decisions one-to-one and in order (used by tests)."""
    i = 0
    anchors = 0
    for step in program:
        if step.kind == "reset":
            anchors = 0
            continue
        if step.kind == "op":
            d = decisions[i]
            assert d.kind == "op" and d.size == step.size, (step, d)
            i += 1
        elif step.kind == "input":
            d = decisions[i]
            assert d.kind == "input" and d.size == step.size <= anchors, (step, d, anchors)
            i += 1
        elif step.kind == "skips":
            assert step.size <= anchors
            for _ in range(step.size):
                assert decisions[i].kind == "skip" and decisions[i].size == 2
                i += 1
        elif step.kind != "anchor":
            raise AssertionError(f"unknown step kind {step.kind}")
        if step.anchor or step.kind == "anchor":
            anchors += 1
    assert i == len(decisions), (i, len(decisions))


def parse_int_string(text: str) -> list[int]:
    """Parse an ENAS integer string ("0 2 1 0 ..." with spaces, commas, brackets or newlines)."""
    cleaned = text.replace(",", " ").replace("[", " ").replace("]", " ")
    out = []
    for tok in cleaned.split():
        try:
            out.append(int(tok))
        except ValueError:
            raise ArchError(f"integer string: {tok!r} is not an integer") from None
    if not out:
        raise ArchError("integer string: empty")
    return out


def check_format_fields(d: object, space_name: str) -> list[str]:
    """Errors for the common ``space`` and ``format`` fields of an architecture JSON object."""
    if not isinstance(d, dict):
        return [f"architecture: expected a JSON object, got {type(d).__name__}"]
    errors = []
    if d.get("space") != space_name:
        errors.append(f"space: expected {space_name!r}, got {d.get('space')!r}")
    fmt = d.get("format")
    if fmt != FORMAT_VERSION:
        errors.append(f"format: expected {FORMAT_VERSION}, got {fmt!r}")
    return errors


def check_space_fields(count_name: str, count: object, names_field: str, names: tuple[str, ...],
                       known: tuple[str, ...], what: str = "op") -> list[str]:
    """Errors for a space's size (a positive integer) and its candidate names (known, unique, at least one)."""
    errors = []
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        errors.append(f"{count_name}: must be a positive integer, got {count!r}")
    if len(names) < 1:
        errors.append(f"{names_field}: at least one {what} is needed")
    for name in names:
        if name not in known:
            errors.append(f"{names_field}: unknown {what} {name!r}; known {what}s are {', '.join(known)}")
    if len(set(names)) != len(names):
        errors.append(f"{names_field}: names must be unique")
    return errors
