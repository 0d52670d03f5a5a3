"""FHIRPath Quantity and the part of UCUM that clinical data uses.

A unit is reduced to a factor and a dimension vector over base units (m, g, s, K, mol, ...), so `4 'g'` and
`4000 'mg'`, `2.0 'cm' * 2.0 'm'` and `0.040 'm2'`, or `185 '[lb_av]'` and `83.9 'kg'` compare directly.
Calendar durations (`1 year`, `3 months`) are kept apart from UCUM's `a`/`mo`: FHIRPath says a calendar year
is not 365.25 days, so `1 year = 1 'a'` has no answer. Week and shorter are fixed lengths and do compare.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation, localcontext
from functools import lru_cache
from typing import Any

UCUM_SYSTEM = "http://unitsofmeasure.org"

# Calendar keywords (singular and plural) -> the singular used for arithmetic.
CALENDAR_UNITS = {
    **{w: w for w in ("year", "month", "week", "day", "hour", "minute", "second", "millisecond")},
    **{w + "s": w for w in ("year", "month", "week", "day", "hour", "minute", "second", "millisecond")},
}
# UCUM codes that denote the same fixed-length durations (allowed in date arithmetic).
UCUM_TO_CALENDAR = {
    "wk": "week",
    "d": "day",
    "h": "hour",
    "min": "minute",
    "s": "second",
    "ms": "millisecond",
}
_CAL_TO_UCUM = {v: k for k, v in UCUM_TO_CALENDAR.items()}


class Quantity:
    """A System.Quantity: a Decimal value and a unit (a UCUM code or a calendar keyword)."""

    __slots__ = ("unit", "value")

    def __init__(self, value: Decimal | int, unit: str = "1") -> None:
        self.value = value if isinstance(value, Decimal) else Decimal(value)
        self.unit = unit

    def __str__(self) -> str:
        if self.unit in CALENDAR_UNITS:
            return f"{self.value} {self.unit}"
        return f"{self.value} '{self.unit}'"

    def __repr__(self) -> str:
        return f"Quantity({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quantity) and other.value == self.value and other.unit == self.unit

    def __hash__(self) -> int:
        return hash((self.value, self.unit))

    @property
    def is_calendar(self) -> bool:
        return self.unit in CALENDAR_UNITS


# -- UCUM -------------------------------------------------------------------------------------------------------
_PREFIXES = {
    "Y": Decimal("1e24"),
    "Z": Decimal("1e21"),
    "E": Decimal("1e18"),
    "P": Decimal("1e15"),
    "T": Decimal("1e12"),
    "G": Decimal("1e9"),
    "M": Decimal("1e6"),
    "k": Decimal("1e3"),
    "h": Decimal("1e2"),
    "da": Decimal(10),
    "d": Decimal("0.1"),
    "c": Decimal("0.01"),
    "m": Decimal("0.001"),
    "u": Decimal("1e-6"),
    "n": Decimal("1e-9"),
    "p": Decimal("1e-12"),
    "f": Decimal("1e-15"),
    "a": Decimal("1e-18"),
    "z": Decimal("1e-21"),
    "y": Decimal("1e-24"),
}

Dims = tuple[tuple[str, int], ...]


def _d(**kw: int) -> Dims:
    return tuple(sorted(kw.items()))


# atom -> (factor to base units, dimensions, metric (takes prefixes))
_ATOMS: dict[str, tuple[Decimal, Dims, bool]] = {
    "1": (Decimal(1), (), False),
    "m": (Decimal(1), _d(m=1), True),
    "g": (Decimal(1), _d(g=1), True),
    "s": (Decimal(1), _d(s=1), True),
    "K": (Decimal(1), _d(K=1), True),
    "mol": (Decimal(1), _d(mol=1), True),
    "cd": (Decimal(1), _d(cd=1), True),
    "C": (Decimal(1), _d(C=1), True),
    "rad": (Decimal(1), _d(rad=1), True),
    "L": (Decimal("0.001"), _d(m=3), True),
    "l": (Decimal("0.001"), _d(m=3), True),
    "min": (Decimal(60), _d(s=1), False),
    "h": (Decimal(3600), _d(s=1), False),
    "d": (Decimal(86400), _d(s=1), False),
    "wk": (Decimal(604800), _d(s=1), False),
    "mo": (Decimal(2629800), _d(s=1), False),
    "a": (Decimal(31557600), _d(s=1), False),
    "Hz": (Decimal(1), _d(s=-1), True),
    "N": (Decimal(1000), _d(g=1, m=1, s=-2), True),
    "Pa": (Decimal(1000), _d(g=1, m=-1, s=-2), True),
    "J": (Decimal(1000), _d(g=1, m=2, s=-2), True),
    "W": (Decimal(1000), _d(g=1, m=2, s=-3), True),
    "bar": (Decimal(100000000), _d(g=1, m=-1, s=-2), True),
    "m[Hg]": (Decimal(133322000), _d(g=1, m=-1, s=-2), True),
    "m[H2O]": (Decimal(9806650), _d(g=1, m=-1, s=-2), True),
    "cal": (Decimal(4184), _d(g=1, m=2, s=-2), True),
    "eq": (Decimal(1), _d(mol=1), True),
    "U": (Decimal(1) / Decimal(60000000), _d(mol=1, s=-1), True),
    "kat": (Decimal(1), _d(mol=1, s=-1), True),
    "%": (Decimal("0.01"), (), False),
    "[ppm]": (Decimal("1e-6"), (), False),
    "[lb_av]": (Decimal("453.59237"), _d(g=1), False),
    "[oz_av]": (Decimal("28.349523125"), _d(g=1), False),
    "[in_i]": (Decimal("0.0254"), _d(m=1), False),
    "[ft_i]": (Decimal("0.3048"), _d(m=1), False),
    "[yd_i]": (Decimal("0.9144"), _d(m=1), False),
    "[mi_i]": (Decimal("1609.344"), _d(m=1), False),
    "[iU]": (Decimal(1), _d(iU=1), True),
    "[IU]": (Decimal(1), _d(iU=1), True),
    "deg": (Decimal("0.0174532925199432957692369"), _d(rad=1), False),
    "t": (Decimal(1000000), _d(g=1), True),
    "u": (Decimal("1.6605402e-24"), _d(g=1), False),
}

_COMPONENT_RE = re.compile(r"(\[[^\]]*\]|[^.\/\[\]0-9+\-]+(?:\[[^\]]*\])?|10\*|10\^)?([+-]?\d+)?")


class UnitError(ValueError):
    """A unit that this UCUM subset cannot read."""


def _atom(text: str) -> tuple[Decimal, Dims]:
    if text in _ATOMS:
        f, dims, _ = _ATOMS[text]
        return f, dims
    for plen in (2, 1):
        p, rest = text[:plen], text[plen:]
        if p in _PREFIXES and rest in _ATOMS and _ATOMS[rest][2]:
            f, dims, _ = _ATOMS[rest]
            return _PREFIXES[p] * f, dims
    raise UnitError(text)


def _combine(a: dict[str, int], dims: Dims, exp: int) -> None:
    for k, v in dims:
        a[k] = a.get(k, 0) + v * exp
        if a[k] == 0:
            del a[k]


@lru_cache(maxsize=4096)
def canonical(unit: str) -> tuple[Decimal, Dims]:
    """(factor, dimensions) of a UCUM unit; unknown atoms become their own dimension (so `[s]` only
    compares with itself). Raises UnitError for text that is not a unit expression."""
    text = re.sub(r"\{[^}]*\}", "1", unit)  # annotations are dimensionless
    if text == "":
        return Decimal(1), ()
    factor = Decimal(1)
    dims: dict[str, int] = {}
    with localcontext() as ctx:
        ctx.prec = 40
        for sign, part in _split(text):
            f, d = _term(part)
            factor = factor * f if sign > 0 else factor / f
            _combine(dims, d, sign)
    return factor, tuple(sorted(dims.items()))


def _split(text: str) -> list[tuple[int, str]]:
    """Top-level `.` and `/` separated components with their sign (parentheses kept together)."""
    out: list[tuple[int, str]] = []
    depth, start, sign = 0, 0, 1
    if text.startswith("/"):
        out.append((1, "1"))
    i = 0
    for i, ch in enumerate(text):
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif depth == 0 and ch in "./" and i > 0:
            out.append((sign, text[start:i]))
            start, sign = i + 1, (1 if ch == "." else -1)
        elif depth == 0 and ch == "/" and i == 0:
            start, sign = 1, -1
    out.append((sign, text[start:]))
    return out


def _term(part: str) -> tuple[Decimal, Dims]:
    if part.startswith("(") and part.endswith(")"):
        return canonical(part[1:-1])
    if part.isdigit():
        return Decimal(part), ()
    m = re.fullmatch(r"10[*^]([+-]?\d+)", part)
    if m:
        return Decimal(10) ** int(m.group(1)), ()
    m = re.fullmatch(r"(.*?)([+-]?\d+)?", part)
    assert m is not None
    atom, exp = m.group(1), int(m.group(2)) if m.group(2) else 1
    if not atom:
        raise UnitError(part)
    try:
        f, dims = _atom(atom)
    except UnitError:
        if any(ch in atom for ch in " '\""):
            raise
        f, dims = Decimal(1), (("?" + atom, 1),)  # an atom we do not know: comparable only with itself
    return f**exp, tuple((k, v * exp) for k, v in dims)


def _canonical_of(q: Quantity) -> tuple[Decimal, Dims]:
    if q.unit in CALENDAR_UNITS:
        cal = CALENDAR_UNITS[q.unit]
        if cal == "year":
            return Decimal(12), (("_calmonth", 1),)
        if cal == "month":
            return Decimal(1), (("_calmonth", 1),)
        return canonical(_CAL_TO_UCUM[cal])
    return canonical(q.unit)


def to_common(a: Quantity, b: Quantity) -> tuple[Decimal, Decimal] | None:
    """Both values in a's unit, or None when the units are not comparable."""
    if a.unit == b.unit:
        return a.value, b.value
    try:
        fa, da = _canonical_of(a)
        fb, db = _canonical_of(b)
    except UnitError:
        return None
    if da != db:
        return None
    with localcontext() as ctx:
        ctx.prec = 34
        bv = b.value * fb / fa
    return a.value, bv


def comparable(a: Quantity, b: Quantity) -> bool:
    return to_common(a, b) is not None


def compare(a: Quantity, b: Quantity) -> int | None:
    common = to_common(a, b)
    if common is None:
        return None
    x, y = common
    return (x > y) - (x < y)


def _places(d: Decimal) -> int:
    e = d.as_tuple().exponent
    return -e if isinstance(e, int) and e < 0 else 0


def equivalent(a: Quantity, b: Quantity) -> bool:
    """`~`: equal when rounded to the precision of the less precise operand (in a's unit)."""
    common = to_common(a, b)
    if common is None:
        return False
    x, y = common
    places = min(_places(a.value), _places(b.value))
    q = Decimal(1).scaleb(-places)
    return x.quantize(q) == y.quantize(q)


def multiply(a: Quantity, b: Quantity) -> Quantity:
    return Quantity(a.value * b.value, _unit_product(a.unit, b.unit, "."))


def divide(a: Quantity, b: Quantity) -> Quantity | None:
    if b.value == 0:
        return None
    with localcontext() as ctx:
        ctx.prec = 28
        return Quantity(a.value / b.value, _unit_product(a.unit, b.unit, "/"))


def _unit_product(u1: str, u2: str, op: str) -> str:
    u1 = _CAL_TO_UCUM.get(CALENDAR_UNITS.get(u1, ""), u1)
    u2 = _CAL_TO_UCUM.get(CALENDAR_UNITS.get(u2, ""), u2)
    if op == "/" and u1 == u2:
        return "1"
    if u2 == "1":
        return u1
    if u1 == "1" and op == ".":
        return u2
    return f"{u1}{op}({u2})" if any(c in u2 for c in "./") else f"{u1}{op}{u2}"


def add(a: Quantity, b: Quantity, sign: int) -> Quantity | None:
    common = to_common(a, b)
    if common is None:
        return None
    x, y = common
    return Quantity(x + y if sign > 0 else x - y, a.unit)


_QTY_TEXT_RE = re.compile(r"\s*([+-]?\d+(?:\.\d+)?)\s*(?:'([^']*)'|([a-zA-Z]+))?\s*")


def parse_quantity(text: str) -> Quantity | None:
    """`toQuantity()` on a string: `"1 day"`, `"4.5 'mg'"`, `"10"`; None when it is not a quantity."""
    m = _QTY_TEXT_RE.fullmatch(text)
    if not m:
        return None
    value, quoted, word = m.groups()
    if word is not None and word not in CALENDAR_UNITS:
        return None
    try:
        return Quantity(Decimal(value), quoted if quoted is not None else word or "1")
    except InvalidOperation:
        return None


def from_fhir(node: dict[str, Any]) -> Quantity | None:
    """A FHIR Quantity (or Age, Duration, ...) JSON object as a System Quantity (UCUM code preferred)."""
    value = node.get("value")
    if value is None or isinstance(value, bool):
        return None
    if type(value) is float:
        value = Decimal(str(value))
    unit = node.get("code") if node.get("system") in (UCUM_SYSTEM, None) and node.get("code") else None
    if unit is None:
        unit = node.get("unit") or node.get("code") or "1"
    return Quantity(value if isinstance(value, Decimal) else Decimal(value), unit)
