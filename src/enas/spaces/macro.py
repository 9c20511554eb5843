"""The ENAS macro search space: a whole network of ``num_layers`` layers with skip connections.

Nodes are numbered as in the reference (``general_child.py``): node 0 is the stem output and node ``j >= 1``
is the output of layer ``j - 1``. Layer ``l`` always reads node ``l`` (its immediate predecessor, implicit)
and picks one op; it also reads every earlier node ``j < l`` whose skip bit ``skips[l][j]`` is 1. So layer
``l`` has ``l`` skip bits and the stem can be a skip source. Op indices follow the reference code:
0 conv_3x3, 1 sep_conv_3x3, 2 conv_5x5, 3 sep_conv_5x5, 4 avg_pool_3x3, 5 max_pool_3x3.

Integer string (reference layout): per layer ``op, skip_0 .. skip_{l-1}``, ``L + L(L-1)/2`` integers in all.

Controller walk (``program``): one anchor for the stem, then per layer an op step followed by a step whose
hidden state becomes that layer's anchor (for ``l > 0`` it is also the ``skips`` step). The anchors are thus
numbered like the nodes (anchor 0 = stem, anchor ``j`` = layer ``j - 1``), and the skips step of layer ``l``
attends over the *first* ``l`` anchors, i.e. exactly its skip sources (node ``l``, the implicit predecessor,
is anchor ``l`` and is not a choice). The reference attends over the anchors of layers ``0 .. l-1`` instead,
which is off by one against the bits it samples.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .base import ArchError, Decision, Step, check_format_fields, known_ops, parse_int_string, check_space_fields

NAME = "macro"
KIND = "image"  # trained by the image task (enas.tasks)
CHANNELS_LAST_ON_CPU = False  # run.channels_last=auto: no gain measured on CPU (docs/benchmarks.md section 6.1)
DEFAULT_OPS = ("conv_3x3", "sep_conv_3x3", "conv_5x5", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3")


# the built-in ops of this space; validation reads the one op table (``spaces.base.known_ops``), which also holds
# the ops added by ``enas.register_op``
KNOWN_OPS = DEFAULT_OPS + ("conv_1x1", "conv_7x7", "sep_conv_7x7")

# The 24-layer network of the reference's macro final script (scripts/cifar10_macro_final.sh, the
# ``fixed_arc`` lines), one line per layer: op index, then that layer's skip bits. It uses ops 0-3 only, so
# load it with ``MacroSpace(num_layers=24, ops=DEFAULT_OPS[:4])`` (or the full op list: indices agree).
PAPER_ARCH_STRING = "\n".join([
    "0",
    "3 0",
    "0 1 0",
    "2 0 0 1",
    "2 0 0 0 0",
    "3 1 1 0 1 0",
    "2 0 0 0 0 0 1",
    "2 0 1 1 0 1 1 1",
    "1 0 1 1 1 0 1 0 1",
    "0 0 0 0 0 0 0 0 0 0",
    "2 0 0 0 0 0 1 0 0 0 0",
    "0 1 0 0 1 1 0 0 0 0 1 1",
    "2 0 1 0 0 0 0 0 1 0 1 1 0",
    "1 0 0 1 0 0 0 1 1 1 0 1 0 1",
    "0 1 1 0 1 0 1 0 0 0 0 0 1 0 0",
    "2 0 0 1 0 0 0 0 0 0 0 1 0 1 0 1",
    "2 0 1 0 0 0 1 0 0 1 1 1 1 0 0 1 0",
    "2 0 0 0 0 1 0 1 0 1 0 0 1 0 1 0 0 1",
    "3 0 1 1 0 1 0 0 0 0 0 1 0 1 0 1 0 0 0",
    "3 0 1 1 0 0 0 0 0 0 0 0 0 1 1 0 0 0 0 1",
    "0 1 0 0 1 0 1 1 0 0 0 1 0 0 0 0 0 1 1 0 0",
    "3 0 1 0 1 1 0 0 1 0 1 1 0 1 1 0 1 0 0 1 0 0",
    "0 1 0 1 0 1 0 0 0 0 0 0 0 0 1 0 1 0 0 1 0 0 0",
    "0 1 1 0 0 0 1 1 1 0 1 0 0 0 1 0 1 0 0 1 1 0 0 0",
])


@dataclass(frozen=True)
class MacroSpace:
    num_layers: int = 12
    ops: tuple[str, ...] = DEFAULT_OPS

    def check(self) -> list[str]:
        return check_space_fields("num_layers", self.num_layers, "ops", self.ops, known_ops(NAME), "op")


@dataclass(frozen=True)
class MacroArch:
    ops: tuple[str, ...]  # ops[l]: the op of layer l
    skips: tuple[tuple[int, ...], ...]  # skips[l][j] == 1: layer l also reads node j (0 = stem)

    @property
    def num_layers(self) -> int:
        return len(self.ops)

    def sources(self, layer: int) -> list[int]:
        """The skip sources (node indices) of ``layer``, in increasing order."""
        return [j for j, bit in enumerate(self.skips[layer]) if bit]


def pool_layers(num_layers: int) -> tuple[int, ...]:
    """Layers after which every node is reduced (reference: ``pd - 1`` and ``2*pd - 1``, ``pd = L // 3``)."""
    pd = num_layers // 3
    return tuple(p for p in sorted({pd - 1, 2 * pd - 1}) if 0 <= p < num_layers)


def num_skips(num_layers: int) -> int:
    """Number of possible skip connections, L(L-1)/2."""
    return num_layers * (num_layers - 1) // 2


def decisions(space: MacroSpace) -> list[Decision]:
    out = []
    for l in range(space.num_layers):
        out.append(Decision(f"layer{l}.op", len(space.ops), "op"))
        out += [Decision(f"layer{l}.skip{j}", 2, "skip") for j in range(l)]
    return out


def program(space: MacroSpace) -> list[Step]:
    steps: list[Step] = [Step("anchor")]  # anchor 0: the stem (node 0)
    for l in range(space.num_layers):
        steps.append(Step("op", len(space.ops), group="op"))
        # Anchor l + 1 is layer l (node l + 1). Layer l's skips attend over the first l anchors = nodes 0..l-1.
        steps.append(Step("skips", l, anchor=True) if l > 0 else Step("anchor"))
    return steps


def _is_bit(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v in (0, 1)


def _layer_errors(l: int, op: object, bits: object, space: MacroSpace) -> list[str]:
    errors = []
    if op not in space.ops:
        errors.append(f"layer{l}.op: unknown op {op!r}; this space has {', '.join(space.ops)}")
    if not isinstance(bits, (tuple, list)):
        return errors + [f"layer{l}.skips: expected a list of {l} bits, got {type(bits).__name__}"]
    if len(bits) != l:
        errors.append(f"layer{l}.skips: expected {l} bits (one per earlier node), got {len(bits)}")
    bad = [b for b in bits if not _is_bit(b)]
    if bad:
        errors.append(f"layer{l}.skips: bits must be 0 or 1, got {', '.join(map(repr, bad))}")
    return errors


def validate(arch: MacroArch, space: MacroSpace) -> list[str]:
    errors = []
    n = space.num_layers
    if len(arch.ops) != n:
        errors.append(f"ops: expected {n} layers, got {len(arch.ops)}")
    if len(arch.skips) != n:
        errors.append(f"skips: expected {n} layers, got {len(arch.skips)}")
    for l, (op, bits) in enumerate(zip(arch.ops, arch.skips)):
        errors += _layer_errors(l, op, bits, space)
    return errors


def sample_uniform(space: MacroSpace, rng: random.Random) -> MacroArch:
    return arch_from_actions([rng.randrange(d.size) for d in decisions(space)], space)


def arch_from_actions(actions: list[int], space: MacroSpace) -> MacroArch:
    n = space.num_layers
    expected = n + num_skips(n)
    if len(actions) != expected:
        raise ArchError(f"actions: expected {expected} integers, got {len(actions)}")
    ops, skips, errors = [], [], []
    i = 0
    for l in range(n):
        op = int(actions[i])
        if not 0 <= op < len(space.ops):
            errors.append(f"layer{l}.op: op index {op} out of range [0, {len(space.ops) - 1}]")
            op = 0
        ops.append(space.ops[op])
        skips.append(tuple(int(a) for a in actions[i + 1:i + 1 + l]))
        i += 1 + l
    arch = MacroArch(tuple(ops), tuple(skips))
    errors += validate(arch, space)
    if errors:
        raise ArchError(errors)
    return arch


def actions_from_arch(arch: MacroArch, space: MacroSpace) -> list[int]:
    out = []
    for op, bits in zip(arch.ops, arch.skips):
        out.append(space.ops.index(op))
        out += [int(b) for b in bits]
    return out


def to_dict(arch: MacroArch) -> dict:
    layers = [{"op": op, "skips": [int(b) for b in bits]} for op, bits in zip(arch.ops, arch.skips)]
    return {"space": NAME, "format": 1, "layers": layers}


def from_dict(d: object, space: MacroSpace) -> MacroArch:
    """Read an architecture JSON object; raises ArchError listing every problem."""
    errors = check_format_fields(d, NAME)
    if not isinstance(d, dict):
        raise ArchError(errors)
    ops: list[str] = []
    skips: list[tuple] = []
    raw = d.get("layers")
    if not isinstance(raw, list):
        errors.append(f"layers: expected a list of {{\"op\": name, \"skips\": [bits]}} objects, "
                      f"got {type(raw).__name__}")
    else:
        if len(raw) != space.num_layers:
            errors.append(f"layers: expected {space.num_layers} layers, got {len(raw)}")
        for l, item in enumerate(raw):
            where = f"layer{l}"
            if not isinstance(item, dict):
                errors.append(f"{where}: expected an object {{\"op\": name, \"skips\": [bits]}}, got {item!r}")
                continue
            extra = set(item) - {"op", "skips"}
            if extra:
                errors.append(f"{where}: unknown fields: {', '.join(sorted(map(str, extra)))}")
            op, bits = item.get("op"), item.get("skips")
            if not isinstance(op, str):
                errors.append(f"{where}.op: expected an op name, got {op!r}")
            if not isinstance(bits, list):
                errors.append(f"{where}.skips: expected a list of {l} bits, got {bits!r}")
            if isinstance(op, str) and isinstance(bits, list):
                errors += _layer_errors(l, op, bits, space)
                ops.append(op)
                skips.append(tuple(bits))
    unknown = set(d) - {"space", "format", "layers", "note"}
    if unknown:
        errors.append(f"unknown fields: {', '.join(sorted(map(str, unknown)))}")
    if errors:
        raise ArchError(errors)
    return MacroArch(tuple(ops), tuple(skips))  # every check of ``validate`` ran above


def from_enas_string(text: str, space: MacroSpace) -> MacroArch:
    """Read the reference's integer string: per layer ``op, skip_0 .. skip_{l-1}``."""
    ints = parse_int_string(text)
    n = space.num_layers
    expected = n + num_skips(n)
    if len(ints) != expected:
        raise ArchError(f"integer string: expected {expected} integers for {n} layers "
                        f"({n} ops + {num_skips(n)} skip bits), got {len(ints)}")
    return arch_from_actions(ints, space)


def to_enas_string(arch: MacroArch, space: MacroSpace) -> str:
    """The reference's integer string on one line (``--child_fixed_arc`` form)."""
    return " ".join(map(str, actions_from_arch(arch, space)))


def skip_rate(arch: MacroArch) -> float:
    """Fraction of the L(L-1)/2 possible skip connections that are on (0.0 when there are none)."""
    total = num_skips(len(arch.skips))
    return sum(sum(bits) for bits in arch.skips) / total if total else 0.0


def describe(arch: MacroArch) -> str:
    """A readable text form: one line per layer with its op and inputs, and the reduction points."""
    pools = pool_layers(len(arch.ops))
    lines = [f"macro network: {len(arch.ops)} layers, skip rate {skip_rate(arch):.2f}"]
    for l, op in enumerate(arch.ops):
        extra = [_node_name(j) for j in arch.sources(l)]
        reads = _node_name(l) + (f" + skips from {', '.join(extra)}" if extra else "")
        lines.append(f"  layer {l}: {op}({reads})")
        if l in pools:
            lines.append("  -- reduce: every earlier output is halved in resolution --")
    return "\n".join(lines)


def _node_name(j: int) -> str:
    return "stem" if j == 0 else f"layer {j - 1}"


def space_of(arch: MacroArch, default: MacroSpace) -> MacroSpace:
    """The space an architecture lives in: its layer count, with the default's ops."""
    return MacroSpace(num_layers=len(arch.ops), ops=default.ops)


def infer_space(obj: object, default: MacroSpace) -> MacroSpace:
    """The space implied by an architecture JSON object or integer list (L + L(L-1)/2 integers)."""
    if isinstance(obj, dict) and isinstance(obj.get("layers"), list) and obj["layers"]:
        return MacroSpace(num_layers=len(obj["layers"]), ops=default.ops)
    if isinstance(obj, list) and obj:
        n = len(obj)
        L = int(round((-1 + (1 + 8 * n) ** 0.5) / 2))  # L(L+1)/2 = n
        if L * (L + 1) // 2 == n:
            return MacroSpace(num_layers=L, ops=default.ops)
    return default


def from_config(num_nodes: int, num_layers: int, ops: tuple[str, ...]) -> MacroSpace:
    """The space from the ``space_cfg`` settings (``num_nodes`` is the cell spaces' and unused here)."""
    return MacroSpace(num_layers=num_layers, ops=tuple(ops)) if ops else MacroSpace(num_layers=num_layers)


def candidate_names(space: MacroSpace) -> tuple[str, ...]:
    return space.ops


def read_string(text: str, space: MacroSpace) -> MacroArch:
    return from_enas_string(text, space)


def network_words(arch: MacroArch, num_layers: int) -> str:
    return f"{len(arch.ops)} layers"


def default_space() -> MacroSpace:
    """The space with its default size and candidates (what a file without a config is read against)."""
    return MacroSpace()
