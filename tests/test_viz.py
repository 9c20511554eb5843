"""Architecture drawings: DOT text, SVG (Graphviz and the pure-Python fallback), PNG, escaping, errors."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter

import pytest

from enas import viz
from enas.spaces import macro, micro
from enas.viz import plots

HAVE_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAVE_DOT, reason="Graphviz `dot` is not installed (apt-get install graphviz)")
SVG_NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def no_dot(monkeypatch):
    """Pretend Graphviz is not installed."""
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)


# ------------------------------------------------------------------------------------------------ helpers
def paper_micro() -> dict:
    return micro.to_dict(micro.from_enas_string(micro.PAPER_ARCH_STRING, micro.MicroSpace()))


def macro_all_skips(layers: int = 6) -> dict:
    return {"space": "macro", "format": 1,
            "layers": [{"op": macro.DEFAULT_OPS[l % 6], "skips": [1] * l} for l in range(layers)]}


def rnn_dict() -> dict:
    # node 0 <- [x_t, h_{t-1}]; 1 <- 0; 2 <- 0; 3 <- 1; loose ends: 2 and 3
    return {"space": "rnn", "format": 1, "nodes": [
        {"input": -1, "activation": "tanh"}, {"input": 0, "activation": "relu"},
        {"input": 0, "activation": "sigmoid"}, {"input": 1, "activation": "identity"}]}


def expected_micro(arch: dict) -> tuple[set[str], Counter]:
    """Node ids and (src, dst, label) edges the drawing of a micro architecture must have."""
    nodes, edges = set(), Counter()
    for cell in ("normal", "reduce"):
        cell_nodes = arch[cell]
        nodes |= {f"{cell}_{k}" for k in range(len(cell_nodes) + 2)} | {f"{cell}_out"}
        for i, (x, xo, y, yo) in enumerate(cell_nodes):
            edges[(f"{cell}_{x}", f"{cell}_{i + 2}", xo)] += 1
            edges[(f"{cell}_{y}", f"{cell}_{i + 2}", yo)] += 1
        used = {n[0] for n in cell_nodes} | {n[2] for n in cell_nodes}
        for j in range(2, len(cell_nodes) + 2):
            if j not in used:
                edges[(f"{cell}_{j}", f"{cell}_out", "")] += 1
    return nodes, edges


def expected_macro(arch: dict) -> tuple[set[str], Counter]:
    n = len(arch["layers"])
    nodes = {f"macro_{j}" for j in range(n + 1)} | {"macro_out"}
    edges = Counter()
    for l, layer in enumerate(arch["layers"]):
        edges[(f"macro_{l}", f"macro_{l + 1}", "")] += 1
        for j, bit in enumerate(layer["skips"]):
            if bit:
                edges[(f"macro_{j}", f"macro_{l + 1}", "")] += 1
    edges[(f"macro_{n}", "macro_out", "")] += 1
    return nodes, edges


def expected_rnn() -> tuple[set[str], Counter]:
    nodes = {"rnn_x", "rnn_h", "rnn_0", "rnn_1", "rnn_2", "rnn_3", "rnn_out"}
    edges = Counter([("rnn_x", "rnn_0", ""), ("rnn_h", "rnn_0", ""), ("rnn_0", "rnn_1", ""), ("rnn_0", "rnn_2", ""),
                     ("rnn_1", "rnn_3", ""), ("rnn_2", "rnn_out", ""), ("rnn_3", "rnn_out", "")])
    return nodes, edges


DOT_EDGE = re.compile(r'^\s*"((?:[^"\\]|\\.)*)" -> "((?:[^"\\]|\\.)*)"(?: \[(.*)\])?;$')
DOT_LABEL = re.compile(r'label="((?:[^"\\]|\\.)*)"')


def dot_unquote(s: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), s)


def parse_dot(text: str) -> tuple[dict[str, str], Counter]:
    """Node labels and (src, dst, label) edges of our DOT output (invisible edges left out)."""
    nodes, edges = {}, Counter()
    for line in text.splitlines():
        m = DOT_EDGE.match(line)
        if m:
            attrs = m.group(3) or ""
            if "style=invis" in attrs:
                continue
            lab = DOT_LABEL.search(attrs)
            edges[(dot_unquote(m.group(1)), dot_unquote(m.group(2)), dot_unquote(lab.group(1)) if lab else "")] += 1
            continue
        m = re.match(r'^\s*"((?:[^"\\]|\\.)*)" \[label="((?:[^"\\]|\\.)*)"', line)
        if m:
            nodes[dot_unquote(m.group(1))] = dot_unquote(m.group(2))
    return nodes, edges


def parse_svg(svg: str) -> tuple[dict[str, list[str]], Counter]:
    """Node ids with their text lines, and (src, dst, label) edges, from Graphviz's or our SVG."""
    root = ET.fromstring(svg)
    assert root.tag == SVG_NS + "svg"
    nodes, edges = {}, Counter()
    for g in root.iter(SVG_NS + "g"):
        cls = g.get("class")
        if cls not in ("node", "edge"):
            continue
        title = g.find(SVG_NS + "title").text
        texts = ["".join(t.itertext()) for t in g.iter(SVG_NS + "text")]
        if cls == "node":
            nodes[title] = texts
        else:
            src, dst = (re.sub(r":(?:n|ne|e|se|s|sw|w|nw|c|_)$", "", end) for end in title.split("->"))  # ports
            edges[(src, dst, " ".join(texts))] += 1
    return nodes, edges


# ---------------------------------------------------------------------------------------------------- micro
def test_micro_dot_has_every_node_op_and_edge():
    arch = paper_micro()
    nodes, edges = parse_dot(viz.to_dot(arch))
    want_nodes, want_edges = expected_micro(arch)
    assert set(nodes) == want_nodes
    assert edges == want_edges
    assert sum(want_edges.values()) == 2 * 2 * 5 + 5 + 4  # 20 op edges, 5 + 4 loose ends
    assert nodes["normal_0"] == "c_{k-2}" and nodes["normal_1"] == "c_{k-1}" and nodes["reduce_out"] == "c_{k}"
    text = viz.to_dot(arch)
    assert 'subgraph "cluster_normal"' in text and 'subgraph "cluster_reduce"' in text
    assert text.index("cluster_normal") < text.index("cluster_reduce")


def test_micro_svg_fallback_has_every_node_op_and_edge(no_dot):
    arch = paper_micro()
    svg = viz.to_svg(arch)  # auto: dot is "missing", so the built-in layout draws it
    assert 'class="enas-arch"' in svg and "Generated by graphviz" not in svg
    nodes, edges = parse_svg(svg)
    want_nodes, want_edges = expected_micro(arch)
    assert set(nodes) == want_nodes
    assert edges == want_edges
    assert nodes["normal_0"] == ["c_{k-2}"] and nodes["normal_2"] == ["2"]
    ops = Counter(op for cell in ("normal", "reduce") for n in arch[cell] for op in (n[1], n[3]))
    assert Counter(label for (_, _, label), k in edges.items() for _ in range(k) if label) == ops


@needs_dot
def test_micro_svg_with_dot_has_every_node_op_and_edge():
    arch = paper_micro()
    svg = viz.to_svg(arch, use_dot=True)
    assert svg.startswith("<svg") and "<!DOCTYPE" not in svg
    nodes, edges = parse_svg(svg)
    want_nodes, want_edges = expected_micro(arch)
    assert set(nodes) == want_nodes
    assert edges == want_edges
    assert viz.to_svg(arch) == svg  # auto uses Graphviz when it is installed


def test_single_cell_can_be_drawn(no_dot):
    arch = paper_micro()
    nodes, edges = parse_svg(viz.to_svg({"space": "micro", "normal": arch["normal"]}))
    assert all(n.startswith("normal_") for n in nodes) and len(edges) == 10 + 5


# ---------------------------------------------------------------------------------------------------- macro
def test_macro_dot_all_skips_and_pool_points():
    arch = macro_all_skips(6)
    text = viz.to_dot(arch)
    nodes, edges = parse_dot(text)
    want_nodes, want_edges = expected_macro(arch)
    assert set(nodes) == want_nodes and edges == want_edges
    assert sum(want_edges.values()) == 6 + 15 + 1
    pools = macro.pool_layers(6)
    marked = {n for n, label in nodes.items() if "pool" in label.split("\n")[-1] and "(then pool)" in label}
    assert marked == {f"macro_{p + 1}" for p in pools}
    assert text.count("peripheries=2") == len(pools)
    assert text.count("style=dashed") == 15
    for l in range(6):
        assert nodes[f"macro_{l + 1}"].split("\n")[1] == arch["layers"][l]["op"]


def test_macro_svg_fallback_all_skips(no_dot):
    arch = macro_all_skips(6)
    nodes, edges = parse_svg(viz.to_svg(arch))
    want_nodes, want_edges = expected_macro(arch)
    assert set(nodes) == want_nodes and edges == want_edges
    for l in range(6):
        assert nodes[f"macro_{l + 1}"][:2] == [f"layer {l}", arch["layers"][l]["op"]]
        assert (nodes[f"macro_{l + 1}"][-1] == "(then pool)") == (l in macro.pool_layers(6))


@needs_dot
def test_macro_svg_with_dot_all_skips():
    arch = macro_all_skips(6)
    nodes, edges = parse_svg(viz.to_svg(arch, use_dot=True))
    want_nodes, want_edges = expected_macro(arch)
    assert set(nodes) == want_nodes and edges == want_edges


def test_paper_macro_draws(no_dot):
    space = macro.MacroSpace(num_layers=24, ops=macro.DEFAULT_OPS[:4])
    arch = macro.to_dict(macro.from_enas_string(macro.PAPER_ARCH_STRING, space))
    nodes, edges = parse_svg(viz.to_svg(arch))
    assert len(nodes) == 26 and sum(edges.values()) == 24 + sum(sum(l["skips"]) for l in arch["layers"]) + 1


# ------------------------------------------------------------------------------------------------------ rnn
def test_rnn_dot():
    nodes, edges = parse_dot(viz.to_dot(rnn_dict()))
    want_nodes, want_edges = expected_rnn()
    assert set(nodes) == want_nodes and edges == want_edges
    assert nodes["rnn_2"] == "2\nsigmoid" and nodes["rnn_out"] == "h_{t}" and nodes["rnn_h"] == "h_{t-1}"


@pytest.mark.parametrize("use_dot", [False, pytest.param(True, marks=needs_dot)])
def test_rnn_svg(use_dot):
    arch = rnn_dict()
    del arch["nodes"][0]["input"]  # node 0's input may be absent
    nodes, edges = parse_svg(viz.to_svg(arch, use_dot=use_dot))
    want_nodes, want_edges = expected_rnn()
    assert set(nodes) == want_nodes and edges == want_edges
    assert nodes["rnn_3"] == ["3", "identity"]


# ------------------------------------------------------------------------------------------------ escaping
NASTY = 'a<b>&"c"\'d\\e'


def nasty_micro() -> dict:
    return {"space": "micro", "format": 1, "normal": [[0, NASTY, 1, "x&y"]], "reduce": [[1, "<script>", 0, "q\""]]}


def test_dot_escapes_labels():
    arch = nasty_micro()
    text = viz.to_dot(arch)
    _, edges = parse_dot(text)
    assert ("normal_0", "normal_2", NASTY) in edges and ("reduce_1", "reduce_2", "<script>") in edges
    assert 'label="a<b>&\\"c\\"\'d\\\\e"' in text


@pytest.mark.parametrize("use_dot", [False, pytest.param(True, marks=needs_dot)])
def test_svg_escapes_labels(use_dot):
    svg = viz.to_svg(nasty_micro(), use_dot=use_dot)
    assert "<script>" not in svg
    _, edges = parse_svg(svg)  # well-formed XML, and the text reads back unchanged
    labels = {label for (_, _, label) in edges}
    assert {NASTY, "x&y", "<script>", 'q"'} <= labels


# --------------------------------------------------------------------------------------------------- render
def test_render_dot_and_svg_text_and_files(tmp_path, no_dot):
    arch = paper_micro()
    assert viz.render("micro", arch, "dot", None) == viz.to_dot(arch)
    svg = viz.render("micro", arch, "svg", None)
    assert svg.startswith("<svg")
    out = tmp_path / "sub" / "cell.svg"
    assert viz.render("micro", arch, "svg", str(out)) is None
    assert out.read_text() == svg
    assert viz.render("micro", arch, "dot", str(tmp_path / "cell.dot")) is None
    assert (tmp_path / "cell.dot").read_text().startswith("digraph")


def test_png_without_dot_says_what_to_do(tmp_path, no_dot):
    with pytest.raises(ValueError) as e:
        viz.render("micro", paper_micro(), "png", str(tmp_path / "cell.png"))
    msg = str(e.value)
    assert "\n" not in msg and "graphviz" in msg.lower() and "svg" in msg
    assert not (tmp_path / "cell.png").exists()


@needs_dot
def test_png_with_dot(tmp_path):
    out = tmp_path / "cell.png"
    assert viz.render("micro", paper_micro(), "png", str(out)) is None
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="-o FILE"):
        viz.render("micro", paper_micro(), "png", None)


def test_use_dot_true_without_dot_fails_clearly(no_dot):
    with pytest.raises(viz.VizError, match="not installed"):
        viz.to_svg(paper_micro(), use_dot=True)


@pytest.mark.parametrize("arch, fragment", [
    ({"space": "micro", "normal": [[5, "identity", 0, "identity"]]}, "normal.node2"),
    ({"space": "macro", "layers": []}, "layers"),
    ({"space": "rnn", "nodes": [{"activation": "tanh"}, {"input": 3, "activation": "relu"}]}, "node1.input"),
    ({"space": "cnn"}, "unknown space"),
    ([1, 2], "JSON object"),
])
def test_malformed_architectures_are_reported(arch, fragment):
    with pytest.raises(viz.VizError, match=re.escape(fragment)):
        viz.to_dot(arch)


def test_render_checks_space_and_format():
    with pytest.raises(ValueError, match="not 'macro'"):
        viz.render("macro", paper_micro(), "svg", None)
    with pytest.raises(ValueError, match="--format"):
        viz.render("micro", paper_micro(), "pdf", None)


# ---------------------------------------------------------------------------------------------------- plots
def test_plots_are_well_formed_and_skip_gaps():
    s = plots.line_chart([plots.Series("a<b", (1, 2, 3, 4), (1.0, float("nan"), 2.0, 3.0)),
                          plots.Series("b", (1, 2), (None, None))], "t&t", ylabel="y")
    root = ET.fromstring(s)
    lines = list(root.iter(SVG_NS + "polyline"))
    assert len(lines) == 1 and len(lines[0].get("points").split()) == 2  # the NaN splits the line; b is empty
    assert "a<b" in {t.text for t in root.iter(SVG_NS + "title")} and root.find(SVG_NS + "title").text == "t&t"
    area = plots.stacked_area([plots.Series("x", (1,), (0.3,)), plots.Series("y", (1,), (0.7,))], "one epoch")
    assert len(list(ET.fromstring(area).iter(SVG_NS + "polygon"))) == 2
    assert "no data" in plots.line_chart([], "empty")
    assert plots.nice_ticks(0.1, 0.14)[0] <= 0.1 and plots.nice_ticks(0.1, 0.14)[-1] >= 0.14


def test_viz_imports_no_torch():
    code = ("import sys; import enas.viz, enas.viz.plots, enas.report; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
