"""Search-index values: how each FHIR search-parameter type turns an element into comparable index entries.

Pure functions, no database: strings are folded for accent- and case-insensitive matching (Nguyen = Nguyễn,
đ = d), dates become [low, high) ranges at their precision, quantities carry a UCUM-canonical form.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, NamedTuple

# Letters that Unicode decomposition does not strip to ASCII but that people type without their mark.
_EXTRA_FOLD = str.maketrans({"đ": "d", "Đ": "d", "ø": "o", "Ø": "o", "ł": "l", "Ł": "l", "ß": "ss", "æ": "ae"})
_SPACE = re.compile(r"\s+")


@lru_cache(maxsize=65536)
def fold(text: str) -> str:
    """Lower-case, accent-free, single-spaced form of text, for :contains/starts-with string search."""
    decomposed = unicodedata.normalize("NFD", text.lower().translate(_EXTRA_FOLD))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _SPACE.sub(" ", stripped.lower()).strip()


class StringEntry(NamedTuple):
    folded: str
    exact: str


class TokenEntry(NamedTuple):
    system: str | None
    code: str | None
    text: str | None = None  # folded display/text, for :text


class ReferenceEntry(NamedTuple):
    target_type: str | None
    target_id: str | None
    version: str | None
    url: str | None  # absolute or canonical URL as written
    identifier_system: str | None = None
    identifier_value: str | None = None


class RangeEntry(NamedTuple):
    low: str | None  # inclusive; fixed-width UTC instants (dates) or None for unbounded
    high: str | None  # exclusive


class NumberEntry(NamedTuple):
    value: Decimal
    low: Decimal
    high: Decimal


class QuantityEntry(NamedTuple):
    value: Decimal
    system: str | None
    code: str | None
    unit: str | None
    canonical_value: Decimal | None
    canonical_code: str | None


# ---------------------------------------------------------------------------------------------------------------
# strings

_HUMAN_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")


def string_entries(value: Any) -> list[StringEntry]:
    """A string, HumanName or Address (any other complex value: its string parts)."""
    out: list[StringEntry] = []
    if isinstance(value, str):
        if value.strip():
            out.append(StringEntry(fold(value), value))
        return out
    if isinstance(value, dict):
        parts = _HUMAN_NAME_PARTS if ("family" in value or "given" in value) else _ADDRESS_PARTS
        for key in parts:
            v = value.get(key)
            for item in v if isinstance(v, list) else [v]:
                if isinstance(item, str) and item.strip():
                    out.append(StringEntry(fold(item), item))
    return out


# ---------------------------------------------------------------------------------------------------------------
# tokens


def _text(v: Any) -> str | None:
    return fold(v) if isinstance(v, str) and v.strip() else None


def token_entries(value: Any) -> list[TokenEntry]:
    """Coding, CodeableConcept, Identifier, ContactPoint, code/string/boolean/uri primitives."""
    if isinstance(value, bool):
        return [TokenEntry(None, "true" if value else "false")]
    if isinstance(value, (str, int)):
        return [TokenEntry(None, str(value))]
    if not isinstance(value, dict):
        s = str(value) if value is not None else ""
        return [TokenEntry(None, s)] if s else []
    if "coding" in value or ("text" in value and "code" not in value and "value" not in value):
        out = [
            TokenEntry(c.get("system"), c.get("code"), _text(c.get("display")) or _text(value.get("text")))
            for c in value.get("coding", ())
            if isinstance(c, dict)
        ]
        if not out and value.get("text"):
            out.append(TokenEntry(None, None, _text(value["text"])))
        return out
    if "code" in value or ("system" in value and "value" not in value):
        return [TokenEntry(value.get("system"), value.get("code"), _text(value.get("display")))]
    if "value" in value:  # Identifier or ContactPoint
        type_text = None
        if isinstance(value.get("type"), dict):
            type_text = _text(value["type"].get("text"))
        return [TokenEntry(value.get("system"), str(value["value"]), type_text)]
    return []


def identifier_type_entries(value: Any) -> list[tuple[str | None, str | None, str]]:
    """(type system, type code, identifier value) for :of-type searches on Identifier."""
    if not isinstance(value, dict) or "value" not in value or not isinstance(value.get("type"), dict):
        return []
    return [
        (c.get("system"), c.get("code"), str(value["value"]))
        for c in value["type"].get("coding", ())
        if isinstance(c, dict)
    ]


# ---------------------------------------------------------------------------------------------------------------
# references

_RELATIVE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/([A-Za-z0-9\-.]{1,64}))?$")
_ABSOLUTE = re.compile(r"^(?:https?://.+/)?([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/([A-Za-z0-9\-.]{1,64}))?$")


def reference_entries(value: Any) -> list[ReferenceEntry]:
    """Reference (relative, absolute, versioned, logical by identifier) or canonical/uri strings."""
    if isinstance(value, str):
        return [_parse_reference(value)]
    if not isinstance(value, dict):
        return []
    out = []
    ref = value.get("reference")
    if isinstance(ref, str) and not ref.startswith("#"):
        out.append(_parse_reference(ref))
    ident = value.get("identifier")
    if isinstance(ident, dict) and ident.get("value") is not None:
        out.append(ReferenceEntry(value.get("type"), None, None, None, ident.get("system"), str(ident["value"])))
    return out


def _parse_reference(ref: str) -> ReferenceEntry:
    m = _RELATIVE.match(ref)
    if m:
        return ReferenceEntry(m.group(1), m.group(2), m.group(3), None)
    m = _ABSOLUTE.match(ref)
    if m:
        return ReferenceEntry(m.group(1), m.group(2), m.group(3), ref)
    return ReferenceEntry(None, None, None, ref)


# ---------------------------------------------------------------------------------------------------------------
# dates

_DATE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(\.\d+)?)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def _instant(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="microseconds")  # 2024-05-01T03:00:00.000000+00:00


_DAY = timedelta(days=1)


@lru_cache(maxsize=65536)
def date_range(text: str) -> RangeEntry | None:
    """The [low, high) range a FHIR date/dateTime/instant covers at its precision (UTC; no zone = UTC)."""
    text = text.strip()
    m = _DATE.match(text)
    if not m:
        return None
    year, month, day, hour, minute, second, frac, zone = m.groups()
    try:
        if month is None:
            y = int(year)
            return RangeEntry(f"{y:04d}-01-01T00:00:00.000000+00:00", f"{y + 1:04d}-01-01T00:00:00.000000+00:00")
        if day is None:
            y, mo = int(year), int(month)
            if not 1 <= mo <= 12:
                return None
            ny, nm = (y + 1, 1) if mo == 12 else (y, mo + 1)
            return RangeEntry(f"{y:04d}-{mo:02d}-01T00:00:00.000000+00:00", f"{ny:04d}-{nm:02d}-01T00:00:00.000000+00:00")
        if hour is None:
            d = date(int(year), int(month), int(day))
            return RangeEntry(f"{text}T00:00:00.000000+00:00", f"{(d + _DAY).isoformat()}T00:00:00.000000+00:00")
        if minute is None:
            return None  # FHIR has no hour-only dateTime
        base = text if zone else text + "+00:00"
        low = datetime.fromisoformat(base)  # accepts the Z suffix since Python 3.11
    except ValueError:
        return None
    if second is None:
        step = timedelta(minutes=1)
    elif frac:
        step = timedelta(microseconds=max(1, 10 ** (6 - min(6, len(frac) - 1))))
    else:
        step = timedelta(seconds=1)
    return RangeEntry(_instant(low), _instant(low + step))


def date_entries(value: Any) -> list[RangeEntry]:
    """date/dateTime/instant (strings or FHIRPath date objects), Period, Timing (its events)."""
    if isinstance(value, (str, date)) or type(value).__name__ in ("FHIRDate", "FHIRDateTime", "Date", "DateTime"):
        r = date_range(str(value))
        return [r] if r else []
    if isinstance(value, dict):
        if "start" in value or "end" in value:  # Period: open ends are unbounded
            start = date_range(value["start"]) if isinstance(value.get("start"), str) else None
            end = date_range(value["end"]) if isinstance(value.get("end"), str) else None
            if start is None and end is None:
                return []
            return [RangeEntry(start.low if start else None, end.high if end else None)]
        if "event" in value:  # Timing
            return [r for e in value["event"] if isinstance(e, str) for r in [date_range(e)] if r]
    return []


# ---------------------------------------------------------------------------------------------------------------
# numbers and quantities


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def precision_range(value: Decimal) -> tuple[Decimal, Decimal]:
    """Implicit precision of a written number: 100 covers [99.5, 100.5), 1.50 covers [1.495, 1.505)."""
    exp = value.as_tuple().exponent
    half = Decimal(5).scaleb(int(exp) - 1) if isinstance(exp, int) else Decimal(0)
    return value - half, value + half


def number_entries(value: Any) -> list[NumberEntry]:
    d = _decimal(value)
    if d is None:
        return []
    low, high = precision_range(d)
    return [NumberEntry(d, low, high)]


# Common UCUM units to a canonical base (unit, factor); enough for vitals, labs and dosing.
_UCUM: dict[str, tuple[str, Decimal]] = {
    "g": ("g", Decimal(1)), "kg": ("g", Decimal(1000)), "mg": ("g", Decimal("0.001")),
    "ug": ("g", Decimal("0.000001")), "ng": ("g", Decimal("1e-9")), "[lb_av]": ("g", Decimal("453.59237")),
    "L": ("L", Decimal(1)), "l": ("L", Decimal(1)), "dL": ("L", Decimal("0.1")), "mL": ("L", Decimal("0.001")),
    "uL": ("L", Decimal("0.000001")),
    "m": ("m", Decimal(1)), "cm": ("m", Decimal("0.01")), "mm": ("m", Decimal("0.001")), "km": ("m", Decimal(1000)),
    "[in_i]": ("m", Decimal("0.0254")),
    "s": ("s", Decimal(1)), "ms": ("s", Decimal("0.001")), "min": ("s", Decimal(60)), "h": ("s", Decimal(3600)),
    "d": ("s", Decimal(86400)), "wk": ("s", Decimal(604800)),
    "g/dL": ("g/L", Decimal(10)), "g/L": ("g/L", Decimal(1)), "mg/dL": ("g/L", Decimal("0.01")),
    "mg/L": ("g/L", Decimal("0.001")),
    "mmol/L": ("mol/L", Decimal("0.001")), "umol/L": ("mol/L", Decimal("0.000001")), "mol/L": ("mol/L", Decimal(1)),
    "Cel": ("Cel", Decimal(1)), "mm[Hg]": ("mm[Hg]", Decimal(1)), "/min": ("/min", Decimal(1)),
    "%": ("%", Decimal(1)), "kg/m2": ("kg/m2", Decimal(1)),
}
UCUM_SYSTEM = "http://unitsofmeasure.org"


def canonical_quantity(value: Decimal, system: str | None, code: str | None) -> tuple[Decimal | None, str | None]:
    """The value in its UCUM base unit, when the unit is a known UCUM code."""
    if system not in (UCUM_SYSTEM, None) or code is None or code not in _UCUM:
        return None, None
    base, factor = _UCUM[code]
    return value * factor, base


def quantity_entries(value: Any) -> list[QuantityEntry]:
    """Quantity (and its profiles Age, Duration, ...), or a Quantity-like FHIRPath object."""
    if isinstance(value, dict):
        raw, system, code, unit = value.get("value"), value.get("system"), value.get("code"), value.get("unit")
    elif hasattr(value, "value") and hasattr(value, "unit"):
        raw, system, code, unit = value.value, UCUM_SYSTEM, getattr(value, "unit", None), getattr(value, "unit", None)
    else:
        return []
    d = _decimal(raw)
    if d is None:
        return []
    cv, cc = canonical_quantity(d, system, code or unit)
    return [QuantityEntry(d, system, code, unit, cv, cc)]


def uri_entries(value: Any) -> list[str]:
    return [value] if isinstance(value, str) and value else []
