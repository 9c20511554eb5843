"""The ENAS micro (cell) search space: a normal and a reduction cell of ``num_nodes`` nodes each.

Node ``i`` (numbered from 2; 0 and 1 are the cell's inputs: the outputs of the cell two back and of the
previous cell) picks two inputs among the indices ``< i`` and one op for each, and sums
``op_x(in_x) + op_y(in_y)``. Nodes that no later node reads are the *loose ends*; the cell output combines
them. Op indices follow the reference code: 0 sep_conv_3x3, 1 sep_conv_5x5, 2 avg_pool_3x3,
3 max_pool_3x3, 4 identity.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .base import ArchError, Decision, Step, check_format_fields, known_ops, parse_int_string, check_space_fields

NAME = "micro"
KIND = "image"  # trained by the image task (enas.tasks)
CHANNELS_LAST_ON_CPU = True  # run.channels_last=auto: measured to win on CPU (docs/benchmarks.md section 6.1)
DEFAULT_OPS = ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "identity")
CELLS = ("normal", "reduce")


# the built-in ops of this space; validation reads the one op table (``spaces.base.known_ops``), which also holds
# the ops added by ``enas.register_op``
KNOWN_OPS = DEFAULT_OPS + ("sep_conv_7x7", "dil_conv_3x3", "dil_conv_5x5", "conv_3x3", "conv_1x1")

# The cell printed by the reference's micro final script (scripts/cifar10_micro_final.sh).
PAPER_ARCH_STRING = (
    "0 2 0 0 0 4 0 1 1 4 0 1 1 0 0 1 0 2 1 1 "
    "1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1"
)


@dataclass(frozen=True)
class MicroSpace:
    num_nodes: int = 5
    ops: tuple[str, ...] = DEFAULT_OPS

    def check(self) -> list[str]:
        return check_space_fields("num_nodes", self.num_nodes, "ops", self.ops, known_ops(NAME), "op")


@dataclass(frozen=True)
class MicroNode:
    x: int
    x_op: str
    y: int
    y_op: str


@dataclass(frozen=True)
class MicroArch:
    normal: tuple[MicroNode, ...]
    reduce: tuple[MicroNode, ...]

    def cell(self, name: str) -> tuple[MicroNode, ...]:
        return self.normal if name == "normal" else self.reduce


def unused_states(nodes: tuple[MicroNode, ...]) -> list[int]:
    """Indices of the states that no node of the cell reads, the cell inputs 0 and 1 included, in order: the
    reference's loose ends (``_fixed_combine``), which a ``concat`` cell output concatenates."""
    used = {n.x for n in nodes} | {n.y for n in nodes}
    return [i for i in range(len(nodes) + 2) if i not in used]


def loose_ends(nodes: tuple[MicroNode, ...]) -> list[int]:
    """Indices (>= 2) of the intermediate nodes that no node of the cell reads, in order (``combine``)."""
    return [i for i in unused_states(nodes) if i >= 2]


def decisions(space: MicroSpace) -> list[Decision]:
    out = []
    for cell in CELLS:
        for i in range(space.num_nodes):
            node = f"{cell}.node{i + 2}"
            out.append(Decision(f"{node}.x.input", i + 2, "input"))
            out.append(Decision(f"{node}.y.input", i + 2, "input"))
            out.append(Decision(f"{node}.x.op", len(space.ops), "op"))
            out.append(Decision(f"{node}.y.op", len(space.ops), "op"))
    return out


def _op_biases(space: MicroSpace) -> tuple[tuple[float, ...], tuple[float, ...]]:
    # The reference favours convolutions: learned bias starts at 10 for them, and the normal cell adds a
    # fixed +0.25 (convolutions) / -0.25 (others).
    conv = [("conv" in op) for op in space.ops]
    init = tuple(10.0 if c else 0.0 for c in conv)
    fixed = tuple(0.25 if c else -0.25 for c in conv)
    return init, fixed


def program(space: MicroSpace) -> list[Step]:
    init, fixed = _op_biases(space)
    steps: list[Step] = []
    for cell in CELLS:
        steps += [Step("reset"), Step("anchor"), Step("anchor")]
        bias = fixed if cell == "normal" else ()
        for i in range(space.num_nodes):
            steps += [Step("input", i + 2), Step("input", i + 2)]
            steps += [Step("op", len(space.ops), group="op", bias=bias, init_bias=init)] * 2
            steps.append(Step("anchor"))
    return steps


def validate(arch: MicroArch, space: MicroSpace) -> list[str]:
    errors = []
    for cell in CELLS:
        nodes = arch.cell(cell)
        if len(nodes) != space.num_nodes:
            errors.append(f"{cell}: expected {space.num_nodes} nodes, got {len(nodes)}")
        for i, node in enumerate(nodes):
            where = f"{cell}.node{i + 2}"
            for slot, inp, op in (("x", node.x, node.x_op), ("y", node.y, node.y_op)):
                if not isinstance(inp, int) or isinstance(inp, bool) or not 0 <= inp < i + 2:
                    errors.append(f"{where}.{slot}: input must be an integer in [0, {i + 1}], got {inp!r}")
                if op not in space.ops:
                    errors.append(f"{where}.{slot}: unknown op {op!r}; this space has {', '.join(space.ops)}")
    return errors


def sample_uniform(space: MicroSpace, rng: random.Random) -> MicroArch:
    return arch_from_actions([rng.randrange(d.size) for d in decisions(space)], space)


def arch_from_actions(actions: list[int], space: MicroSpace) -> MicroArch:
    n = space.num_nodes
    if len(actions) != 8 * n:
        raise ArchError(f"actions: expected {8 * n} integers, got {len(actions)}")
    cells = []
    for c in range(2):
        nodes = []
        for i in range(n):
            xi, yi, xo, yo = (int(a) for a in actions[(c * n + i) * 4:(c * n + i) * 4 + 4])
            if not (0 <= xo < len(space.ops) and 0 <= yo < len(space.ops)):
                raise ArchError(f"actions: op index out of range at node {i + 2}")
            nodes.append(MicroNode(xi, space.ops[xo], yi, space.ops[yo]))
        cells.append(tuple(nodes))
    arch = MicroArch(*cells)
    errors = validate(arch, space)
    if errors:
        raise ArchError(errors)
    return arch


def actions_from_arch(arch: MicroArch, space: MicroSpace) -> list[int]:
    out = []
    for cell in CELLS:
        for node in arch.cell(cell):
            out += [node.x, node.y, space.ops.index(node.x_op), space.ops.index(node.y_op)]
    return out


def to_dict(arch: MicroArch) -> dict:
    d: dict = {"space": NAME, "format": 1}
    for cell in CELLS:
        d[cell] = [[n.x, n.x_op, n.y, n.y_op] for n in arch.cell(cell)]
    return d


def from_dict(d: object, space: MicroSpace) -> MicroArch:
    """Read an architecture JSON object; raises ArchError listing every problem."""
    errors = check_format_fields(d, NAME)
    if not isinstance(d, dict):
        raise ArchError(errors)
    cells = []
    for cell in CELLS:
        raw = d.get(cell)
        nodes = []
        if not isinstance(raw, list):
            errors.append(f"{cell}: expected a list of [input, op, input, op] nodes, got {type(raw).__name__}")
        else:
            for i, item in enumerate(raw):
                if (not isinstance(item, list) or len(item) != 4 or not all(isinstance(v, str) for v in item[1::2])):
                    errors.append(f"{cell}.node{i + 2}: expected [input, op_name, input, op_name], got {item!r}")
                    continue
                nodes.append(MicroNode(item[0], item[1], item[2], item[3]))
        cells.append(tuple(nodes))
    unknown = set(d) - {"space", "format", *CELLS, "note"}
    if unknown:
        errors.append(f"unknown fields: {', '.join(sorted(map(str, unknown)))}")
    arch = MicroArch(*cells)
    errors += validate(arch, space)
    if errors:
        raise ArchError(errors)
    return arch


def from_enas_string(text: str, space: MicroSpace) -> MicroArch:
    """Read the reference's integer string: per node ``in1 op1 in2 op2``, normal cell then reduction cell."""
    ints = parse_int_string(text)
    n = space.num_nodes
    if len(ints) != 8 * n:
        raise ArchError(f"integer string: expected {8 * n} integers for {n} nodes per cell, got {len(ints)}")
    errors = []
    cells = []
    for c, cell in enumerate(CELLS):
        nodes = []
        for i in range(n):
            a, ao, b, bo = ints[(c * n + i) * 4:(c * n + i) * 4 + 4]
            for slot, op in (("x", ao), ("y", bo)):
                if not 0 <= op < len(space.ops):
                    errors.append(f"{cell}.node{i + 2}.{slot}: op index {op} out of range [0, {len(space.ops) - 1}]")
            name = lambda o: space.ops[o] if 0 <= o < len(space.ops) else space.ops[0]  # noqa: E731
            nodes.append(MicroNode(a, name(ao), b, name(bo)))
        cells.append(tuple(nodes))
    arch = MicroArch(*cells)
    errors += validate(arch, space)
    if errors:
        raise ArchError(errors)
    return arch


def to_enas_string(arch: MicroArch, space: MicroSpace) -> str:
    out = []
    for cell in CELLS:
        for n in arch.cell(cell):
            out += [n.x, space.ops.index(n.x_op), n.y, space.ops.index(n.y_op)]
    return " ".join(map(str, out))


def describe(arch: MicroArch) -> str:
    """A readable text form of both cells."""
    lines = []
    for cell in CELLS:
        nodes = arch.cell(cell)
        lines.append(f"{cell} cell:")
        for i, n in enumerate(nodes):
            lines.append(f"  node {i + 2} = {n.x_op}({_in_name(n.x)}) + {n.y_op}({_in_name(n.y)})")
        lines.append(f"  output = combine({', '.join(f'node {j}' for j in loose_ends(nodes))})")
    return "\n".join(lines)


def _in_name(i: int) -> str:
    return {0: "c[k-2]", 1: "c[k-1]"}.get(i, f"node {i}")


def space_of(arch: MicroArch, default: MicroSpace) -> MicroSpace:
    """The space an architecture lives in: its node count, with the default's ops."""
    return MicroSpace(num_nodes=len(arch.normal), ops=default.ops)


def infer_space(obj: object, default: MicroSpace) -> MicroSpace:
    """The space implied by an architecture JSON object or integer list (for reading files)."""
    if isinstance(obj, dict) and isinstance(obj.get("normal"), list):
        return MicroSpace(num_nodes=max(1, len(obj["normal"])), ops=default.ops)
    if isinstance(obj, list) and obj and len(obj) % 8 == 0:
        return MicroSpace(num_nodes=len(obj) // 8, ops=default.ops)
    return default


def from_config(num_nodes: int, num_layers: int, ops: tuple[str, ...]) -> MicroSpace:
    """The space from the ``space_cfg`` settings (``num_layers`` is the macro space's and unused here)."""
    return MicroSpace(num_nodes=num_nodes, ops=tuple(ops)) if ops else MicroSpace(num_nodes=num_nodes)


def candidate_names(space: MicroSpace) -> tuple[str, ...]:
    """The names the op decisions choose among (for op frequencies and drawings)."""
    return space.ops


def read_string(text: str, space: MicroSpace) -> MicroArch:
    """Read the space's published string format (here the reference's integer string)."""
    return from_enas_string(text, space)


def network_words(arch: MicroArch, num_layers: int) -> str:
    """How ``enas show`` describes the depth of the final network built for ``arch``."""
    return f"{num_layers + 2} cells (2 reduction)"


def default_space() -> MicroSpace:
    """The space with its default size and candidates (what a file without a config is read against)."""
    return MicroSpace()
