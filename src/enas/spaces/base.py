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

from dataclasses import dataclass

FORMAT_VERSION = 1
# Ops without weights, in every space (the one list: the collapse rule in ``enas.stats``, the report's colours
# and the drawings use it). A controller that samples mostly these is collapsing.
PARAMETER_FREE = ("avg_pool_3x3", "max_pool_3x3", "identity", "none", "skip_connect")


class ArchError(ValueError):
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
