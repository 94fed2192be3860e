"""Server-rendered charts: the geometry of a bar chart for an inline SVG.

The console draws charts as inline SVG from the server (no chart library, nothing
from a CDN). This module only computes coordinates; `templates/admin/herald/
bar_chart.html` draws them: `{% include "admin/herald/bar_chart.html" with chart=chart %}`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 700
HEIGHT = 200
TOP = 12  # room for the tallest bar's value
BOTTOM = 22  # room for the labels under the bars
LEFT = 4


@dataclass(frozen=True)
class Bar:
    label: str  # under the bar
    value: int
    title: str  # the tooltip (and what a screen reader reads)
    x: float
    y: float
    width: float
    height: float

    @property
    def centre(self) -> float:
        return round(self.x + self.width / 2, 2)

    @property
    def value_y(self) -> float:
        """Where the value is written, just above the bar."""
        return round(self.y - 3, 2)


@dataclass(frozen=True)
class BarChart:
    title: str
    bars: list[Bar]
    width: int
    height: int
    baseline: float
    peak: int


def _round_up(value: int) -> int:
    """A scale top at or above `value` that reads well: 1, 1.2, 1.5, 2, 2.5, 3, 4, 5,
    6 or 8 times a power of ten (close enough that bars use most of the height)."""
    scale = 1
    while True:
        for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8):
            top = int(step * scale)
            if top >= value and top == step * scale:
                return top
        scale *= 10


def bar_chart(
    title: str,
    points: Sequence[tuple[str, int, str]],
    *,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> BarChart:
    """One bar per (label, value, tooltip), left to right, scaled to the largest.

    An empty value draws a 1-unit stub, so every point is visible as a bar."""
    peak = _round_up(max((value for _, value, _ in points), default=0) or 1)
    baseline = float(height - BOTTOM)
    usable = baseline - TOP
    slot = (width - LEFT) / max(len(points), 1)
    bar_width = slot * 0.7
    bars = []
    for index, (label, value, tooltip) in enumerate(points):
        bar_height = max(usable * value / peak, 1.0)
        bars.append(
            Bar(
                label=label,
                value=value,
                title=tooltip,
                x=round(LEFT + index * slot + (slot - bar_width) / 2, 2),
                y=round(baseline - bar_height, 2),
                width=round(bar_width, 2),
                height=round(bar_height, 2),
            )
        )
    return BarChart(
        title=title, bars=bars, width=width, height=height, baseline=baseline, peak=peak
    )
