"""Finding patients from what a clerk or a nurse types in one box, and the few facts shown of each patient (in the
search results and the banner on top of the chart).

The box takes, in any order: words of the name, accents or not (`nguyen van` finds Nguyễn Văn An: the store's
`name` search folds accents, each word must begin a part of the name); an identifier value, whole (CCCD 12
digits, BHYT card 15 characters, the hospital's record number); a phone number (`0912 345 678` or `+84...`); a
birth date typed dd/mm/yyyy (or mm/yyyy, or the year alone).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sante.auth.guarded import GuardedRepository
from sante.clinical.identifiers import BHYT_SYSTEM, CCCD_SYSTEM, MRN_SYSTEM
from sante.store.index_values import fold
from sante.web.i18n import N_, Formats

MAX_RESULTS = 20
_DATE = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})$")
_MONTH = re.compile(r"^(\d{1,2})[/.-](\d{4})$")
_ISO = re.compile(r"^\d{4}-\d{2}(-\d{2})?$")
_PHONE = re.compile(r"^(?:\+?84|0)\d{8,10}$")
_BHYT = re.compile(r"^[A-Za-z]{2}\d{13}$")
_WORD = re.compile(r"^[^\W\d_]+(?:['’-][^\W\d_]+)*$")
GENDERS = {"male": N_("Male"), "female": N_("Female"), "other": N_("Other"), "unknown": N_("Unknown sex")}
ID_LABELS = {"cccd": N_("CCCD"), "bhyt": N_("BHYT"), "mrn": N_("MRN")}
_SYSTEMS = {CCCD_SYSTEM: "cccd", BHYT_SYSTEM: "bhyt", MRN_SYSTEM: "mrn"}


@dataclass(frozen=True, slots=True)
class PatientQuery:
    """What the box asked for: the alternative FHIR searches (their results are merged), or a reason why none."""

    searches: list[list[tuple[str, str]]] = field(default_factory=list)
    problem: str | None = None  # a message id (an invalid date)


def _birthdate(token: str, today: date) -> str | None:
    """The FHIR birthdate value of a typed date, None when the token is not one; ValueError for an invalid one."""
    if m := _DATE.match(token):
        return date(int(m[3]), int(m[2]), int(m[1])).isoformat()
    if m := _MONTH.match(token):
        month, year = int(m[1]), int(m[2])
        if not 1 <= month <= 12:
            raise ValueError(token)
        return f"{year:04d}-{month:02d}"
    if _ISO.match(token):
        return date.fromisoformat(token).isoformat() if len(token) == 10 else token
    if len(token) == 4 and token.isdigit() and 1880 <= int(token) <= today.year:
        return token
    return None


def _phones(digits: str) -> list[str]:
    """How a Vietnamese phone number may be written in Patient.telecom: 0912345678 and +84912345678."""
    national = "0" + digits.removeprefix("+").removeprefix("84") if not digits.startswith("0") else digits
    return [national, "+84" + national[1:]]


def parse_query(text: str, today: date) -> PatientQuery:
    """The searches for what was typed (see the module docstring)."""
    # Spaces inside a number are for reading it (0912 345 678): join the digit groups back.
    text = re.sub(r"(?<=\d) (?=\d)", "", " ".join(text.split()))
    base: list[tuple[str, str]] = []
    ids: list[str] = []
    letters = 0
    for token in text.split(" "):
        if not token:
            continue
        try:
            born = _birthdate(token, today)
        except ValueError:
            return PatientQuery(problem=N_("This date does not exist: type it as dd/mm/yyyy."))
        if born is not None:
            base.append(("birthdate", born))
        elif _WORD.match(token):
            base.append(("name", token))
            letters += len(token)
        else:
            ids.append(token.upper() if _BHYT.match(token) else token)
    if not ids and letters < 2 and not any(k == "birthdate" for k, _ in base):
        return PatientQuery()
    if not ids:
        return PatientQuery([base])
    searches = [[*base, *(("identifier", i) for i in ids)]]
    if len(ids) == 1 and _PHONE.match(ids[0].replace("-", "").replace(".", "")):
        searches.append([*base, ("phone", ",".join(_phones(ids[0].replace("-", "").replace(".", ""))))])
    return PatientQuery(searches)


@dataclass(frozen=True, slots=True)
class Identifier:
    label: str  # CCCD, BHYT, MRN (in the user's language), or the identifier's own type text
    value: str


@dataclass(frozen=True, slots=True)
class PatientSummary:
    """What the search results and the banner show of a patient, written in the user's language."""

    id: str
    name: str
    gender: str
    age: str
    birth_date: str
    identifiers: list[Identifier]
    phone: str | None
    deceased: bool


def identifier_kind(identifier: dict[str, Any]) -> str | None:
    """cccd, bhyt or mrn, from the identifier's system (Sante's, sante.clinical.identifiers, or one that names
    the kind) or its type (MR); None for another kind."""
    system = str(identifier.get("system") or "").lower()
    if system in _SYSTEMS:
        return _SYSTEMS[system]
    codes = {str(c.get("code") or "").upper() for c in (identifier.get("type") or {}).get("coding") or []
             if isinstance(c, dict)}
    if "cccd" in system or "cmnd" in system:
        return "cccd"
    if "bhyt" in system:
        return "bhyt"
    if "MR" in codes or "mrn" in system or "medical-record" in system:
        return "mrn"
    return None


def display_name(patient: dict[str, Any]) -> str:
    """The official (else the first) name, as written (text) or family name first, the Vietnamese order."""
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    if not names:
        return "—"
    name = next((n for n in names if n.get("use") == "official"), names[0])
    if name.get("text"):
        return str(name["text"])
    return " ".join([str(name.get("family") or ""), *map(str, name.get("given") or [])]).strip() or "—"


def summarize(patient: dict[str, Any], fmt: Formats) -> PatientSummary:
    ids = []
    order = {"cccd": 0, "bhyt": 1, "mrn": 2}
    for ident in patient.get("identifier") or []:
        if not isinstance(ident, dict) or not ident.get("value"):
            continue
        kind = identifier_kind(ident)
        label = fmt.t.gettext(ID_LABELS[kind]) if kind else str((ident.get("type") or {}).get("text")
                                                               or fmt.t.gettext(N_("ID")))
        ids.append((order.get(kind or "", 3), Identifier(label, str(ident["value"]))))
    phone = next((t.get("value") for t in patient.get("telecom") or []
                  if isinstance(t, dict) and t.get("system") == "phone" and t.get("value")), None)
    return PatientSummary(
        id=str(patient.get("id")), name=display_name(patient),
        gender=fmt.t.gettext(GENDERS.get(str(patient.get("gender")), GENDERS["unknown"])),
        age="" if patient.get("deceasedBoolean") or patient.get("deceasedDateTime") else fmt.age(patient.get("birthDate")),
        birth_date=fmt.date(patient.get("birthDate")), identifiers=[i for _, i in sorted(ids, key=lambda x: x[0])],
        phone=phone, deceased=bool(patient.get("deceasedBoolean") or patient.get("deceasedDateTime")))


@dataclass(frozen=True, slots=True)
class SearchOutcome:
    searched: bool
    patients: list[PatientSummary]
    more: bool  # more patients match than are shown
    problem: str | None = None


def _vietnamese_order(patient: PatientSummary) -> tuple[str, str, str]:
    """Lists of people sort by their given name (the last word: An, Bình, Cúc), then the whole name."""
    name = fold(patient.name)
    return name.rsplit(" ", 1)[-1], name, patient.id


def find_patients(guarded: GuardedRepository, text: str, fmt: Formats) -> SearchOutcome:
    """The patients matching what was typed, that the user may see: one search per alternative (usually one),
    in one read transaction, merged."""
    query = parse_query(text, fmt.today())
    if query.problem or not query.searches:
        return SearchOutcome(False, [], False, query.problem)
    found: dict[str, dict[str, Any]] = {}
    more = False
    with guarded.reader() as g:
        for params in query.searches:
            result = g.search("Patient", [*params, ("_count", str(MAX_RESULTS))])
            more = more or result.next_cursor is not None
            for m in result.matches:
                found.setdefault(m.id, m.resource or {})
    patients = sorted((summarize(p, fmt) for p in found.values()), key=_vietnamese_order)
    return SearchOutcome(True, patients[:MAX_RESULTS], more or len(patients) > MAX_RESULTS)


__all__ = ["MAX_RESULTS", "PatientQuery", "PatientSummary", "SearchOutcome", "display_name", "find_patients",
           "identifier_kind", "parse_query", "summarize"]
