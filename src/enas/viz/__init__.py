"""Drawings of architectures (DOT, SVG, PNG) and SVG plots of run metrics; pure Python, no torch import.

* ``to_dot(arch)``: Graphviz DOT text of a micro, macro or rnn architecture JSON object.
* ``to_svg(arch, use_dot=None)``: SVG text, made by Graphviz ``dot`` when it is installed, else by a
  pure-Python layered layout.
* ``render(space, arch, fmt, output)``: what ``enas show ARCH --format dot|svg|png -o FILE`` calls.
"""

from __future__ import annotations

import logging
from pathlib import Path

from . import dot as _dot
from .graph import Graph, VizError, build_graph, space_of
from .svg import graph_to_svg

log = logging.getLogger("enas")

__all__ = ["VizError", "Graph", "build_graph", "to_dot", "to_svg", "render", "FORMATS"]

FORMATS = ("dot", "svg", "png")


def to_dot(arch: dict, space: str | None = None) -> str:
    """Graphviz DOT text: one cluster per cell (micro), the layer chain with skips (macro), or the cell (rnn)."""
    return _dot.to_dot_text(build_graph(arch, space))


def to_svg(arch: dict, use_dot: bool | None = None, space: str | None = None) -> str:
    """SVG text of an architecture, starting at ``<svg`` (no XML declaration), ready to save or inline.

    ``use_dot``: True requires Graphviz (VizError if absent or failing), False forces the pure-Python
    layout, None (default) uses Graphviz when ``dot`` is on the PATH and falls back otherwise; a macro
    network is then always drawn by the built-in layout (an arc diagram), because Graphviz's routing of
    many skip connections becomes unreadable beyond a few layers.
    """
    g = build_graph(arch, space)
    if use_dot is None:
        use_dot = _dot.have_dot() and space_of(arch, space) != "macro"
        if use_dot:
            try:
                return _dot.strip_prolog(_dot.run_dot(_dot.to_dot_text(g), "svg").decode("utf-8"))
            except VizError as e:
                log.warning("%s; drawing with the built-in SVG layout instead", e)
                return graph_to_svg(g)
    if use_dot:
        return _dot.strip_prolog(_dot.run_dot(_dot.to_dot_text(g), "svg").decode("utf-8"))
    return graph_to_svg(g)


def render(space: str, arch_dict: dict, fmt: str, output: str | None = None) -> str | None:
    """Draw ``arch_dict`` as ``fmt`` ("dot", "svg" or "png").

    With ``output`` the drawing is written there and None is returned; without it the dot/svg text is
    returned. PNG needs Graphviz and an output file; otherwise a VizError (a ValueError) says what to do.
    """
    if fmt not in FORMATS:
        raise VizError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    if fmt == "png":
        if not _dot.have_dot():
            raise VizError("--format png needs Graphviz's `dot` program: install graphviz "
                             "(e.g. apt-get install graphviz) or use --format svg")
        if output is None:
            raise VizError("--format png writes binary data: give an output file with -o FILE")
        data = _dot.run_dot(to_dot(arch_dict, space), "png")
        _write(output, data)
        return None
    text = to_dot(arch_dict, space) if fmt == "dot" else to_svg(arch_dict, space=space)
    if output is None:
        return text
    _write(output, text.encode("utf-8"))
    return None


def _write(output: str, data: bytes) -> None:
    path = Path(output)
    try:
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as e:
        raise VizError(f"-o {output}: cannot write ({e.strerror})") from None
    log.info("wrote %s", path)
