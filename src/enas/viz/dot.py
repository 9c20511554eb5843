"""Drawing graph -> Graphviz DOT text, and running the ``dot`` program when it is installed."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess

from .graph import Graph, Node, VizError

log = logging.getLogger("enas")

FILL = {"input": "#dbeafe", "node": "#fef3c7", "pool": "#fde2e2", "output": "#dcfce7"}
DOT_TIMEOUT_S = 60


def dot_quote(text: str) -> str:
    """A DOT double-quoted string; newlines become centred line breaks, nothing else is interpreted."""
    lines = str(text).split("\n")
    esc = [line.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "") for line in lines]
    return '"' + "\\n".join(esc) + '"'


def _node_line(n: Node) -> str:
    shape = "box" if n.kind in ("node", "pool") else "ellipse"
    extra = ', peripheries=2' if n.kind == "pool" else ""
    return f"    {dot_quote(n.id)} [label={dot_quote(n.label)}, shape={shape}, fillcolor=\"{FILL[n.kind]}\"{extra}];"


def to_dot_text(g: Graph) -> str:
    lines = [
        "digraph enas {",
        f"  rankdir={g.rankdir};",
        f"  label={dot_quote(g.title)}; labelloc=t; fontname=\"Helvetica\";",
        '  node [style="filled,rounded", fontname="Helvetica", fontsize=12, color="#555555"];',
        '  edge [fontname="Helvetica", fontsize=10, color="#444444"];',
    ]
    several = len(g.clusters) > 1  # a single cluster is drawn without a frame; the graph label names it
    for c in g.clusters:
        lines.append(f"  subgraph {dot_quote(('cluster_' if several else '') + c.id)} {{")
        if several:
            lines.append(f"    label={dot_quote(c.title)}; style=rounded; color=\"#999999\";")
        lines += [_node_line(n) for n in c.nodes]
        sources = [dot_quote(n.id) for n in c.nodes if n.kind == "input"]
        if len(sources) > 1:  # inputs side by side in the first rank
            lines.append(f"    {{rank=same; {'; '.join(sources)};}}")
        for e in c.edges:
            attrs = []
            if e.label:
                attrs.append(f"label={dot_quote(e.label)}")
            if e.style == "skip":
                attrs.append('style=dashed, color="#2563eb", constraint=false, tailport=e, headport=e')
            elif e.style == "output":
                attrs.append('color="#16a34a"')
            tail = f" [{', '.join(attrs)}]" if attrs else ""
            lines.append(f"    {dot_quote(e.src)} -> {dot_quote(e.dst)}{tail};")
        lines.append("  }")
    for a, b in zip(g.clusters, g.clusters[1:]):  # keeps the clusters in order (normal cell first)
        lines.append(f"  {dot_quote(a.nodes[-1].id)} -> {dot_quote(b.nodes[0].id)} [style=invis, constraint=false];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def have_dot() -> bool:
    return shutil.which("dot") is not None


def run_dot(dot_text: str, fmt: str) -> bytes:
    """Run ``dot -T<fmt>`` on the text; raises VizError with dot's message if it fails."""
    exe = shutil.which("dot")
    if exe is None:
        raise VizError("the Graphviz 'dot' program is not installed")
    try:
        proc = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode(), capture_output=True,
                              timeout=DOT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise VizError(f"running dot failed: {e}") from None
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise VizError(f"dot exited with status {proc.returncode}: {msg[0] if msg else 'no message'}")
    return proc.stdout


_PROLOG = re.compile(r"\A.*?(?=<svg\b)", re.S)


def strip_prolog(svg: str) -> str:
    """Drop the XML declaration, DOCTYPE and leading comments so the SVG can be inlined in HTML."""
    return _PROLOG.sub("", svg, count=1).strip() + "\n"
