"""Outpatient service queues (hàng đợi khám bệnh), after OpenMRS 3's service queues: a patient checks in at a
clinic and gets a ticket, waits, is triaged (vital signs), is called in by the doctor, and leaves.

A queue entry is the visit's Encounter itself (class AMB), as the demo hospital writes them
(sante.demo.care): the ticket is an Encounter.identifier (system QUEUE_TICKET_SYSTEM, use `usual`, value
"<clinic prefix>-<number>" such as "N1-007", its period the day), the clinic is Encounter.location (status
planned while waiting, active with the doctor, completed after), the hospital is serviceProvider, and the
priority is Encounter.priority (HL7 v3 ActPriority: EM emergency, UR urgent — the elderly, small children,
pregnant women, people with disabilities —, R routine).

Statuses follow FHIR R4 with Encounter.statusHistory kept (each status with its period):
    arrived → triaged → in-progress → finished;  arrived → in-progress;  in-progress → triaged (back to wait,
    e.g. for test results);  arrived | triaged → cancelled (left without being seen).

A clinic's ticket prefix is its Location.identifier of system TICKET_PREFIX_SYSTEM, else the code in its alias
"Phòng khám N1" (the demo's clinics), else "PK". Numbers restart every day at 001 and are unique per clinic and
day: check-ins at one clinic take turns (sante.clinical.numbering.serialise_writers), so two receptionists at
once never hand out the same ticket, on SQLite and PostgreSQL alike. `call_next` takes the same turn, so two
doctors never call the same patient.

Queue order: those waiting (arrived, triaged) first, then those with the doctor, then those done; within each,
by priority (emergency, urgent, routine), then arrival.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sante.anomaly import Anomaly, Category
from sante.auth.guarded import GuardedRepository, GuardedTransaction
from sante.auth.policy import forbidden
from sante.auth.principal import Principal
from sante.clinical.forms import refuse
from sante.clinical.numbering import every_record, serialise_writers
from sante.clinical.service_support import (
    ACT_CODE,
    SNOMED,
    aware,
    day_bounds,
    fhir_time,
    local_day,
    parse_time,
    person_name,
    read_at,
    ref,
    ref_id,
    search_all,
)

QUEUE_TICKET_SYSTEM = "https://sante.health/fhir/sid/queue-ticket"  # the same as sante.demo.care's
TICKET_PREFIX_SYSTEM = "https://sante.health/fhir/sid/queue-prefix"  # a clinic Location's ticket prefix
PRIORITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActPriority"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
# priority key -> (v3 ActPriority code, display, Vietnamese), in queue order
PRIORITIES: dict[str, tuple[str, str, str]] = {
    "emergency": ("EM", "emergency", "Cấp cứu"),
    "urgent": ("UR", "urgent", "Ưu tiên"),
    "routine": ("R", "routine", "Thường"),
}
_PRIORITY_OF_CODE = {code: key for key, (code, _, _) in PRIORITIES.items()}
NEXT_STATUSES: dict[str, tuple[str, ...]] = {
    "arrived": ("triaged", "in-progress", "cancelled"),
    "triaged": ("in-progress", "cancelled"),
    "in-progress": ("finished", "triaged"),
}
WAITING = ("arrived", "triaged")
STATUS_ORDER = {"arrived": 0, "triaged": 0, "in-progress": 1, "finished": 2, "cancelled": 3}
LOCATION_STATUS = {"arrived": "planned", "triaged": "planned", "in-progress": "active", "finished": "completed",
                   "cancelled": "completed"}
_ALIAS_PREFIX = re.compile(r"^Phòng khám ([A-Z0-9]{1,6})$")


# -- who acts ---------------------------------------------------------------------------------------------------
def acting_practitioner(principal: Principal, requested: str | None = None, field: str = "practitioner"
                        ) -> str | None:
    """The Practitioner who acts: a signed-in practitioner is themselves (naming someone else is refused, 403);
    another account (a system client) names one, or None."""
    user = principal.fhir_user or ""
    if requested is not None and not requested.startswith("Practitioner/"):
        requested = f"Practitioner/{requested}"
    if user.startswith("Practitioner/"):
        if requested is not None and requested != user:
            raise forbidden(f"{user} may act only as themselves, not as {requested}")
        return user
    return requested


# -- the Encounter's status -------------------------------------------------------------------------------------
def transition(encounter: dict[str, Any], status: str, when: datetime) -> dict[str, Any]:
    """Move an outpatient Encounter (in place) to `status`: statusHistory's open period closed and the new status
    opened (an ended visit's end is its period.end), the clinic's location status. 422 for an unknown status, 409
    for a move the flow does not allow."""
    current = encounter.get("status", "")
    if status not in STATUS_ORDER:
        raise refuse("status.unknown", "status", "{status} is not a queue status (arrived, triaged, in-progress, "
                     "finished, cancelled)", status=status)
    if status not in NEXT_STATUSES.get(current, ()):
        raise Anomaly(Category.CONFLICT, f"Encounter/{encounter.get('id')} is {current}: it cannot become {status}",
                      location="status")
    t = fhir_time(when)
    history = encounter.setdefault("statusHistory", [])
    if not history or history[-1].get("status") != current:  # a visit without a history: its start so far
        history.append({"status": current, "period": {"start": encounter.get("period", {}).get("start", t)}})
    history[-1]["period"].setdefault("end", t)
    if status not in ("finished", "cancelled"):  # an ended visit's end is period.end, as in the demo's data
        history.append({"status": status, "period": {"start": t}})
    encounter["status"] = status
    for loc in encounter.get("location", []):
        loc["status"] = LOCATION_STATUS[status]
    if status in ("finished", "cancelled"):
        encounter.setdefault("period", {"start": t})["end"] = t
    return encounter


def add_participant(encounter: dict[str, Any], practitioner: dict[str, str]) -> None:
    """Name the practitioner who attends the visit (v3 ParticipationType ATND), once."""
    parts = encounter.setdefault("participant", [])
    if any((p.get("individual") or {}).get("reference") == practitioner["reference"] for p in parts):
        return
    parts.append({"type": [{"coding": [{"system": PARTICIPATION, "code": "ATND", "display": "attender"}]}],
                  "individual": practitioner})


def _attend(g: GuardedTransaction, encounter: dict[str, Any], practitioner: str | None) -> None:
    """Name the acting practitioner (when there is one) as the visit's attender."""
    who = acting_practitioner(g.principal, practitioner)
    if who is not None:
        doc = read_at(g, "Practitioner", who.removeprefix("Practitioner/"), "practitioner")
        add_participant(encounter, ref("Practitioner", doc["id"], person_name(doc) or None))


def read_visit(g: GuardedTransaction, encounter_id: str, field: str = "encounter") -> dict[str, Any]:
    """An outpatient Encounter (class AMB) as the principal may read it (404 at `field` otherwise)."""
    encounter = read_at(g, "Encounter", encounter_id, field)
    if (encounter.get("class") or {}).get("code") != "AMB":
        raise refuse("encounter.not-outpatient", field, "Encounter/{id} is not an outpatient visit",
                     id=encounter.get("id"))
    return encounter


# -- tickets ----------------------------------------------------------------------------------------------------
def ticket_prefix(clinic: dict[str, Any]) -> str:
    """The prefix of a clinic's tickets: its TICKET_PREFIX_SYSTEM identifier, the code in its alias
    "Phòng khám N1", else "PK"."""
    for identifier in clinic.get("identifier", []):
        if identifier.get("system") == TICKET_PREFIX_SYSTEM and identifier.get("value"):
            return str(identifier["value"])
    for alias in clinic.get("alias", []):
        if m := _ALIAS_PREFIX.match(alias):
            return m.group(1)
    return "PK"


def ticket_of(encounter: dict[str, Any]) -> str | None:
    return next((i.get("value") for i in encounter.get("identifier", []) if i.get("system") == QUEUE_TICKET_SYSTEM),
                None)


def _day_query(clinic_id: str, day: date) -> list[tuple[str, str]]:
    start, end = day_bounds(day)
    return [("location", f"Location/{clinic_id}"), ("date", f"ge{fhir_time(start)}"), ("date", f"lt{fhir_time(end)}")]


def _on_day(encounter: dict[str, Any], day: date) -> bool:
    start = parse_time((encounter.get("period") or {}).get("start"))
    return start is not None and local_day(start) == day and ticket_of(encounter) is not None


def _ticket_number(ticket: str, prefix: str) -> int:
    m = re.match(rf"^{re.escape(prefix)}-(\d+)$", ticket)
    return int(m.group(1)) if m else 0


def _service_provider(g: GuardedTransaction, clinic: dict[str, Any]) -> dict[str, str] | None:
    """The organization that provides the clinic's care: the clinic's managing organization, followed up its
    `partOf` to the hospital (the organization staff accounts are bound to, sante.auth.policy)."""
    org_id = ref_id(clinic.get("managingOrganization"), "Organization")
    if org_id is None:
        user_org = g.principal.organization
        return {"reference": user_org} if user_org else None
    org = read_at(g, "Organization", org_id, "clinic")
    for _ in range(8):
        parent = ref_id(org.get("partOf"), "Organization")
        if parent is None:
            break
        org = read_at(g, "Organization", parent, "clinic")
    return ref("Organization", org["id"], org.get("name"))


def check_in(guarded_repo: GuardedRepository, patient_id: str, clinic_location_id: str, *, priority: str = "routine",
             reason: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Check a patient in at a clinic: a new outpatient Encounter (arrived) with the next ticket of the clinic's
    day. 409 when the patient already waits (or is with the doctor) at that clinic, or was merged into another
    record."""
    if priority not in PRIORITIES:
        raise refuse("priority.unknown", "priority", "{priority} is not a priority (emergency, urgent, routine)",
                     priority=priority)
    now = aware(now)
    day = local_day(now)
    with guarded_repo.transaction() as g:
        patient = read_at(g, "Patient", patient_id, "patient")
        if patient.get("active") is False:
            into = next((link["other"].get("reference") for link in patient.get("link", [])
                         if link.get("type") == "replaced-by"), None)
            raise Anomaly(Category.CONFLICT, f"Patient/{patient['id']} is inactive" +
                          (f": it was merged into {into}" if into else ""), location="patient")
        clinic = read_at(g, "Location", clinic_location_id, "clinic")
        prefix = ticket_prefix(clinic)
        provider = _service_provider(g, clinic)
        serialise_writers(g.tx, f"queue:{clinic['id']}:{day.isoformat()}")
        numbers = [0]
        for other in every_record(g.tx, "Encounter", _day_query(clinic["id"], day)):
            if not _on_day(other, day):
                continue
            if ref_id(other.get("subject"), "Patient") == patient["id"] and other.get("status") in (*WAITING,
                                                                                                    "in-progress"):
                raise Anomaly(Category.CONFLICT, f"Patient/{patient['id']} is already in this clinic's queue with "
                                                 f"ticket {ticket_of(other)}", location="patient")
            numbers.append(_ticket_number(ticket_of(other) or "", prefix))
        ticket = f"{prefix}-{max(numbers) + 1:03d}"
        code, display, vi = PRIORITIES[priority]
        t = fhir_time(now)
        encounter: dict[str, Any] = {
            "resourceType": "Encounter",
            "identifier": [{"use": "usual", "type": {"text": "Số thứ tự khám"}, "system": QUEUE_TICKET_SYSTEM,
                            "value": ticket, "period": {"start": day.isoformat(), "end": day.isoformat()}}],
            "status": "arrived",
            "statusHistory": [{"status": "arrived", "period": {"start": t}}],
            "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
            "type": [{"coding": [{"system": SNOMED, "code": "11429006", "display": "Consultation"}],
                      "text": "Khám bệnh ngoại trú"}],
            "priority": {"coding": [{"system": PRIORITY_SYSTEM, "code": code, "display": display}], "text": vi},
            "subject": ref("Patient", patient["id"], person_name(patient) or None),
            "period": {"start": t},
        }
        if reason:
            encounter["reasonCode"] = [{"text": reason}]
        encounter["location"] = [{"location": ref("Location", clinic["id"], clinic.get("name")), "status": "planned"}]
        if provider:
            encounter["serviceProvider"] = provider
        return g.create(encounter).resource or {}


# -- the queue --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One visit in a clinic's queue of the day."""

    encounter_id: str
    ticket: str
    patient_id: str
    patient_name: str
    gender: str | None
    birth_date: str | None
    age: int | None  # whole years on the day
    status: str
    priority: str  # a PRIORITIES key
    arrived: datetime
    called: datetime | None  # first time with the doctor (in-progress)
    waited_minutes: float  # arrival to the doctor, or to now while still waiting

    @property
    def waiting(self) -> bool:
        return self.status in WAITING


def _age(birth_date: str | None, day: date) -> int | None:
    parts = (birth_date or "").split("-")
    if not parts[0].isdigit():
        return None
    year, month, dom = int(parts[0]), int(parts[1]) if len(parts) > 1 else 1, int(parts[2][:2]) if len(parts) > 2 else 1
    return day.year - year - ((day.month, day.day) < (month, dom))


def _status_start(encounter: dict[str, Any], status: str) -> datetime | None:
    return next((parse_time(h.get("period", {}).get("start")) for h in encounter.get("statusHistory", [])
                 if h.get("status") == status), None)


def queue_entry(encounter: dict[str, Any], patient: dict[str, Any] | None, now: datetime) -> QueueEntry:
    """A queue entry for a visit Encounter (and its Patient, when read)."""
    arrived = parse_time((encounter.get("period") or {}).get("start")) or now
    called = _status_start(encounter, "in-progress")
    codes = [c.get("code") for c in (encounter.get("priority") or {}).get("coding", [])]
    priority = next((_PRIORITY_OF_CODE[c] for c in codes if c in _PRIORITY_OF_CODE), "routine")
    until = called or (now if encounter.get("status") in WAITING else
                       parse_time((encounter.get("period") or {}).get("end")) or now)
    pid = ref_id(encounter.get("subject"), "Patient") or ""
    return QueueEntry(
        encounter_id=str(encounter.get("id")), ticket=ticket_of(encounter) or "", patient_id=pid,
        patient_name=person_name(patient) or (encounter.get("subject") or {}).get("display", ""),
        gender=(patient or {}).get("gender"), birth_date=(patient or {}).get("birthDate"),
        age=_age((patient or {}).get("birthDate"), local_day(arrived)), status=str(encounter.get("status")),
        priority=priority, arrived=arrived, called=called,
        waited_minutes=max(0.0, round((until - arrived).total_seconds() / 60, 1)),
    )


def _order(entry: QueueEntry) -> tuple[int, int, datetime, str]:
    return STATUS_ORDER.get(entry.status, 4), list(PRIORITIES).index(entry.priority), entry.arrived, entry.ticket


def _entries(g: GuardedTransaction, clinic_id: str, day: date, now: datetime) -> list[QueueEntry]:
    encounters, included = search_all(g, "Encounter", [*_day_query(clinic_id, day), ("_include", "Encounter:subject")])
    patients = {p["id"]: p for p in included if p.get("resourceType") == "Patient"}
    entries = [queue_entry(e, patients.get(ref_id(e.get("subject"), "Patient") or ""), now)
               for e in encounters if _on_day(e, day) and (e.get("class") or {}).get("code") == "AMB"]
    return sorted(entries, key=_order)


def queue(guarded_repo: GuardedRepository, clinic_location_id: str, *, day: date | None = None,
          now: datetime | None = None) -> list[QueueEntry]:
    """A clinic's queue of the day (today by default), in queue order (see the module's docstring)."""
    now = aware(now)
    with guarded_repo.reader() as g:
        clinic = read_at(g, "Location", clinic_location_id, "clinic")
        return _entries(g, clinic["id"], day or local_day(now), now)


def set_status(guarded_repo: GuardedRepository, encounter_id: str, status: str, *, now: datetime | None = None,
               practitioner: str | None = None) -> dict[str, Any]:
    """Move a visit to `status` (with its statusHistory); with the doctor (in-progress), the acting practitioner
    is named as the visit's attender."""
    now = aware(now)
    with guarded_repo.transaction() as g:
        encounter = read_visit(g, encounter_id)
        transition(encounter, status, now)
        if status == "in-progress":
            _attend(g, encounter, practitioner)
        return g.update(encounter, if_match=int(encounter["meta"]["versionId"])).resource or {}


def call_next(guarded_repo: GuardedRepository, clinic_location_id: str, *, practitioner: str | None = None,
              now: datetime | None = None) -> QueueEntry | None:
    """Call the first patient waiting at a clinic in to the doctor (in-progress); None when nobody waits."""
    now = aware(now)
    with guarded_repo.transaction() as g:
        clinic = read_at(g, "Location", clinic_location_id, "clinic")
        day = local_day(now)
        serialise_writers(g.tx, f"queue:{clinic['id']}:{day.isoformat()}")
        waiting = [e for e in _entries(g, clinic["id"], day, now) if e.waiting]
        if not waiting:
            return None
        encounter = read_visit(g, waiting[0].encounter_id)
        transition(encounter, "in-progress", now)
        _attend(g, encounter, practitioner)
        stored = g.update(encounter, if_match=int(encounter["meta"]["versionId"])).resource or {}
        patient = read_at(g, "Patient", waiting[0].patient_id, "patient")
        return queue_entry(stored, patient, now)


# -- the clinics ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ClinicDay:
    """An outpatient clinic and the count of its queue on one day."""

    id: str
    name: str
    prefix: str  # of its tickets
    waiting: int  # arrived or triaged
    with_doctor: int  # in-progress
    done: int  # finished or cancelled

    @property
    def checked_in(self) -> int:
        return self.waiting + self.with_doctor + self.done


def is_clinic(location: dict[str, Any]) -> bool:
    """Whether a Location is an outpatient clinic with a queue: it has a ticket prefix (TICKET_PREFIX_SYSTEM
    identifier, or an alias "Phòng khám N1") and is not inactive."""
    return location.get("status") != "inactive" and (
        any(i.get("system") == TICKET_PREFIX_SYSTEM and i.get("value") for i in location.get("identifier", []))
        or any(_ALIAS_PREFIX.match(a) for a in location.get("alias", [])))


def clinics(guarded_repo: GuardedRepository, *, day: date | None = None, now: datetime | None = None
            ) -> list[ClinicDay]:
    """The outpatient clinics the principal may see, by name, each with the count of its queue of the day (today
    by default): one search for the clinics, one for the day's outpatient visits."""
    now = aware(now)
    day = day or local_day(now)
    start, end = day_bounds(day)
    with guarded_repo.reader() as g:
        found = {loc["id"]: loc for query in ([("identifier", f"{TICKET_PREFIX_SYSTEM}|")], [("name", "Phòng khám")])
                 for loc in search_all(g, "Location", query)[0] if is_clinic(loc)}
        visits, _ = search_all(g, "Encounter", [("class", "AMB"), ("date", f"ge{fhir_time(start)}"),
                                                 ("date", f"lt{fhir_time(end)}")])
    counts: dict[str, list[int]] = {cid: [0, 0, 0] for cid in found}
    for encounter in visits:
        if not _on_day(encounter, day):
            continue
        status = str(encounter.get("status"))
        for loc in encounter.get("location", []):
            cid = ref_id(loc.get("location"), "Location")
            if cid in counts:
                counts[cid][0 if status in WAITING else 1 if status == "in-progress" else 2] += 1
    out = [ClinicDay(cid, str(loc.get("name") or cid), ticket_prefix(loc), *counts[cid]) for cid, loc in found.items()]
    return sorted(out, key=lambda c: (c.name, c.id))


# -- waiting times ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WaitingTimes:
    """Minutes from arrival to the doctor (in-progress) at one clinic on one day, over the patients seen."""

    day: date
    checked_in: int
    seen: int
    still_waiting: int
    mean: float | None
    median: float | None
    p90: float | None  # the 90th percentile, nearest rank
    longest: float | None


def waiting_times(guarded_repo: GuardedRepository, clinic_location_id: str, day: date | None = None, *,
                  now: datetime | None = None) -> WaitingTimes:
    """Waiting-time statistics of a clinic's day (today by default)."""
    now = aware(now)
    day = day or local_day(now)
    entries = queue(guarded_repo, clinic_location_id, day=day, now=now)
    waits = sorted(e.waited_minutes for e in entries if e.called is not None)
    still = sum(1 for e in entries if e.waiting)
    if not waits:
        return WaitingTimes(day, len(entries), 0, still, None, None, None, None)
    p90 = waits[max(0, -(-len(waits) * 9 // 10) - 1)]
    return WaitingTimes(day, len(entries), len(waits), still, round(statistics.fmean(waits), 1),
                        round(statistics.median(waits), 1), p90, waits[-1])


__all__ = ["LOCATION_STATUS", "NEXT_STATUSES", "PRIORITIES", "QUEUE_TICKET_SYSTEM", "TICKET_PREFIX_SYSTEM",
           "ClinicDay", "QueueEntry", "WaitingTimes", "acting_practitioner", "add_participant", "call_next",
           "check_in", "clinics", "is_clinic", "queue",
           "queue_entry", "read_visit", "set_status", "ticket_of", "ticket_prefix", "transition", "waiting_times"]
