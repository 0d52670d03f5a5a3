"""The server-drawn line charts."""

from __future__ import annotations

from datetime import UTC, datetime

from sante.web.svg import Series, line_chart


def _chart(points):
    return line_chart("vital-pulse", "Pulse <b>", "3 readings", [Series("pulse", points)],
                      value_text=lambda v: f"{v:g}", day_text=lambda t: t.strftime("%d/%m"),
                      point_text=lambda t, v: f"{t:%d/%m %H:%M}: {v:g}")


def test_a_chart_is_an_accessible_image_with_its_range_and_days():
    days = [datetime(2026, 11, d, 1, tzinfo=UTC) for d in (16, 17, 18)]
    svg = str(_chart(list(zip(days, [78.0, 92.0, 80.0], strict=True))))
    assert svg.startswith('<svg class="chart"') and 'role="img"' in svg
    assert 'aria-labelledby="vital-pulse-title vital-pulse-desc"' in svg
    assert '<title id="vital-pulse-title">Pulse &lt;b&gt;</title>' in svg  # escaped
    assert '<desc id="vital-pulse-desc">3 readings</desc>' in svg
    assert svg.count("<circle") == 3 and svg.count("<polyline") == 1
    assert ">78<" in svg and ">92<" in svg and ">16/11<" in svg and ">18/11<" in svg
    assert "<title>17/11 01:00: 92</title>" in svg
    assert "style=" not in svg  # the Content-Security-Policy allows no inline styles


def test_one_reading_and_none():
    one = str(_chart([(datetime(2026, 11, 16, tzinfo=UTC), 70.0)]))
    assert one.count("<circle") == 1 and "<polyline" not in one
    assert str(_chart([])) == ""
