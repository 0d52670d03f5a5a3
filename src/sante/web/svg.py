"""Small line charts drawn on the server as inline SVG: no chart library, no script, readable by a screen reader
(a title and a description that says what the chart shows), styled by the page's stylesheet (classes only, so
the Content-Security-Policy needs no inline styles)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

WIDTH, HEIGHT = 240, 112  # about the size it is drawn at: the axis text keeps its size
LEFT, RIGHT, TOP, BOTTOM = 34, 8, 8, 20


@dataclass(frozen=True, slots=True)
class Series:
    name: str  # a CSS class suffix: line-<name>
    points: Sequence[tuple[datetime, float]]  # in time order


def _ticks(low: float, high: float) -> tuple[float, float]:
    """The value range shown: the data's, widened a little (and around a single value) so lines do not touch the
    frame."""
    if high == low:
        pad = abs(high) * 0.1 or 1.0
    else:
        pad = (high - low) * 0.15
    return low - pad, high + pad


def line_chart(chart_id: str, title: str, description: str, series: Sequence[Series],
               value_text: Callable[[float], str], day_text: Callable[[datetime], str],
               point_text: Callable[[datetime, float], str], band: tuple[float, float] | None = None) -> Markup:
    """An SVG line chart of one or more series over time, with its lowest and highest values and its first and
    last days on the axes; each point has a tooltip (point_text). `band` shades a reference range."""
    points = [p for s in series for p in s.points]
    if not points:
        return Markup("")
    times = [p[0].timestamp() for p in points]
    values = [p[1] for p in points] + (list(band) if band else [])
    t0, t1 = min(times), max(times)
    v_lo, v_hi = _ticks(min(values), max(values))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(moment: datetime) -> float:
        if t1 == t0:
            return LEFT + plot_w / 2
        return LEFT + (moment.timestamp() - t0) / (t1 - t0) * plot_w

    def y(value: float) -> float:
        return TOP + (v_hi - value) / (v_hi - v_lo) * plot_h

    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
           f'aria-labelledby="{chart_id}-title {chart_id}-desc" focusable="false">',
           f'<title id="{chart_id}-title">{escape(title)}</title>',
           f'<desc id="{chart_id}-desc">{escape(description)}</desc>']
    if band:
        top, bottom = y(band[1]), y(band[0])
        out.append(f'<rect class="band" x="{LEFT}" y="{top:.1f}" width="{plot_w}" height="{bottom - top:.1f}"/>')
    lo, hi = min(p[1] for p in points), max(p[1] for p in points)
    for value in sorted({lo, hi}):
        gy = y(value)
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{gy:.1f}" y2="{gy:.1f}"/>')
        out.append(f'<text class="axis" x="{LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end">'
                   f'{escape(value_text(value))}</text>')
    first, last = min(p[0] for p in points), max(p[0] for p in points)
    base = HEIGHT - 6
    out.append(f'<text class="axis" x="{LEFT}" y="{base}" text-anchor="start">{escape(day_text(first))}</text>')
    if day_text(last) != day_text(first):
        out.append(f'<text class="axis" x="{WIDTH - RIGHT}" y="{base}" text-anchor="end">'
                   f'{escape(day_text(last))}</text>')
    for s in series:
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in s.points)
        if len(s.points) > 1:
            out.append(f'<polyline class="line line-{s.name}" points="{coords}"/>')
        for t, v in s.points:
            out.append(f'<circle class="dot line-{s.name}" cx="{x(t):.1f}" cy="{y(v):.1f}" r="3">'
                       f'<title>{escape(point_text(t, v))}</title></circle>')
    out.append("</svg>")
    return Markup("".join(out))


__all__ = ["Series", "line_chart"]
