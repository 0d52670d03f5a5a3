"""Viet Nam's administrative units after the 1 July 2025 reform, and the pre-reform units for old addresses.

Since the reform an address has two levels: 34 provinces/centrally-run cities (`Province`, 2-digit code) and
3,321 communes, wards and special zones (`Commune`, 5-digit code). Records written before it carry three levels
(63 provinces, 696 districts, 10,035 wards); `legacy_ward_to_commune` and `legacy_province_to_province` map them
onto today's units (a ward that was split maps to several communes) so that old addresses stay readable.

Data: `data/vn-admin/` (MIT; see its README), read lazily on first use and cached; the pre-reform tables are
loaded only when a legacy function is called.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sante.clinical.reference_data import read_csv
from sante.store.index_values import fold

ADDRESS_UNIT_EXTENSION = "https://sante.health/fhir/StructureDefinition/address-vn-admin-unit"
PROVINCE_SYSTEM = "https://sante.health/fhir/CodeSystem/vn-province-2025"
COMMUNE_SYSTEM = "https://sante.health/fhir/CodeSystem/vn-commune-2025"
LEGACY_PROVINCE_SYSTEM = "https://sante.health/fhir/CodeSystem/vn-province-legacy"
LEGACY_DISTRICT_SYSTEM = "https://sante.health/fhir/CodeSystem/vn-district-legacy"
LEGACY_WARD_SYSTEM = "https://sante.health/fhir/CodeSystem/vn-ward-legacy"

_DIR = "vn-admin/"


@dataclass(frozen=True, slots=True)
class Province:
    """A province or centrally-run city (since 2025 when from `provinces()`, before 2025 when legacy)."""

    code: str  # 2 digits
    name: str  # "Thành phố Hà Nội"
    short_name: str  # "Hà Nội"
    type: str  # "Tỉnh" | "Thành phố"


@dataclass(frozen=True, slots=True)
class Commune:
    """A commune (Xã), ward (Phường) or special zone (Đặc khu) since 2025."""

    code: str  # 5 digits
    name: str  # "Phường Ba Đình"
    short_name: str  # "Ba Đình"
    type: str  # "Xã" | "Phường" | "Đặc khu"
    province_code: str
    lat: float | None = None
    lon: float | None = None


@dataclass(frozen=True, slots=True)
class LegacyDistrict:
    """A district-level unit before 2025 (Quận, Huyện, Thị xã, Thành phố thuộc tỉnh)."""

    code: str  # 3 digits
    name: str
    short_name: str
    type: str
    province_code: str


@dataclass(frozen=True, slots=True)
class LegacyWard:
    """A commune-level unit before 2025."""

    code: str  # 5 digits (the numbering overlaps today's commune codes: never mix the two)
    name: str
    short_name: str
    type: str
    district_code: str
    province_code: str


@dataclass(frozen=True, slots=True)
class _Current:
    provinces: dict[str, Province]
    communes: dict[str, Commune]
    by_province: dict[str, tuple[Commune, ...]]
    # (commune, folded: full name, short name, "name + province short name"; words: of the name, of the latter)
    search_rows: tuple[tuple[Commune, str, str, str, tuple[str, ...], tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class _Legacy:
    provinces: dict[str, Province]
    districts: dict[str, LegacyDistrict]
    wards: dict[str, LegacyWard]
    province_to_new: dict[str, str]
    ward_to_new: dict[str, tuple[str, ...]]
    district_to_new: dict[str, tuple[str, ...]]


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


@cache
def _current() -> _Current:
    provs = {
        r["code"]: Province(r["code"], r["name"], r["short_name"], r["type"])
        for r in read_csv(_DIR + "provinces_2025.csv")
    }
    communes: dict[str, Commune] = {}
    by_province: dict[str, list[Commune]] = {code: [] for code in provs}
    for r in read_csv(_DIR + "communes_2025.csv.gz"):
        c = Commune(
            r["code"], r["name"], r["short_name"], r["type"], r["province_code"], _float(r["lat"]), _float(r["lon"])
        )
        communes[c.code] = c
        by_province[c.province_code].append(c)
    rows = []
    for c in communes.values():
        name, both = fold(c.name), fold(f"{c.name} {provs[c.province_code].short_name}")
        rows.append((c, name, fold(c.short_name), both, tuple(name.split()), tuple(both.split())))
    return _Current(provs, communes, {k: tuple(v) for k, v in by_province.items()}, tuple(rows))


@cache
def _legacy() -> _Legacy:
    provs = {
        r["code"]: Province(r["code"], r["name"], r["short_name"], r["type"])
        for r in read_csv(_DIR + "legacy_provinces_63.csv")
    }
    districts = {
        r["code"]: LegacyDistrict(r["code"], r["name"], r["short_name"], r["type"], r["province_code"])
        for r in read_csv(_DIR + "legacy_districts.csv.gz")
    }
    wards = {
        r["code"]: LegacyWard(r["code"], r["name"], r["short_name"], r["type"], r["district_code"], r["province_code"])
        for r in read_csv(_DIR + "legacy_wards.csv.gz")
    }
    province_to_new = {r["old_code"]: r["new_code"] for r in read_csv(_DIR + "province_old_to_new_2025.csv")}
    ward_to_new: dict[str, list[str]] = {}
    district_to_new: dict[str, list[str]] = {}
    for r in read_csv(_DIR + "ward_old_to_new_2025.csv.gz"):
        new = r["new_ward_code"]
        if r["old_ward_code"]:  # island districts without wards map the district itself
            targets = ward_to_new.setdefault(r["old_ward_code"], [])
            if new not in targets:
                targets.append(new)
        targets = district_to_new.setdefault(r["old_district_code"], [])
        if new not in targets:
            targets.append(new)
    return _Legacy(
        provs,
        districts,
        wards,
        province_to_new,
        {k: tuple(v) for k, v in ward_to_new.items()},
        {k: tuple(v) for k, v in district_to_new.items()},
    )


def _code(code: str | int, width: int) -> str:
    return str(code).strip().zfill(width)


# -- since 2025 ---------------------------------------------------------------------------------------------------


def provinces() -> list[Province]:
    """The 34 provinces and centrally-run cities, by code."""
    return sorted(_current().provinces.values(), key=lambda p: p.code)


def province(code: str | int) -> Province | None:
    """The province with this 2-digit code ("01", or 1), or None."""
    return _current().provinces.get(_code(code, 2))


def communes(province_code: str | int) -> list[Commune]:
    """The communes, wards and special zones of a province, by code (empty for an unknown province)."""
    return list(_current().by_province.get(_code(province_code, 2), ()))


def commune(code: str | int) -> Commune | None:
    """The commune with this 5-digit code, or None."""
    return _current().communes.get(_code(code, 5))


def _word_prefixes(tokens: Sequence[str], words: Sequence[str]) -> bool:
    return all(any(w.startswith(t) for w in words) for t in tokens)


def search_communes(query: str, province_code: str | int | None = None, limit: int = 20) -> list[Commune]:
    """Communes whose name matches `query`, accent- and case-insensitively (Nguyen = Nguyễn, đ = d).

    Every word of the query must start a word of the commune's name (or of its province's name). Ranked: the
    code or the whole name, then names starting with the query, then names holding all the words, then matches
    that need the province's name; a query typed with diacritics puts names containing it as typed first
    (Nguyễn before Nguyên); within a rank by province, then name.
    """
    q = fold(query)
    typed = unicodedata.normalize("NFC", query).strip().lower()
    accented = typed != q
    if not q or limit <= 0:
        return []
    tokens = q.split(" ")
    prov = _code(province_code, 2) if province_code is not None else None
    ranked: list[tuple[int, str, str, Commune]] = []
    for c, name, short, both, words, with_province in _current().search_rows:
        if prov is not None and c.province_code != prov:
            continue
        if q == c.code:
            rank = 0
        elif not all(t in both for t in tokens):
            continue  # the cheap test first: every word somewhere in the text
        elif q in (name, short):
            rank = 0
        elif short.startswith(q) or name.startswith(q):
            rank = 1
        elif _word_prefixes(tokens, words):
            rank = 2
        elif _word_prefixes(tokens, with_province):
            rank = 3
        else:
            continue
        if accented and typed not in c.name.lower():
            rank += 10
        ranked.append((rank, c.province_code, short, c))
    ranked.sort(key=lambda t: t[:3])
    return [t[3] for t in ranked[:limit]]


# -- before 2025 --------------------------------------------------------------------------------------------------


def legacy_province(code: str | int) -> Province | None:
    """One of the 63 provinces before the 2025 reform, or None."""
    return _legacy().provinces.get(_code(code, 2))


def legacy_provinces() -> list[Province]:
    """The 63 provinces before the 2025 reform, by code."""
    return sorted(_legacy().provinces.values(), key=lambda p: p.code)


def legacy_district(code: str | int) -> LegacyDistrict | None:
    """A pre-2025 district by its 3-digit code, or None."""
    return _legacy().districts.get(_code(code, 3))


def legacy_ward(code: str | int) -> LegacyWard | None:
    """A pre-2025 ward/commune by its 5-digit code, or None."""
    return _legacy().wards.get(_code(code, 5))


def legacy_province_to_province(old_code: str | int) -> Province | None:
    """The province that a pre-2025 province became part of, or None for an unknown code."""
    new = _legacy().province_to_new.get(_code(old_code, 2))
    return province(new) if new else None


def legacy_ward_to_commune(old_ward_code: str | int) -> list[Commune]:
    """Today's commune(s) covering a pre-2025 ward: one, several when the ward was split, none if unknown."""
    codes = _legacy().ward_to_new.get(_code(old_ward_code, 5), ())
    return [_current().communes[c] for c in codes]


def legacy_district_to_communes(old_district_code: str | int) -> list[Commune]:
    """Today's communes covering a pre-2025 district (island districts without wards became special zones)."""
    codes = _legacy().district_to_new.get(_code(old_district_code, 3), ())
    return [_current().communes[c] for c in codes]


# -- FHIR Address -------------------------------------------------------------------------------------------------


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def _lines(line: str | Sequence[str] | None) -> list[str]:
    if line is None:
        return []
    items = [line] if isinstance(line, str) else list(line)
    return [s.strip() for s in items if s and s.strip()]


def fhir_address(line: str | Sequence[str] | None, commune_code: str | int, use: str = "home") -> dict[str, Any]:
    """A FHIR Address in today's two-level form; raises KeyError for an unknown commune code.

    city = commune name, state = province name, country "VN", text = the whole address on one line, and an
    extension (ADDRESS_UNIT_EXTENSION) carrying the commune and province codes.
    """
    c = commune(commune_code)
    if c is None:
        raise KeyError(f"unknown commune code {commune_code!r}")
    p = _current().provinces[c.province_code]
    lines = _lines(line)
    address: dict[str, Any] = {
        "extension": [
            {
                "url": ADDRESS_UNIT_EXTENSION,
                "extension": [
                    {"url": "commune", "valueCoding": _coding(COMMUNE_SYSTEM, c.code, c.name)},
                    {"url": "province", "valueCoding": _coding(PROVINCE_SYSTEM, p.code, p.name)},
                ],
            }
        ],
        "use": use,
        "type": "physical",
        "text": ", ".join([*lines, c.name, p.name]),
    }
    if lines:
        address["line"] = lines
    address.update({"city": c.name, "state": p.name, "country": "VN"})
    return address


def fhir_legacy_address(
    line: str | Sequence[str] | None, old_ward_code: str | int, use: str = "home"
) -> dict[str, Any]:
    """A FHIR Address written with pre-2025 units (ward, district, province), as found on old records.

    city = ward, district = district, state = old province; the extension carries the three legacy codes.
    Raises KeyError for an unknown ward code.
    """
    w = legacy_ward(old_ward_code)
    if w is None:
        raise KeyError(f"unknown pre-2025 ward code {old_ward_code!r}")
    d = _legacy().districts[w.district_code]
    p = _legacy().provinces[w.province_code]
    lines = _lines(line)
    address: dict[str, Any] = {
        "extension": [
            {
                "url": ADDRESS_UNIT_EXTENSION,
                "extension": [
                    {"url": "legacyWard", "valueCoding": _coding(LEGACY_WARD_SYSTEM, w.code, w.name)},
                    {"url": "legacyDistrict", "valueCoding": _coding(LEGACY_DISTRICT_SYSTEM, d.code, d.name)},
                    {"url": "legacyProvince", "valueCoding": _coding(LEGACY_PROVINCE_SYSTEM, p.code, p.name)},
                ],
            }
        ],
        "use": use,
        "type": "physical",
        "text": ", ".join([*lines, w.name, d.name, p.name]),
    }
    if lines:
        address["line"] = lines
    address.update({"city": w.name, "district": d.name, "state": p.name, "country": "VN"})
    return address


def _unit_codes(address: Mapping[str, Any]) -> dict[str, str]:
    codes: dict[str, str] = {}
    for ext in address.get("extension") or ():
        if ext.get("url") != ADDRESS_UNIT_EXTENSION:
            continue
        for sub in ext.get("extension") or ():
            code = (sub.get("valueCoding") or {}).get("code")
            if code:
                codes[sub.get("url", "")] = code
    return codes


def describe_address(address: Mapping[str, Any]) -> str:
    """One line for a FHIR Address, new or pre-2025; an old address also names today's unit(s).

    "12 Hàng Bài, Phường Trúc Bạch, Quận Ba Đình, Thành phố Hà Nội (nay: Phường Ba Đình, Thành phố Hà Nội)".
    Units come from the codes in the extension when present, else from city/district/state as written.
    """
    codes = _unit_codes(address)
    lines = _lines(address.get("line"))
    c = commune(codes["commune"]) if "commune" in codes else None
    if c is not None:
        return ", ".join([*lines, c.name, _current().provinces[c.province_code].name])
    w = legacy_ward(codes["legacyWard"]) if "legacyWard" in codes else None
    if w is not None:
        d = _legacy().districts[w.district_code]
        old = ", ".join([*lines, w.name, d.name, _legacy().provinces[w.province_code].name])
        now = [f"{n.name}, {_current().provinces[n.province_code].name}" for n in legacy_ward_to_commune(w.code)]
        return f"{old} (nay: {' hoặc '.join(now)})" if now else old
    parts = [*lines, *(address[k] for k in ("city", "district", "state") if address.get(k))]
    if parts:
        return ", ".join(parts)
    return str(address.get("text") or "")
