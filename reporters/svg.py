"""Tiny inline-SVG chart helpers for the HTML report.

The HTML report must open with no network (CI artifacts are often viewed
offline or behind a strict CSP), so instead of a JavaScript charting library
the charts are drawn here, in Python, as static SVG strings (inline in
HTML, so no ``xmlns`` is needed): a line chart
with optional stage bands and a grouped bar chart. Every piece of text is
passed through :func:`html.escape`. Hovering a point shows its value via an
SVG ``<title>``, which needs no script.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

FONT = 'font-family="inherit" font-size="12"'
AXIS_COLOR = "#94a3b8"
GRID_COLOR = "#e2e8f0"
TEXT_COLOR = "#475569"


@dataclass
class Series:
    """One line: ``points`` are (x, y); ``None`` breaks the line (a gap, e.g. between stages)."""

    label: str
    color: str
    points: list[tuple[float, float] | None]
    area: bool = False
    dash: str | None = None


@dataclass
class Band:
    """A shaded x range with a label (a stage)."""

    start: float
    end: float
    label: str


@dataclass
class BarSeries:
    label: str
    color: str
    values: list[float] = field(default_factory=list)


def nice_step(span: float, count: int = 5) -> float:
    """A step of 1, 2, 2.5 or 5 times a power of ten giving about ``count`` ticks over ``span``."""
    if span <= 0:
        return 1.0
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def ticks(maximum: float, count: int = 5) -> list[float]:
    """Ticks from 0 up to the first tick at or above ``maximum``."""
    step = nice_step(maximum, count)
    top = max(step, math.ceil(maximum / step - 1e-9) * step)
    return [round(i * step, 10) for i in range(int(round(top / step)) + 1)]


def fmt_tick(value: float) -> str:
    """Short axis labels: 0.25, 12, 1.5k, 2M."""
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def _open(width: int, height: int) -> str:
    return f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" preserveAspectRatio="xMidYMid meet">'


def _legend(items: list[tuple[str, str, bool]], x: float, y: float) -> list[str]:
    out = []
    for label, color, is_bar in items:
        if is_bar:
            out.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="12" height="10" rx="2" fill="{color}"/>')
        else:
            out.append(f'<line x1="{x:.1f}" y1="{y - 4:.1f}" x2="{x + 16:.1f}" y2="{y - 4:.1f}" '
                       f'stroke="{color}" stroke-width="3" stroke-linecap="round"/>')
        out.append(f'<text x="{x + 22:.1f}" y="{y:.1f}" {FONT} fill="{TEXT_COLOR}">{escape(label)}</text>')
        x += 34 + 7.2 * len(label)
    return out


def _y_axis(parts: list[str], y_ticks: list[float], y_of, left: float, right: float, unit: str) -> None:
    for value in y_ticks:
        y = y_of(value)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="{GRID_COLOR}"/>')
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" {FONT} '
                     f'fill="{TEXT_COLOR}">{escape(fmt_tick(value))}</text>')
    if unit:
        parts.append(f'<text x="{left - 8}" y="{y_of(y_ticks[-1]) - 12:.1f}" text-anchor="end" {FONT} '
                     f'fill="{TEXT_COLOR}" font-weight="600">{escape(unit)}</text>')


def _runs(points: list[tuple[float, float] | None]) -> list[list[tuple[float, float]]]:
    runs: list[list[tuple[float, float]]] = [[]]
    for point in points:
        if point is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(point)
    return [run for run in runs if run]


def line_chart(series: list[Series], *, y_unit: str, bands: list[Band] = (), x_unit: str = "s",
               width: int = 1080, height: int = 300, value_format=fmt_tick) -> str:
    """A line chart over a shared x axis starting at 0, y axis starting at 0."""
    left, right, top, bottom = 64, width - 20, 44, height - 34
    xs = [p[0] for s in series for p in s.points if p] + [b.end for b in bands]
    ys = [p[1] for s in series for p in s.points if p]
    x_ticks = ticks(max(xs, default=1.0), 10)
    y_ticks = ticks(max(ys, default=0.0) * 1.05 or 1.0, 5)
    x_max, y_max = x_ticks[-1], y_ticks[-1]

    def x_of(x: float) -> float:
        return left + (right - left) * x / x_max

    def y_of(y: float) -> float:
        return bottom - (bottom - top) * y / y_max

    parts = [_open(width, height)]
    for i, band in enumerate(bands):
        x0, x1 = x_of(band.start), x_of(band.end)
        fill = "#f1f5f9" if i % 2 == 0 else "#ffffff"
        parts.append(f'<rect x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 0):.1f}" height="{bottom - top}" '
                     f'fill="{fill}"/>')
        parts.append(f'<line x1="{x0:.1f}" y1="{top - 4}" x2="{x0:.1f}" y2="{bottom}" stroke="{AXIS_COLOR}" '
                     f'stroke-dasharray="3 3"/>')
        parts.append(f'<text x="{x0 + 6:.1f}" y="{top + 14}" {FONT} fill="{TEXT_COLOR}" font-style="italic">'
                     f'{escape(band.label)}</text>')
    _y_axis(parts, y_ticks, y_of, left, right, y_unit)
    for value in x_ticks:
        x = x_of(value)
        parts.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 5}" stroke="{AXIS_COLOR}"/>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 19}" text-anchor="middle" {FONT} '
                     f'fill="{TEXT_COLOR}">{escape(fmt_tick(value))}{escape(x_unit)}</text>')
    parts.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="{AXIS_COLOR}"/>')
    for s in series:
        for run in _runs(s.points):
            coords = " ".join(f"{x_of(x):.1f},{y_of(y):.1f}" for x, y in run)
            if s.area:
                first, last = x_of(run[0][0]), x_of(run[-1][0])
                parts.append(f'<polygon points="{first:.1f},{bottom} {coords} {last:.1f},{bottom}" '
                             f'fill="{s.color}" fill-opacity="0.15"/>')
            dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{s.color}" stroke-width="2" '
                         f'stroke-linejoin="round" stroke-linecap="round"{dash}/>')
            if len(run) <= 150:
                for x, y in run:
                    parts.append(f'<circle cx="{x_of(x):.1f}" cy="{y_of(y):.1f}" r="2.5" fill="{s.color}">'
                                 f'<title>{escape(s.label)} at {x:.1f}{escape(x_unit)}: '
                                 f'{escape(value_format(y))} {escape(y_unit)}</title></circle>')
    parts += _legend([(s.label, s.color, False) for s in series], left, 18)
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(categories: list[str], series: list[BarSeries], *, y_unit: str, width: int = 1080,
              height: int = 300, value_format=fmt_tick) -> str:
    """Grouped vertical bars: one group per category, one bar per series, value on top."""
    left, right, top, bottom = 64, width - 20, 44, height - 34
    values = [v for s in series for v in s.values]
    y_ticks = ticks(max(values, default=0.0) * 1.1 or 1.0, 5)
    y_max = y_ticks[-1]

    def y_of(y: float) -> float:
        return bottom - (bottom - top) * y / y_max

    parts = [_open(width, height)]
    _y_axis(parts, y_ticks, y_of, left, right, y_unit)
    group_w = (right - left) / max(len(categories), 1)
    bar_w = min(56.0, group_w * 0.9 / max(len(series), 1))
    show_values = len(series) * len(categories) <= 24
    for ci, category in enumerate(categories):
        start = left + ci * group_w + (group_w - bar_w * len(series)) / 2
        for si, s in enumerate(series):
            value = s.values[ci] if ci < len(s.values) else 0.0
            x, y = start + si * bar_w, y_of(value)
            parts.append(f'<rect x="{x + 2:.1f}" y="{y:.1f}" width="{bar_w - 4:.1f}" '
                         f'height="{max(bottom - y, 0):.1f}" rx="3" fill="{s.color}">'
                         f'<title>{escape(s.label)} {escape(category)}: {escape(value_format(value))} '
                         f'{escape(y_unit)}</title></rect>')
            if show_values:
                parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{y - 5:.1f}" text-anchor="middle" '
                             f'font-size="10" fill="{TEXT_COLOR}">{escape(value_format(value))}</text>')
        parts.append(f'<text x="{left + (ci + 0.5) * group_w:.1f}" y="{bottom + 19}" text-anchor="middle" '
                     f'{FONT} fill="#0f172a" font-weight="600">{escape(category)}</text>')
    parts.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="{AXIS_COLOR}"/>')
    if len(series) > 1:
        parts += _legend([(s.label, s.color, True) for s in series], left, 18)
    parts.append("</svg>")
    return "".join(parts)
