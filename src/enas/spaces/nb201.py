"""The NAS-Bench-201 (NATS-Bench topology) cell search space, as plain data.

A cell has ``num_nodes`` nodes (4 in the benchmark): node 0 is the cell's input, the last node its output.
Every node ``j > 0`` reads *every* earlier node ``i < j`` through one op per edge and sums the results, so the
cell is a complete DAG and an architecture is nothing but the op of each edge. With 4 nodes there are 6 edges,
in the benchmark's order (target, then source)::

    (1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2)

and 5 ops per edge (5**6 = 15,625 cells), in the benchmark's index order: 0 ``none`` (the edge is absent: it
contributes zeros), 1 ``skip_connect``, 2 ``nor_conv_1x1``, 3 ``nor_conv_3x3`` (ReLU-conv-BN), 4
``avg_pool_3x3``. ``none``, ``skip_connect`` and ``avg_pool_3x3`` have no parameters; a cell made only of them
is the "collapsed" cell that weight-sharing searches are known to drift towards.

The text format (``from_enas_string`` / ``to_enas_string``) is the benchmark's own cell string: one group
per node ``j = 1..N-1`` between ``|`` bars, groups joined by ``+``, each edge written ``op~source``::

    |nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|

A plain list of op indices in edge order ("3 3 3 1 3 2") is accepted too. Pure Python: no torch here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .base import (PARAMETER_FREE as _FREE, ArchError, Decision, Step, check_format_fields, check_space_fields,
                   parse_int_string)

NAME = "nb201"
KIND = "image"  # trained by the image task (enas.tasks)
CHANNELS_LAST_ON_CPU = True  # run.channels_last=auto: measured to win on CPU (docs/benchmarks.md section 6.1)
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
DEFAULT_OPS = OPS
KNOWN_OPS = DEFAULT_OPS
PARAMETER_FREE = tuple(op for op in OPS if op in _FREE)  # none, skip_connect, avg_pool_3x3
DEFAULT_NUM_NODES = 4


def edge_list(num_nodes: int) -> list[tuple[int, int]]:
    """The (to, from) pairs of a complete cell of ``num_nodes`` nodes, by target then source."""
    return [(j, i) for j in range(1, num_nodes) for i in range(j)]


EDGES = edge_list(DEFAULT_NUM_NODES)


def num_edges(num_nodes: int) -> int:
    return num_nodes * (num_nodes - 1) // 2


def nodes_for_edges(count: int) -> int | None:
    """The node count N with N*(N-1)/2 == count, or None when there is none (count >= 1)."""
    n = 2
    while num_edges(n) < count:
        n += 1
    return n if count >= 1 and num_edges(n) == count else None


@dataclass(frozen=True)
class NB201Space:
    num_nodes: int = DEFAULT_NUM_NODES
    ops: tuple[str, ...] = DEFAULT_OPS

    def check(self) -> list[str]:
        errors = check_space_fields("num_nodes", self.num_nodes, "ops", self.ops, KNOWN_OPS, "op")
        if not errors and self.num_nodes < 2:
            errors.append(f"num_nodes: a cell needs at least 2 nodes (input and output), got {self.num_nodes}")
        return errors

    @property
    def edges(self) -> list[tuple[int, int]]:
        return edge_list(self.num_nodes)


@dataclass(frozen=True)
class NB201Arch:
    """The op of every edge, in edge order (see ``EDGES``)."""

    edges: tuple[str, ...]

    @property
    def num_nodes(self) -> int | None:
        return nodes_for_edges(len(self.edges))

    def inputs(self, node: int) -> list[tuple[int, str]]:
        return inputs(self, node)


def _edge_name(to: int, src: int) -> str:
    return f"node{to}.from{src}"


def inputs(arch: NB201Arch, node: int) -> list[tuple[int, str]]:
    """The (source, op) pairs that node ``node`` (>= 1) reads, ``none`` edges included."""
    n = arch.num_nodes
    if n is None:
        raise ArchError(f"edges: {len(arch.edges)} edges make no complete cell")
    if not isinstance(node, int) or not 1 <= node < n:
        raise ArchError(f"node: expected an integer in [1, {n - 1}], got {node!r}")
    start = num_edges(node)  # edges of the nodes before this one
    return [(i, arch.edges[start + i]) for i in range(node)]


def decisions(space: NB201Space) -> list[Decision]:
    return [Decision(f"node{j}.from{i}.op", len(space.ops), "op") for j, i in edge_list(space.num_nodes)]


def program(space: NB201Space) -> list[Step]:
    """One op choice per edge, all from the same vocabulary; no anchors (every node reads every earlier one)."""
    return [Step("op", len(space.ops), group="op") for _ in edge_list(space.num_nodes)]


def validate(arch: NB201Arch, space: NB201Space) -> list[str]:
    edges = arch.edges
    if not isinstance(edges, (tuple, list)):
        return [f"edges: expected a list of op names, got {type(edges).__name__}"]
    errors = []
    expected = edge_list(space.num_nodes)
    if len(edges) != len(expected):
        errors.append(f"edges: expected {len(expected)} ops for {space.num_nodes} nodes, got {len(edges)}")
    for k, op in enumerate(edges):
        where = _edge_name(*expected[k]) if k < len(expected) else f"edge{k}"
        if not isinstance(op, str):
            errors.append(f"{where}: op must be a name, got {op!r}")
        elif op not in space.ops:
            errors.append(f"{where}: unknown op {op!r}; this space has {', '.join(space.ops)}")
    return errors


def _check(arch: NB201Arch, space: NB201Space) -> NB201Arch:
    errors = validate(arch, space)
    if errors:
        raise ArchError(errors)
    return arch


def sample_uniform(space: NB201Space, rng: random.Random) -> NB201Arch:
    return arch_from_actions([rng.randrange(d.size) for d in decisions(space)], space)


def arch_from_actions(actions: list[int], space: NB201Space) -> NB201Arch:
    expected = edge_list(space.num_nodes)
    if len(actions) != len(expected):
        raise ArchError(f"actions: expected {len(expected)} integers, got {len(actions)}")
    errors = []
    ops = []
    for (j, i), a in zip(expected, actions):
        a = int(a)
        if not 0 <= a < len(space.ops):
            errors.append(f"actions: {_edge_name(j, i)}: op index {a} out of range [0, {len(space.ops) - 1}]")
            a = 0
        ops.append(space.ops[a])
    if errors:
        raise ArchError(errors)
    return _check(NB201Arch(tuple(ops)), space)


def actions_from_arch(arch: NB201Arch, space: NB201Space) -> list[int]:
    return [space.ops.index(op) for op in arch.edges]


def benchmark_string(arch: NB201Arch) -> str:
    """The benchmark's cell string of an architecture (its node count taken from its edge count)."""
    n = arch.num_nodes
    if n is None:
        raise ArchError(f"edges: {len(arch.edges)} edges make no complete cell")
    groups = []
    for j in range(1, n):
        groups.append("|" + "|".join(f"{op}~{i}" for i, op in inputs(arch, j)) + "|")
    return "+".join(groups)


def to_dict(arch: NB201Arch) -> dict:
    return {"space": NAME, "format": 1, "edges": list(arch.edges), "string": benchmark_string(arch)}


def from_dict(d: object, space: NB201Space) -> NB201Arch:
    """Read an architecture JSON object (``edges``, ``string`` or both); raises ArchError listing every problem."""
    errors = check_format_fields(d, NAME)
    if not isinstance(d, dict):
        raise ArchError(errors)
    unknown = set(d) - {"space", "format", "edges", "string", "note"}
    if unknown:
        errors.append(f"unknown fields: {', '.join(sorted(map(str, unknown)))}")
    raw_edges, raw_string = d.get("edges"), d.get("string")
    from_edges = from_string = None
    if raw_edges is None and raw_string is None:
        errors.append("architecture: needs 'edges' (a list of op names) or 'string' (the benchmark's cell string)")
    if raw_edges is not None:
        if not isinstance(raw_edges, list):
            errors.append(f"edges: expected a list of op names, got {type(raw_edges).__name__}")
        else:
            cand = NB201Arch(tuple(raw_edges))
            edge_errors = validate(cand, space)
            errors += edge_errors
            from_edges = None if edge_errors else cand
    if raw_string is not None:
        if not isinstance(raw_string, str):
            errors.append(f"string: expected the benchmark's cell string, got {type(raw_string).__name__}")
        else:
            try:
                from_string = _parse_benchmark(raw_string, space)
            except ArchError as e:
                errors += [f"string: {m}" for m in e.errors]
    if from_edges is not None and from_string is not None and from_edges != from_string:
        errors.append(f"string: {raw_string.strip()!r} disagrees with edges (which give "
                      f"{benchmark_string(from_edges)!r})")
    if errors:
        raise ArchError(errors)
    return from_edges if from_edges is not None else from_string


def from_enas_string(text: str, space: NB201Space) -> NB201Arch:
    """Read the benchmark's cell string, or a plain list of op indices in edge order ("3 3 3 1 3 2")."""
    if not isinstance(text, str):
        raise ArchError(f"cell string: expected text, got {type(text).__name__}")
    text = text.strip()
    if not text:
        raise ArchError("cell string: empty")
    if "|" in text or "~" in text or "+" in text:
        return _parse_benchmark(text, space)
    try:
        ints = parse_int_string(text)
    except ArchError:
        raise ArchError(f"cell string: {_short(text)} is neither a benchmark string like "
                        f"'|op~0|+|op~0|op~1|+...' nor a list of op indices") from None
    expected = edge_list(space.num_nodes)
    if len(ints) != len(expected):
        raise ArchError(f"integer string: expected {len(expected)} op indices for {space.num_nodes} nodes, "
                        f"got {len(ints)}")
    errors = [f"integer string: {_edge_name(j, i)}: op index {a} out of range [0, {len(space.ops) - 1}]"
              for (j, i), a in zip(expected, ints) if not 0 <= a < len(space.ops)]
    if errors:
        raise ArchError(errors)
    return arch_from_actions(ints, space)


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _parse_benchmark(text: str, space: NB201Space) -> NB201Arch:
    text = text.strip()
    if not text:
        raise ArchError("cell string: empty")
    n = space.num_nodes
    groups = text.split("+")
    if len(groups) != n - 1:
        raise ArchError(f"cell string: expected {n - 1} node groups separated by '+' for {n} nodes, "
                        f"got {len(groups)} in {_short(text)}")
    errors = []
    ops: list[str] = []
    for j, group in enumerate(groups, start=1):
        group = group.strip()
        where = f"cell string: node {j}"
        if len(group) < 2 or not group.startswith("|") or not group.endswith("|"):
            errors.append(f"{where}: group {_short(group)} must look like '|op~0|...|'")
            ops += [space.ops[0]] * j
            continue
        by_source: dict[int, str] = {}
        tokens = [t.strip() for t in group[1:-1].split("|")]
        if len(tokens) != j:
            errors.append(f"{where}: expected {j} edge{'s' if j > 1 else ''} (one from each of nodes "
                          f"0..{j - 1}), got {len(tokens)} in {_short(group)}")
        for tok in tokens:
            op, sep, src_text = (s.strip() for s in tok.partition("~"))
            if not sep or not op or not src_text:
                errors.append(f"{where}: edge {_short(tok)} must be 'op~source'")
                continue
            if op not in space.ops:
                errors.append(f"{where}: unknown op {op!r}; this space has {', '.join(space.ops)}")
            try:
                src = int(src_text)
            except ValueError:
                errors.append(f"{where}: source {src_text!r} of edge {_short(tok)} is not an integer")
                continue
            if not 0 <= src < j:
                errors.append(f"{where}: source {src} out of range [0, {j - 1}] (node {j} reads only earlier "
                              f"nodes)")
            elif src in by_source:
                errors.append(f"{where}: two edges from node {src}")
            else:
                by_source[src] = op
        ops += [by_source.get(i, space.ops[0]) for i in range(j)]
    if errors:
        raise ArchError(errors)
    return _check(NB201Arch(tuple(ops)), space)


def to_enas_string(arch: NB201Arch, space: NB201Space) -> str:
    """The benchmark's cell string (the op names carry the meaning; ``space`` is checked against)."""
    return benchmark_string(_check(arch, space))


def describe(arch: NB201Arch) -> str:
    """A readable text form, one line per node; ``none`` edges are listed apart (they contribute nothing)."""
    n = arch.num_nodes
    if n is None:
        return f"invalid cell: {len(arch.edges)} edges"
    lines = ["node 0 = cell input"]
    for j in range(1, n):
        terms = [f"{op}(node {i})" for i, op in inputs(arch, j) if op != "none"]
        absent = [f"node {i}" for i, op in inputs(arch, j) if op == "none"]
        text = " + ".join(terms) if terms else "zero"
        if absent:
            text += f"  [none from {', '.join(absent)}]"
        if j == n - 1:
            text += "  (cell output)"
        lines.append(f"node {j} = {text}")
    return "\n".join(lines)


def parameter_free_share(arch: NB201Arch) -> float:
    """Fraction of edges whose op has no parameters (none, skip_connect, avg_pool_3x3)."""
    if not arch.edges:
        return 0.0
    return sum(op in PARAMETER_FREE for op in arch.edges) / len(arch.edges)


def is_collapsed(arch: NB201Arch) -> bool:
    """Every edge parameter-free: the cell has no trainable op at all (e.g. the all-skip cell)."""
    return bool(arch.edges) and all(op in PARAMETER_FREE for op in arch.edges)


def space_of(arch: NB201Arch, default: NB201Space) -> NB201Space:
    """The space an architecture lives in: the node count implied by its edges, with the default's ops."""
    n = arch.num_nodes
    return NB201Space(num_nodes=n if n is not None else default.num_nodes, ops=default.ops)


def infer_space(obj: object, default: NB201Space) -> NB201Space:
    """The space implied by an architecture JSON object, integer list or cell string (for reading files)."""
    n = None
    if isinstance(obj, dict):
        if isinstance(obj.get("edges"), list):
            n = nodes_for_edges(len(obj["edges"]))
        elif isinstance(obj.get("string"), str):
            n = obj["string"].count("+") + 2
    elif isinstance(obj, (list, tuple)) and obj:
        n = nodes_for_edges(len(obj))
    elif isinstance(obj, str) and "|" in obj:
        n = obj.count("+") + 2
    return NB201Space(num_nodes=n, ops=default.ops) if n is not None else default


def from_config(num_nodes: int, num_layers: int, ops: tuple[str, ...]) -> NB201Space:
    """The space from the ``space_cfg`` settings (``num_layers`` is the macro space's and unused here)."""
    return NB201Space(num_nodes=num_nodes, ops=tuple(ops)) if ops else NB201Space(num_nodes=num_nodes)


def candidate_names(space: NB201Space) -> tuple[str, ...]:
    """The names the op decisions choose among (for op frequencies and drawings)."""
    return space.ops


def read_string(text: str, space: NB201Space) -> NB201Arch:
    """Read the space's published string format: the benchmark's cell string (or op indices)."""
    return from_enas_string(text, space)


def network_words(arch: NB201Arch, num_layers: int) -> str:
    """How ``enas show`` describes the final network: the benchmark's skeleton, ``num_layers`` cells a stage."""
    return f"3 stages of {num_layers} cells (2 residual reductions)"


def default_space() -> NB201Space:
    """The space with its default size and candidates (what a file without a config is read against)."""
    return NB201Space()
