"""The layers of docs/design.md: layer 0 is pure Python (no torch), imports point downward only, and no two
modules import each other, directly or around a circle (function-local imports count)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import enas

PACKAGE = Path(enas.__file__).parent
# layer 0: plain data and pure functions
LAYER0_PACKAGES = ("enas.spaces", "enas.benchmarks", "enas.viz")
LAYER0_MODULES = ("enas", "enas.errors", "enas.config", "enas.archio", "enas.genotype", "enas.stats")


def test_layer0_does_not_import_torch():
    code = ("import sys; import enas.spaces.micro, enas.spaces.macro, enas.spaces.rnn, enas.spaces.nb201, "
            "enas.spaces.base, enas.benchmarks, enas.config, enas.archio, enas.genotype, enas.viz, enas.viz.plots, "
            "enas.stats, enas.errors; bad=[m for m in sys.modules if m.split('.')[0] in ('torch', 'scipy')]; print(len(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0", out.stderr  # scipy too: enas.stats imports it on first use


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("enas",) + path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules that ``name`` imports anywhere in its text (module level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for a in node.names:
                target = f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                if target in modules:
                    found.add(target)
    # a module's own package (its __init__ runs first anyway) is not an edge
    found.discard(name)
    found.discard(name.rpartition(".")[0])
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _layer0(name: str) -> bool:
    return name in LAYER0_MODULES or any(name == p or name.startswith(p + ".") for p in LAYER0_PACKAGES)


def test_no_import_circles():
    graph = _graph()
    assert {"enas.stats", "enas.search", "enas.report", "enas.evaluate"} <= set(graph)
    assert "enas.stats" in graph["enas.search"] and "enas.models" in graph["enas.text_task"]  # the parser sees them
    assert _circles(graph) == []


def test_layer0_imports_only_layer0():
    graph = _graph()
    upward = {name: sorted(d for d in deps if not _layer0(d)) for name, deps in graph.items() if _layer0(name)}
    assert {name: deps for name, deps in upward.items() if deps} == {}


def test_circle_finder_finds_circles():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_search_does_not_reach_the_report():
    graph = _graph()
    assert not graph["enas.search"] & {"enas.evaluate", "enas.report"}
    assert "enas.report" not in graph["enas.evaluate"]
