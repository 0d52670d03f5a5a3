"""Inpatient care (điều trị nội trú): the bed board, admission, transfer between beds, daily progress notes, the
medication administration record, discharge with a signed discharge summary, and the daily census.

Pure functions over a GuardedRepository (sante.auth.guarded): every read and write passes the principal's
authorization rules, each write is one transaction (nothing is ever half-saved), and each refusal is a
sante.anomaly.Anomaly whose `location` names the parameter (the form field) it is about: `bed`, `patient`,
`encounter`, `dose`...

The facility and the stays are those of sante.demo.hospital and sante.demo.care:
- a bed is a Location, physicalType `bd`, partOf its room (`ro`), partOf its ward (`wa`), partOf its department
  (`wi`, under the site `si`); its managingOrganization is the department's Organization; its
  operationalStatus (HL7 v2 table 0116) says C closed, H housekeeping (being cleaned), I isolated, K contaminated;
- a stay is an Encounter, class IMP (v3-ActCode), type SNOMED 32485007 Hospital admission, with a location entry
  for the ward, the room and the bed (each with its physicalType), `active` while the patient is there and
  `completed` with period.end once they have left; serviceProvider is the department's Organization,
  hospitalization.admitSource (admit-source), partOf the outpatient or emergency Encounter it came from, and at
  discharge hospitalization.dischargeDisposition, period.end and length (days, the demo's rule: calendar days
  between admission and discharge, at least one).

Occupancy is read from the stays, never from the bed's operationalStatus: a bed is occupied while an
Encounter that is in-progress (or on leave) has an active location entry for it. Admitting, transferring and
discharging therefore write the Encounter only (nurses and physicians may not write Locations), and there is
one source of truth. operationalStatus counts only for a free bed (closed, or being cleaned); `set_bed_status`
changes it, for the roles that may write Locations. Occupancy is facility data: it is computed over every stay,
whichever patients the principal may see, so that nobody can admit into a bed that is taken by a patient outside
their view; who lies in a bed is shown only where the principal may see that stay.

Two nurses admitting at once: each write first reads, in its own transaction, the rows its check depends on
(the patient, the bed, the stay). On PostgreSQL a write transaction reads FOR UPDATE, so the second admission
to a bed waits for the first to commit and then finds the bed taken; on SQLite writers are serialised (BEGIN
IMMEDIATE).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sante.anomaly import Anomaly, Category
from sante.auth import ca
from sante.auth.guarded import GuardedRepository, GuardedTransaction
from sante.auth.policy import require
from sante.clinical import icd10, signing
from sante.clinical.dosage_timing import as_needed, order_window, scheduled_times
from sante.clinical.service_support import (
    ACT_CODE,
    BED_STATUS,
    LOINC,
    PAGE,
    PHYSICAL_TYPE,
    SNOMED,
    UCUM,
    aware,
    bare_id,
    by_ids,
    chunks,
    codes,
    coding,
    concept_text,
    day_bounds,
    decimal,
    fhir_time,
    json_number,
    local_day,
    parse_day,
    parse_time,
    peek_at,
    person_name,
    physical_type,
    practitioner_of,
    read_at,
    ref,
    ref_id,
    refused,
    search_all,
)
from sante.store.search import decode_cursor, parse_search, run_search

INPATIENT = coding(ACT_CODE, "IMP", "inpatient encounter")
STAY_TYPE = {"coding": [coding(SNOMED, "32485007", "Hospital admission")], "text": "Điều trị nội trú"}
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ADMIT_SOURCE = "http://terminology.hl7.org/CodeSystem/admit-source"
ADMIT_SOURCES = {
    "outp": "From outpatient department", "emd": "From accident/emergency department",
    "hosp-trans": "Transferred from other hospital", "gp": "General Practitioner referral",
    "mp": "Medical Practitioner/physician referral", "born": "Born in hospital", "nursing": "From nursing home",
    "psych": "From psychiatric hospital", "rehab": "From rehabilitation facility", "other": "Other",
}
DISCHARGE_DISPOSITION = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
DISPOSITIONS = {  # code: (display, Vietnamese)
    "home": ("Home", "Ra viện về nhà"),
    "alt-home": ("Alternative home", "Ra viện về nơi ở khác"),
    "other-hcf": ("Other healthcare facility", "Chuyển cơ sở khám chữa bệnh khác"),
    "hosp": ("Hospice", "Chuyển chăm sóc giảm nhẹ"),
    "long": ("Long-term care", "Chuyển chăm sóc dài hạn"),
    "aadvice": ("Left against advice", "Xin về / tự bỏ về"),
    "exp": ("Expired", "Tử vong"),
    "psy": ("Psychiatric hospital", "Chuyển bệnh viện tâm thần"),
    "rehab": ("Rehabilitation", "Chuyển phục hồi chức năng"),
    "snf": ("Skilled nursing facility", "Chuyển cơ sở điều dưỡng"),
    "oth": ("Other", "Khác"),
}
DIAGNOSIS_ROLE = "http://terminology.hl7.org/CodeSystem/diagnosis-role"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
PROGRESS_NOTE = coding(LOINC, "11506-3", "Progress note")
DISCHARGE_SUMMARY = coding(LOINC, "18842-5", "Discharge summary")
DISCHARGE_SUMMARY_TITLE = "Tóm tắt bệnh án ra viện"


@dataclass(frozen=True, slots=True)
class SummarySection:
    key: str  # the key in discharge()'s summary_sections
    loinc: str
    display: str
    title: str  # as printed, in Vietnamese
    required: bool = False


SUMMARY_SECTIONS = (
    SummarySection("reason", "29299-5", "Reason for visit Narrative", "Lý do vào viện", True),
    SummarySection("course", "8648-8", "Hospital course Narrative", "Quá trình điều trị", True),
    SummarySection("diagnoses", "11535-2", "Hospital discharge Dx Narrative", "Chẩn đoán ra viện (ICD-10)", True),
    SummarySection("procedures", "47519-4", "History of Procedures Document", "Thủ thuật, phẫu thuật"),
    SummarySection("medications", "10183-2", "Hospital discharge medications Narrative", "Thuốc khi ra viện"),
    SummarySection("follow_up", "18776-5", "Plan of care note", "Hướng điều trị tiếp và hẹn tái khám"),
)
ACTIVE_STAY = ("in-progress", "onleave")
FREE, OCCUPIED, CLEANING, CLOSED = "free", "occupied", "cleaning", "closed"
_CLOSED_CODES = {"C", "I", "K"}  # closed, isolated, contaminated: no admission
_BED_STATUS_DISPLAY = {"O": "Occupied", "U": "Unoccupied", "H": "Housekeeping", "C": "Closed", "I": "Isolated",
                       "K": "Contaminated"}
_PHYSICAL_DISPLAY = {"wa": "Ward", "ro": "Room", "bd": "Bed"}
HOME_ORDER_CATEGORIES = {"discharge", "outpatient", "community"}  # orders taken at home, not on the ward
MAR_MATCH_WINDOW = timedelta(hours=2)  # an administration this close to a scheduled time is that dose
FUTURE_TOLERANCE = timedelta(minutes=5)


# -- the bed board ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Occupant:
    encounter_id: str
    since: str  # when the patient came to this bed (FHIR dateTime)
    patient_id: str | None = None  # None: a stay the principal may not see
    patient_name: str | None = None
    birth_date: str | None = None  # the patient's (FHIR date), where the principal may see the stay
    admitted: str | None = None  # when the stay began (FHIR dateTime), where the principal may see it


@dataclass(frozen=True, slots=True)
class BedState:
    id: str
    name: str
    status: str  # free | occupied | cleaning | closed
    occupant: Occupant | None = None
    operational_status: str | None = None  # the v2-0116 code on the Location


@dataclass(frozen=True, slots=True)
class RoomBoard:
    id: str | None  # None: beds straight under the ward
    name: str
    beds: list[BedState]


@dataclass(frozen=True, slots=True)
class WardBoard:
    id: str
    name: str
    department_id: str | None
    department_name: str
    organization: str | None  # the department's Organization (Organization/id)
    rooms: list[RoomBoard]

    @property
    def beds(self) -> list[BedState]:
        return [b for r in self.rooms for b in r.beds]

    def _count(self, status: str) -> int:
        return sum(1 for b in self.beds if b.status == status)

    @property
    def total(self) -> int:
        return len(self.beds)

    @property
    def occupied(self) -> int:
        return self._count(OCCUPIED)

    @property
    def free(self) -> int:
        return self._count(FREE)

    @property
    def cleaning(self) -> int:
        return self._count(CLEANING)

    @property
    def closed(self) -> int:
        return self._count(CLOSED)

    @property
    def occupancy_rate(self) -> float:
        """Occupied beds over the beds in service (all but the closed ones), 0 when none is."""
        in_service = self.total - self.closed
        return self.occupied / in_service if in_service else 0.0


@dataclass(frozen=True, slots=True)
class _Stay:
    encounter_id: str
    since: str


def _natural(text: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]


def _location_tree(g: GuardedTransaction, root: str | None) -> dict[str, dict[str, Any]]:
    """Every Location (root None), or root and everything under it, by id: one search per level."""
    if root is None:
        found, _ = search_all(g, "Location", [])
        return {r["id"]: r for r in found}
    top = read_at(g, "Location", root, "ward")
    tree = {top["id"]: top}
    frontier = [top["id"]]
    for _level in range(8):
        children: list[dict[str, Any]] = []
        for chunk in chunks(frontier):
            found, _ = search_all(g, "Location", [("partof", ",".join(f"Location/{i}" for i in chunk))])
            children += [c for c in found if c["id"] not in tree]
        if not children:
            break
        tree.update({c["id"]: c for c in children})
        frontier = [c["id"] for c in children]
    return tree


def _bed_code(bed: dict[str, Any]) -> str | None:
    """The bed's operationalStatus (a Coding of v2-0116)."""
    status = bed.get("operationalStatus")
    if isinstance(status, dict) and status.get("system") in (BED_STATUS, None):
        return status.get("code")
    return None


def _idle_status(bed: dict[str, Any]) -> str:
    """A bed's status when nobody lies in it."""
    if bed.get("status") == "suspended":
        return CLOSED
    code = _bed_code(bed)
    return CLOSED if code in _CLOSED_CODES else CLEANING if code == "H" else FREE


def _occupancy(g: GuardedTransaction, bed_ids: list[str]) -> dict[str, _Stay]:
    """Who lies in each of these beds now: the stay with an active entry for it, over every stay (see the module's
    docstring: occupancy does not depend on which patients the principal may see). Found by status alone: the stays
    under way are about as many as the beds, where a search by bed would go through every stay those beds ever had
    (bench/web.py: 200 ms at 20,000 patients)."""
    wanted = set(bed_ids)
    out: dict[str, _Stay] = {}
    req = parse_search("Encounter", [("status", ",".join(ACTIVE_STAY)), ("_count", str(PAGE))])
    while wanted:
        result = run_search(g.tx, req)
        for m in result.matches:
            enc = m.resource or {}
            for entry in enc.get("location", []):
                bed = ref_id(entry.get("location"), "Location")
                if entry.get("status") == "active" and bed in wanted:
                    since = (entry.get("period") or {}).get("start") or (enc.get("period") or {}).get("start", "")
                    out[bed] = _Stay(enc["id"], since)
        if not result.next_cursor:
            break
        req.cursor = decode_cursor(result.next_cursor)
    return out


def _may(g: GuardedTransaction, op: str, rtype: str) -> bool:
    try:
        require(g.principal, op, rtype)
    except Anomaly:
        return False
    return True


def _visible_occupants(g: GuardedTransaction, stays: dict[str, _Stay]) -> dict[str, Occupant]:
    """The occupant of each bed, named where the principal may see the stay."""
    seen: dict[str, tuple[str, str, str | None, str | None]] = {}  # encounter -> (patient, name, born, admitted)
    if stays and _may(g, "s", "Encounter"):
        for chunk in chunks(s.encounter_id for s in stays.values()):
            encounters, included = search_all(g, "Encounter", [("_id", ",".join(chunk)),
                                                               ("_include", "Encounter:subject")])
            patients = {p["id"]: p for p in included if p.get("resourceType") == "Patient"}
            for enc in encounters:
                pid = ref_id(enc.get("subject"), "Patient")
                if pid:
                    patient = patients.get(pid)
                    seen[enc["id"]] = (pid, person_name(patient) or (enc.get("subject") or {}).get("display", ""),
                                       (patient or {}).get("birthDate"), (enc.get("period") or {}).get("start"))
    out = {}
    for bed, stay in stays.items():
        pid, name, born, admitted = seen.get(stay.encounter_id, (None, None, None, None))
        out[bed] = Occupant(stay.encounter_id, stay.since, pid, name, born, admitted)
    return out


def bed_board(guarded_repo: GuardedRepository, ward_or_department_id: str | None = None) -> list[WardBoard]:
    """Per ward, its rooms and beds with their status (free, occupied by whom since when, cleaning, closed), for
    the whole hospital or under one ward or department: a few queries whatever the number of beds."""
    with guarded_repo.reader() as g:
        root = bare_id(ward_or_department_id, "Location") if ward_or_department_id else None
        tree = _location_tree(g, root)
        beds = [loc for loc in tree.values() if physical_type(loc) == "bd" and loc.get("status") != "inactive"]
        parents = {ref_id(loc.get("partOf"), "Location") for loc in tree.values()}
        missing = {p for p in parents if p and p not in tree}
        for _ in range(3):  # the ward and department above a root that is a room or a ward
            if not missing:
                break
            found = by_ids(g, "Location", missing)
            tree.update(found)
            missing = {p for p in (ref_id(loc.get("partOf"), "Location") for loc in found.values())
                       if p and p not in tree}
        occupants = _visible_occupants(g, _occupancy(g, [b["id"] for b in beds]))

    wards: dict[str, dict[str | None, list[BedState]]] = {}
    for bed in beds:
        parent = tree.get(ref_id(bed.get("partOf"), "Location") or "")
        room = parent if parent is not None and physical_type(parent) == "ro" else None
        ward = tree.get(ref_id(room.get("partOf"), "Location") or "") if room is not None else parent
        ward_id = ward["id"] if ward is not None else ""
        occupant = occupants.get(bed["id"])
        state = BedState(bed["id"], bed.get("name", bed["id"]), OCCUPIED if occupant else _idle_status(bed),
                         occupant, _bed_code(bed))
        wards.setdefault(ward_id, {}).setdefault(room["id"] if room is not None else None, []).append(state)
    boards = []
    for ward_id, rooms in wards.items():
        ward = tree.get(ward_id, {})
        department = tree.get(ref_id(ward.get("partOf"), "Location") or "", {})
        org = ward.get("managingOrganization") or department.get("managingOrganization") or {}
        room_boards = [RoomBoard(rid, tree.get(rid, {}).get("name", "") if rid else "",
                                 sorted(states, key=lambda b: _natural(b.name)))
                       for rid, states in rooms.items()]
        room_boards.sort(key=lambda r: _natural(r.name))
        boards.append(WardBoard(ward_id, ward.get("name", ward_id), department.get("id"), department.get("name", ""),
                                org.get("reference"), room_boards))
    boards.sort(key=lambda w: (_natural(w.department_name), _natural(w.name)))
    return boards


def set_bed_status(guarded_repo: GuardedRepository, bed_id: str, status: str) -> dict[str, Any]:
    """Mark a bed unoccupied (U), being cleaned (H), closed (C), isolated (I) or contaminated (K): its
    Location.operationalStatus. A bed someone lies in cannot be closed (409). Needs the right to write Locations."""
    if status not in _BED_STATUS_DISPLAY or status == "O":
        raise refused(Category.INCORRECT, "a bed's status is U, H, C, I or K (occupancy comes from the stays)",
                      "status")
    with guarded_repo.transaction() as g:
        require(g.principal, "u", "Location")
        bed = read_at(g, "Location", bed_id, "bed")
        if physical_type(bed) != "bd":
            raise refused(Category.UNPROCESSABLE, f"Location/{bed['id']} is not a bed", "bed")
        if status != "U" and _occupancy(g, [bed["id"]]):
            raise refused(Category.CONFLICT, f"{bed.get('name', bed['id'])} is occupied", "bed")
        bed["operationalStatus"] = coding(BED_STATUS, status, _BED_STATUS_DISPLAY[status])
        return g.update(bed).resource or {}


# -- admission, transfer ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Place:
    """A bed and the rooms above it."""

    bed: dict[str, Any]
    room: dict[str, Any] | None
    ward: dict[str, Any] | None
    organization: dict[str, Any] | None  # the department's Organization reference

    @property
    def chain(self) -> list[tuple[str, dict[str, Any]]]:
        return [(kind, loc) for kind, loc in (("wa", self.ward), ("ro", self.room), ("bd", self.bed))
                if loc is not None]


def _place_of(g: GuardedTransaction, bed: dict[str, Any]) -> _Place:
    if physical_type(bed) != "bd":
        raise refused(Category.UNPROCESSABLE, f"Location/{bed['id']} ({bed.get('name', '')}) is not a bed", "bed")
    above: list[dict[str, Any]] = []
    parent = ref_id(bed.get("partOf"), "Location")
    while parent and len(above) < 3:  # room, ward, department: searched, so nothing above the bed is locked
        found = by_ids(g, "Location", [parent]).get(parent)
        if found is None:
            break
        above.append(found)
        parent = ref_id(found.get("partOf"), "Location")
    room = next((loc for loc in above if physical_type(loc) == "ro"), None)
    ward = next((loc for loc in above if physical_type(loc) == "wa"), None)
    org = next((loc["managingOrganization"] for loc in [bed, *above] if loc.get("managingOrganization")), None)
    return _Place(bed, room, ward, org)


def _require_bed_free(g: GuardedTransaction, place: _Place) -> None:
    bed = place.bed
    name = bed.get("name", bed["id"])
    if bed.get("status") == "inactive":
        raise refused(Category.CONFLICT, f"{name} is no longer in use", "bed")
    if _occupancy(g, [bed["id"]]):
        raise refused(Category.CONFLICT, f"{name} is occupied", "bed")
    idle = _idle_status(bed)
    if idle == CLOSED:
        raise refused(Category.CONFLICT, f"{name} is closed", "bed")
    if idle == CLEANING:
        raise refused(Category.CONFLICT, f"{name} is being cleaned", "bed")


def _entry(kind: str, loc: dict[str, Any], start: str) -> dict[str, Any]:
    return {"location": ref("Location", loc["id"], loc.get("name")), "status": "active", "period": {"start": start},
            "physicalType": {"coding": [coding(PHYSICAL_TYPE, kind, _PHYSICAL_DISPLAY[kind])]}}


def _reason(reason_icd10: str | None) -> dict[str, Any] | None:
    if reason_icd10 is None:
        return None
    try:
        return icd10.condition_code(reason_icd10)
    except ValueError:
        raise refused(Category.INCORRECT, f"{reason_icd10!r} is not an ICD-10 code", "reason_icd10") from None


def _require_stay(enc: dict[str, Any], field_name: str = "encounter") -> None:
    klass = (enc.get("class") or {}).get("code")
    if klass != "IMP":
        raise refused(Category.UNPROCESSABLE, f"Encounter/{enc['id']} is not an inpatient stay (class {klass})",
                      field_name)
    if enc.get("status") not in ACTIVE_STAY:
        raise refused(Category.UNPROCESSABLE, f"Encounter/{enc['id']} is {enc.get('status')}, not in progress",
                      field_name)


def current_stay(guarded_repo: GuardedRepository, patient_id: str) -> dict[str, Any] | None:
    """The patient's stay in progress (an Encounter class IMP), None when they are not admitted."""
    with guarded_repo.reader() as g:
        return _current_stay(g, bare_id(patient_id, "Patient"))


def _current_stay(g: GuardedTransaction, patient_id: str) -> dict[str, Any] | None:
    found, _ = search_all(g, "Encounter", [("subject", f"Patient/{patient_id}"), ("class", "IMP"),
                                           ("status", ",".join(ACTIVE_STAY))])
    return found[0] if found else None


def admit(guarded_repo: GuardedRepository, patient_id: str, bed_id: str, *, reason_icd10: str | None = None,
          from_encounter: str | None = None, admit_source: str | None = None,
          now: datetime | None = None) -> dict[str, Any]:
    """Admit a patient into a bed: a new Encounter (class IMP, in-progress) in the bed, its room and ward.

    Refused: a bed that is occupied, closed or being cleaned (409, `bed`), a patient already admitted (409,
    `patient`). `from_encounter` is the outpatient or emergency visit the admission came from (partOf); the
    admit source follows it (outp, emd) unless `admit_source` (admit-source code) says otherwise."""
    when = aware(now)
    reason = _reason(reason_icd10)
    if admit_source is not None and admit_source not in ADMIT_SOURCES:
        raise refused(Category.INCORRECT, f"{admit_source!r} is not an admit-source code "
                      f"({', '.join(ADMIT_SOURCES)})", "admit_source")
    with guarded_repo.transaction() as g:
        require(g.principal, "c", "Encounter")
        patient = read_at(g, "Patient", patient_id, "patient")  # read first: one admission of a patient at a time
        bed = read_at(g, "Location", bed_id, "bed")  # and of a bed
        place = _place_of(g, bed)
        _require_bed_free(g, place)
        if (stay := _current_stay(g, patient["id"])) is not None:
            raise refused(Category.CONFLICT, f"{person_name(patient) or 'the patient'} is already admitted "
                          f"(Encounter/{stay['id']})", "patient")
        source_visit = None
        if from_encounter:
            source_visit = peek_at(g, "Encounter", from_encounter, "from_encounter")
            if ref_id(source_visit.get("subject"), "Patient") != patient["id"]:
                raise refused(Category.UNPROCESSABLE, f"Encounter/{source_visit['id']} is another patient's visit",
                              "from_encounter")
        if admit_source is None:
            klass = ((source_visit or {}).get("class") or {}).get("code")
            admit_source = "emd" if klass == "EMER" else "outp" if source_visit is not None else "other"
        start = fhir_time(when)
        enc: dict[str, Any] = {
            "resourceType": "Encounter", "status": "in-progress", "class": INPATIENT, "type": [STAY_TYPE],
            "subject": ref("Patient", patient["id"], person_name(patient)),
        }
        if (admitter := practitioner_of(g)) is not None:
            enc["participant"] = [{"type": [{"coding": [coding(PARTICIPATION, "ADM", "admitter")]}],
                                   "individual": {"reference": admitter}}]
        enc["period"] = {"start": start}
        if reason is not None:
            enc["reasonCode"] = [reason]
        enc["hospitalization"] = {"admitSource": {"coding": [coding(ADMIT_SOURCE, admit_source,
                                                                    ADMIT_SOURCES[admit_source])]}}
        enc["location"] = [_entry(kind, loc, start) for kind, loc in place.chain]
        if place.organization is not None:
            enc["serviceProvider"] = place.organization
        if source_visit is not None:
            enc["partOf"] = ref("Encounter", source_visit["id"])
        return g.create(enc).resource or {}


def _current_bed(enc: dict[str, Any]) -> str | None:
    for entry in enc.get("location", []):
        kind = codes(entry.get("physicalType"), PHYSICAL_TYPE)
        if entry.get("status") == "active" and "bd" in kind:
            return ref_id(entry.get("location"), "Location")
    return None


def _version(resource: dict[str, Any]) -> int | None:
    v = (resource.get("meta") or {}).get("versionId")
    return int(v) if isinstance(v, str) and v.isdigit() else None


def transfer(guarded_repo: GuardedRepository, encounter_id: str, new_bed_id: str, *, now: datetime | None = None
             ) -> dict[str, Any]:
    """Move a patient to another bed: the entries of the places they leave are completed (period.end), the new
    bed (and its room and ward, when they change) become active entries. The same bed rules as admission."""
    when = fhir_time(aware(now))
    with guarded_repo.transaction() as g:
        require(g.principal, "u", "Encounter")
        enc = read_at(g, "Encounter", encounter_id, "encounter")
        _require_stay(enc)
        bed = read_at(g, "Location", new_bed_id, "bed")
        if _current_bed(enc) == bed["id"]:
            raise refused(Category.UNPROCESSABLE, f"the patient is already in {bed.get('name', bed['id'])}", "bed")
        place = _place_of(g, bed)
        _require_bed_free(g, place)
        staying = {loc["id"] for _, loc in place.chain}
        active = set()
        for entry in enc.get("location", []):
            lid = ref_id(entry.get("location"), "Location")
            if entry.get("status") != "active":
                continue
            if lid in staying:
                active.add(lid)
            else:
                entry["status"] = "completed"
                entry["period"] = {**(entry.get("period") or {}), "end": when}
        enc["location"] = [*enc.get("location", []),
                           *(_entry(kind, loc, when) for kind, loc in place.chain if loc["id"] not in active)]
        if place.organization is not None:
            enc["serviceProvider"] = place.organization
        return g.update(enc, if_match=_version(enc)).resource or {}


# -- notes --------------------------------------------------------------------------------------------------------
def _xhtml(*blocks: str) -> dict[str, str]:
    return {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">' + "".join(blocks) + "</div>"}


def _paragraphs(text: str) -> str:
    return "".join(f"<p>{html.escape(p.strip())}</p>" for p in text.splitlines() if p.strip())


def _items(lines: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in lines) + "</ul>"


def _author(g: GuardedTransaction, author: str | None, field_name: str) -> dict[str, str]:
    """The practitioner writing or signing: the signed-in practitioner themselves; a system client names one."""
    me = practitioner_of(g)
    named = f"Practitioner/{bare_id(author, 'Practitioner')}" if author else None
    if me is not None and named is not None and named != me:
        raise refused(Category.FORBIDDEN, f"{me} may write and sign only as themselves, not as {named}", field_name)
    if me is None and g.principal.role != "system":  # as $sign: a system client names the practitioner
        raise refused(Category.FORBIDDEN, "only a practitioner (an account linked to a Practitioner) can write "
                      "and sign clinical documents", field_name)
    who = named or me
    if who is None:
        raise refused(Category.INCORRECT, "name the practitioner (Practitioner/id)", field_name)
    practitioner = peek_at(g, "Practitioner", who, field_name)
    return ref("Practitioner", practitioner["id"], person_name(practitioner))


def progress_note(guarded_repo: GuardedRepository, encounter_id: str, text: str, author: str | None = None, *,
                  now: datetime | None = None) -> dict[str, Any]:
    """A daily progress note (diễn biến bệnh, LOINC 11506-3): a Composition about the stay, by `author` (the
    signed-in practitioner when left out)."""
    if not isinstance(text, str) or not text.strip():
        raise refused(Category.INCORRECT, "the note is empty", "text")
    when = aware(now)
    with guarded_repo.transaction() as g:
        require(g.principal, "c", "Composition")
        writer = _author(g, author, "author")
        enc = read_at(g, "Encounter", encounter_id, "encounter")
        if enc.get("status") not in (*ACTIVE_STAY, "finished"):
            raise refused(Category.UNPROCESSABLE, f"Encounter/{enc['id']} is {enc.get('status')}", "encounter")
        day = local_day(when)
        note = {
            "resourceType": "Composition", "status": "final",
            "type": {"coding": [PROGRESS_NOTE], "text": "Diễn biến bệnh"},
            "subject": enc.get("subject"), "encounter": ref("Encounter", enc["id"]), "date": fhir_time(when),
            "author": [writer], "title": f"Diễn biến bệnh ngày {day:%d/%m/%Y}",
            "section": [{"title": "Diễn biến bệnh", "text": _xhtml(_paragraphs(text))}],
        }
        return g.create(note).resource or {}


# -- the medication administration record -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Administration:
    id: str
    when: datetime
    status: str  # completed, not-done, ...
    dose: str  # "1 viên"
    performer: str | None  # Practitioner/id
    note: str | None


@dataclass(frozen=True, slots=True)
class MarDose:
    time: datetime  # the scheduled time
    administration: Administration | None  # the administration recorded for it, if any


@dataclass(frozen=True, slots=True)
class MarRow:
    request_id: str
    medication: str
    medication_id: str | None
    status: str  # the order's status
    dose: str  # per administration, "1 lọ"
    route: str
    instruction: str  # the dosage text as prescribed
    as_needed: bool
    scheduled: list[MarDose]  # the day's scheduled doses (none for an as-needed order)
    administrations: list[Administration]  # every administration of the day, scheduled or not


def _quantity_text(q: Any) -> str:
    if not isinstance(q, dict) or q.get("value") is None:
        return ""
    value = q["value"]
    number = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{number} {q.get('unit') or q.get('code') or ''}".strip()


def _order_dose(request: dict[str, Any]) -> dict[str, Any] | None:
    for d in request.get("dosageInstruction") or []:
        for dr in d.get("doseAndRate") or []:
            if isinstance(dr.get("doseQuantity"), dict):
                return dr["doseQuantity"]
    return None


def _medication_name(resource: dict[str, Any]) -> str:
    return (resource.get("medicationReference") or {}).get("display") or concept_text(
        resource.get("medicationCodeableConcept")) or (resource.get("medicationReference") or {}).get("reference", "")


def _administration(a: dict[str, Any]) -> Administration | None:
    when = parse_time(a.get("effectiveDateTime") or (a.get("effectivePeriod") or {}).get("start"))
    if when is None:
        return None
    performer = next((ref_id(p.get("actor"), "Practitioner") for p in a.get("performer", [])), None)
    why_not = [concept_text(r) for r in a.get("statusReason", [])]  # a dose not given: why
    notes = "; ".join(t for t in [*why_not, *(n.get("text", "") for n in a.get("note", []))] if t)
    return Administration(a["id"], when, a.get("status", ""), _quantity_text((a.get("dosage") or {}).get("dose")),
                          f"Practitioner/{performer}" if performer else None, notes or None)


def _match(times: list[datetime], given: list[Administration]) -> list[MarDose]:
    """Pair each scheduled time with the closest administration within MAR_MATCH_WINDOW, each used once."""
    pairs = sorted(((abs((a.when - t).total_seconds()), i, j) for i, t in enumerate(times)
                    for j, a in enumerate(given) if abs(a.when - t) <= MAR_MATCH_WINDOW), key=lambda p: p[0])
    matched: dict[int, Administration] = {}
    used: set[int] = set()
    for _, i, j in pairs:
        if i not in matched and j not in used:
            matched[i] = given[j]
            used.add(j)
    return [MarDose(t, matched.get(i)) for i, t in enumerate(times)]


def mar(guarded_repo: GuardedRepository, encounter_id: str, day: date | str) -> list[MarRow]:
    """The medication administration record of a stay for one day: each ward order (active or on hold, or given
    that day) with its scheduled times and the administrations recorded. Orders to take home are left out."""
    the_day = parse_day(day, "day")
    start, end = day_bounds(the_day)
    with guarded_repo.reader() as g:
        enc = read_at(g, "Encounter", encounter_id, "encounter")
        context = f"Encounter/{enc['id']}"
        orders, _ = search_all(g, "MedicationRequest", [("encounter", context)])
        given, _ = search_all(g, "MedicationAdministration", [
            ("context", context), ("effective-time", f"ge{fhir_time(start)}"),
            ("effective-time", f"lt{fhir_time(end)}")])
    by_order: dict[str, list[Administration]] = {}
    for a in given:
        rid = ref_id(a.get("request"), "MedicationRequest")
        adm = _administration(a)
        if rid and adm is not None and start <= adm.when < end:
            by_order.setdefault(rid, []).append(adm)
    rows = []
    for order in sorted(orders, key=lambda o: (o.get("authoredOn", ""), o["id"])):
        if set(codes(order.get("category"))) & HOME_ORDER_CATEGORIES:
            continue
        administrations = sorted(by_order.get(order["id"], []), key=lambda a: a.when)
        live = order.get("status") in ("active", "on-hold")
        if not live and not administrations:
            continue
        times = scheduled_times(order, the_day) if order.get("status") == "active" else []
        dosage: dict[str, Any] = next(iter(order.get("dosageInstruction") or []), {})
        rows.append(MarRow(order["id"], _medication_name(order), ref_id(order.get("medicationReference"), "Medication"),
                           order.get("status", ""), _quantity_text(_order_dose(order)),
                           concept_text(dosage.get("route")), dosage.get("text", ""), as_needed(order),
                           _match(times, administrations), administrations))
    return rows


ADMINISTRATION_STATUSES = ("completed", "not-done", "in-progress", "on-hold", "stopped")


def _dose_quantity(dose: Any, order: dict[str, Any]) -> dict[str, Any]:
    ordered = _order_dose(order) or {}
    value = dose.get("value") if isinstance(dose, dict) else dose
    number = decimal(value, "dose", positive=True, zero_ok=False)
    quantity: dict[str, Any] = {"value": json_number(number)}
    source = dose if isinstance(dose, dict) and (dose.get("unit") or dose.get("code")) else ordered
    quantity.update({k: source[k] for k in ("unit", "system", "code") if source.get(k)})
    return quantity


def administer(guarded_repo: GuardedRepository, medication_request_id: str, *, dose: Any, when: datetime | None,
               status: str = "completed", note: str | None = None) -> dict[str, Any]:
    """Record a dose given (or not given: status `not-done`, with the reason in `note`) against an active order:
    a MedicationAdministration whose performer is the signed-in nurse, context the stay, request the order.

    `dose` is a number in the order's dose unit, or a Quantity. Refused: an order that is not active (stopped,
    completed, on hold: 422, `medication_request`), a time in the future (422, `when`)."""
    if status not in ADMINISTRATION_STATUSES:
        raise refused(Category.INCORRECT, f"status must be one of {', '.join(ADMINISTRATION_STATUSES)}", "status")
    if status == "not-done" and not (note or "").strip():
        raise refused(Category.INCORRECT, "say why the dose was not given", "note")
    at = aware(when)
    if at > aware(None) + FUTURE_TOLERANCE:
        raise refused(Category.UNPROCESSABLE, "a dose cannot be recorded in the future", "when")
    with guarded_repo.transaction() as g:
        require(g.principal, "c", "MedicationAdministration")
        order = read_at(g, "MedicationRequest", medication_request_id, "medication_request")
        if order.get("status") != "active":
            raise refused(Category.UNPROCESSABLE, f"the order is {order.get('status')}: nothing may be given against "
                          "it", "medication_request")
        quantity = _dose_quantity(dose, order)
        admin: dict[str, Any] = {"resourceType": "MedicationAdministration", "status": status}
        if status == "not-done":
            admin["statusReason"] = [{"text": note.strip() if note else ""}]
        for key in ("medicationReference", "medicationCodeableConcept"):
            if key in order:
                admin[key] = order[key]
        admin["subject"] = order.get("subject")
        if (stay := ref_id(order.get("encounter"), "Encounter")) is not None:
            enc = peek_at(g, "Encounter", stay, "medication_request")
            if enc.get("status") not in ACTIVE_STAY:
                raise refused(Category.UNPROCESSABLE, f"the stay of this order is {enc.get('status')}",
                              "medication_request")
            admin["context"] = ref("Encounter", stay)
        admin["effectiveDateTime"] = fhir_time(at)
        if (nurse := practitioner_of(g)) is not None:
            admin["performer"] = [{"actor": {"reference": nurse}}]
        admin["request"] = ref("MedicationRequest", order["id"])
        dosage_given: dict[str, Any] = next(iter(order.get("dosageInstruction") or []), {})
        admin["dosage"] = {k: v for k, v in (("text", dosage_given.get("text")), ("route", dosage_given.get("route")),
                                              ("dose", quantity)) if v}
        if note and note.strip() and status != "not-done":
            admin["note"] = [{"text": note.strip()}]
        return g.create(admin).resource or {}


# -- discharge ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Discharge:
    encounter: dict[str, Any]
    composition: dict[str, Any]  # the discharge summary
    provenance: dict[str, Any]  # its signature
    conditions: list[dict[str, Any]] = field(default_factory=list)  # the discharge diagnoses


def _section_lines(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return [line.strip() for line in value.splitlines() if line.strip()]
    if isinstance(value, list | tuple) and all(isinstance(x, str) for x in value):
        return [x.strip() for x in value if x.strip()]
    raise refused(Category.INCORRECT, "a section is a text or a list of lines", where)


def _diagnoses(value: Any) -> list[str]:
    where = "summary_sections.diagnoses"
    items = [x for part in _section_lines(value, where) for x in re.split(r"[,;]", part) if x.strip()]
    out = []
    for item in items:
        code = icd10.normalise_code(item.strip().split()[0])
        if code is None:
            raise refused(Category.INCORRECT, f"{item.strip()!r} is not an ICD-10 code", where)
        out.append(code)
    return list(dict.fromkeys(out))


def _checked_sections(summary_sections: dict[str, Any]) -> dict[str, list[str]]:
    if not isinstance(summary_sections, dict):
        raise refused(Category.INCORRECT, "summary_sections maps section names to texts", "summary_sections")
    known = {s.key for s in SUMMARY_SECTIONS}
    for key in summary_sections:
        if key not in known:
            raise refused(Category.INCORRECT, f"unknown section {key!r} (known: {', '.join(sorted(known))})",
                          f"summary_sections.{key}")
    out = {}
    for s in SUMMARY_SECTIONS:
        where = f"summary_sections.{s.key}"
        value = summary_sections.get(s.key)
        lines = _diagnoses(value) if s.key == "diagnoses" and value is not None else \
            _section_lines(value, where) if value is not None else []
        if s.required and not lines:
            raise refused(Category.UNPROCESSABLE, f"the discharge summary needs the section {s.title!r}", where)
        if lines:
            out[s.key] = lines
    return out


def _diagnosis_line(code: str) -> str:
    entry = icd10.lookup(code)
    return f"{code} – {entry.vi}" if entry else code


def _signing_key(ca_dir: Path | None, who: str) -> tuple[Any, list[Any]]:
    if ca_dir is None:
        from sante.settings import Settings

        ca_dir = ca.default_ca_dir(Settings.from_env().data_dir)
    try:
        return ca.load_signer(ca_dir, who)
    except Anomaly as e:
        raise refused(e.category, e.message, "signer") from None


def _stay_days(start: datetime, end: datetime) -> int:
    """The length of a stay in days, as Encounter.length (the demo's rule): calendar days, at least one."""
    return max(1, (local_day(end) - local_day(start)).days)


def _end_of_orders(g: GuardedTransaction, enc_id: str, when: datetime) -> None:
    """The stay's ward orders end with it: completed when their course is over, stopped otherwise."""
    orders, _ = search_all(g, "MedicationRequest", [("encounter", f"Encounter/{enc_id}"),
                                                    ("status", "active,on-hold")])
    for order in orders:
        if set(codes(order.get("category"))) & HOME_ORDER_CATEGORIES:
            continue
        ends = [order_window(order, d)[1] for d in order.get("dosageInstruction") or []]
        over = bool(ends) and all(e is not None and e <= when for e in ends)
        order["status"] = "completed" if over else "stopped"
        if not over:
            order["statusReason"] = {"text": "Ra viện"}
        g.update(order, reason="Ra viện: y lệnh nội trú kết thúc (discharged)")


def discharge(guarded_repo: GuardedRepository, encounter_id: str, *, disposition: str,
              summary_sections: dict[str, Any], signer: str | None = None, ca_dir: Path | None = None,
              now: datetime | None = None) -> Discharge:
    """Discharge a patient, in one transaction: the discharge diagnoses (Conditions), the discharge summary
    (a Composition, LOINC 18842-5) signed by `signer` (the signed-in practitioner when left out, with their key
    from the hospital CA, as the $sign operation does), the stay finished (period.end, length,
    dischargeDisposition, its places completed: the bed is free again) and its remaining ward orders ended.

    summary_sections: reason, course, diagnoses (ICD-10 codes: a list or a text separated by commas), procedures,
    medications, follow_up; the first three are required. disposition: a discharge-disposition code (DISPOSITIONS).
    """
    if disposition not in DISPOSITIONS:
        raise refused(Category.INCORRECT, f"{disposition!r} is not a discharge disposition ({', '.join(DISPOSITIONS)})",
                      "disposition")
    sections = _checked_sections(summary_sections)
    when = aware(now)
    with guarded_repo.transaction() as g:
        for op, rtype in (("c", "Composition"), ("c", "Provenance"), ("c", "Condition"), ("u", "Encounter")):
            require(g.principal, op, rtype)
        who = _author(g, signer, "signer")
        key, chain = _signing_key(ca_dir, who["reference"])
        enc = read_at(g, "Encounter", encounter_id, "encounter")
        _require_stay(enc)
        started = parse_time((enc.get("period") or {}).get("start")) or when
        if when < started:
            raise refused(Category.UNPROCESSABLE, "the discharge is before the admission", "now")
        at = fhir_time(when)
        conditions = []
        for code in sections.get("diagnoses", []):
            conditions.append(g.create({
                "resourceType": "Condition",
                "verificationStatus": {"coding": [coding(CONDITION_VERIFICATION, "confirmed", "Confirmed")]},
                "category": [{"coding": [coding(CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")]}],
                "code": icd10.condition_code(code), "subject": enc.get("subject"),
                "encounter": ref("Encounter", enc["id"]), "recordedDate": at, "recorder": who,
            }).resource or {})
        summary_sections_fhir = []
        for s in SUMMARY_SECTIONS:
            lines = sections.get(s.key)
            if not lines:
                continue
            section: dict[str, Any] = {"title": s.title, "code": {"coding": [coding(LOINC, s.loinc, s.display)]}}
            if s.key == "diagnoses":
                section["text"] = _xhtml(_items([_diagnosis_line(c) for c in lines]))
                section["entry"] = [ref("Condition", c["id"]) for c in conditions]
            else:
                section["text"] = _xhtml(_paragraphs("\n".join(lines)) if len(lines) == 1 else _items(lines))
            summary_sections_fhir.append(section)
        summary: dict[str, Any] = {
            "resourceType": "Composition", "status": "final",
            "type": {"coding": [DISCHARGE_SUMMARY], "text": DISCHARGE_SUMMARY_TITLE},
            "subject": enc.get("subject"), "encounter": ref("Encounter", enc["id"]), "date": at, "author": [who],
            "title": DISCHARGE_SUMMARY_TITLE,
            "attester": [{"mode": "legal", "time": at, "party": who}],
        }
        if enc.get("serviceProvider"):
            summary["custodian"] = enc["serviceProvider"]
        summary["event"] = [{"period": {"start": fhir_time(started), "end": at}}]
        summary["section"] = summary_sections_fhir
        composition = g.create(summary).resource or {}
        provenance = signing.sign(g.tx, "Composition", composition["id"], who["reference"], key, chain)
        for entry in enc.get("location", []):
            if entry.get("status") == "active":
                entry["status"] = "completed"
                entry["period"] = {**(entry.get("period") or {}), "end": at}
        enc["status"] = "finished"
        enc["period"] = {**(enc.get("period") or {}), "end": at}
        enc["length"] = {"value": _stay_days(started, when), "unit": "ngày", "system": UCUM, "code": "d"}
        display, text = DISPOSITIONS[disposition]
        enc.setdefault("hospitalization", {})["dischargeDisposition"] = {
            "coding": [coding(DISCHARGE_DISPOSITION, disposition, display)], "text": text}
        rank = len(enc.get("diagnosis", []))
        enc["diagnosis"] = [*enc.get("diagnosis", []), *(
            {"condition": ref("Condition", c["id"]),
             "use": {"coding": [coding(DIAGNOSIS_ROLE, "DD", "Discharge diagnosis")]}, "rank": rank + i}
            for i, c in enumerate(conditions, 1))]
        if _may(g, "u", "MedicationRequest"):
            _end_of_orders(g, enc["id"], when)
        stored = g.update(enc, if_match=_version(enc)).resource or {}
    return Discharge(stored, composition, provenance, conditions)


def discharge_summary_pdf(guarded_repo: GuardedRepository, encounter_id: str, *, ca_dir: Path | None = None) -> bytes:
    """The stay's latest discharge summary as a printable A4 PDF in Vietnamese: the hospital, the patient, the
    dates and length of stay, the sections, the signer and whether the signature verifies."""
    from sante.clinical.discharge_pdf import DischargeDocument, SignatureLine, render

    if ca_dir is None:
        from sante.settings import Settings

        ca_dir = ca.default_ca_dir(Settings.from_env().data_dir)
    with guarded_repo.reader() as g:
        enc = read_at(g, "Encounter", encounter_id, "encounter")
        summaries, _ = search_all(g, "Composition", [("encounter", f"Encounter/{enc['id']}"),
                                                     ("type", f"{LOINC}|{DISCHARGE_SUMMARY['code']}")])
        if not summaries:
            raise refused(Category.NOT_FOUND, f"Encounter/{enc['id']} has no discharge summary", "encounter")
        summary = max(summaries, key=lambda c: (c.get("date", ""), c["meta"]["lastUpdated"]))
        pid = ref_id(enc.get("subject"), "Patient")
        patient = read_at(g, "Patient", pid, "encounter") if pid else {}
        org_id = ref_id(enc.get("serviceProvider"), "Organization")
        orgs = by_ids(g, "Organization", [org_id]) if org_id else {}
        department = orgs.get(org_id or "", {})
        parent_id = ref_id(department.get("partOf"), "Organization")
        hospital = by_ids(g, "Organization", [parent_id]).get(parent_id, {}) if parent_id else department
        provenances, _ = search_all(g, "Provenance", [("target", f"Composition/{summary['id']}")])
        anchor = ca.hospital_ca(ca_dir)
        signatures = []
        for prov in sorted((p for p in provenances if p.get("signature")), key=lambda p: p.get("recorded", "")):
            report = signing.verify(g.tx, prov, anchor=anchor)
            signatures.append(SignatureLine(report.signer_name or (prov["signature"][0].get("who") or {}).get(
                "display", ""), report.when or prov.get("recorded", ""), report.valid, report.changed))
    period = enc.get("period") or {}
    start, end = parse_time(period.get("start")), parse_time(period.get("end"))
    beds = [(e.get("location") or {}).get("display", "") for e in enc.get("location", [])
            if "bd" in codes(e.get("physicalType"), PHYSICAL_TYPE)]
    sections = [(s.get("title", ""), _section_text(s)) for s in summary.get("section", [])]
    return render(DischargeDocument(
        hospital=hospital.get("name", ""), department=department.get("name", "") if parent_id else "",
        patient=person_name(patient), birth_date=patient.get("birthDate", ""), gender=patient.get("gender", ""),
        identifiers=[(concept_text(i.get("type")) or i.get("system", ""), i.get("value", ""))
                     for i in patient.get("identifier", []) if i.get("value")],
        admitted=start, discharged=end,
        length_days=(enc.get("length") or {}).get("value") or (_stay_days(start, end) if start and end else None),
        bed=beds[-1] if beds else "", disposition=concept_text(
            (enc.get("hospitalization") or {}).get("dischargeDisposition")),
        title=summary.get("title", DISCHARGE_SUMMARY_TITLE), sections=sections,
        authors=[a.get("display", a.get("reference", "")) for a in summary.get("author", [])],
        signatures=signatures))


def _section_text(section: dict[str, Any]) -> list[str]:
    """A section's narrative as lines: its paragraphs and list items."""
    div = (section.get("text") or {}).get("div", "")
    parts = re.findall(r"<(?:p|li)>(.*?)</(?:p|li)>", div, flags=re.S)
    if not parts:
        parts = [re.sub(r"<[^>]+>", " ", div)]
    return [html.unescape(re.sub(r"<[^>]+>", "", p)).strip() for p in parts if p.strip()]


# -- census -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Census:
    """The ward figures of one day (the manager dashboard's charts)."""

    day: date
    admissions: int  # stays begun that day
    discharges: int  # stays ended that day
    transfers: int  # moves from one bed to another that day
    occupied_beds: int  # at the end of the day (now, for today)
    beds: int  # beds in service
    average_length_of_stay: float | None  # days, over the stays ended that day; None when none ended

    @property
    def occupancy_rate(self) -> float:
        return self.occupied_beds / self.beds if self.beds else 0.0


def _bed_entries(enc: dict[str, Any]) -> list[tuple[str, datetime, datetime | None]]:
    """(bed id, from, until) of each bed the stay used, in order."""
    out = []
    enc_end = parse_time((enc.get("period") or {}).get("end"))
    for entry in enc.get("location", []):
        if "bd" not in codes(entry.get("physicalType"), PHYSICAL_TYPE) or entry.get("status") == "planned":
            continue
        start = parse_time((entry.get("period") or {}).get("start"))
        if start is None:
            continue
        end = parse_time((entry.get("period") or {}).get("end"))
        if end is None and entry.get("status") != "active":
            end = enc_end
        out.append((ref_id(entry.get("location"), "Location") or "", start, end))
    return sorted(out, key=lambda p: p[1])


def census(guarded_repo: GuardedRepository, day: date | str, *, now: datetime | None = None) -> Census:
    """Admissions, discharges, transfers, occupied beds and average length of stay of a day, over the stays the
    principal may see (its rights to read Encounters apply)."""
    the_day = parse_day(day, "day")
    start, end = day_bounds(the_day)
    moment = min(end - timedelta(seconds=1), aware(now))
    with guarded_repo.reader() as g:
        stays, _ = search_all(g, "Encounter", [("class", "IMP"), ("date", f"ge{fhir_time(start)}"),
                                               ("date", f"lt{fhir_time(end)}")])
        locations, _ = search_all(g, "Location", [])
    beds = sum(1 for loc in locations if physical_type(loc) == "bd" and loc.get("status", "active") == "active")
    admissions = discharges = transfers = 0
    occupied: set[str] = set()
    lengths: list[int] = []

    def inside(t: datetime | None) -> bool:
        return t is not None and start <= t < end

    for enc in stays:
        if enc.get("status") in ("cancelled", "entered-in-error", "planned"):
            continue
        period = enc.get("period") or {}
        began, ended = parse_time(period.get("start")), parse_time(period.get("end"))
        admissions += inside(began)
        if inside(ended) and enc.get("status") == "finished" and began is not None and ended is not None:
            discharges += 1
            lengths.append(int((enc.get("length") or {}).get("value") or _stay_days(began, ended)))
        entries = _bed_entries(enc)
        transfers += sum(1 for _, s, _ in entries[1:] if inside(s))
        occupied |= {bed for bed, s, e in entries if bed and s <= moment and (e is None or e > moment)}
    average = round(sum(lengths) / len(lengths), 2) if lengths else None
    return Census(the_day, admissions, discharges, transfers, len(occupied), beds, average)


__all__ = [
    "ADMIT_SOURCES", "DISCHARGE_SUMMARY", "DISPOSITIONS", "PROGRESS_NOTE", "SUMMARY_SECTIONS", "Administration",
    "BedState", "Census", "Discharge", "MarDose", "MarRow", "Occupant", "RoomBoard", "WardBoard", "admit",
    "administer", "bed_board", "census", "current_stay", "discharge", "discharge_summary_pdf", "mar",
    "progress_note", "set_bed_status", "transfer",
]
