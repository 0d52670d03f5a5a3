"""Charts drawn on the server as inline SVG — line charts, bar charts (grouped or stacked, vertical or horizontal) —
with no chart library and no script, readable by a screen reader (a title and a description that says what the
chart shows; pages put the data in a table beside each chart), styled by the page's stylesheet (classes only, so
the Content-Security-Policy needs no inline styles)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import Markup, escape

WIDTH, HEIGHT = 240, 112  # about the size it is drawn at: the axis text keeps its size
LEFT, RIGHT, TOP, BOTTOM = 34, 8, 8, 20


@dataclass(frozen=True, slots=True)
class Series:
    name: str  # a CSS class suffix: line-<name>
    points: Sequence[tuple[datetime, float]]  # in time order
    flagged: Sequence[bool] = ()  # per point: drawn as out of range (an abnormal result)


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
               point_text: Callable[[datetime, float], str], band: tuple[float, float] | None = None, *,
               width: int = WIDTH, height: int = HEIGHT) -> Markup:
    """An SVG line chart of one or more series over time, with its lowest and highest values and its first and
    last days on the axes; each point has a tooltip (point_text). `band` shades a reference range; flagged points
    (Series.flagged) are drawn larger, in the colour of abnormal results."""
    points = [p for s in series for p in s.points]
    if not points:
        return Markup("")
    times = [p[0].timestamp() for p in points]
    values = [p[1] for p in points] + (list(band) if band else [])
    t0, t1 = min(times), max(times)
    v_lo, v_hi = _ticks(min(values), max(values))
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM

    def x(moment: datetime) -> float:
        if t1 == t0:
            return LEFT + plot_w / 2
        return LEFT + (moment.timestamp() - t0) / (t1 - t0) * plot_w

    def y(value: float) -> float:
        return TOP + (v_hi - value) / (v_hi - v_lo) * plot_h

    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
           f'aria-labelledby="{chart_id}-title {chart_id}-desc" focusable="false">',
           f'<title id="{chart_id}-title">{escape(title)}</title>',
           f'<desc id="{chart_id}-desc">{escape(description)}</desc>']
    if band:
        top, bottom = y(band[1]), y(band[0])
        out.append(f'<rect class="band" x="{LEFT}" y="{top:.1f}" width="{plot_w}" height="{bottom - top:.1f}"/>')
    lo, hi = min(p[1] for p in points), max(p[1] for p in points)
    for value in sorted({lo, hi}):
        gy = y(value)
        out.append(f'<line class="grid" x1="{LEFT}" x2="{width - RIGHT}" y1="{gy:.1f}" y2="{gy:.1f}"/>')
        out.append(f'<text class="axis" x="{LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end">'
                   f'{escape(value_text(value))}</text>')
    first, last = min(p[0] for p in points), max(p[0] for p in points)
    base = height - 6
    out.append(f'<text class="axis" x="{LEFT}" y="{base}" text-anchor="start">{escape(day_text(first))}</text>')
    if day_text(last) != day_text(first):
        out.append(f'<text class="axis" x="{width - RIGHT}" y="{base}" text-anchor="end">'
                   f'{escape(day_text(last))}</text>')
    for s in series:
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in s.points)
        if len(s.points) > 1:
            out.append(f'<polyline class="line line-{s.name}" points="{coords}"/>')
        radius = 3 if len(s.points) <= 40 else 1.8  # a long series: its line matters more than its dots
        for n, (t, v) in enumerate(s.points):
            flagged = n < len(s.flagged) and s.flagged[n]
            out.append(f'<circle class="dot line-{s.name}{" dot-flagged" if flagged else ""}" cx="{x(t):.1f}" '
                       f'cy="{y(v):.1f}" r="{radius * 1.5 if flagged else radius}"><title>{escape(point_text(t, v))}'
                       f'</title></circle>')
    out.append("</svg>")
    return Markup("".join(out))


@dataclass(frozen=True, slots=True)
class Bars:
    """One series of a bar chart: a value per category."""

    key: str  # a CSS class suffix: bar-<key> (the page's palette)
    label: str  # in the legend and the tooltips
    values: Sequence[float]


def _nice_top(value: float) -> float:
    """The top of a value axis: the data's highest value rounded up to 1, 2, 2.5 or 5 times a power of ten."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value)


def _frame(chart_id: str, title: str, description: str, width: int, height: int, kind: str) -> list[str]:
    return [f'<svg class="chart chart-{kind}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-labelledby="{chart_id}-title {chart_id}-desc" focusable="false">',
            f'<title id="{chart_id}-title">{escape(title)}</title>',
            f'<desc id="{chart_id}-desc">{escape(description)}</desc>']


def bar_chart(chart_id: str, title: str, description: str, labels: Sequence[str], series: Sequence[Bars], *,
              value_text: Callable[[float], str], stacked: bool = False, width: int = 720, height: int = 220,
              label_every: int | None = None) -> Markup:
    """Vertical bars, a group (or a stack, `stacked`) per category: the value axis from 0 to a round top, the
    categories' labels under the bars (every `label_every`-th when they would collide), a tooltip per bar."""
    if not labels or not series:
        return Markup("")
    count = len(labels)
    totals = [sum(s.values[n] for s in series) for n in range(count)] if stacked else \
        [max(s.values[n] for s in series) for n in range(count)]
    top = _nice_top(max(totals))
    left, right, head, foot = 40, 8, 10, 24
    plot_w, plot_h = width - left - right, height - head - foot
    slot = plot_w / count
    bar_w = slot * 0.72 / (1 if stacked else len(series))
    every = label_every or max(1, math.ceil(count * 46 / plot_w))

    def y(value: float) -> float:
        return head + plot_h - value / top * plot_h

    out = _frame(chart_id, title, description, width, height, "bars")
    counts = all(float(v).is_integer() for s in series for v in s.values)
    ticks = [0.0, top] if counts and not (top / 2).is_integer() else [0.0, top / 2, top]  # no "2" at 2.5
    for value in ticks:
        gy = y(value)
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{gy:.1f}" y2="{gy:.1f}"/>')
        out.append(f'<text class="axis" x="{left - 6}" y="{gy + 4:.1f}" text-anchor="end">'
                   f'{escape(value_text(value))}</text>')
    for n, label in enumerate(labels):
        x0 = left + n * slot + slot * 0.14
        base = 0.0
        for k, s in enumerate(series):
            value = s.values[n]
            if value <= 0:
                continue
            x = x0 if stacked else x0 + k * bar_w
            bottom = base if stacked else 0.0
            y_top, y_bottom = y(bottom + value), y(bottom)
            out.append(f'<rect class="bar bar-{s.key}" x="{x:.1f}" y="{y_top:.1f}" width="{max(bar_w - 0.6, 0.8):.1f}" '
                       f'height="{max(y_bottom - y_top, 0.5):.1f}"><title>{escape(label)} · {escape(s.label)}: '
                       f'{escape(value_text(value))}</title></rect>')
            if stacked:
                base += value
        if n % every == 0:
            out.append(f'<text class="axis" x="{left + (n + 0.5) * slot:.1f}" y="{height - 8}" '
                       f'text-anchor="middle">{escape(label)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def stacked_bar_chart(chart_id: str, title: str, description: str, labels: Sequence[str], series: Sequence[Bars],
                      **options: Any) -> Markup:
    """bar_chart with the series stacked: the height of a bar is the category's total."""
    return bar_chart(chart_id, title, description, labels, series, stacked=True, **options)


def _clip(text: str, room: float) -> str:
    """Text cut (with an ellipsis) to about the characters that fit in `room` units at the axis font size."""
    fits = max(4, int(room / 6.2))
    return text if len(text) <= fits else text[:fits - 1].rstrip() + "…"


def horizontal_bar_chart(chart_id: str, title: str, description: str, labels: Sequence[str],
                         series: Sequence[Bars], *, value_text: Callable[[float], str], width: int = 720,
                         row: int = 26, label_width: int = 220) -> Markup:
    """A row per category (its label on the left, cut to fit: the table beside the chart has it whole), bars
    stacked (or, with one series, single) from 0 to a round top, the row's total at its end."""
    if not labels or not series:
        return Markup("")
    totals = [sum(s.values[n] for s in series) for n in range(len(labels))]
    top = _nice_top(max(totals))
    left, right, head = label_width, 48, 4
    height = head + row * len(labels) + 4
    plot_w = width - left - right
    out = _frame(chart_id, title, description, width, height, "hbars")
    for n, label in enumerate(labels):
        y0 = head + n * row
        out.append(f'<text class="axis axis-label" x="{left - 8}" y="{y0 + row / 2 + 4:.1f}" text-anchor="end">'
                   f'{escape(_clip(label, left - 12))}<title>{escape(label)}</title></text>')
        base = 0.0
        for s in series:
            value = s.values[n]
            if value <= 0:
                continue
            x, w = left + base / top * plot_w, value / top * plot_w
            out.append(f'<rect class="bar bar-{s.key}" x="{x:.1f}" y="{y0 + row * 0.18:.1f}" width="{max(w, 0.8):.1f}" '
                       f'height="{row * 0.64:.1f}"><title>{escape(label)} · {escape(s.label)}: '
                       f'{escape(value_text(value))}</title></rect>')
            base += value
        out.append(f'<text class="axis" x="{left + totals[n] / top * plot_w + 6:.1f}" y="{y0 + row / 2 + 4:.1f}">'
                   f'{escape(value_text(totals[n]))}</text>')
    out.append("</svg>")
    return Markup("".join(out))


__all__ = ["Bars", "Series", "bar_chart", "horizontal_bar_chart", "line_chart", "stacked_bar_chart"]
