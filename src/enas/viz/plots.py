"""Small self-contained SVG charts (line charts and stacked areas) in pure Python, for run reports.

Values that are None, NaN or infinite leave a gap in a line. Charts with a single x value still draw
(points for lines, a bar for stacked areas).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .svg import esc

FONT = "Helvetica, Arial, sans-serif"
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563",
           "#65a30d", "#9333ea")
WIDTH, HEIGHT = 560, 300
MARGIN_L, MARGIN_R, MARGIN_T = 62.0, 16.0, 34.0


@dataclass(frozen=True)
class Series:
    name: str
    x: tuple[float, ...]
    y: tuple[float | None, ...]
    color: str | None = None
    dashed: bool = False


def finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def nice_ticks(lo: float, hi: float, count: int = 5, integer: bool = False) -> list[float]:
    """About ``count`` round tick values (steps of 1, 2 or 5 times a power of ten) covering [lo, hi];
    ``integer``: steps of at least 1."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1.0, float(round(step))) if step >= 1 else 1.0
    start = math.floor(lo / step + 1e-9) * step
    ticks, v = [], start
    while v < hi + step * 0.5 and len(ticks) < 50:
        ticks.append(round(v, 12))
        v += step
    if ticks[-1] < hi - 1e-12:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def fmt_tick(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        return f"{v:.1e}"
    return f"{v:.6g}"


def _frame(title: str, xlabel: str, ylabel: str, xs: list[float], ys: list[float], legend_rows: int,
           y_range: tuple[float, float] | None, width: int, height: int):
    """Axes, grid and labels; returns (svg parts, x->px, y->px, plot rectangle)."""
    xt = nice_ticks(min(xs), max(xs), integer=xlabel == "epoch") if xs else [0.0, 1.0]
    if len(set(xs)) == 1:
        xt = [xs[0] - 1, xs[0], xs[0] + 1]
    if y_range is not None:
        yt = nice_ticks(*y_range)
    else:
        yt = nice_ticks(min(ys), max(ys)) if ys else [0.0, 1.0]
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]
    bottom = height - 40.0 - 18.0 * legend_rows
    left, right, top = MARGIN_L, width - MARGIN_R, MARGIN_T

    def px(v: float) -> float:
        return left + (v - x0) / ((x1 - x0) or 1.0) * (right - left)

    def py(v: float) -> float:
        return bottom - (v - y0) / ((y1 - y0) or 1.0) * (bottom - top)

    parts = [f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
             f'<text x="{width / 2:.1f}" y="20" text-anchor="middle" font-size="14" font-weight="bold" '
             f'fill="#111827">{esc(title)}</text>']
    for t in yt:
        parts.append(f'<line x1="{left:.1f}" y1="{py(t):.1f}" x2="{right:.1f}" y2="{py(t):.1f}" stroke="#e5e7eb"/>')
        parts.append(f'<text x="{left - 6:.1f}" y="{py(t) + 4:.1f}" text-anchor="end" font-size="11" '
                     f'fill="#374151">{esc(fmt_tick(t))}</text>')
    for t in xt:
        parts.append(f'<line x1="{px(t):.1f}" y1="{bottom:.1f}" x2="{px(t):.1f}" y2="{bottom + 4:.1f}" '
                     f'stroke="#6b7280"/>')
        parts.append(f'<text x="{px(t):.1f}" y="{bottom + 16:.1f}" text-anchor="middle" font-size="11" '
                     f'fill="#374151">{esc(fmt_tick(t))}</text>')
    parts.append(f'<rect x="{left:.1f}" y="{top:.1f}" width="{right - left:.1f}" height="{bottom - top:.1f}" '
                 f'fill="none" stroke="#9ca3af"/>')
    parts.append(f'<text x="{(left + right) / 2:.1f}" y="{bottom + 32:.1f}" text-anchor="middle" font-size="12" '
                 f'fill="#374151">{esc(xlabel)}</text>')
    if ylabel:
        parts.append(f'<text transform="translate(14,{(top + bottom) / 2:.1f}) rotate(-90)" text-anchor="middle" '
                     f'font-size="12" fill="#374151">{esc(ylabel)}</text>')
    return parts, px, py, (left, top, right, bottom)


def _legend(entries: list[tuple[str, str, bool]], width: int, y: float) -> tuple[list[str], int]:
    """Legend items laid out in rows below the plot; returns (svg parts, number of rows)."""
    parts, x, row = [], MARGIN_L, 0
    for name, color, dashed in entries:
        w = 30 + 6.5 * len(name)
        if x + w > width - MARGIN_R and x > MARGIN_L:
            x, row = MARGIN_L, row + 1
        yy = y + row * 18
        dash = ' stroke-dasharray="5,3"' if dashed else ""
        parts.append(f'<line x1="{x:.1f}" y1="{yy:.1f}" x2="{x + 18:.1f}" y2="{yy:.1f}" stroke="{color}" '
                     f'stroke-width="3"{dash}/>')
        parts.append(f'<text x="{x + 23:.1f}" y="{yy + 4:.1f}" font-size="11" fill="#374151">{esc(name)}</text>')
        x += w + 12
    return parts, row + 1 if entries else 0


def _legend_rows(names: list[str], width: int) -> int:
    return _legend([(n, "#000", False) for n in names], width, 0)[1]


def _svg(title: str, width: int, height: int, parts: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="{FONT}" class="enas-plot" role="img">'
            f"<title>{esc(title)}</title>" + "".join(parts) + "</svg>\n")


def line_chart(series: Sequence[Series], title: str, xlabel: str = "epoch", ylabel: str = "",
               y_range: tuple[float, float] | None = None, width: int = WIDTH, height: int = HEIGHT) -> str:
    """A line chart; each series gets a colour from the palette unless it names one."""
    series = [s for s in series if any(finite(v) for v in s.y)]
    xs = [x for s in series for x, y in zip(s.x, s.y) if finite(y) and finite(x)]
    ys = [y for s in series for x, y in zip(s.x, s.y) if finite(y) and finite(x)]
    colors = [s.color or PALETTE[i % len(PALETTE)] for i, s in enumerate(series)]
    rows = _legend_rows([s.name for s in series], width) if len(series) > 1 else 0
    parts, px, py, (left, top, right, bottom) = _frame(title, xlabel, ylabel, xs, ys, rows, y_range, width, height)
    if not series:
        parts.append(f'<text x="{(left + right) / 2:.1f}" y="{(top + bottom) / 2:.1f}" text-anchor="middle" '
                     f'font-size="12" fill="#6b7280">no data</text>')
    for s, color in zip(series, colors):
        runs, cur = [], []
        for x, y in zip(s.x, s.y):
            if finite(x) and finite(y):
                cur.append((px(x), py(y)))
            elif cur:
                runs.append(cur)
                cur = []
        if cur:
            runs.append(cur)
        dash = ' stroke-dasharray="6,4"' if s.dashed else ""
        parts.append(f'<g class="series"><title>{esc(s.name)}</title>')
        for run in runs:
            if len(run) > 1:
                pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        npts = sum(len(r) for r in runs)
        if npts <= 40:
            parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.8" fill="{color}"/>' for run in runs for x, y in run]
        parts.append("</g>")
    if rows:
        legend, _ = _legend([(s.name, c, s.dashed) for s, c in zip(series, colors)], width, bottom + 48)
        parts += legend
    return _svg(title, width, height, parts)


def stacked_area(series: Sequence[Series], title: str, xlabel: str = "epoch", ylabel: str = "",
                 width: int = WIDTH, height: int = HEIGHT) -> str:
    """Series stacked bottom to top (all on the x values of the first series; missing values count as 0)."""
    series = list(series)
    if not series or not series[0].x:
        return line_chart([], title, xlabel, ylabel, width=width, height=height)
    xs = list(series[0].x)
    single = len(xs) == 1
    if single:  # a bar of width 1 centred on the only x
        xs = [xs[0] - 0.4, xs[0] + 0.4]
        series = [Series(s.name, tuple(xs), (s.y[0], s.y[0]) if s.y else (0.0, 0.0), s.color) for s in series]
    tops, lower = [], [0.0] * len(xs)
    for s in series:
        ys = list(s.y[:len(xs)]) + [0.0] * (len(xs) - len(s.y))
        upper = [lo + (y if finite(y) else 0.0) for lo, y in zip(lower, ys)]
        tops.append((lower, upper))
        lower = upper
    ymax = max(max(u) for _, u in tops) if tops else 1.0
    if 0.98 <= ymax <= 1.02:  # fractions that sum to one (up to rounding)
        ymax = 1.0
    colors = [s.color or PALETTE[i % len(PALETTE)] for i, s in enumerate(series)]
    rows = _legend_rows([s.name for s in series], width)
    parts, px, py, (left, top, right, bottom) = _frame(title, xlabel, ylabel, xs, [0.0, ymax], rows,
                                                       (0.0, ymax), width, height)
    for s, color, (lo, up) in zip(series, colors, tops):
        pts = [(px(x), py(y)) for x, y in zip(xs, up)] + [(px(x), py(y)) for x, y in reversed(list(zip(xs, lo)))]
        poly = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        parts.append(f'<g class="series"><title>{esc(s.name)}</title><polygon points="{poly}" fill="{color}" '
                     f'fill-opacity="0.8" stroke="{color}" stroke-width="0.8"/></g>')
    legend, _ = _legend([(s.name, c, False) for s, c in zip(series, colors)], width, bottom + 48)
    return _svg(title, width, height, parts + legend)
