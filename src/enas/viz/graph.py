"""Architecture JSON -> a small drawing graph (plain data), shared by the DOT writer and the SVG fallback.

Only the architecture's JSON form is read (``{"space": ..., "format": 1, ...}``), so this module depends on
nothing else in the package but the list of parameter-free ops (``spaces.base``). Node ids are unique across the whole graph (each is prefixed by its cluster).
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import spaces as _spaces
from ..errors import EnasError
from ..spaces.base import PARAMETER_FREE  # noqa: F401 - re-exported: it was defined here

SPACES = _spaces.SPACES  # the built-in spaces and those added by enas.register_space (a live view)
CELLS = ("normal", "reduce")


class VizError(EnasError, ValueError):
    """A drawing cannot be made (malformed architecture, missing Graphviz, unwritable file); one-line message."""


@dataclass(frozen=True)
class Node:
    id: str
    label: str  # may contain "\n" for several lines
    kind: str  # input | node | output | pool


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    label: str = ""
    style: str = "solid"  # solid | skip | output


@dataclass(frozen=True)
class Cluster:
    id: str
    title: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]


@dataclass(frozen=True)
class Graph:
    title: str
    rankdir: str  # "LR" (left to right) or "TB" (top to bottom)
    clusters: tuple[Cluster, ...]


def space_of(arch: dict, space: str | None = None) -> str:
    """The space named by ``arch["space"]`` (or ``space`` when the object has none); checks they agree."""
    if not isinstance(arch, dict):
        raise VizError(f"architecture: expected a JSON object, got {type(arch).__name__}")
    named = arch.get("space", space)
    if space is not None and named != space:
        raise VizError(f"architecture is for space {named!r}, not {space!r}")
    if named not in SPACES:
        raise VizError(f"architecture: unknown space {named!r}; expected one of {', '.join(SPACES)}")
    return named


def build_graph(arch: dict, space: str | None = None) -> Graph:
    """The drawing graph of a micro, macro or rnn architecture JSON object."""
    name = space_of(arch, space)
    builtin = {"micro": micro_graph, "macro": macro_graph, "rnn": rnn_graph, "nb201": nb201_graph}
    if name in builtin:
        return builtin[name](arch)
    draw = getattr(_spaces.get(name), "graph", None)  # a registered space draws itself, if it can
    if draw is None:
        raise VizError(f"space {name!r} has no drawing (give its module a graph(arch_dict) -> enas.viz.Graph)")
    return draw(arch)


def _is_index(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# --------------------------------------------------------------------------------------------- micro
def micro_loose_ends(nodes: list) -> list[int]:
    used = {n[0] for n in nodes} | {n[2] for n in nodes}
    return [i + 2 for i in range(len(nodes)) if i + 2 not in used]


def _micro_cell(cell: str, nodes: object) -> Cluster:
    if not isinstance(nodes, list):
        raise VizError(f"{cell}: expected a list of [input, op, input, op] nodes")
    for i, n in enumerate(nodes):
        ok = isinstance(n, (list, tuple)) and len(n) == 4 and _is_index(n[0]) and _is_index(n[2])
        if not ok or not 0 <= n[0] < i + 2 or not 0 <= n[2] < i + 2:
            raise VizError(f"{cell}.node{i + 2}: expected [input < {i + 2}, op, input < {i + 2}, op], got {n!r}")
    ident = lambda k: f"{cell}_{k}"  # noqa: E731
    out = [Node(ident(0), "c_{k-2}", "input"), Node(ident(1), "c_{k-1}", "input")]
    out += [Node(ident(i + 2), str(i + 2), "node") for i in range(len(nodes))]
    out.append(Node(ident("out"), "c_{k}", "output"))
    edges = []
    for i, (x, x_op, y, y_op) in enumerate(nodes):
        edges.append(Edge(ident(x), ident(i + 2), str(x_op)))
        edges.append(Edge(ident(y), ident(i + 2), str(y_op)))
    ends = micro_loose_ends(nodes) if nodes else [1]
    edges += [Edge(ident(j), ident("out"), "", "output") for j in ends]
    title = "normal cell" if cell == "normal" else "reduction cell"
    return Cluster(cell, title, tuple(out), tuple(edges))


def micro_graph(arch: dict) -> Graph:
    missing = [c for c in CELLS if c not in arch]
    if len(missing) == len(CELLS):
        raise VizError("micro architecture: expected a 'normal' and a 'reduce' list of nodes")
    clusters = tuple(_micro_cell(c, arch[c]) for c in CELLS if c in arch)
    return Graph("micro cells" if len(clusters) > 1 else clusters[0].title, "LR", clusters)


# --------------------------------------------------------------------------------------------- macro
def macro_pool_layers(num_layers: int) -> tuple[int, ...]:
    """Layers after which the reference reduces every node (same rule as ``enas.spaces.macro``)."""
    pd = num_layers // 3
    return tuple(p for p in sorted({pd - 1, 2 * pd - 1}) if 0 <= p < num_layers)


def macro_graph(arch: dict) -> Graph:
    layers = arch.get("layers")
    if not isinstance(layers, list) or not layers:
        raise VizError("macro architecture: expected a non-empty 'layers' list of {\"op\": name, \"skips\": [bits]}")
    pools = macro_pool_layers(len(layers))
    ident = lambda j: f"macro_{j}"  # noqa: E731  node j: 0 = stem, j = output of layer j - 1
    nodes = [Node(ident(0), "stem", "input")]
    edges = []
    for l, layer in enumerate(layers):
        if not isinstance(layer, dict) or not isinstance(layer.get("skips", []), list):
            raise VizError(f"layer{l}: expected {{\"op\": name, \"skips\": [bits]}}, got {layer!r}")
        bits = layer.get("skips", [])
        if len(bits) > l:
            raise VizError(f"layer{l}.skips: at most {l} bits (one per earlier node), got {len(bits)}")
        label = f"layer {l}\n{layer.get('op', '?')}"
        if l in pools:
            label += "\n(then pool)"
        nodes.append(Node(ident(l + 1), label, "pool" if l in pools else "node"))
        edges.append(Edge(ident(l), ident(l + 1)))
        edges += [Edge(ident(j), ident(l + 1), "", "skip") for j, bit in enumerate(bits) if bit]
    nodes.append(Node(ident("out"), "output", "output"))
    edges.append(Edge(ident(len(layers)), ident("out"), "", "output"))
    title = f"macro network: {len(layers)} layers"
    return Graph(title, "TB", (Cluster("macro", title, tuple(nodes), tuple(edges)),))


# ----------------------------------------------------------------------------------------------- rnn
def rnn_loose_ends(inputs: list[int]) -> list[int]:
    used = set(inputs[1:])
    return [i for i in range(len(inputs)) if i not in used]


def rnn_graph(arch: dict) -> Graph:
    raw = arch.get("nodes")
    if not isinstance(raw, list) or not raw:
        raise VizError("rnn architecture: expected a non-empty 'nodes' list of {\"input\": j, \"activation\": name}")
    inputs, acts = [], []
    for i, n in enumerate(raw):
        if not isinstance(n, dict):
            raise VizError(f"node{i}: expected {{\"input\": j, \"activation\": name}}, got {n!r}")
        j = n.get("input", -1)
        if i == 0:
            j = -1
        elif not _is_index(j) or not 0 <= j < i:
            raise VizError(f"node{i}.input: expected an integer in [0, {i - 1}], got {j!r}")
        inputs.append(j)
        acts.append(str(n.get("activation", "?")))
    ident = lambda k: f"rnn_{k}"  # noqa: E731
    nodes = [Node(ident("x"), "x_{t}", "input"), Node(ident("h"), "h_{t-1}", "input")]
    nodes += [Node(ident(i), f"{i}\n{a}", "node") for i, a in enumerate(acts)]
    nodes.append(Node(ident("out"), "h_{t}", "output"))
    edges = [Edge(ident("x"), ident(0)), Edge(ident("h"), ident(0))]
    edges += [Edge(ident(j), ident(i)) for i, j in enumerate(inputs) if i > 0]
    edges += [Edge(ident(j), ident("out"), "", "output") for j in rnn_loose_ends(inputs)]
    title = f"recurrent cell: {len(acts)} nodes, h_t = mean of the loose ends"
    return Graph(title, "LR", (Cluster("rnn", title, tuple(nodes), tuple(edges)),))


# --------------------------------------------------------------------------------------------- nb201
def nb201_graph(arch: dict) -> Graph:
    """NAS-Bench-201 cell: node j sums one op per earlier node; ``none`` edges are not drawn."""
    ops = arch.get("edges")
    if not isinstance(ops, list) or not ops or not all(isinstance(o, str) for o in ops):
        raise VizError("nb201 architecture: expected a non-empty 'edges' list of op names")
    n = 2
    while n * (n - 1) // 2 < len(ops):
        n += 1
    if n * (n - 1) // 2 != len(ops):
        raise VizError(f"nb201 architecture: {len(ops)} edges make no complete cell")
    ident = lambda k: f"nb201_{k}"  # noqa: E731
    nodes = [Node(ident(0), "input", "input")]
    nodes += [Node(ident(j), str(j), "node") for j in range(1, n - 1)]
    nodes.append(Node(ident(n - 1), "output", "output"))
    pairs = [(j, i) for j in range(1, n) for i in range(j)]
    edges = tuple(Edge(ident(i), ident(j), op) for (j, i), op in zip(pairs, ops) if op != "none")
    title = "NAS-Bench-201 cell"
    return Graph(title, "LR", (Cluster("nb201", title, tuple(nodes), edges),))
