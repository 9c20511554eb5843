"""Convert micro-space architectures to and from the DARTS genotype notation (quark0/darts ``cnn/genotypes.py``).

A DARTS genotype reads::

    Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...], normal_concat=[2, 3, 4, 5],
             reduce=[...], reduce_concat=[...])

Each cell lists two ``(op, input)`` edges per intermediate node, in node order. Inputs are numbered as ours:
0 = c_{k-2}, 1 = c_{k-1}, k >= 2 = intermediate node k. So DARTS node ``i`` (0-based) is our node ``i + 2``
with ``x`` = its first edge and ``y`` = its second.

Ops map by name: DARTS ``skip_connect`` is our ``identity`` (both a factorized reduction at stride 2), and every
other op of :data:`enas.spaces.micro.KNOWN_OPS` (``sep_conv_3x3/5x5/7x7``, ``dil_conv_3x3/5x5``,
``avg_pool_3x3``, ``max_pool_3x3``, ...) keeps its name. DARTS's ``none`` (the zero op) and names that are not
in our op table cannot be converted.

Cell outputs differ: **our cell outputs its loose ends** (the nodes that no node of the cell reads), DARTS
concatenates the nodes listed in ``*_concat`` (usually all of them). ``to_darts`` writes our loose ends as the
concat lists, so the genotype describes the same function. ``from_darts`` cannot honour a concat list that is not
the loose ends (DARTS_V2's ``[2, 3, 4, 5]`` for instance, whose node 2 feeds node 5): it logs a warning and the
converted cell outputs its loose ends only.

Pure Python: no torch import, and genotype text is parsed with :mod:`ast` (never evaluated).
"""

from __future__ import annotations

import ast
import logging
import re
from typing import Any

from .spaces import micro
from .spaces.base import ArchError

log = logging.getLogger("enas")

DARTS_SKIP = "skip_connect"
DARTS_NONE = "none"
_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
_ASSIGN = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_.]*\s*=(?!=)")

# DARTS_V2 as published in quark0/darts cnn/genotypes.py (DARTS = DARTS_V2), for tests and examples.
DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
    "normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
    "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
    "reduce_concat=[2, 3, 4, 5])"
)


def op_to_darts(name: str) -> str:
    """Our op name -> the DARTS name (``identity`` -> ``skip_connect``; the others keep their names)."""
    if name not in micro.KNOWN_OPS:
        raise ArchError(f"op {name!r} is not a micro-space op; known ops: {', '.join(micro.KNOWN_OPS)}")
    return DARTS_SKIP if name == "identity" else name


def op_from_darts(name: object) -> str:
    """A DARTS op name -> ours. Raises ArchError for ``none`` and for names outside our op table."""
    if name == DARTS_SKIP:
        return "identity"
    if name == DARTS_NONE:
        raise ArchError("DARTS op 'none' (the zero op) has no counterpart in the micro space")
    if isinstance(name, str) and name in micro.KNOWN_OPS:
        return name
    raise ArchError(f"DARTS op {name!r} has no counterpart in the micro space; convertible ops: "
                    f"{DARTS_SKIP}, {', '.join(o for o in micro.KNOWN_OPS if o != 'identity')}")


# --------------------------------------------------------------------------------------------- ours -> DARTS
def to_darts(arch: dict | micro.MicroArch) -> str:
    """Micro architecture (JSON dict as written by ``enas.spaces.micro.to_dict``, or a ``MicroArch``) -> the
    DARTS ``Genotype(...)`` text. The concat lists are the cells' loose ends (our cell output)."""
    if isinstance(arch, micro.MicroArch):
        arch = micro.to_dict(arch)
    parsed = micro.from_dict(arch, _space_of_dict(arch))  # validates; raises ArchError listing every problem
    parts = []
    for cell in micro.CELLS:
        nodes = parsed.cell(cell)
        edges = []
        for n in nodes:
            edges += [(op_to_darts(n.x_op), n.x), (op_to_darts(n.y_op), n.y)]
        parts.append(f"{cell}=[{', '.join(f'({op!r}, {i})' for op, i in edges)}]")
        parts.append(f"{cell}_concat={micro.loose_ends(nodes)!r}")
    return f"Genotype({', '.join(parts)})"


# --------------------------------------------------------------------------------------------- DARTS -> ours
def parse_darts(text: str) -> dict[str, Any]:
    """Read genotype text into plain data ``{"normal": [(op, input), ...], "normal_concat": [..] | None,
    "reduce": [...], "reduce_concat": [...] | None}`` without evaluating it.

    Accepts ``Genotype(normal=..., normal_concat=..., reduce=..., reduce_concat=...)`` (keywords, or the
    namedtuple's positional order), an optional leading ``NAME =``, a module prefix (``genotypes.Genotype``)
    and ``range(a, b)`` for the concat lists.
    """
    if not isinstance(text, str) or not text.strip():
        raise ArchError("DARTS genotype: empty text (expected Genotype(normal=[...], normal_concat=[...], "
                        "reduce=[...], reduce_concat=[...]))")
    src = _ASSIGN.sub("", text.strip(), count=1).strip()
    try:
        tree = ast.parse(src, mode="eval").body
    except SyntaxError as e:
        raise ArchError(f"DARTS genotype: not valid Python literal syntax ({e.msg} at column {e.offset})") from None
    if not (isinstance(tree, ast.Call) and _call_name(tree) == "Genotype"):
        raise ArchError("DARTS genotype: expected Genotype(normal=[...], normal_concat=[...], reduce=[...], "
                        "reduce_concat=[...])")
    errors: list[str] = []
    values: dict[str, ast.AST] = {}
    if len(tree.args) > len(_FIELDS):
        errors.append(f"DARTS genotype: at most {len(_FIELDS)} positional fields, got {len(tree.args)}")
    for name, node in zip(_FIELDS, tree.args):
        values[name] = node
    for kw in tree.keywords:
        if kw.arg not in _FIELDS:
            errors.append(f"DARTS genotype: unknown field {kw.arg!r}; expected {', '.join(_FIELDS)}")
        elif kw.arg in values:
            errors.append(f"DARTS genotype: field {kw.arg!r} given twice")
        else:
            values[kw.arg] = kw.value
    out: dict[str, Any] = {}
    for cell in micro.CELLS:
        if cell not in values:
            errors.append(f"DARTS genotype: missing field {cell!r}")
            continue
        out[cell] = _edges(values[cell], cell, errors)
        key = f"{cell}_concat"
        out[key] = _concat(values[key], key, errors) if key in values else None
    if errors:
        raise ArchError(errors)
    return out


def from_darts(text: str) -> dict:
    """DARTS genotype text -> our micro architecture JSON dict (``{"space": "micro", "format": 1, ...}``).

    Node ``i`` of a DARTS cell (edges ``2i`` and ``2i+1``) becomes our node ``i + 2``. Our cell outputs its loose
    ends: where a ``*_concat`` list differs from them a warning is logged (the converted cell outputs the loose
    ends). Raises ArchError naming every op that cannot map (``none``, names outside our op table) and every
    structural problem. Build the matching space with :func:`space_for`.
    """
    g = parse_darts(text)
    errors: list[str] = []
    d: dict[str, Any] = {"space": micro.NAME, "format": 1}
    for cell in micro.CELLS:
        edges = g[cell]
        if len(edges) % 2:
            errors.append(f"DARTS genotype: {cell} has {len(edges)} edges; expected two per node")
        nodes = []
        for k in range(0, len(edges) - 1, 2):
            (op_x, in_x), (op_y, in_y) = edges[k], edges[k + 1]
            ops = []
            for op in (op_x, op_y):
                try:
                    ops.append(op_from_darts(op))
                except ArchError as e:
                    errors.append(f"{cell}.node{k // 2 + 2}: {e}")
                    ops.append(op)
            nodes.append([in_x, ops[0], in_y, ops[1]])
        d[cell] = nodes
    n_normal, n_reduce = len(d["normal"]), len(d["reduce"])
    if n_normal != n_reduce:
        errors.append(f"DARTS genotype: normal has {n_normal} nodes and reduce {n_reduce}; the micro space needs "
                      "the same number in both cells")
    if n_normal == 0:
        errors.append("DARTS genotype: the cells have no nodes")
    if errors:
        raise ArchError(_dedupe(errors))
    arch = micro.from_dict(d, space_for(d))  # input ranges etc.: raises ArchError listing every problem
    for cell in micro.CELLS:
        concat = g[f"{cell}_concat"]
        ends = micro.loose_ends(arch.cell(cell))
        if concat is not None and sorted(set(concat)) != ends:
            log.warning("DARTS genotype: %s_concat %s differs from the %s cell's loose ends %s; our cells output "
                        "their loose ends, so the converted %s cell outputs nodes %s", cell, list(concat), cell,
                        ends, cell, ends)
    return d


def space_for(arch: dict | micro.MicroArch, base_ops: tuple[str, ...] = micro.DEFAULT_OPS) -> micro.MicroSpace:
    """The smallest micro space that holds ``arch``: its node count, and ``base_ops`` plus any other op it uses
    (in ``KNOWN_OPS`` order). E.g. DARTS_V2 needs ``dil_conv_3x3``: pass the result's ops as ``space_cfg.ops``."""
    d = micro.to_dict(arch) if isinstance(arch, micro.MicroArch) else arch
    return _space_of_dict(d, base_ops)


def _space_of_dict(d: object, base_ops: tuple[str, ...] = micro.DEFAULT_OPS) -> micro.MicroSpace:
    if not isinstance(d, dict) or not isinstance(d.get("normal"), list):
        return micro.MicroSpace(ops=tuple(base_ops))
    used = set()
    for cell in micro.CELLS:
        for item in d.get(cell) or []:
            if isinstance(item, list) and len(item) == 4:
                used.update(v for v in item[1::2] if isinstance(v, str))
    extra = tuple(o for o in micro.KNOWN_OPS if o in used and o not in base_ops)
    return micro.MicroSpace(num_nodes=max(1, len(d["normal"])), ops=tuple(base_ops) + extra)


# --------------------------------------------------------------------------------------------------- helpers
def _call_name(call: ast.Call) -> str | None:
    f = call.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return None


def _edges(node: ast.AST, cell: str, errors: list[str]) -> list[tuple[object, int]]:
    try:
        value = ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        errors.append(f"DARTS genotype: {cell} must be a literal list of (op_name, input) pairs")
        return []
    if not isinstance(value, (list, tuple)):
        errors.append(f"DARTS genotype: {cell} must be a list of (op_name, input) pairs, got {type(value).__name__}")
        return []
    out = []
    for k, e in enumerate(value):
        if (not isinstance(e, (list, tuple)) or len(e) != 2 or not isinstance(e[0], str)
                or not isinstance(e[1], int) or isinstance(e[1], bool)):
            errors.append(f"DARTS genotype: {cell} edge {k}: expected (op_name, input), got {e!r}")
            continue
        out.append((e[0], e[1]))
    return out


def _concat(node: ast.AST, key: str, errors: list[str]) -> list[int] | None:
    if isinstance(node, ast.Call) and _call_name(node) == "range" and not node.keywords:
        try:
            args = [ast.literal_eval(a) for a in node.args]
        except (ValueError, SyntaxError, TypeError):
            args = []
        if 1 <= len(args) <= 3 and all(isinstance(a, int) and not isinstance(a, bool) for a in args):
            return list(range(*args))
        errors.append(f"DARTS genotype: {key}: range() needs 1 to 3 integer literals")
        return None
    try:
        value = ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        errors.append(f"DARTS genotype: {key} must be a list of node indices or range(a, b)")
        return None
    if (not isinstance(value, (list, tuple))
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        errors.append(f"DARTS genotype: {key} must be a list of node indices, got {value!r}")
        return None
    return list(value)


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
