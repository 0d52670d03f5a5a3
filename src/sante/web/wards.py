"""The wards' pages (điều trị nội trú), for nurses, physicians and administrators:

- `/wards` the bed board (`?unit=` a department or a ward): per ward its rooms and beds, each named by its status
  (free, occupied, being cleaned, closed) and coloured by it, with who lies in it, their age and their days in
  hospital, and the ward's occupancy; `/wards/beds/{id}/status` a bed cleaned, closed or reopened;
- `/wards/admit` admission into a free bed (department → ward → bed; the reason an ICD-10 code found as one
  types), from the bed board or a patient's chart;
- `/wards/stays/{id}` a stay: the patient banner, where the patient has lain, the daily progress notes, the
  medication administration record of a day (a dose given or not given), a move to another bed, and once the
  patient has left, the signed discharge summary; `/wards/stays/{id}/discharge` the discharge with its summary;
  `/wards/stays/{id}/discharge-summary.pdf` the summary to print.

Everything is read and written by sante.clinical.inpatient over the signed-in user's GuardedRepository; a refusal
of the service is shown next to the field it is about (its Anomaly's `location`), in the user's language.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from babel.numbers import format_percent
from fastapi import APIRouter, Request
from starlette.datastructures import ImmutableMultiDict
from starlette.responses import RedirectResponse, Response

from sante.anomaly import Anomaly, Category
from sante.auth.guarded import GuardedRepository
from sante.clinical import icd10, inpatient
from sante.clinical.service_support import (
    LOINC,
    PHYSICAL_TYPE,
    by_ids,
    codes,
    concept_text,
    parse_time,
    person_name,
    ref_id,
)
from sante.store import Repository
from sante.web.banner import load_banner
from sante.web.chart import MED_STATUS, Banner
from sante.web.form_data import blank, form_fields
from sante.web.i18n import N_, Formats
from sante.web.patients import find_patients
from sante.web.render import PAGE_HEADERS, Area, Pages, may, register_area

WARD_ROLES = frozenset({"nurse", "physician", "admin"})
register_area(Area("wards", "/wards", N_("Wards"),
                   N_("The bed board, admissions, medication rounds and discharges"), WARD_ROLES, order=20))

BED_STATUS = {inpatient.FREE: N_("Free"), inpatient.OCCUPIED: N_("Occupied"),
              inpatient.CLEANING: N_("Being cleaned"), inpatient.CLOSED: N_("Closed")}
# The bed status changes offered from each state (v2-0116 code, button label): occupancy comes from the stays.
BED_ACTIONS = {inpatient.FREE: (("H", N_("Needs cleaning")), ("C", N_("Close"))),
               inpatient.CLEANING: (("U", N_("Mark cleaned")), ("C", N_("Close"))),
               inpatient.CLOSED: (("U", N_("Reopen")),)}
ADMIT_SOURCES = {"": N_("Not stated"), "outp": N_("From the outpatient clinics"),
                 "emd": N_("From the emergency department"), "hosp-trans": N_("Transferred from another hospital"),
                 "gp": N_("Referred by a general practitioner"), "mp": N_("Referred by a physician"),
                 "born": N_("Born in hospital"), "other": N_("Other")}
DISPOSITIONS = {"home": N_("Home (discharged)"), "alt-home": N_("Another home"),
                "other-hcf": N_("Transferred to another healthcare facility"), "hosp": N_("Palliative care"),
                "long": N_("Long-term care"), "aadvice": N_("Left against medical advice"), "exp": N_("Died"),
                "psy": N_("Psychiatric hospital"), "rehab": N_("Rehabilitation"),
                "snf": N_("Skilled nursing facility"), "oth": N_("Other")}
SECTION_LABELS = {"reason": N_("Reason for admission"), "course": N_("Hospital course"),
                  "diagnoses": N_("Diagnoses at discharge (ICD-10)"), "procedures": N_("Procedures and operations"),
                  "medications": N_("Medications at discharge"), "follow_up": N_("Follow-up")}
DONE = {  # ?done= after a change: what the page confirms
    "admitted": N_("The patient is admitted."), "moved": N_("The patient has moved to the new bed."),
    "note": N_("The progress note is saved."), "dose": N_("The dose is recorded."),
    "discharged": N_("The patient is discharged: the summary is signed and the bed is free."),
    "bed": N_("The bed's status is changed."),
}
# What a refusal of the service says on the page.
BED_TAKEN = N_("Someone was admitted to this bed a moment ago. Choose another bed.")
BED_CLOSED = N_("This bed is closed. Choose another bed.")
BED_CLEANING = N_("This bed is being cleaned. Choose another bed.")
BED_GONE = N_("This bed is no longer in use. Choose another bed.")
CHOOSE_BED = N_("Choose a free bed.")
SAME_BED = N_("The patient is already in this bed.")
ALREADY_ADMITTED = N_("This patient is already admitted.")
NOT_ICD10 = N_("This is not an ICD-10 code: choose one from the list.")
REQUIRED = N_("This section is required.")
NOT_PRACTITIONER = N_("Only an account linked to a practitioner can write and sign clinical documents.")
NO_SIGNING_KEY = N_("Your signing certificate was not found: ask the administrator to issue one.")
STAY_OVER = N_("This stay is over.")
NOTE_EMPTY = N_("Write the note first.")
ORDER_NOT_ACTIVE = N_("This order is no longer active (stopped, completed or on hold): nothing may be given against "
                      "it.")
DOSE_NUMBER = N_("Type the dose as a number greater than zero.")
DOSE_FUTURE = N_("A dose cannot be recorded in the future.")
DOSE_REASON = N_("Say why the dose was not given.")
TIME_FORMAT = N_("Type the time as hh:mm.")
CHOOSE_DISPOSITION = N_("Choose where the patient goes.")
BEFORE_ADMISSION = N_("The discharge cannot be before the admission.")
BED_IN_USE = N_("Someone lies in this bed: it cannot be closed.")
CHECK_INPUT = N_("Check what you typed and try again.")

PROGRESS_NOTE_TYPE = f"{LOINC}|{inpatient.PROGRESS_NOTE['code']}"
DISCHARGE_SUMMARY_TYPE = f"{LOINC}|{inpatient.DISCHARGE_SUMMARY['code']}"
ICD10_RESULTS = 12
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


# -- the bed board ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BedTile:
    id: str
    name: str
    status: str  # free | occupied | cleaning | closed
    status_label: str  # in the user's language, as every text of these view models
    encounter_id: str | None
    patient: str | None  # None: a bed that is not occupied, or whose occupant the user may not see
    facts: str  # age · days in hospital
    actions: tuple[tuple[str, str], ...]  # (v2-0116 code, label) the user may set


@dataclass(frozen=True, slots=True)
class RoomView:
    name: str
    beds: list[BedTile]


@dataclass(frozen=True, slots=True)
class WardView:
    id: str
    name: str
    department: str
    rooms: list[RoomView]
    total: int
    occupied: int
    free: int
    cleaning: int
    closed: int
    rate: str  # occupied over in service, as a percentage


@dataclass(frozen=True, slots=True)
class Choice:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Department:
    id: str
    name: str
    wards: list[Choice]


@dataclass(frozen=True, slots=True)
class Board:
    title: str  # the hospital, a department or a ward
    wards: list[WardView]
    departments: list[Department]
    totals: WardView


def _rate(occupied: int, in_service: int, fmt: Formats) -> str:
    return format_percent(occupied / in_service if in_service else 0, locale=fmt.lang)


def days_in_hospital(admitted: str | None, fmt: Formats, until: date | None = None) -> int | None:
    """Calendar days since the admission, at least one (the rule of Encounter.length at discharge)."""
    start = parse_time(admitted)
    if start is None:
        return None
    return max(1, ((until or fmt.today()) - start.astimezone(fmt.zone).date()).days)


def _occupant_facts(occupant: inpatient.Occupant, fmt: Formats) -> str:
    facts = [fmt.age(occupant.birth_date)] if occupant.birth_date else []
    days = days_in_hospital(occupant.admitted or occupant.since, fmt)
    if days is not None:
        facts.append(fmt.t.ngettext("%(num)d day in hospital", "%(num)d days in hospital", days) % {"num": days})
    return " · ".join(f for f in facts if f)


def _ward_view(w: inpatient.WardBoard, fmt: Formats, may_set: bool) -> WardView:
    rooms = []
    for r in w.rooms:
        tiles = []
        for b in r.beds:
            occupant = b.occupant
            tiles.append(BedTile(
                b.id, b.name, b.status, fmt.t.gettext(BED_STATUS[b.status]),
                occupant.encounter_id if occupant and occupant.patient_id else None,
                occupant.patient_name if occupant else None,
                _occupant_facts(occupant, fmt) if occupant and occupant.patient_id else "",
                tuple((code, fmt.t.gettext(label)) for code, label in BED_ACTIONS.get(b.status, ()))
                if may_set else ()))
        rooms.append(RoomView(r.name, tiles))
    return WardView(w.id, w.name, w.department_name, rooms, w.total, w.occupied, w.free, w.cleaning, w.closed,
                    _rate(w.occupied, w.total - w.closed, fmt))


def departments_of(boards: list[inpatient.WardBoard]) -> list[Department]:
    """The departments and their wards, in the board's order."""
    out: dict[str, Department] = {}
    for w in boards:
        dept = out.setdefault(w.department_id or "", Department(w.department_id or "", w.department_name, []))
        dept.wards.append(Choice(w.id, w.name))
    return list(out.values())


def load_board(guarded: GuardedRepository, unit: str, fmt: Formats) -> Board:
    """The board of the whole hospital, or of one department or ward (404 when `unit` is neither)."""
    boards = inpatient.bed_board(guarded)
    shown = [w for w in boards if not unit or unit in (w.id, w.department_id)]
    if unit and not shown:
        raise Anomaly(Category.NOT_FOUND, f"no ward or department {unit!r}")
    may_set = may(guarded.principal, "u", "Location")
    wards = [_ward_view(w, fmt, may_set) for w in shown]
    title = ""
    if unit:
        title = shown[0].name if shown[0].id == unit else shown[0].department_name
    total = sum(w.total for w in wards)
    closed = sum(w.closed for w in wards)
    occupied = sum(w.occupied for w in wards)
    totals = WardView("", title, "", [], total, occupied, sum(w.free for w in wards),
                      sum(w.cleaning for w in wards), closed, _rate(occupied, total - closed, fmt))
    return Board(title, wards, departments_of(boards), totals)


# -- the ICD-10 picker --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Code:
    code: str
    title: str


@dataclass(frozen=True, slots=True)
class Picker:
    """A field that takes ICD-10 codes found as one types: `reason` (one code) or `diagnoses` (several)."""

    name: str  # the form field
    label: str  # a message id
    multiple: bool
    chosen: list[Code]
    q: str = ""
    results: list[Code] = field(default_factory=list)
    error: str | None = None  # a message id
    focus: bool = False


PICKERS = {"reason": (N_("Reason for admission (ICD-10)"), False), "diagnoses": (SECTION_LABELS["diagnoses"], True)}


def _code(code: str, lang: str) -> Code:
    entry = icd10.lookup(code)
    return Code(code, entry.title(lang) if entry else "")


def picker(name: str, chosen: list[str], q: str, lang: str, *, search: bool = False, error: str | None = None,
           focus: bool = False) -> Picker:
    label, multiple = PICKERS[name]
    normal = [c for c in (icd10.normalise_code(x) for x in chosen) if c]
    codes_ = list(dict.fromkeys(normal if multiple else normal[-1:]))
    results = []
    if search and q.strip():
        results = [Code(e.code, e.title(lang)) for e in icd10.search(q, ICD10_RESULTS, lang)
                   if e.code not in codes_]
    return Picker(name, label, multiple, [_code(c, lang) for c in codes_], q, results, error, focus)


def typed_codes(chosen: list[str], typed: str, multiple: bool) -> list[str]:
    """The codes of a picker's field as submitted: those chosen from the list, else what was typed in its box
    (codes separated by commas; the words after a code are its title)."""
    if chosen and not multiple:
        return chosen[-1:]
    extra = [part.strip() for part in re.split(r"[,;\n]", typed) if part.strip()]
    return [*chosen, *extra]


# -- admission ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Places:
    """Department → ward → free bed, as chosen so far."""

    departments: list[Department]
    department: str
    wards: list[Choice]
    ward: str
    beds: list[Choice]  # the ward's free beds ("Phòng 201 · Giường 3")
    bed: str


def choose_places(boards: list[inpatient.WardBoard], department: str, ward: str, bed: str) -> Places:
    """The choices offered: a bed names its ward and department; a department its first ward with a free bed."""
    departments = departments_of(boards)
    by_ward = {w.id: w for w in boards}
    bed_ward = next((w for w in boards if any(b.id == bed for b in w.beds)), None)
    if bed_ward is not None and not ward:
        ward = bed_ward.id
    if ward in by_ward and not department:
        department = by_ward[ward].department_id or ""
    dept = next((d for d in departments if d.id == department), None)
    if dept is None:
        dept = next((d for d in departments if any(by_ward[c.id].free for c in d.wards)),
                    departments[0] if departments else None)
    if dept is None:
        return Places([], "", [], "", [], "")
    if ward not in {c.id for c in dept.wards}:
        ward = next((c.id for c in dept.wards if by_ward[c.id].free), dept.wards[0].id)
    chosen = by_ward[ward]
    beds = [Choice(b.id, f"{r.name} · {b.name}" if r.name else b.name)
            for r in chosen.rooms for b in r.beds if b.status == inpatient.FREE]
    return Places(departments, dept.id, dept.wards, ward, beds, bed if any(b.id == bed for b in beds) else "")


@dataclass(frozen=True, slots=True)
class Admission:
    banner: Banner | None
    patient: str
    stay: str | None  # the patient's stay in progress: no second admission
    places: Places
    reason: Picker
    source: str
    sources: list[Choice]


def load_admission(guarded: GuardedRepository, values: ImmutableMultiDict, fmt: Formats, *,
                   reason_error: str | None = None) -> Admission:
    patient = values.get("patient", "")[:64]
    banner = stay = None
    if patient:
        with guarded.reader() as g:
            banner = load_banner(g, patient, fmt)
        current = inpatient.current_stay(guarded, patient)
        stay = current["id"] if current else None
    places = choose_places(inpatient.bed_board(guarded), values.get("department", ""), values.get("ward", ""),
                           values.get("bed", ""))
    reason = picker("reason", values.getlist("reason"), values.get("reason_q", ""), fmt.lang, error=reason_error)
    sources = [Choice(code, fmt.t.gettext(label)) for code, label in ADMIT_SOURCES.items()]
    return Admission(banner, patient, stay, places, reason, values.get("admit_source", ""), sources)


# -- the stay -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PlaceRow:
    where: str
    start: str
    end: str
    current: bool


@dataclass(frozen=True, slots=True)
class Note:
    when: str
    author: str
    paragraphs: list[str]


@dataclass(frozen=True, slots=True)
class SummarySection:
    title: str
    lines: list[str]


@dataclass(frozen=True, slots=True)
class Summary:
    when: str
    author: str
    signed: bool
    sections: list[SummarySection]


@dataclass(frozen=True, slots=True)
class Dose:
    time: str  # the scheduled time (hh:mm), "" for a dose outside the schedule
    state: str  # given | not-given | due | later
    label: str
    detail: str  # when it was given, how much, by whom; or why not
    give_at: str | None  # the time a "give" form proposes; None: no form (done, or a day to come)


@dataclass(frozen=True, slots=True)
class MarLine:
    id: str
    medication: str
    instruction: str
    dose: str
    dose_value: str
    route: str
    status: str  # the order's status, in words
    active: bool
    as_needed: bool
    doses: list[Dose]
    extra: list[Dose]  # given outside the schedule
    give_at: str | None  # the free "record a dose" form (as-needed and unscheduled orders)


@dataclass(frozen=True, slots=True)
class Stay:
    id: str
    patient: str
    banner: Banner
    active: bool
    admitted: str
    days: int | None
    ended: str
    length: str
    where: str  # the current place (ward · room · bed)
    department: str
    reason: str
    source: str
    disposition: str
    places: list[PlaceRow]
    notes: list[Note] | None  # None: the user may not read notes
    summary: Summary | None
    day: date
    today: date
    mar: list[MarLine] | None
    free_beds: list[tuple[str, list[Choice]]]  # (ward, its free beds) for a move
    may_note: bool
    may_give: bool
    may_move: bool
    may_discharge: bool


def _period(entry: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    period = entry.get("period") or {}
    return parse_time(period.get("start")), parse_time(period.get("end"))


def _kind(entry: dict[str, Any]) -> str | None:
    found = codes(entry.get("physicalType"), PHYSICAL_TYPE)
    return found[0] if found else None


def place_history(enc: dict[str, Any], fmt: Formats) -> list[PlaceRow]:
    """Each bed the patient has lain in, with its ward and room, in order; a stay without beds: its places."""
    entries = [e for e in enc.get("location") or [] if isinstance(e, dict) and e.get("status") != "planned"]
    beds = [e for e in entries if _kind(e) == "bd"]
    rows = []
    for bed in beds or entries:
        start, end = _period(bed)
        names = []
        if beds and start is not None:
            for kind in ("wa", "ro"):
                for e in entries:
                    s, t = _period(e)
                    if _kind(e) == kind and s is not None and s <= start and (t is None or t > start):
                        names.append(str((e.get("location") or {}).get("display") or ""))
                        break
        names.append(str((bed.get("location") or {}).get("display") or ""))
        rows.append(PlaceRow(" · ".join(n for n in names if n) or "—", fmt.datetime(start) if start else "",
                             fmt.datetime(end) if end else "", bed.get("status") == "active"))
    return rows


def narrative_lines(narrative: Any) -> list[str]:
    """The paragraphs and list items of a FHIR narrative, as plain text."""
    div = str((narrative or {}).get("div") or "")
    parts = re.findall(r"<(?:p|li)>(.*?)</(?:p|li)>", div, flags=re.S) or [div]
    return [t for t in (html.unescape(re.sub(r"<[^>]+>", " ", p)).strip() for p in parts) if t]


def _authors(composition: dict[str, Any]) -> str:
    return ", ".join(str(a.get("display") or a.get("reference") or "") for a in composition.get("author") or [])


def _summary(composition: dict[str, Any], fmt: Formats) -> Summary:
    signed = any(a.get("mode") == "legal" for a in composition.get("attester") or [])
    sections = [SummarySection(str(s.get("title") or ""), narrative_lines(s.get("text")))
                for s in composition.get("section") or []]
    return Summary(fmt.datetime(composition.get("date")), _authors(composition), signed, sections)


def _hhmm(moment: datetime, fmt: Formats) -> str:
    return moment.astimezone(fmt.zone).strftime("%H:%M")


def _dose_value(text: str) -> str:
    m = re.match(r"^(\d+(?:[.,]\d+)?)", text)
    return m.group(1) if m else ""


def _given(a: inpatient.Administration, names: dict[str, str], fmt: Formats, *, with_time: bool = True
           ) -> tuple[str, str, str]:
    """(state, label, detail) of a dose recorded; the detail says when (unless shown apart), how much, by whom."""
    who = names.get(a.performer or "", "")
    when = _hhmm(a.when, fmt) if with_time else ""
    if a.status == "not-done":
        return "not-given", fmt.t.gettext(N_("Not administered")), " · ".join(
            x for x in (when, a.note or "", who) if x)
    label = fmt.t.gettext(N_("Administered")) if a.status == "completed" else a.status
    return "given", label, " · ".join(x for x in (when, a.dose, a.note or "", who) if x)


def mar_lines(rows: list[inpatient.MarRow], day: date, now: datetime, names: dict[str, str], fmt: Formats,
              may_give: bool) -> list[MarLine]:
    """The record of a day as the page shows it; a dose may be recorded on a day gone or today, at the time it
    was scheduled (a day gone) or now (today)."""
    today = now.astimezone(fmt.zone).date()
    writable = may_give and day <= today
    lines = []
    for r in rows:
        active = r.status == "active"
        doses = []
        scheduled = set()
        for d in r.scheduled:
            if d.administration is not None:
                scheduled.add(d.administration.id)
                state, label, detail = _given(d.administration, names, fmt)
                doses.append(Dose(_hhmm(d.time, fmt), state, label, detail, None))
                continue
            due = d.time <= now
            # A dose due is usually charted at the time it was scheduled; one given ahead of time, now.
            give_at = _hhmm(d.time if due else now, fmt) if writable and active else None
            doses.append(Dose(_hhmm(d.time, fmt), "due" if due else "later",
                              fmt.t.gettext(N_("To give") if due else N_("Scheduled")), "", give_at))
        extra = [Dose(_hhmm(a.when, fmt), *_given(a, names, fmt, with_time=False), None)
                 for a in r.administrations if a.id not in scheduled]
        free_form = writable and active and (r.as_needed or not r.scheduled)
        lines.append(MarLine(r.request_id, r.medication, r.instruction, r.dose, _dose_value(r.dose), r.route,
                             fmt.t.gettext(MED_STATUS.get(r.status, MED_STATUS["unknown"])), active, r.as_needed,
                             doses, extra,
                             (_hhmm(now, fmt) if day == today else "08:00") if free_form else None))
    return lines


def free_beds(boards: list[inpatient.WardBoard]) -> list[tuple[str, list[Choice]]]:
    out = []
    for w in boards:
        beds = [Choice(b.id, f"{r.name} · {b.name}" if r.name else b.name)
                for r in w.rooms for b in r.beds if b.status == inpatient.FREE]
        if beds:
            out.append((f"{w.department_name} – {w.name}" if w.department_name else w.name, beds))
    return out


def _names(guarded: GuardedRepository, refs: set[str]) -> dict[str, str]:
    """Practitioners' names by reference (those the user may see)."""
    ids = {r.split("/", 1)[1] for r in refs if r.startswith("Practitioner/")}
    if not ids:
        return {}
    with guarded.reader() as g:
        found = by_ids(g, "Practitioner", ids)
    return {f"Practitioner/{pid}": person_name(p) for pid, p in found.items()}


def reasons_of(enc: dict[str, Any], lang: str) -> list[str]:
    """The stay's reasons for admission: "J18.9 – Viêm phổi, không đặc hiệu" (a code of Sante's ICD-10 with its
    title in `lang`, else as the reason says)."""
    out = []
    for concept in enc.get("reasonCode") or []:
        code = next(iter(codes(concept)), "")
        entry = icd10.lookup(code) if code else None
        title = (entry.title(lang) if entry else "") or concept_text(concept)
        out.append(f"{code} – {title}" if code and title and title != code else title or code)
    return out


def may_discharge(principal: Any) -> bool:
    return all(may(principal, op, t) for op, t in (("c", "Composition"), ("c", "Condition"), ("u", "Encounter")))


def load_stay(guarded: GuardedRepository, enc_id: str, day: date | None, fmt: Formats,
              now: datetime | None = None) -> Stay:
    """Everything the stay page shows (404 for an encounter that is not an inpatient stay)."""
    now = now or datetime.now(fmt.zone)
    today = now.astimezone(fmt.zone).date()
    principal = guarded.principal
    with guarded.reader() as g:
        enc = g.read("Encounter", enc_id).resource or {}
        if (enc.get("class") or {}).get("code") != "IMP":
            raise Anomaly(Category.NOT_FOUND, f"Encounter/{enc_id} is not an inpatient stay")
        pid = ref_id(enc.get("subject"), "Patient") or ""
        banner = load_banner(g, pid, fmt)
        notes = summary = None
        if may(principal, "s", "Composition"):
            found = g.search("Composition", [("encounter", f"Encounter/{enc['id']}"), ("type", PROGRESS_NOTE_TYPE),
                                             ("_sort", "-date"), ("_count", "100")])
            notes = [Note(fmt.datetime(c.get("date")), _authors(c),
                          [line for s in c.get("section") or [] for line in narrative_lines(s.get("text"))])
                     for c in (m.resource or {} for m in found.matches)]
            summaries = [m.resource or {} for m in g.search("Composition", [
                ("encounter", f"Encounter/{enc['id']}"), ("type", DISCHARGE_SUMMARY_TYPE), ("_sort", "-date"),
                ("_count", "1")]).matches]
            summary = _summary(summaries[0], fmt) if summaries else None
    active = enc.get("status") in inpatient.ACTIVE_STAY
    period = enc.get("period") or {}
    shown_day = day or (today if active else (parse_time(period.get("end")) or now).astimezone(fmt.zone).date())
    rows = None
    if may(principal, "s", "MedicationRequest"):
        records = inpatient.mar(guarded, enc["id"], shown_day)
        names = _names(guarded, {a.performer for r in records for a in r.administrations if a.performer})
        may_give = active and may(principal, "c", "MedicationAdministration")
        rows = mar_lines(records, shown_day, now, names, fmt, may_give)
    may_move = active and may(principal, "u", "Encounter")
    places = place_history(enc, fmt)
    current = [p.where for p in places if p.current]
    source = next(iter(codes((enc.get("hospitalization") or {}).get("admitSource"))), "")
    disposition = next(iter(codes((enc.get("hospitalization") or {}).get("dischargeDisposition"))), "")
    length = (enc.get("length") or {}).get("value")
    ended = parse_time(period.get("end"))
    return Stay(
        id=enc["id"], patient=pid, banner=banner, active=active, admitted=fmt.datetime(period.get("start")),
        days=days_in_hospital(period.get("start"), fmt, ended.astimezone(fmt.zone).date() if ended else None),
        ended=fmt.datetime(period.get("end")) if ended else "",
        length=fmt.t.ngettext("%(num)s day", "%(num)s days", int(length)) % {"num": int(length)}
        if isinstance(length, int | float) else "",
        where=current[-1] if current else "", department=str((enc.get("serviceProvider") or {}).get("display") or ""),
        reason="; ".join(reasons_of(enc, fmt.lang)),
        source=fmt.t.gettext(ADMIT_SOURCES[source]) if source in ADMIT_SOURCES and source else "",
        disposition=fmt.t.gettext(DISPOSITIONS[disposition]) if disposition in DISPOSITIONS else disposition,
        places=places, notes=notes, summary=summary, day=shown_day, today=today, mar=rows,
        free_beds=free_beds(inpatient.bed_board(guarded)) if may_move else [],
        may_note=active and may(principal, "c", "Composition"),
        may_give=active and may(principal, "c", "MedicationAdministration"), may_move=may_move,
        may_discharge=active and may_discharge(principal))


# -- discharge ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DischargeForm:
    stay: str
    banner: Banner
    admitted: str
    where: str
    texts: dict[str, str]  # the narrative sections as typed
    diagnoses: Picker
    disposition: str
    dispositions: list[Choice]
    labels: dict[str, str]


TEXT_SECTIONS = ("reason", "course", "procedures", "medications", "follow_up")


def load_discharge(guarded: GuardedRepository, enc_id: str, values: ImmutableMultiDict | None, fmt: Formats, *,
                   diagnoses_error: str | None = None) -> DischargeForm:
    """The discharge form, first filled from the stay (its reason for admission, as text and as a diagnosis)."""
    with guarded.reader() as g:
        enc = g.read("Encounter", enc_id).resource or {}
        if (enc.get("class") or {}).get("code") != "IMP":
            raise Anomaly(Category.NOT_FOUND, f"Encounter/{enc_id} is not an inpatient stay")
        banner = load_banner(g, ref_id(enc.get("subject"), "Patient") or "", fmt)
    if values is None:
        reasons = enc.get("reasonCode") or []
        texts = {k: "" for k in TEXT_SECTIONS}
        texts["reason"] = "\n".join(reasons_of(enc, "vi"))  # the summary is written in Vietnamese
        chosen, typed, disposition = [c for r in reasons for c in codes(r)], "", "home"
    else:
        texts = {k: values.get(k, "") for k in TEXT_SECTIONS}
        chosen, typed = values.getlist("diagnoses"), values.get("diagnoses_q", "")
        disposition = values.get("disposition", "")
    places = place_history(enc, fmt)
    current = [p.where for p in places if p.current]
    return DischargeForm(enc["id"], banner, fmt.datetime((enc.get("period") or {}).get("start")),
                         current[-1] if current else "", texts,
                         picker("diagnoses", chosen, typed, fmt.lang, error=diagnoses_error), disposition,
                         [Choice(c, fmt.t.gettext(label)) for c, label in DISPOSITIONS.items()], SECTION_LABELS)


# -- refusals -----------------------------------------------------------------------------------------------------
def _bed_conflict(e: Anomaly) -> str:
    text = e.message
    if "occupied" in text:
        return BED_TAKEN
    if "cleaned" in text:
        return BED_CLEANING
    if "closed" in text:
        return BED_CLOSED
    return BED_GONE


def problem(e: Anomaly) -> tuple[str, str] | None:
    """(form field, message id) of a refusal the user can act on in the form; None: the refusal is a page of its
    own (not allowed, not found, a fault)."""
    where, kind = e.location or "", e.category
    if kind == Category.FAULT:
        return None
    if where == "bed":
        if kind == Category.CONFLICT:
            return "bed", _bed_conflict(e)
        if kind == Category.UNPROCESSABLE and "already in" in e.message:
            return "bed", SAME_BED
        return "bed", CHOOSE_BED
    if where == "patient" and kind == Category.CONFLICT:
        return "patient", ALREADY_ADMITTED
    if where == "reason_icd10":
        return "reason", NOT_ICD10
    if where.startswith("summary_sections."):
        section = where.split(".", 1)[1]
        return section, NOT_ICD10 if kind == Category.INCORRECT and section == "diagnoses" else \
            REQUIRED if kind == Category.UNPROCESSABLE else CHECK_INPUT
    if where in ("signer", "author"):
        return "form", NO_SIGNING_KEY if kind == Category.NOT_FOUND else NOT_PRACTITIONER
    messages: dict[str, Callable[[], str]] = {
        "disposition": lambda: CHOOSE_DISPOSITION, "now": lambda: BEFORE_ADMISSION, "text": lambda: NOTE_EMPTY,
        "dose": lambda: DOSE_NUMBER, "when": lambda: DOSE_FUTURE, "note": lambda: DOSE_REASON,
        "medication_request": lambda: ORDER_NOT_ACTIVE if kind == Category.UNPROCESSABLE else CHECK_INPUT,
        "encounter": lambda: STAY_OVER, "time": lambda: TIME_FORMAT,
    }
    if where in messages and kind not in (Category.FORBIDDEN, Category.NOT_FOUND):
        return where, messages[where]()
    if where == "medication_request" and kind == Category.NOT_FOUND:
        return None
    if kind in (Category.INCORRECT, Category.UNPROCESSABLE):
        return "form", CHECK_INPUT
    return None


# -- the pages ----------------------------------------------------------------------------------------------------


def _admit_link(bed: str) -> str:
    """Where a patient found for an admission leads: the admission form (to this bed), the patient's id last."""
    return "/wards/admit?" + urlencode({"bed": bed, "patient": ""}) if bed else "/wards/admit?patient="


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def wards_router(repo: Repository, pages: Pages, run: Any, ca_dir: Path | None = None) -> APIRouter:
    """run(fn, *args) runs repository work off the event loop (sante.web.site._in_thread); the discharge
    summary is signed with the practitioner's key from the hospital CA in ca_dir (else the configured one)."""
    router = APIRouter(include_in_schema=False)

    def guarded(request: Request) -> GuardedRepository | None:
        """The user's guarded repository; None for a role these pages are not for."""
        principal = request.state.principal
        if principal is None or principal.role not in WARD_ROLES:
            return None
        return GuardedRepository(repo, principal, getattr(request.state, "audit", None))

    def done(request: Request) -> str | None:
        return DONE.get(request.query_params.get("done", ""))

    def redirect(path: str, **params: str) -> Response:
        query = urlencode({k: v for k, v in params.items() if v})
        return RedirectResponse(path + (f"?{query}" if query else ""), status_code=303, headers=PAGE_HEADERS)

    # -- the board --
    async def board_page(request: Request, g: GuardedRepository, unit: str, *, error: str | None = None,
                         status: int = 200) -> Response:
        board = await run(load_board, g, unit, pages.formats_for(request))
        return pages.render(request, "wards/board.html", status=status, active="wards", board=board, unit=unit,
                            notice=done(request), error=error, may_admit=may(g.principal, "c", "Encounter"))

    @router.get("/wards")
    async def bed_board(request: Request) -> Response:
        g = guarded(request)
        if g is None:
            return pages.error(request, 403)
        try:
            return await board_page(request, g, request.query_params.get("unit", "")[:64])
        except Anomaly as e:
            return pages.error(request, e.category.status)

    @router.post("/wards/beds/{bed_id}/status")
    async def bed_status(request: Request, bed_id: str) -> Response:
        g = guarded(request)
        if g is None:
            return pages.error(request, 403)
        form = await form_fields(request)
        unit = form.get("unit", "")[:64]
        try:
            await run(inpatient.set_bed_status, g, bed_id, form.get("status", ""))
        except Anomaly as e:
            if e.category == Category.CONFLICT:
                return await board_page(request, g, unit, error=BED_IN_USE, status=409)
            return pages.error(request, e.category.status)
        return RedirectResponse(f"/wards?{urlencode({'unit': unit, 'done': 'bed'})}#bed-{bed_id}", status_code=303,
                                headers=PAGE_HEADERS)

    # -- admission --
    async def admission_page(request: Request, g: GuardedRepository, values: ImmutableMultiDict, *,
                             errors: dict[str, str] | None = None, status: int = 200) -> Response:
        fmt = pages.formats_for(request)
        view = await run(lambda: load_admission(g, values, fmt, reason_error=(errors or {}).get("reason")))
        q = values.get("q", "")[:200]
        results = await run(find_patients, g, q, fmt) if q and not view.patient else None
        return pages.render(request, "wards/admit.html", status=status, active="wards", view=view,
                            errors=blank(errors), patient_q=q, results=results,
                            patient_href=_admit_link(view.places.bed))

    @router.get("/wards/admit")
    async def admission_form(request: Request) -> Response:
        g = guarded(request)
        if g is None:
            return pages.error(request, 403)
        try:
            return await admission_page(request, g, request.query_params)  # type: ignore[arg-type]
        except Anomaly as e:
            return pages.error(request, e.category.status)

    @router.get("/wards/admit/patients")
    async def admission_patients(request: Request) -> Response:
        g = guarded(request)
        if g is None:
            return pages.error(request, 403)
        q = request.query_params.get("q", "")[:200]
        bed = request.query_params.get("bed", "")[:64]
        event = getattr(request.state, "audit", None)
        if event is not None:
            event.subtype = "search-type"
        outcome = await run(find_patients, g, q, pages.formats_for(request))
        return pages.render(request, "patients/_results.html", q=q, results=outcome, patient_href=_admit_link(bed))

    @router.post("/wards/admit")
    async def admit(request: Request) -> Response:
        g = guarded(request)
        if g is None:
            return pages.error(request, 403)
        form = await form_fields(request)
        reason = typed_codes(form.getlist("reason"), form.get("reason_q", ""), multiple=False)
        source = form.get("admit_source", "")
        try:
            enc = await run(lambda: inpatient.admit(
                g, form.get("patient", ""), form.get("bed", ""), reason_icd10=reason[0] if reason else None,
                admit_source=source or None))
        except Anomaly as e:
            found = problem(e)
            if found is None:
                return pages.error(request, e.category.status)
            return await admission_page(request, g, form, errors=dict([found]), status=e.category.status)
        return redirect(f"/wards/stays/{enc['id']}", done="admitted")

    @router.get("/wards/icd10")
    async def icd10_picker(request: Request) -> Response:
        """The ICD-10 picker of a form, after a key typed (`part=results`: the list only), a code chosen (`add`)
        or removed (`remove`)."""
        if guarded(request) is None:
            return pages.error(request, 403)
        params = request.query_params
        name = params.get("field", "")
        if name not in PICKERS:
            return pages.error(request, 400)
        chosen = [c for c in params.getlist(name) if c != params.get("remove")]
        added = params.get("add")
        if added:
            chosen.append(added)
        q = "" if added else params.get(f"{name}_q", "")[:100]
        lang = pages.language(request)
        view = picker(name, chosen, q, lang, search=not added, focus=bool(added or params.get("remove")))
        template = "wards/_icd10_results.html" if params.get("part") == "results" else "wards/_icd10.html"
        return pages.render(request, template, picker=view)

    # -- the stay --
    async def stay_page(request: Request, g: GuardedRepository, enc_id: str, *, errors: dict[str, str] | None = None,
                        values: dict[str, str] | None = None, status: int = 200, day: date | None = None
                        ) -> Response:
        fmt = pages.formats_for(request)
        stay = await run(load_stay, g, enc_id, day or _day(request.query_params.get("day")), fmt)
        return pages.render(request, "wards/stay.html", status=status, active="wards", stay=stay,
                            errors=blank(errors), values=blank(values), notice=done(request),
                            day_before=(stay.day - timedelta(days=1)).isoformat(),
                            day_after=(stay.day + timedelta(days=1)).isoformat())

    @router.get("/wards/stays/{enc_id}")
    async def stay(request: Request, enc_id: str) -> Response:
        g = guarded(request)
        if g is None:
            return pages.error(request, 403)
        try:
            return await stay_page(request, g, enc_id)
        except Anomaly as e:
            return pages.error(request, e.category.status)

    async def stay_change(request: Request, enc_id: str, change: Callable[[GuardedRepository, ImmutableMultiDict],
                          Any], form_name: str, done_key: str, anchor: str, *, keep: tuple[str, ...] = ()
                          ) -> Response:
        """A change made from the stay page: back to it with the change confirmed, or the page again with what was
        typed and the refusal next to its form (`form_name`, or `mar:<order>` for a dose)."""
        g = guarded(request)
        if g is None:
            return pages.error(request, 403)
        form = await form_fields(request)
        day = _day(form.get("day"))
        try:
            await run(change, g, form)
        except Anomaly as e:
            found = problem(e)
            if found is None:
                return pages.error(request, e.category.status)
            key = f"mar:{form.get('request', '')}" if form_name == "mar" else form_name
            try:
                return await stay_page(request, g, enc_id, errors={key: found[1]}, status=e.category.status,
                                       values={k: form.get(k, "") for k in keep}, day=day)
            except Anomaly as again:
                return pages.error(request, again.category.status)
        params = {"done": done_key, "day": day.isoformat() if day else ""}
        query = urlencode({k: v for k, v in params.items() if v})
        return RedirectResponse(f"/wards/stays/{enc_id}?{query}#{anchor}", status_code=303, headers=PAGE_HEADERS)

    @router.post("/wards/stays/{enc_id}/notes")
    async def write_note(request: Request, enc_id: str) -> Response:
        return await stay_change(request, enc_id, lambda g, form: inpatient.progress_note(g, enc_id, form.get(
            "text", "")), "note", "note", "notes", keep=("text",))

    @router.post("/wards/stays/{enc_id}/transfer")
    async def move(request: Request, enc_id: str) -> Response:
        def transfer(g: GuardedRepository, form: ImmutableMultiDict) -> Any:
            if not form.get("bed"):
                raise Anomaly(Category.INCORRECT, "no bed chosen", location="bed")
            return inpatient.transfer(g, enc_id, form["bed"])

        return await stay_change(request, enc_id, transfer, "bed", "moved", "move")

    @router.post("/wards/stays/{enc_id}/mar")
    async def give(request: Request, enc_id: str) -> Response:
        fmt = pages.formats_for(request)

        def record(g: GuardedRepository, form: ImmutableMultiDict) -> Any:
            day = _day(form.get("day")) or fmt.today()
            m = _TIME.match(form.get("time", "").strip())
            if m is None:
                raise Anomaly(Category.INCORRECT, "the time is hh:mm", location="time")
            when = datetime.combine(day, time(int(m[1]), int(m[2])), fmt.zone)
            status = "not-done" if form.get("status") == "not-done" else "completed"
            return inpatient.administer(g, form.get("request", ""), dose=form.get("dose", "").replace(",", "."),
                                        when=when, status=status, note=form.get("note") or None)

        return await stay_change(request, enc_id, record, "mar", "dose", "mar")

    # -- discharge --
    async def discharge_page(request: Request, g: GuardedRepository, enc_id: str, values: ImmutableMultiDict | None,
                             *, errors: dict[str, str] | None = None, status: int = 200) -> Response:
        fmt = pages.formats_for(request)
        view = await run(lambda: load_discharge(g, enc_id, values, fmt,
                                                diagnoses_error=(errors or {}).get("diagnoses")))
        return pages.render(request, "wards/discharge.html", status=status, active="wards", view=view,
                            errors=blank(errors))

    @router.get("/wards/stays/{enc_id}/discharge")
    async def discharge_form(request: Request, enc_id: str) -> Response:
        g = guarded(request)
        if g is None or not may_discharge(g.principal):
            return pages.error(request, 403)
        try:
            return await discharge_page(request, g, enc_id, None)
        except Anomaly as e:
            return pages.error(request, e.category.status)

    @router.post("/wards/stays/{enc_id}/discharge")
    async def discharge(request: Request, enc_id: str) -> Response:
        g = guarded(request)
        if g is None:
            return pages.error(request, 403)
        form = await form_fields(request)
        sections: dict[str, Any] = {k: form.get(k, "") for k in TEXT_SECTIONS}
        sections["diagnoses"] = typed_codes(form.getlist("diagnoses"), form.get("diagnoses_q", ""), multiple=True)
        try:
            await run(lambda: inpatient.discharge(g, enc_id, disposition=form.get("disposition", ""),
                                                  summary_sections=sections, ca_dir=ca_dir))
        except Anomaly as e:
            found = problem(e)
            if found is None:
                return pages.error(request, e.category.status)
            try:
                return await discharge_page(request, g, enc_id, form, errors=dict([found]),
                                            status=e.category.status)
            except Anomaly as again:
                return pages.error(request, again.category.status)
        return redirect(f"/wards/stays/{enc_id}", done="discharged")

    @router.get("/wards/stays/{enc_id}/discharge-summary.pdf")
    async def discharge_summary(request: Request, enc_id: str) -> Response:
        g = guarded(request)
        if g is None:
            return pages.error(request, 403)
        try:
            pdf = await run(lambda: inpatient.discharge_summary_pdf(g, enc_id, ca_dir=ca_dir))
        except Anomaly as e:
            return pages.error(request, e.category.status)
        # No Content-Security-Policy here: the browser's PDF viewer is a plugin that `default-src 'none'` blocks.
        headers = {k: v for k, v in PAGE_HEADERS.items() if k != "Content-Security-Policy"}
        name = re.sub(r"[^A-Za-z0-9.-]", "", enc_id)
        headers["Content-Disposition"] = f'inline; filename="tom-tat-ra-vien-{name}.pdf"'
        return Response(pdf, media_type="application/pdf", headers=headers)

    return router


__all__ = ["WARD_ROLES", "load_board", "load_stay", "wards_router"]
