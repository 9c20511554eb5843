"""The ENAS recurrent cell space: a highway DAG of ``num_nodes`` nodes computed once per time step.

Node 0 reads ``[x_t, h_{t-1}]``; node ``i >= 1`` reads exactly one earlier node ``inputs[i] < i``. Every node
applies its activation inside a highway update (see ``enas.models.rnn``). ``inputs[0]`` is fixed to ``-1``
(meaning "[x_t, h_{t-1}]") so that ``inputs[i]`` is node ``i``'s input for every ``i``. Nodes that no later node
reads are the *loose ends*; the cell output is their mean (the paper and the TF reference).

Activation names are ``tanh``, ``relu``, ``identity``, ``sigmoid``; the default order of the space (and the
controller's action indices) is the TF reference's (0 tanh, 1 ReLU, 2 identity, 3 sigmoid).

Two official integer layouts load unchanged (``from_enas_string``):

* ``flavor="enas"`` -- melodyguan/enas ``src/ptb``: ``2N-1`` ints: the activation of node 0, then
  ``(prev, act)`` for nodes ``1..N-1``; codes 0 tanh, 1 ReLU, 2 identity, 3 sigmoid.
* ``flavor="enas_lm"`` -- google-research ``enas_lm`` (the corrected LM): node 0 is always tanh and is not
  written; then ``(prev, act)`` for nodes ``1..N-1``, i.e. ``2(N-1)`` ints; codes 0 tanh, 1 ReLU, 2 sigmoid,
  3 identity. Note that enas_lm's cell output averages *all* nodes ``1..N-1``, not the loose ends.

The DARTS repository (quark0/darts ``rnn/genotypes.py``) carries ENAS's cell as a genotype; DARTS numbers its
states exactly as we number nodes (state 0 is computed from ``[x_t, h_{t-1}]`` with a fixed tanh, step ``k``
of ``recurrent`` makes state ``k+1`` from ``states[pred]``), so ``from_darts_genotype`` maps DARTS step ``k``
to our node ``k+1`` with the same input index.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .base import ArchError, Decision, Step, check_format_fields, parse_int_string, check_space_fields

NAME = "rnn"
KIND = "text"  # trained as a language model (enas.text_task)
ACTIVATIONS = ("tanh", "relu", "identity", "sigmoid")
FLAVORS = ("enas", "enas_lm")
# Integer code -> activation name for each official layout.
CODES = {
    "enas": ("tanh", "relu", "identity", "sigmoid"),
    "enas_lm": ("tanh", "relu", "sigmoid", "identity"),
}
INPUT_X_H = -1  # inputs[0]: node 0 reads [x_t, h_{t-1}]

# The 23-int arc of melodyguan/enas scripts/ptb_final.sh (flavor "enas", 12 nodes).
PAPER_ARCH_STRING = "0 0 0 1 1 2 1 2 0 2 0 5 1 1 0 6 1 8 1 8 1 8 1"
# The cell published in google-research enas_lm README (flavor "enas_lm", 9 nodes).
ENAS_LM_ARCH_STRING = "0 2 1 0 2 1 2 2 4 0 5 0 3 2 6 2"
# ENAS's cell as carried in quark0/darts rnn/genotypes.py (``ENAS = Genotype(recurrent=..., concat=...)``).
# It is not the same cell as PAPER_ARCH_STRING (the DARTS authors transcribed a different one).
DARTS_ENAS_RECURRENT = (
    ("tanh", 0), ("tanh", 1), ("relu", 1), ("tanh", 3), ("tanh", 3), ("relu", 3),
    ("relu", 4), ("relu", 7), ("relu", 8), ("relu", 8), ("relu", 8),
)
DARTS_ENAS_CONCAT = (2, 5, 6, 9, 10, 11)


@dataclass(frozen=True)
class RNNSpace:
    num_nodes: int = 12
    activations: tuple[str, ...] = ACTIVATIONS

    def check(self) -> list[str]:
        return check_space_fields("num_nodes", self.num_nodes, "activations", self.activations, ACTIVATIONS, "activation")


@dataclass(frozen=True)
class RNNArch:
    activations: tuple[str, ...]  # one per node
    inputs: tuple[int, ...]  # inputs[0] == -1 ([x_t, h_{t-1}]); inputs[i] in [0, i) for i >= 1

    @property
    def num_nodes(self) -> int:
        return len(self.activations)


def loose_ends(arch: RNNArch) -> list[int]:
    """Indices of the nodes that no later node reads, in order (never empty: the last node is one)."""
    used = set(arch.inputs[1:])
    return [i for i in range(len(arch.activations)) if i not in used]


def decisions(space: RNNSpace) -> list[Decision]:
    n_act = len(space.activations)
    out = [Decision("node0.op", n_act, "op")]
    for i in range(1, space.num_nodes):
        out.append(Decision(f"node{i}.input", i, "input"))
        out.append(Decision(f"node{i}.op", n_act, "op"))
    return out


def program(space: RNNSpace) -> list[Step]:
    n_act = len(space.activations)
    steps = [Step("op", n_act, group="act"), Step("anchor")]
    for i in range(1, space.num_nodes):
        steps += [Step("input", i, distance_prior=True), Step("op", n_act, group="act"), Step("anchor")]
    return steps


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate(arch: RNNArch, space: RNNSpace) -> list[str]:
    errors = []
    n = space.num_nodes
    if len(arch.activations) != n:
        errors.append(f"nodes: expected {n} activations, got {len(arch.activations)}")
    if len(arch.inputs) != len(arch.activations):
        errors.append(f"nodes: {len(arch.activations)} activations but {len(arch.inputs)} inputs")
    for i, act in enumerate(arch.activations):
        if act not in space.activations:
            errors.append(f"node{i}.activation: unknown activation {act!r}; "
                          f"this space has {', '.join(space.activations)}")
    for i, inp in enumerate(arch.inputs):
        if i == 0:
            if inp != INPUT_X_H or not _is_int(inp):
                errors.append(f"node0.input: node 0 always reads [x_t, h_(t-1)]; must be -1, got {inp!r}")
        elif not _is_int(inp) or not 0 <= inp < i:
            errors.append(f"node{i}.input: must be an integer in [0, {i - 1}], got {inp!r}")
    return errors


def _raise_if(errors: list[str]) -> None:
    if errors:
        raise ArchError(errors)


def sample_uniform(space: RNNSpace, rng: random.Random) -> RNNArch:
    return arch_from_actions([rng.randrange(d.size) for d in decisions(space)], space)


def arch_from_actions(actions: Sequence[int], space: RNNSpace) -> RNNArch:
    n = space.num_nodes
    if len(actions) != 2 * n - 1:
        raise ArchError(f"actions: expected {2 * n - 1} integers, got {len(actions)}")
    a = [int(v) for v in actions]
    n_act = len(space.activations)
    errors = []
    for i in range(n):
        op = a[0] if i == 0 else a[2 * i]
        if not 0 <= op < n_act:
            errors.append(f"actions: node{i} activation index {op} out of range [0, {n_act - 1}]")
    _raise_if(errors)
    acts = tuple(space.activations[a[0 if i == 0 else 2 * i]] for i in range(n))
    inputs = (INPUT_X_H,) + tuple(a[2 * i - 1] for i in range(1, n))
    arch = RNNArch(acts, inputs)
    _raise_if(validate(arch, space))
    return arch


def actions_from_arch(arch: RNNArch, space: RNNSpace) -> list[int]:
    out = [space.activations.index(arch.activations[0])]
    for i in range(1, len(arch.activations)):
        out += [arch.inputs[i], space.activations.index(arch.activations[i])]
    return out


def to_dict(arch: RNNArch) -> dict:
    return {"space": NAME, "format": 1,
            "nodes": [{"input": j, "activation": a} for j, a in zip(arch.inputs, arch.activations)]}


def from_dict(d: object, space: RNNSpace) -> RNNArch:
    """Read an architecture JSON object; raises ArchError listing every problem.

    Node 0's ``input`` may be omitted (it is always -1, i.e. [x_t, h_(t-1)]).
    """
    errors = check_format_fields(d, NAME)
    if not isinstance(d, dict):
        raise ArchError(errors)
    raw = d.get("nodes")
    acts: list = []
    inputs: list = []
    if not isinstance(raw, list):
        errors.append(f"nodes: expected a list of {{input, activation}} objects, got {type(raw).__name__}")
    else:
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                errors.append(f"node{i}: expected an object with 'input' and 'activation', got {item!r}")
                continue
            extra = set(item) - {"input", "activation"}
            if extra:
                errors.append(f"node{i}: unknown fields {', '.join(sorted(map(str, extra)))}")
            if "activation" not in item:
                errors.append(f"node{i}.activation: missing")
            elif not isinstance(item["activation"], str):
                errors.append(f"node{i}.activation: expected a name, got {item['activation']!r}")
            if "input" not in item and i > 0:
                errors.append(f"node{i}.input: missing")
            acts.append(item.get("activation"))
            inputs.append(item.get("input", INPUT_X_H if i == 0 else None))
    unknown = set(d) - {"space", "format", "nodes", "note"}
    if unknown:
        errors.append(f"unknown fields: {', '.join(sorted(map(str, unknown)))}")
    _raise_if(errors)
    arch = RNNArch(tuple(acts), tuple(inputs))
    _raise_if(validate(arch, space))
    return arch


def from_enas_string(text: str, space: RNNSpace, flavor: str = "enas") -> RNNArch:
    """Read an official integer string; ``flavor`` is ``"enas"`` (TF, 2N-1 ints) or ``"enas_lm"`` (2(N-1))."""
    if flavor not in FLAVORS:
        raise ArchError(f"flavor: unknown integer-string flavor {flavor!r}; choose one of {', '.join(FLAVORS)}")
    ints = parse_int_string(text)
    n = space.num_nodes
    codes = CODES[flavor]
    if flavor == "enas":
        if len(ints) != 2 * n - 1:
            raise ArchError(f"integer string (enas): expected {2 * n - 1} integers (2N-1) for {n} nodes, "
                            f"got {len(ints)}")
        act_codes, pairs = [ints[0]], ints[1:]
    else:
        if len(ints) % 2 or len(ints) // 2 + 1 != n:
            raise ArchError(f"integer string (enas_lm): expected {2 * (n - 1)} integers (pairs for nodes 1..{n - 1})"
                            f" for {n} nodes, got {len(ints)}" + ("" if len(ints) % 2 else
                                                               f"; that string has {len(ints) // 2 + 1} nodes"))
        act_codes, pairs = [0], ints  # node 0 is a fixed tanh
    act_codes += pairs[1::2]
    errors = []
    for i, c in enumerate(act_codes):
        if not 0 <= c < len(codes):
            errors.append(f"node{i}.activation: code {c} out of range [0, {len(codes) - 1}]")
    _raise_if(errors)
    arch = RNNArch(tuple(codes[c] for c in act_codes), (INPUT_X_H,) + tuple(pairs[0::2]))
    _raise_if(validate(arch, space))
    return arch


def to_enas_string(arch: RNNArch, space: RNNSpace | None = None, *, flavor: str = "enas") -> str:
    """Write an official integer string (``space`` is unused; kept for the common space protocol)."""
    if flavor not in FLAVORS:
        raise ArchError(f"flavor: unknown integer-string flavor {flavor!r}; choose one of {', '.join(FLAVORS)}")
    codes = CODES[flavor]
    if flavor == "enas":
        out = [codes.index(arch.activations[0])]
    else:
        if arch.activations[0] != "tanh":
            raise ArchError(f"enas_lm strings fix node 0 to tanh; this cell's node 0 is {arch.activations[0]}")
        out = []
    for i in range(1, len(arch.activations)):
        out += [arch.inputs[i], codes.index(arch.activations[i])]
    return " ".join(map(str, out))


_PAIR = re.compile(r"\(\s*['\"](\w+)['\"]\s*,\s*(\d+)\s*\)")
_CONCAT = re.compile(r"concat\s*=\s*(?:range\(\s*(\d+)\s*,\s*(\d+)\s*\)|\[([\d,\s]*)\])")


def parse_darts_genotype(text: str) -> tuple[list[tuple[str, int]], list[int] | None]:
    """Read ``Genotype(recurrent=[('tanh', 0), ...], concat=...)`` text (no eval) into (recurrent, concat)."""
    body = text.split("concat")[0]
    recurrent = [(m.group(1), int(m.group(2))) for m in _PAIR.finditer(body)]
    if not recurrent:
        raise ArchError("DARTS genotype: no ('activation', index) pairs found")
    m = _CONCAT.search(text)
    concat = None
    if m:
        if m.group(3) is not None:
            concat = [int(v) for v in m.group(3).replace(",", " ").split()]
        else:
            concat = list(range(int(m.group(1)), int(m.group(2))))
    return recurrent, concat


def from_darts_genotype(recurrent: str | Sequence[tuple[str, int]], concat: Sequence[int] | None = None,
                        space: RNNSpace | None = None) -> RNNArch:
    """Convert a DARTS recurrent genotype: step ``k`` ``(act, pred)`` becomes our node ``k+1`` reading ``pred``.

    ``recurrent`` may also be the genotype's text (then ``concat`` is read from it when present). Node 0 is
    DARTS's fixed tanh state. ``concat`` (the states DARTS averages) must be our loose ends or all nodes
    ``1..N-1``; use ``darts_output(arch, concat)`` to pick the matching ``RNNModel`` output mode. DARTS's
    ``"none"`` op has no counterpart here and is rejected.
    """
    if isinstance(recurrent, str):
        recurrent, text_concat = parse_darts_genotype(recurrent)
        concat = concat if concat is not None else text_concat
    space = space or RNNSpace(num_nodes=len(recurrent) + 1)
    acts = ("tanh",) + tuple(a for a, _ in recurrent)
    arch = RNNArch(acts, (INPUT_X_H,) + tuple(int(p) for _, p in recurrent))
    _raise_if(validate(arch, space))
    if concat is not None:
        darts_output(arch, concat)
    return arch


def darts_output(arch: RNNArch, concat: Sequence[int]) -> str:
    """The ``RNNModel`` output mode that averages the same states as DARTS's ``concat``."""
    c = sorted(int(v) for v in concat)
    if c == loose_ends(arch):
        return "loose_ends"
    if c == list(range(1, len(arch.activations))):
        return "all"
    raise ArchError(f"DARTS genotype: concat {c} is neither the loose ends {loose_ends(arch)} nor all nodes "
                    f"1..{len(arch.activations) - 1}")


def describe(arch: RNNArch) -> str:
    """A readable text form of the cell."""
    lines = ["recurrent cell:"]
    for i, (j, a) in enumerate(zip(arch.inputs, arch.activations)):
        src = "[x_t, h_(t-1)]" if i == 0 else f"node {j}"
        lines.append(f"  node {i} = highway({a}, {src})")
    lines.append(f"  h_t = mean({', '.join(f'node {j}' for j in loose_ends(arch))})")
    return "\n".join(lines)


def space_of(arch: RNNArch, default: RNNSpace) -> RNNSpace:
    """The space an architecture lives in: its node count, with the default's activations."""
    return RNNSpace(num_nodes=len(arch.inputs), activations=default.activations)


def infer_space(obj: object, default: RNNSpace) -> RNNSpace:
    """The space implied by an architecture JSON object or an integer list.

    An odd-length list is the reference's layout (2N - 1 integers); an even-length one is enas_lm's
    (node 0 fixed, 2 integers per further node: N = 1 + len/2).
    """
    if isinstance(obj, dict) and isinstance(obj.get("nodes"), list) and obj["nodes"]:
        return RNNSpace(num_nodes=len(obj["nodes"]), activations=default.activations)
    if isinstance(obj, list) and obj:
        n = len(obj)
        return RNNSpace(num_nodes=(n + 1) // 2 if n % 2 else 1 + n // 2, activations=default.activations)
    return default


def flavor_of(ints: list[int]) -> str:
    return "enas" if len(ints) % 2 else "enas_lm"


def from_config(num_nodes: int, num_layers: int, ops: tuple[str, ...]) -> RNNSpace:
    """The space from the ``space_cfg`` settings (``ops`` names activations; ``num_layers`` is unused)."""
    return RNNSpace(num_nodes=num_nodes, activations=tuple(ops)) if ops else RNNSpace(num_nodes=num_nodes)


def candidate_names(space: RNNSpace) -> tuple[str, ...]:
    return space.activations


def read_string(text: str, space: RNNSpace) -> RNNArch:
    """Read either official integer string; the flavor is told by the length (odd: enas, even: enas_lm)."""
    return from_enas_string(text, space, flavor=flavor_of(parse_int_string(text)))


def network_words(arch: RNNArch, num_layers: int) -> str:
    return f"{len(arch.activations)} nodes"


def default_space() -> RNNSpace:
    """The space with its default size and candidates (what a file without a config is read against)."""
    return RNNSpace()
