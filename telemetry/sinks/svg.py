"""Small inline-SVG charts for the HTML report: lines (with interval bands), percentile
bands, heatmaps.

Drawn server-side so the report needs no script, no font and no network:
the page renders the same offline, in a mail client or in a locked-down browser.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from html import escape
from typing import NamedTuple

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#7f7f7f", "#bcbd22")
W, H = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 60, 150, 16, 34

_TICK_STEPS = tuple(m * 60 for m in (1, 5, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080, 43200))
Point = tuple[float, float | None]  # (UNIX seconds, value or None for a gap)
Interval = tuple[float, float | None, float | None]  # (UNIX seconds, low, high); None for a gap


def _fmt_time(t: float, span: float) -> str:
    d = dt.datetime.fromtimestamp(t, dt.timezone.utc)
    return d.strftime("%H:%M") if span <= 86400 else d.strftime("%m-%d %H:%M")


def _scales(xs: Sequence[float], lo: float, hi: float):
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x1 = x0 + 1
    if hi == lo:
        hi = lo + 1
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return TOP + ph - (y - lo) / (hi - lo) * ph

    return sx, sy, x0, x1


def _axes(sx, sy, x0: float, x1: float, lo: float, hi: float, yfmt: Callable[[float], str]) -> list[str]:
    out = [f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" '
           'fill="#fafafa" stroke="#ccc"/>']
    for i in range(5):
        y = lo + (hi - lo) * i / 4
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#e3e3e3"/>')
        out.append(f'<text x="{LEFT - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{escape(yfmt(y))}</text>')
    step = next((s for s in _TICK_STEPS if (x1 - x0) / s <= 7), _TICK_STEPS[-1])
    x = -(-x0 // step) * step  # first multiple of the step: ticks on round UTC times
    while x <= x1:
        out.append(f'<text x="{sx(x):.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">'
                   f'{escape(_fmt_time(x, x1 - x0))}</text>')
        x += step
    return out


def _svg(body: list[str], label: str, height: int = H, width: int = W) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(label)}" '
            f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-family="sans-serif" '
            f'font-size="11">' + "".join(body) + "</svg>")


def _path(points: Sequence[Point], sx, sy) -> str:
    d, pen = [], False
    for x, y in points:
        if y is None:
            pen = False
            continue
        d.append(f"{'L' if pen else 'M'}{sx(x):.1f},{sy(y):.1f}")
        pen = True
    return " ".join(d)


def _legend(names: Sequence[str]) -> list[str]:
    out = []
    for i, name in enumerate(names):
        y = TOP + 6 + i * 16
        out.append(f'<rect x="{W - RIGHT + 10}" y="{y}" width="12" height="4" fill="{PALETTE[i % len(PALETTE)]}"/>')
        out.append(f'<text x="{W - RIGHT + 28}" y="{y + 6}">{escape(name)}</text>')
    return out


def _interval_bands(name: str, colour: str, points: Sequence[Interval], sx, sy) -> list[str]:
    """One translucent polygon per run of consecutive points (high edge forward, low edge
    back); its outline in the same colour keeps a lone point visible as a whisker."""
    runs: list[list[Interval]] = [[]]
    for t, low, high in points:
        if low is None or high is None:
            runs.append([])
        else:
            runs[-1].append((t, low, high))
    out = []
    for run in filter(None, runs):
        edge = [(t, high) for t, _, high in run] + [(t, low) for t, low, _ in reversed(run)]
        out.append(f'<polygon points="{" ".join(f"{sx(t):.1f},{sy(v):.1f}" for t, v in edge)}" '
                   f'fill="{colour}" fill-opacity="0.14" stroke="{colour}" stroke-opacity="0.3" '
                   f'stroke-width="1"><title>{escape(name)}: 95% interval</title></polygon>')
    return out


def line_chart(series: dict[str, list[Point]], label: str, yfmt: Callable[[float], str],
               lo: float | None = None, hi: float | None = None,
               bands: dict[str, list[Interval]] | None = None) -> str:
    """One line per series; a None value breaks the line (no data in that window).
    ``bands`` (by series name) are drawn in the line's colour behind all lines."""
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts if y is not None]
    if not xs or not ys:
        return '<p class="empty">no data</p>'
    lo = min(ys) if lo is None else lo
    hi = max(ys) if hi is None else hi
    sx, sy, x0, x1 = _scales(xs, lo, hi)
    body = _axes(sx, sy, x0, x1, lo, hi, yfmt)
    if bands:
        body.append('<g class="intervals">')
        for i, name in enumerate(series):
            body += _interval_bands(name, PALETTE[i % len(PALETTE)], bands.get(name, []), sx, sy)
        body.append("</g>")
    for i, (name, pts) in enumerate(series.items()):
        body.append(f'<path d="{_path(pts, sx, sy)}" fill="none" stroke="{PALETTE[i % len(PALETTE)]}" '
                    f'stroke-width="1.6"><title>{escape(name)}</title></path>')
    body += _legend(list(series))
    return _svg(body, label)


def band_chart(times: Sequence[float], low: Sequence[float | None], mid: Sequence[float | None],
               high: Sequence[float | None], names: tuple[str, str, str], label: str,
               yfmt: Callable[[float], str]) -> str:
    """A shaded band from ``low`` to ``high`` with ``mid`` drawn as a line."""
    rows = [(t, a, b, c) for t, a, b, c in zip(times, low, mid, high) if None not in (a, b, c)]
    if not rows:
        return '<p class="empty">no data</p>'
    ys = [v for r in rows for v in r[1:]]
    sx, sy, x0, x1 = _scales([r[0] for r in rows], 0.0, max(ys) * 1.05)
    body = _axes(sx, sy, x0, x1, 0.0, max(ys) * 1.05, yfmt)
    top = " ".join(f"{sx(t):.1f},{sy(c):.1f}" for t, _, _, c in rows)
    bottom = " ".join(f"{sx(t):.1f},{sy(a):.1f}" for t, a, _, _ in reversed(rows))
    body.append(f'<polygon points="{top} {bottom}" fill="{PALETTE[0]}" fill-opacity="0.22" stroke="none">'
                f'<title>{escape(names[0])} to {escape(names[2])}</title></polygon>')
    body.append(f'<path d="{_path([(t, b) for t, _, b, _ in rows], sx, sy)}" fill="none" '
                f'stroke="{PALETTE[1]}" stroke-width="1.6"/>')
    body.append(f'<path d="{_path([(t, c) for t, _, _, c in rows], sx, sy)}" fill="none" '
                f'stroke="{PALETTE[0]}" stroke-width="1" stroke-dasharray="3,2"/>')
    body.append(f'<rect x="{W - RIGHT + 10}" y="{TOP + 4}" width="12" height="10" fill="{PALETTE[0]}" '
                f'fill-opacity="0.22"/><text x="{W - RIGHT + 28}" y="{TOP + 13}">'
                f'{escape(names[0])}–{escape(names[2])}</text>')
    body.append(f'<rect x="{W - RIGHT + 10}" y="{TOP + 24}" width="12" height="4" fill="{PALETTE[1]}"/>'
                f'<text x="{W - RIGHT + 28}" y="{TOP + 30}">{escape(names[1])}</text>')
    return _svg(body, label)


def _heat_colour(v: float) -> str:
    """Red (0) through amber to green (1)."""
    v = min(1.0, max(0.0, v))
    r = int(215 - 170 * max(0.0, v - 0.5) * 2) if v > 0.5 else 215
    g = int(60 + 130 * min(1.0, v * 2)) if v <= 0.5 else 190
    return f"rgb({r},{g},70)"


class Cell(NamedTuple):
    """A heatmap cell: its value, the rest of its tooltip, and whether it is drawn faint
    (greyed and hatched: too little evidence for its colour to mean anything)."""

    value: float
    note: str
    faint: bool = False


def _hatch(x: float, y: float, w: float, h: float, step: float = 6) -> str:
    """Diagonal lines (bottom-left to top-right) clipped to a rectangle, as one path: drawn
    rather than a <pattern> fill so the page has no url() reference at all."""
    d = []
    c = x + y + step
    while c < x + w + y + h:
        x_a, x_b = max(x, c - (y + h)), min(x + w, c - y)
        d.append(f"M{x_a:.1f},{c - x_a:.1f} L{x_b:.1f},{c - x_b:.1f}")
        c += step
    return f'<path d="{" ".join(d)}" stroke="#aaa" stroke-width="1" fill="none"/>'


def heatmap(rows: Sequence[str], cols: Sequence[str], cells: dict[tuple[str, str], Cell],
            label: str, lo: float = 0.0, hi: float = 1.0) -> str:
    """Rows × columns of ratio values; missing cells stay blank, faint cells are grey and
    hatched with their value in grey."""
    if not rows or not cols:
        return '<p class="empty">no data</p>'
    cw, ch, left, top = 62, 22, 110, 24
    width, height = left + cw * len(cols) + 10, top + ch * len(rows) + 10
    body = []
    for j, c in enumerate(cols):
        body.append(f'<text x="{left + j * cw + cw / 2}" y="{top - 8}" text-anchor="middle">{escape(c)}</text>')
    for i, r in enumerate(rows):
        y = top + i * ch
        body.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">{escape(r)}</text>')
        for j, c in enumerate(cols):
            cell = cells.get((r, c))
            x = left + j * cw
            if cell is None:
                body.append(f'<rect x="{x}" y="{y}" width="{cw - 2}" height="{ch - 2}" fill="#eee"/>')
                continue
            fill = "#e4e4e4" if cell.faint else _heat_colour((cell.value - lo) / (hi - lo))
            body.append(f'<rect x="{x}" y="{y}" width="{cw - 2}" height="{ch - 2}" fill="{fill}">'
                        f"<title>{escape(r)} × {escape(c)}: {cell.value:.1%} ({escape(cell.note)})</title></rect>")
            if cell.faint:
                body.append(_hatch(x, y, cw - 2, ch - 2))
            body.append(f'<text x="{x + cw / 2 - 1}" y="{y + 15}" text-anchor="middle" '
                        f'fill="{"#666" if cell.faint else "#222"}">{cell.value:.0%}</text>')
    return _svg(body, label, height=height, width=width)
