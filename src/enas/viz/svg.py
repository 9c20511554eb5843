"""Drawing graph -> SVG text in pure Python (used when Graphviz is not installed).

A simple layered layout: each node's rank is its longest distance from a source; nodes of one rank share a
column (left to right) or a row (top to bottom) and are ordered by the mean position of their neighbours.
In left-to-right graphs an edge that spans several ranks gets a bend point in every rank it crosses, so it is
routed between the nodes; in top-to-bottom graphs (the macro chain) such edges are arcs to the side. Edge
labels go to the first place along their edge that overlaps no node and no other label. Elements follow
Graphviz's SVG conventions
(``<g class="node"><title>id</title>`` and ``<g class="edge"><title>src->dst</title>``) so that tools and tests
can read either output the same way.
"""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import dataclass

from .graph import Cluster, Edge, Graph, Node

FONT = "Helvetica, Arial, sans-serif"
CHAR_W = 7.0  # approximate width of a 12px character
LABEL_CHAR_W = 6.2  # approximate width of an 11px character
LINE_H = 15.0
FILL = {"input": "#dbeafe", "node": "#fef3c7", "pool": "#fde2e2", "output": "#dcfce7"}
STROKE = {"solid": "#444444", "skip": "#2563eb", "output": "#16a34a"}
PAD = 16.0

Point = tuple[float, float]
Segment = tuple[Point, Point, Point, Point]  # a cubic Bezier
Rect = tuple[float, float, float, float]  # x0, y0, x1, y1


def esc(text: object) -> str:
    """Text escaped for XML content and attribute values."""
    return html.escape(str(text), quote=True)


@dataclass
class _Box:
    id: str
    node: Node | None  # None: a bend point of an edge that spans several ranks
    rank: int
    w: float
    h: float
    x: float = 0.0  # centre
    y: float = 0.0


def _size(n: Node) -> tuple[float, float]:
    lines = n.label.split("\n")
    w = max(44.0, CHAR_W * max(len(s) for s in lines) + 22.0)
    h = LINE_H * len(lines) + 14.0
    if n.kind in ("input", "output"):
        w += 12.0
    return w, h


def _ranks(c: Cluster) -> dict[str, int]:
    """Longest distance of each node from a source (its column or row)."""
    preds: dict[str, list[str]] = defaultdict(list)
    for e in c.edges:
        preds[e.dst].append(e.src)
    rank: dict[str, int] = {}

    def visit(nid: str, stack: frozenset) -> int:
        if nid in rank:
            return rank[nid]
        if nid in stack:  # a cycle cannot occur in these graphs; guard anyway
            return 0
        r = max((visit(p, stack | {nid}) + 1 for p in preds[nid]), default=0)
        rank[nid] = r
        return r

    for n in c.nodes:
        visit(n.id, frozenset())
    return rank


def _routes(c: Cluster, boxes: dict[str, _Box], lr: bool) -> list[list[str]]:
    """Per edge, the boxes it passes: left-to-right graphs get a bend point in every rank a long edge crosses
    (so it is routed between the nodes); top-to-bottom graphs draw long edges as side arcs instead."""
    routes = []
    for k, e in enumerate(c.edges):
        s, d = boxes[e.src], boxes[e.dst]
        route = [e.src]
        if lr:
            for r in range(s.rank + 1, d.rank):
                bid = f"~{k}.{r}"
                boxes[bid] = _Box(bid, None, r, 0.0, 14.0)
                route.append(bid)
        routes.append(route + [e.dst])
    return routes


def _order(boxes: dict[str, _Box], routes: list[list[str]]) -> list[list[_Box]]:
    """Boxes grouped by rank, ordered by the mean position of their neighbours (down, up, down sweeps)."""
    by_rank: dict[int, list[_Box]] = defaultdict(list)
    for b in boxes.values():
        by_rank[b.rank].append(b)
    layers = [by_rank[r] for r in sorted(by_rank)]
    preds: dict[str, list[str]] = defaultdict(list)
    succs: dict[str, list[str]] = defaultdict(list)
    for route in routes:
        for u, v in zip(route, route[1:]):
            if boxes[v].rank - boxes[u].rank == 1:
                preds[v].append(u)
                succs[u].append(v)
    for down in (True, False, True):
        pos = {b.id: i for layer in layers for i, b in enumerate(layer)}
        sweep = layers[1:] if down else layers[-2::-1]
        for layer in sweep:
            near = preds if down else succs
            def key(b: _Box, p: dict = pos) -> tuple[float, int]:
                ps = [p[s] for s in near[b.id]]
                return (sum(ps) / len(ps) if ps else p[b.id], p[b.id])
            layer.sort(key=key)
            pos.update({b.id: i for i, b in enumerate(layer)})
    return layers


def _place(layers: list[list[_Box]], rankdir: str, gap: float) -> None:
    """Set box centres; the rank axis is x for LR and y for TB; ranks are centred on the cross axis."""
    lr = rankdir == "LR"
    along = 0.0
    extents = []
    for layer in layers:
        depth = max((b.w if lr else b.h) for b in layer)
        cross = [(b.h if lr else b.w) for b in layer]
        sep = 34.0 if lr else 30.0
        extents.append(sum(cross) + sep * (len(layer) - 1))
        cur = 0.0
        for b, size in zip(layer, cross):
            mid_along, mid_cross = along + depth / 2, cur + size / 2
            b.x, b.y = (mid_along, mid_cross) if lr else (mid_cross, mid_along)
            cur += size + sep
        along += depth + gap
    widest = max(extents, default=0.0)
    for layer, ext in zip(layers, extents):
        shift = (widest - ext) / 2
        for b in layer:
            if lr:
                b.y += shift
            else:
                b.x += shift


def _node_svg(b: _Box) -> str:
    n = b.node
    fill = FILL.get(n.kind, "#ffffff")
    if n.kind in ("input", "output"):
        shape = (f'<ellipse cx="{b.x:.1f}" cy="{b.y:.1f}" rx="{b.w / 2:.1f}" ry="{b.h / 2:.1f}" '
                 f'fill="{fill}" stroke="#555555"/>')
    else:
        extra = ' stroke-width="2.5"' if n.kind == "pool" else ""
        shape = (f'<rect x="{b.x - b.w / 2:.1f}" y="{b.y - b.h / 2:.1f}" width="{b.w:.1f}" height="{b.h:.1f}" '
                 f'rx="6" fill="{fill}" stroke="#555555"{extra}/>')
    lines = n.label.split("\n")
    top = b.y - LINE_H * (len(lines) - 1) / 2
    texts = "".join(f'<text x="{b.x:.1f}" y="{top + i * LINE_H + 4:.1f}" text-anchor="middle" font-size="12">'
                    f"{esc(s)}</text>" for i, s in enumerate(lines))
    return f'<g class="node"><title>{esc(n.id)}</title>{shape}{texts}</g>'


def _anchor(b: _Box, side: str) -> Point:
    return {"right": (b.x + b.w / 2, b.y), "left": (b.x - b.w / 2, b.y),
            "top": (b.x, b.y - b.h / 2), "bottom": (b.x, b.y + b.h / 2)}[side]


def _edge_segments(route: list[_Box], rankdir: str, dup: int, ndup: int) -> list[Segment]:
    """Cubic segments of an edge through its route; ``dup`` of ``ndup`` parallel edges between two nodes."""
    lr = rankdir == "LR"
    s, d = route[0], route[-1]
    offset = (dup - (ndup - 1) / 2) * 26.0
    if not lr and abs(d.rank - s.rank) > 1:  # arc out of the right side, around the chain
        (x0, y0), (x1, y1) = _anchor(s, "right"), _anchor(d, "right")
        cx = max(x0, x1) + 24.0 + 20.0 * abs(d.rank - s.rank) + offset
        return [((x0, y0), (cx, y0), (cx, y1), (x1, y1))]
    start, end = (_anchor(s, "right"), _anchor(d, "left")) if lr else (_anchor(s, "bottom"), _anchor(d, "top"))
    pts = [start] + [(b.x, b.y) for b in route[1:-1]] + [end]
    if len(pts) == 2 and offset != 0.0:  # parallel edges: symmetric bends
        (x0, y0), (x1, y1) = pts
        dx, dy = x1 - x0, y1 - y0
        norm = max((dx * dx + dy * dy) ** 0.5, 1e-6)
        cx, cy = (x0 + x1) / 2 - dy / norm * offset * 2, (y0 + y1) / 2 + dx / norm * offset * 2
        c0 = (x0 + 2 / 3 * (cx - x0), y0 + 2 / 3 * (cy - y0))
        c1 = (x1 + 2 / 3 * (cx - x1), y1 + 2 / 3 * (cy - y1))
        return [((x0, y0), c0, c1, (x1, y1))]
    segs = []
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):  # S-curves, tangent to the rank direction at every point
        if lr:
            h = (x1 - x0) / 2
            segs.append(((x0, y0), (x0 + h, y0), (x1 - h, y1), (x1, y1)))
        else:
            h = (y1 - y0) / 2
            segs.append(((x0, y0), (x0, y0 + h), (x1, y1 - h), (x1, y1)))
    return segs


def _point(segs: list[Segment], t: float) -> Point:
    """The point at ``t`` in [0, 1] along the segments (each segment gets an equal share of ``t``)."""
    k = min(int(t * len(segs)), len(segs) - 1)
    u = t * len(segs) - k
    pts = list(segs[k])
    while len(pts) > 1:
        pts = [((1 - u) * a[0] + u * b[0], (1 - u) * a[1] + u * b[1]) for a, b in zip(pts, pts[1:])]
    return pts[0]


def _path(segs: list[Segment]) -> str:
    (x, y) = segs[0][0]
    out = [f"M{x:.1f},{y:.1f}"]
    for _, c0, c1, p in segs:
        out.append(f"C{c0[0]:.1f},{c0[1]:.1f} {c1[0]:.1f},{c1[1]:.1f} {p[0]:.1f},{p[1]:.1f}")
    return " ".join(out)


def _overlap_area(a: Rect, b: Rect) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _label_rect(x: float, y: float, label: str) -> Rect:
    w = LABEL_CHAR_W * len(label) + 6
    return (x - w / 2, y - 8, x + w / 2, y + 7)


# Places along an edge tried for its label, best first.
LABEL_TS = (0.5, 0.4, 0.6, 0.3, 0.7, 0.45, 0.55, 0.35, 0.65, 0.25, 0.75, 0.2, 0.8)


def _place_label(segs: list[Segment], label: str, taken: list[Rect]) -> Point:
    """The first point along the curve whose label box overlaps no node and no label already placed
    (failing that, the point of least overlap)."""
    best, best_cost = _point(segs, 0.5), float("inf")
    for t in LABEL_TS:
        x, y = _point(segs, t)
        r = _label_rect(x, y, label)
        cost = sum(_overlap_area(r, o) for o in taken)
        if cost < best_cost:
            best, best_cost = (x, y), cost
        if cost == 0.0:
            break
    taken.append(_label_rect(*best, label))
    return best


def _edge_svg(e: Edge, segs: list[Segment], lx: float, ly: float) -> str:
    color = STROKE.get(e.style, STROKE["solid"])
    dash = ' stroke-dasharray="5,4"' if e.style == "skip" else ""
    marker = f"url(#enas-arrow-{e.style if e.style in STROKE else 'solid'})"
    parts = [f'<g class="edge"><title>{esc(e.src)}-&gt;{esc(e.dst)}</title>',
             f'<path d="{_path(segs)}" fill="none" stroke="{color}" stroke-width="1.3"{dash} marker-end="{marker}"/>']
    if e.label:
        x0, y0, x1, y1 = _label_rect(lx, ly, e.label)
        parts.append(f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" height="{y1 - y0:.1f}" rx="3" '
                     f'fill="#ffffff" fill-opacity="0.85"/>')
        parts.append(f'<text x="{lx:.1f}" y="{ly + 3.5:.1f}" text-anchor="middle" font-size="11" '
                     f'fill="#1f2937">{esc(e.label)}</text>')
    parts.append("</g>")
    return "".join(parts)


def _cluster_svg(c: Cluster, rankdir: str) -> tuple[str, float, float]:
    """SVG of one cluster in local coordinates (origin at its top-left corner), with its width and height."""
    ranks = _ranks(c)
    boxes = {n.id: _Box(n.id, n, ranks[n.id], *_size(n)) for n in c.nodes}
    routes = _routes(c, boxes, rankdir == "LR")
    longest = max((len(e.label) for e in c.edges), default=0)
    gap = max(50.0, 2.2 * LABEL_CHAR_W * longest + 40.0) if rankdir == "LR" else 44.0
    _place(_order(boxes, routes), rankdir, gap)
    real = [boxes[n.id] for n in c.nodes]
    bbox = [min(b.x - b.w / 2 for b in real), min(b.y - b.h / 2 for b in real),
            max(b.x + b.w / 2 for b in real), max(b.y + b.h / 2 for b in real)]
    count: dict[tuple[str, str], int] = defaultdict(int)
    for e in c.edges:
        count[(e.src, e.dst)] += 1
    seen: dict[tuple[str, str], int] = defaultdict(int)
    taken: list[Rect] = [(b.x - b.w / 2 - 2, b.y - b.h / 2 - 2, b.x + b.w / 2 + 2, b.y + b.h / 2 + 2) for b in real]
    edges = []
    for e, route in zip(c.edges, routes):
        key = (e.src, e.dst)
        segs = _edge_segments([boxes[r] for r in route], rankdir, seen[key], count[key])
        seen[key] += 1
        extent = [_point(segs, i / 32) for i in range(33)]
        lx, ly = _place_label(segs, e.label, taken) if e.label else (0.0, 0.0)
        if e.label:
            r = _label_rect(lx, ly, e.label)
            extent += [(r[0], r[1]), (r[2], r[3])]
        for x, y in extent:
            bbox[0], bbox[1] = min(bbox[0], x), min(bbox[1], y)
            bbox[2], bbox[3] = max(bbox[2], x), max(bbox[3], y)
        edges.append(_edge_svg(e, segs, lx, ly))
    title_h = 24.0
    ox, oy = PAD - bbox[0], PAD + title_h - bbox[1]
    width, height = bbox[2] - bbox[0] + 2 * PAD, bbox[3] - bbox[1] + 2 * PAD + title_h
    width = max(width, CHAR_W * len(c.title) + 2 * PAD)
    body = "".join(edges) + "".join(_node_svg(b) for b in real)
    out = (f'<g class="cluster"><title>{esc(c.id)}</title>'
           f'<rect x="0.5" y="0.5" width="{width - 1:.1f}" height="{height - 1:.1f}" rx="8" fill="#ffffff" '
           f'stroke="#9ca3af"/>'
           f'<text x="{PAD:.1f}" y="20" font-size="13" font-weight="bold" fill="#374151">{esc(c.title)}</text>'
           f'<g transform="translate({ox:.1f},{oy:.1f})">{body}</g></g>')
    return out, width, height


def _markers() -> str:
    return "<defs>" + "".join(
        f'<marker id="enas-arrow-{style}" viewBox="0 0 10 10" refX="9.5" refY="5" markerWidth="7" '
        f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{color}"/></marker>'
        for style, color in STROKE.items()) + "</defs>"


def graph_to_svg(g: Graph) -> str:
    """A standalone SVG document (no XML declaration, so it can also be inlined in HTML)."""
    several = len(g.clusters) > 1  # a single cluster carries the title itself
    parts, y, width = [], 34.0 if several else 8.0, CHAR_W * 1.1 * len(g.title) + 2 * PAD
    for c in g.clusters:
        body, w, h = _cluster_svg(c, g.rankdir)
        parts.append(f'<g transform="translate({PAD:.1f},{y:.1f})">{body}</g>')
        y += h + PAD
        width = max(width, w + 2 * PAD)
    height = y - PAD + 8.0
    heading = (f'<text x="{PAD:.1f}" y="22" font-size="14" font-weight="bold" fill="#111827">{esc(g.title)}</text>'
               if several else "")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.1f} {height:.1f}" font-family="{FONT}" class="enas-arch">'
            f"<title>{esc(g.title)}</title>{_markers()}"
            f'<rect width="100%" height="100%" fill="#ffffff"/>'
            + heading + "".join(parts) + "</svg>\n")
