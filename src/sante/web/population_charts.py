"""The population-health page's own charts, drawn as inline SVG like sante.web.svg's (classes only, a title and a
description for screen readers, a tooltip per mark; the page puts each chart's data in a table beside it):

- the epidemic curve: cases per ISO week as bars, the detector's upper bound as a line, the weeks it alarmed in
  the alarm colour with a marker, and the forecast after the last week as a dashed line in its shaded 80 % and
  95 % prediction bands;
- the age-sex pyramid: men to the left, women to the right, the oldest band on top.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from sante.web.svg import _nice_top


@dataclass(frozen=True, slots=True)
class CurveWeek:
    label: str  # "2025-W31"
    count: int
    upperbound: float | None  # the detector's bound for the week (None: not computed)
    alarm: bool
    tooltip: str


@dataclass(frozen=True, slots=True)
class ForecastWeek:
    label: str
    mean: float
    lower80: float
    upper80: float
    lower95: float
    upper95: float
    tooltip: str


def _frame(chart_id: str, title: str, description: str, width: int, height: int, kind: str) -> list[str]:
    return [f'<svg class="chart chart-{kind}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-labelledby="{chart_id}-title {chart_id}-desc" focusable="false">',
            f'<title id="{chart_id}-title">{escape(title)}</title>',
            f'<desc id="{chart_id}-desc">{escape(description)}</desc>']


def _polyline(css: str, points: list[tuple[float, float]]) -> str:
    return f'<polyline class="{css}" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in points)}"/>'


def epidemic_curve(chart_id: str, title: str, description: str, weeks: Sequence[CurveWeek],
                   forecast: Sequence[ForecastWeek], *, value_text: Callable[[float], str], width: int = 900,
                   height: int = 260) -> Markup:
    """Weekly cases as bars with the upper bound, the alarms and the forecast (see the module's docstring)."""
    if not weeks:
        return Markup("")
    values = [float(w.count) for w in weeks] + [w.upperbound or 0.0 for w in weeks] + [f.upper95 for f in forecast]
    top = _nice_top(max(values))
    left, right, head, foot = 40, 10, 12, 26
    plot_w, plot_h = width - left - right, height - head - foot
    slots = len(weeks) + len(forecast)
    slot = plot_w / slots

    def x(n: float) -> float:
        return left + (n + 0.5) * slot

    def y(value: float) -> float:
        return head + plot_h - min(value, top) / top * plot_h

    out = _frame(chart_id, title, description, width, height, "curve")
    for value in (0.0, top / 2, top) if (top / 2).is_integer() else (0.0, top):  # counts: no "2.5" on the axis
        gy = y(value)
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{gy:.1f}" y2="{gy:.1f}"/>')
        out.append(f'<text class="axis" x="{left - 6}" y="{gy + 4:.1f}" text-anchor="end">'
                   f'{escape(value_text(value))}</text>')
    if forecast:
        first = len(weeks) - 0.5
        out.append(f'<rect class="forecast-zone" x="{x(first):.1f}" y="{head}" width="{plot_w - (x(first) - left):.1f}"'
                   f' height="{plot_h}"/>')
        anchor = [(x(len(weeks) - 1), y(weeks[-1].count))]
        for low, high, css in (("lower95", "upper95", "forecast-band95"), ("lower80", "upper80", "forecast-band80")):
            upper = [(x(len(weeks) + n), y(getattr(f, high))) for n, f in enumerate(forecast)]
            lower = [(x(len(weeks) + n), y(getattr(f, low))) for n, f in enumerate(forecast)]
            points = anchor + upper + lower[::-1]
            out.append(f'<polygon class="{css}" points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in points)}"/>')
    bar_w = max(slot * 0.78, 0.8)
    for n, w in enumerate(weeks):
        if w.count <= 0:
            continue
        css = "bar bar-alarm" if w.alarm else "bar bar-cases"
        top_y = y(w.count)
        out.append(f'<rect class="{css}" x="{x(n) - bar_w / 2:.1f}" y="{top_y:.1f}" width="{bar_w:.1f}" '
                   f'height="{max(y(0) - top_y, 0.5):.1f}"><title>{escape(w.tooltip)}</title></rect>')
    bound = [(x(n), y(w.upperbound)) for n, w in enumerate(weeks) if w.upperbound is not None]
    if len(bound) > 1:
        out.append(_polyline("line line-bound", bound))
    for n, w in enumerate(weeks):
        if w.alarm:
            out.append(f'<circle class="alarm-mark" cx="{x(n):.1f}" cy="{y(w.count) - 6:.1f}" r="3.5">'
                       f'<title>{escape(w.tooltip)}</title></circle>')
    if forecast:
        line = [(x(len(weeks) - 1), y(weeks[-1].count))] + [(x(len(weeks) + n), y(f.mean))
                                                             for n, f in enumerate(forecast)]
        out.append(_polyline("line line-forecast", line))
        for n, f in enumerate(forecast):
            out.append(f'<circle class="dot forecast-dot" cx="{x(len(weeks) + n):.1f}" cy="{y(f.mean):.1f}" r="2.5">'
                       f'<title>{escape(f.tooltip)}</title></circle>')
    labels = [w.label for w in weeks] + [f.label for f in forecast]
    every = max(1, math.ceil(slots * 62 / plot_w))
    for n in range(0, slots, every):
        out.append(f'<text class="axis" x="{x(n):.1f}" y="{height - 8}" text-anchor="middle">'
                   f'{escape(labels[n])}</text>')
    out.append("</svg>")
    return Markup("".join(out))


@dataclass(frozen=True, slots=True)
class PyramidBand:
    label: str
    male: int
    female: int


def age_sex_pyramid(chart_id: str, title: str, description: str, bands: Sequence[PyramidBand], *,
                    male_label: str, female_label: str, value_text: Callable[[float], str], width: int = 440,
                    row: int = 22) -> Markup:
    """Horizontal bars from a middle axis: men to the left, women to the right, the oldest band on top."""
    if not bands:
        return Markup("")
    top = _nice_top(max(max(b.male, b.female) for b in bands))
    label_w, head = 56, 22
    half = (width - label_w) / 2 - 8
    middle_left, middle_right = half + 4, half + 4 + label_w
    height = head + row * len(bands) + 6
    out = _frame(chart_id, title, description, width, height, "pyramid")
    out.append(f'<text class="axis axis-label" x="{middle_left - 4:.1f}" y="14" text-anchor="end">'
               f'{escape(male_label)}</text>')
    out.append(f'<text class="axis axis-label" x="{middle_right + 4:.1f}" y="14">{escape(female_label)}</text>')
    for n, b in enumerate(reversed(bands)):
        y0 = head + n * row
        out.append(f'<text class="axis" x="{(middle_left + middle_right) / 2:.1f}" y="{y0 + row / 2 + 4:.1f}" '
                   f'text-anchor="middle">{escape(b.label)}</text>')
        for value, sex, label in ((b.male, "male", male_label), (b.female, "female", female_label)):
            length = value / top * half
            x0 = middle_left - length if sex == "male" else middle_right
            out.append(f'<rect class="bar bar-{sex}" x="{x0:.1f}" y="{y0 + row * 0.15:.1f}" '
                       f'width="{max(length, 0.5 if value else 0):.1f}" height="{row * 0.7:.1f}">'
                       f'<title>{escape(b.label)} · {escape(label)}: {escape(value_text(value))}</title></rect>')
    out.append("</svg>")
    return Markup("".join(out))


__all__ = ["CurveWeek", "ForecastWeek", "PyramidBand", "age_sex_pyramid", "epidemic_curve"]
