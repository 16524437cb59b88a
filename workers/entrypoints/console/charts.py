"""Charts as inline SVG, drawn from plain numbers: no charting library, no CDN, nothing for the browser to
run. Pure functions (data in, markup out), so each is tested on its own. Every text is escaped.

line_chart: one or more series over time (calls per second against the budget, outcomes over time);
bar_chart: one bar per category (answer rate by the callee's local hour, call durations).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 16, 34  # margins for the axes' labels
PALETTE = ("#2563eb", "#16a34a", "#dc2626", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")


@dataclass(frozen=True)
class Series:
    """One line: its name (in the legend), its (x, y) points, and a dashed style for a limit."""

    name: str
    points: Sequence[tuple[float, float]]
    dashed: bool = False


def nice_ceiling(value: float) -> float:
    """The axis top: the smallest of 1, 2, 2.5 or 5 times a power of ten at or above `value` (1 for 0)."""
    if value <= 0:
        return 1.0
    power = 1.0
    while power * 10 < value:
        power *= 10
    while power > value:
        power /= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def _label(value: float) -> str:
    return f"{value:g}" if abs(value) < 10_000 else f"{value:,.0f}"


def _frame(title: str, y_top: float, y_unit: str) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'class="chart" aria-label="{escape(title)}"><title>{escape(title)}</title>']
    for i in range(5):  # four bands: 0, 1/4 … the top
        y = TOP + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{_label(y_top * i / 4)}</text>')
    parts.append(f'<text x="4" y="{TOP - 4}" class="unit">{escape(y_unit)}</text>')
    return parts


def _empty(title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} 60" role="img" class="chart" '
            f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
            f'<text x="{WIDTH / 2}" y="34" text-anchor="middle">no data yet</text></svg>')


def line_chart(title: str, series: Sequence[Series], *, x_unit: str = "s", y_unit: str = "") -> str:
    """Lines over a shared x axis (seconds from the first point); an empty chart says "no data yet"."""
    points = [p for s in series for p in s.points]
    if not points:
        return _empty(title)
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    span = (x1 - x0) or 1.0
    y_top = nice_ceiling(max(p[1] for p in points))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = _frame(title, y_top, y_unit)
    for i, s in enumerate(series):
        if not s.points:
            continue
        coords = " ".join(f"{LEFT + (x - x0) / span * plot_w:.1f},{TOP + plot_h - y / y_top * plot_h:.1f}"
                          for x, y in s.points)
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        parts.append(f'<polyline fill="none" stroke="{PALETTE[i % len(PALETTE)]}" stroke-width="2"{dash} '
                     f'points="{coords}"><title>{escape(s.name)}</title></polyline>')
    parts.append(f'<text x="{LEFT}" y="{HEIGHT - 16}">0</text>')
    parts.append(f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 16}" text-anchor="end">'
                 f"{_label(span)} {escape(x_unit)}</text>")
    parts += _legend([(s.name, PALETTE[i % len(PALETTE)]) for i, s in enumerate(series)])
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(title: str, bars: Sequence[tuple[str, float]], *, y_unit: str = "", y_max: float | None = None,
              label_every: int = 1) -> str:
    """One bar per (label, value), in the given order; y_max fixes the axis (1.0 for a rate)."""
    if not bars:
        return _empty(title)
    y_top = y_max if y_max is not None else nice_ceiling(max(v for _, v in bars))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(bars)
    parts = _frame(title, y_top, y_unit)
    for i, (label, value) in enumerate(bars):
        h = max(0.0, min(value, y_top)) / y_top * plot_h
        x = LEFT + i * slot
        parts.append(f'<rect x="{x + slot * 0.1:.1f}" y="{TOP + plot_h - h:.1f}" width="{slot * 0.8:.1f}" '
                     f'height="{h:.1f}" fill="{PALETTE[0]}"><title>{escape(label)}: {_label(value)}</title>'
                     "</rect>")
        if i % label_every == 0:
            parts.append(f'<text x="{x + slot / 2:.1f}" y="{HEIGHT - 16}" text-anchor="middle">'
                         f"{escape(label)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _legend(entries: list[tuple[str, str]]) -> list[str]:
    parts, x = [], LEFT
    for name, colour in entries:
        parts.append(f'<rect x="{x}" y="{HEIGHT - 10}" width="10" height="4" fill="{colour}"/>'
                     f'<text x="{x + 14}" y="{HEIGHT - 4}" class="legend">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    return parts
