"""What the clinical workflow services (sante.clinical.inpatient, sante.clinical.pharmacy) share: time in Viet
Nam, FHIR references and codings, and searches and reads through a GuardedTransaction whose errors name the
field of the form they came from (an Anomaly's `location`), so that a page can show each next to its field.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from sante.anomaly import Anomaly, Category
from sante.auth.guarded import GuardedTransaction, Query

VIETNAM = timezone(timedelta(hours=7))  # the hospital's clock (the demo's care.VIETNAM)
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
BED_STATUS = "http://terminology.hl7.org/CodeSystem/v2-0116"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
PAGE = 1000  # the store's largest page
ID_CHUNK = 400  # ids per `_id=` / reference search: far below both databases' parameter limits


# -- errors -------------------------------------------------------------------------------------------------------
def refused(category: Category, message: str, field: str) -> Anomaly:
    """An Anomaly for the form field `field`."""
    return Anomaly(category, message, location=field)


def at_field(e: Anomaly, field: str) -> Anomaly:
    """The same anomaly, located at `field` (a 404 from reading what a form named)."""
    return Anomaly(e.category, e.message, location=field)


# -- time ---------------------------------------------------------------------------------------------------------
def aware(when: datetime | None) -> datetime:
    """`when` with a time zone (a naive time is taken as the hospital's), now when None; to the second."""
    if when is None:
        return datetime.now(VIETNAM).replace(microsecond=0)
    return when if when.tzinfo is not None else when.replace(tzinfo=VIETNAM)


def fhir_time(when: datetime) -> str:
    """A FHIR dateTime with its offset, to the second."""
    return when.isoformat(timespec="seconds")


def parse_time(text: Any) -> datetime | None:
    """A FHIR date or dateTime as an aware datetime (a date alone: its midnight in Viet Nam); None if absent or
    unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        if len(text) == 4:
            return datetime(int(text), 1, 1, tzinfo=VIETNAM)
        if len(text) == 7:
            return datetime(int(text[:4]), int(text[5:7]), 1, tzinfo=VIETNAM)
        return aware(datetime.fromisoformat(text))
    except ValueError:
        return None


def local_day(when: datetime) -> date:
    """The calendar day in Viet Nam of an instant."""
    return when.astimezone(VIETNAM).date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of a calendar day in Viet Nam."""
    start = datetime.combine(day, time(0), VIETNAM)
    return start, start + timedelta(days=1)


def parse_day(value: date | str, field: str) -> date:
    """A date from a date or an ISO date string; 400 at `field` otherwise."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise refused(Category.INCORRECT, f"{value!r} is not a date (YYYY-MM-DD)", field) from None


# -- numbers ------------------------------------------------------------------------------------------------------
def decimal(value: Any, field: str, *, positive: bool = False, zero_ok: bool = True) -> Decimal:
    """A quantity as an exact Decimal; 400 at `field` when it is not a finite number (or not > 0 when positive)."""
    if isinstance(value, bool):
        raise refused(Category.INCORRECT, f"{value!r} is not a number", field)
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise refused(Category.INCORRECT, f"{value!r} is not a number", field) from None
    if not number.is_finite():
        raise refused(Category.INCORRECT, f"{value!r} is not a number", field)
    if positive and (number < 0 or (number == 0 and not zero_ok)):
        raise refused(Category.INCORRECT, f"{field} must be more than 0, got {value}", field)
    return number


def json_number(value: Decimal) -> int | float:
    """A Decimal as FHIR JSON writes it: an integer when it is whole."""
    return int(value) if value == value.to_integral_value() else float(value)


# -- references ---------------------------------------------------------------------------------------------------
def ref(rtype: str, rid: str, display: str | None = None) -> dict[str, str]:
    out = {"reference": f"{rtype}/{rid}"}
    if display:
        out["display"] = display
    return out


def ref_id(value: Any, rtype: str) -> str | None:
    """The id in a Reference to rtype (`{"reference": "Location/x"}` → "x"), None for another type or none."""
    reference = value.get("reference") if isinstance(value, dict) else None
    if not isinstance(reference, str) or not reference.startswith(rtype + "/"):
        return None
    rid = reference.removeprefix(rtype + "/").split("/_history/")[0]
    return rid or None


def bare_id(value: str, rtype: str) -> str:
    """An id given as `id` or `Type/id`."""
    return value.removeprefix(rtype + "/")


def coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def codes(concept: Any, system: str | None = None) -> list[str]:
    """The codes of a CodeableConcept (or a list of them), of one system when given."""
    concepts = concept if isinstance(concept, list) else [concept]
    return [str(c["code"]) for cc in concepts if isinstance(cc, dict) for c in cc.get("coding", [])
            if isinstance(c, dict) and isinstance(c.get("code"), str) and (system is None or c.get("system") == system)]


def concept_text(concept: Any) -> str:
    """What a person reads of a CodeableConcept: its text, else its first display, else its first code."""
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return str(concept["text"])
    for c in concept.get("coding", []):
        if isinstance(c, dict) and (c.get("display") or c.get("code")):
            return str(c.get("display") or c.get("code"))
    return ""


def person_name(resource: dict[str, Any] | None) -> str:
    """A Patient's or Practitioner's name as written (Vietnamese order: family, middle, given), with its prefix."""
    for name in (resource or {}).get("name", []):
        if not isinstance(name, dict):
            continue
        text = name.get("text") or " ".join(p for p in (name.get("family"), *name.get("given", [])) if p)
        if text:
            prefix = " ".join(name.get("prefix", []))
            return f"{prefix} {text}".strip() if prefix and not text.startswith(prefix) else text
    return ""


def physical_type(location: dict[str, Any]) -> str | None:
    """A Location's physicalType code (si, wi, wa, ro, bd...)."""
    found = codes(location.get("physicalType"), PHYSICAL_TYPE)
    return found[0] if found else None


def practitioner_of(g: GuardedTransaction) -> str | None:
    """The principal's Practitioner reference (`Practitioner/1`), None for any other account."""
    user = g.principal.fhir_user or ""
    return user if user.startswith("Practitioner/") else None


# -- reading through the guard ------------------------------------------------------------------------------------
def read_at(g: GuardedTransaction, rtype: str, rid: str, field: str) -> dict[str, Any]:
    """The current version of rtype/rid as the principal may read it (inside a write transaction on
    PostgreSQL the row stays locked until the end: the caller's check and its write are atomic); a 404 or 410
    names `field`."""
    try:
        stored = g.read(rtype, bare_id(rid, rtype))
    except Anomaly as e:
        if e.category in (Category.NOT_FOUND, Category.DELETED):
            raise at_field(e, field) from None
        raise
    return stored.resource or {}


def peek_at(g: GuardedTransaction, rtype: str, rid: str, field: str) -> dict[str, Any]:
    """rtype/rid as the principal may see it, found by a search: nothing is locked (for what a write only
    looks at, so that writes never wait on each other in opposite orders); a 404 names `field`."""
    rid = bare_id(rid, rtype)
    found = by_ids(g, rtype, [rid]).get(rid)
    if found is None:
        raise refused(Category.NOT_FOUND, f"{rtype}/{rid} is not known", field)
    return found


def search_all(g: GuardedTransaction, rtype: str, query: Query, *, limit: int | None = None
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every match of a search (following its pages), and the resources it included."""
    matches: list[dict[str, Any]] = []
    included: list[dict[str, Any]] = []
    base = [(k, v) for k, v in query if k != "_count"]
    page: Query = [*base, ("_count", str(PAGE))]
    while True:
        result = g.search(rtype, page)
        matches += [r for r in (m.resource for m in result.matches) if r]
        included += [r for r in (m.resource for m in result.included) if r]
        if not result.next_cursor or (limit is not None and len(matches) >= limit):
            return matches, included
        page = [*base, ("_count", str(PAGE)), ("_cursor", result.next_cursor)]


def chunks(ids: Iterable[str], size: int = ID_CHUNK) -> list[list[str]]:
    items = list(dict.fromkeys(ids))
    return [items[i:i + size] for i in range(0, len(items), size)]


def by_ids(g: GuardedTransaction, rtype: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The resources of these ids the principal may see, by id (a search: nothing is locked)."""
    out: dict[str, dict[str, Any]] = {}
    for chunk in chunks(ids):
        found, _ = search_all(g, rtype, [("_id", ",".join(chunk))])
        out.update({r["id"]: r for r in found})
    return out


__all__ = [
    "ACT_CODE", "BED_STATUS", "LOINC", "PHYSICAL_TYPE", "ROLE_CODE", "SNOMED", "UCUM", "VIETNAM", "at_field", "aware",
    "bare_id", "by_ids", "chunks", "codes", "coding", "concept_text", "day_bounds", "decimal", "fhir_time",
    "json_number", "local_day", "parse_day", "parse_time", "peek_at", "person_name", "physical_type",
    "practitioner_of", "read_at", "ref", "ref_id", "refused", "search_all",
]
