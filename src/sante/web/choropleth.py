"""A choropleth of Viet Nam's 34 provinces drawn on the server as inline SVG.

The boundaries are `static/vn_provinces_34_2025.geojson.gz` (MIT, Talia Cao's Vietnam-Shape-Map, merged from Open
Development Vietnam's shapes: see vn_provinces_34_2025.ATTRIBUTION.md beside it). They are read once per process,
simplified with Douglas–Peucker (rings too small to see at the map's size dropped) and projected
equirectangularly, x scaled by the cosine of the country's middle latitude, so the map keeps its shape. Each
province is a <path> with a <title> tooltip, coloured by one of CLASSES classes of the values (equal steps from
0 to the largest, in CSS classes choro-0..N: the Content-Security-Policy allows no inline style); the page puts a
legend and a table of the same numbers beside it.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from markupsafe import Markup, escape

GEOJSON = Path(__file__).resolve().parent / "static" / "vn_provinces_34_2025.geojson.gz"
TOLERANCE = 0.02  # degrees (about 2 km): below a pixel at the page's map size
MIN_RING_AREA = 0.0004  # square degrees: islets smaller than this are not drawn
CLASSES = 5
WIDTH = 360
Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Province:
    code: str
    name: str
    rings: tuple[tuple[Point, ...], ...]  # simplified, in degrees (lon, lat)


def _segment_distance(p: Point, a: Point, b: Point) -> float:
    dx, dy = b[0] - a[0], b[1] - a[1]
    if dx == dy == 0:
        return math.hypot(p[0] - a[0], p[1] - a[1])
    t = max(0.0, min(1.0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / (dx * dx + dy * dy)))
    return math.hypot(p[0] - a[0] - t * dx, p[1] - a[1] - t * dy)


def douglas_peucker(points: Sequence[Point], tolerance: float) -> list[Point]:
    """The points of a line kept by Douglas–Peucker (iterative: rings have thousands of points)."""
    if len(points) < 3:
        return list(points)
    keep = [False] * len(points)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        first, last = stack.pop()
        far, index = 0.0, -1
        for n in range(first + 1, last):
            d = _segment_distance(points[n], points[first], points[last])
            if d > far:
                far, index = d, n
        if index >= 0 and far > tolerance:
            keep[index] = True
            stack += [(first, index), (index, last)]
    return [p for p, k in zip(points, keep, strict=True) if k]


def _area(ring: Sequence[Point]) -> float:
    return abs(sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(ring, [*ring[1:], ring[0]], strict=True))) / 2


def _simplified_rings(geometry: dict) -> tuple[tuple[Point, ...], ...]:
    polygons = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
    out = []
    for polygon in polygons:
        for ring in polygon:
            points = [(float(x), float(y)) for x, y, *_ in ring]
            if _area(points) < MIN_RING_AREA:
                continue
            kept = douglas_peucker(points, TOLERANCE)
            if len(kept) >= 4:
                out.append(tuple(kept))
    return tuple(out)


@cache
def provinces() -> tuple[Province, ...]:
    """The 34 provinces' simplified boundaries, by code (read and simplified once per process)."""
    with gzip.open(GEOJSON, "rt", encoding="utf-8") as f:
        collection = json.load(f)
    found = [Province(str(feature["properties"]["code"]), str(feature["properties"]["name"]),
                      _simplified_rings(feature["geometry"])) for feature in collection["features"]]
    return tuple(sorted(found, key=lambda p: p.code))


@dataclass(frozen=True, slots=True)
class Projection:
    """Equirectangular: x = (lon − west)·cos(middle latitude), y = north − lat, scaled to the map's width."""

    west: float
    north: float
    cos_lat: float
    scale: float
    height: float

    def xy(self, p: Point) -> tuple[float, float]:
        return (p[0] - self.west) * self.cos_lat * self.scale, (self.north - p[1]) * self.scale


@cache
def projection(width: int = WIDTH) -> Projection:
    points = [p for province in provinces() for ring in province.rings for p in ring]
    west, east = min(p[0] for p in points), max(p[0] for p in points)
    south, north = min(p[1] for p in points), max(p[1] for p in points)
    cos_lat = math.cos(math.radians((north + south) / 2))
    scale = width / ((east - west) * cos_lat)
    return Projection(west, north, cos_lat, scale, (north - south) * scale)


@cache
def _path(code: str, width: int) -> str:
    """The SVG path data of a province (cached: the same at every view)."""
    proj = projection(width)
    province = next(p for p in provinces() if p.code == code)
    parts = []
    for ring in province.rings:
        xy = [proj.xy(p) for p in ring]
        parts.append("M" + "L".join(f"{x:.1f},{y:.1f}" for x, y in xy) + "Z")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class LegendClass:
    css: str  # choro-0 .. choro-N
    low: float
    high: float


def classes(values: Sequence[float], count: int = CLASSES) -> list[LegendClass]:
    """The colour classes: 0 on its own, then `count` equal steps up to the largest value."""
    top = max(values, default=0.0)
    if top <= 0:
        return [LegendClass("choro-0", 0.0, 0.0)]
    step = top / count
    return [LegendClass("choro-0", 0.0, 0.0)] + [LegendClass(f"choro-{n + 1}", n * step, (n + 1) * step)
                                               for n in range(count)]


def class_of(value: float, legend: Sequence[LegendClass]) -> str:
    if value <= 0 or len(legend) == 1:
        return "choro-0"
    return next((c.css for c in legend[1:] if value <= c.high + 1e-9), legend[-1].css)


def choropleth(map_id: str, title: str, description: str, values: Mapping[str, float],
               tooltip: Callable[[Province, float], str], *, width: int = WIDTH,
               selected: str | None = None) -> tuple[Markup, list[LegendClass]]:
    """The map (every province a <path> with its tooltip; `selected` outlined) and its colour classes."""
    legend = classes(list(values.values()))
    proj = projection(width)
    height = math.ceil(proj.height)
    out = [f'<svg class="chart choropleth" viewBox="0 0 {width} {height}" role="img" '
           f'aria-labelledby="{map_id}-title {map_id}-desc" focusable="false">',
           f'<title id="{map_id}-title">{escape(title)}</title>',
           f'<desc id="{map_id}-desc">{escape(description)}</desc>']
    for province in provinces():
        value = float(values.get(province.code, 0.0))
        css = f"province {class_of(value, legend)}" + (" province-selected" if province.code == selected else "")
        out.append(f'<path class="{css}" data-code="{province.code}" d="{_path(province.code, width)}">'
                   f'<title>{escape(tooltip(province, value))}</title></path>')
    out.append("</svg>")
    return Markup("".join(out)), legend


__all__ = ["CLASSES", "LegendClass", "Province", "choropleth", "class_of", "classes", "douglas_peucker",
           "projection", "provinces"]
