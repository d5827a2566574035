"""The 14-day chart of posts per day per network, drawn by the server as inline SVG.

No script and no style attributes (the page's CSP allows neither): colours are SVG presentation
attributes, and every label goes through html.escape like the rest of the page.
"""

from __future__ import annotations

from datetime import date
from html import escape

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 36, 28, 12, 40
"""Margins for the axis labels (left: counts, right: half of today's label, bottom: days and the legend)."""
COLOURS = ("#1d4ed8", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d", "#4b5563")
"""One per network, in the order the networks are listed; distinct in print and for most colour blindness."""


def svg_chart(days: list[date], series: dict[str, list[int]], day_label, label: str) -> str:
    """A line per network over `days` (oldest first); `day_label(day)` writes the axis's days."""
    peak = max((n for counts in series.values() for n in counts), default=0)
    top = _nice_top(peak)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(days) - 1, 1)

    def x(i: int) -> float:
        return round(LEFT + i * step, 1)

    def y(n: int) -> float:
        return round(TOP + plot_h - (n / top) * plot_h, 1)

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>']
    for n in sorted({0, top // 2, top}):  # three grid lines are enough to read a day's count
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(n)}" y2="{y(n)}" stroke="#d1d5db"/>'
                     f'<text x="{LEFT - 6}" y="{y(n) + 4}" text-anchor="end" font-size="11" fill="#374151">{n}</text>')
    for i, day in enumerate(days):
        if (len(days) - 1 - i) % 2 == 0:  # today and every other day back: 14 labels would crowd a phone
            parts.append(f'<text x="{x(i)}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" font-size="11" '
                         f'fill="#374151">{escape(day_label(day))}</text>')
    legend_x = LEFT
    for index, (name, counts) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        points = " ".join(f"{x(i)},{y(n)}" for i, n in enumerate(counts))
        parts.append(f'<g class="series" data-network="{escape(name)}">'
                     f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for i, n in enumerate(counts):
            parts.append(f'<circle cx="{x(i)}" cy="{y(n)}" r="3" fill="{colour}">'
                         f'<title>{escape(name)} {escape(day_label(days[i]))}: {n}</title></circle>')
        parts.append("</g>")
        parts.append(f'<rect x="{legend_x}" y="{HEIGHT - 14}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{legend_x + 14}" y="{HEIGHT - 5}" font-size="11" fill="#111827">{escape(name)}</text>')
        legend_x += 24 + 7 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def _nice_top(peak: int) -> int:
    """The axis's top: the peak rounded up to an even number, at least 2 (so the middle line is whole)."""
    return max(2, peak + (peak % 2))
