"""Outpatient service queues (sante.clinical.queue): tickets, concurrent check-ins, the queue's order, statuses
and waiting times, on both backends."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest

from sante.anomaly import Anomaly, Category
from sante.auth.guarded import GuardedRepository
from sante.clinical import queue as q
from sante.clinical.service_support import VIETNAM
from tests.support.outpatient import CHILD_CLINIC, CLINIC, HOSPITAL, PHYSICIAN, build_hospital, desk, staff

MORNING = datetime(2026, 11, 23, 7, 30, tzinfo=VIETNAM)


@pytest.fixture
def hospital(repo):
    build_hospital(repo)
    return repo


def patients(repo, n: int) -> list[str]:
    with repo.transaction() as tx:
        return [tx.create({"resourceType": "Patient", "active": True, "gender": "female", "birthDate": "1960-05-01",
                           "name": [{"text": f"Bệnh nhân {i}", "family": "Bệnh", "given": ["nhân", str(i)]}],
                           "managingOrganization": {"reference": f"Organization/{HOSPITAL}"}}).id
                for i in range(n)]


def at(minutes: int) -> datetime:
    return MORNING + timedelta(minutes=minutes)


def test_check_in_gives_the_next_ticket_of_the_clinic_and_day(hospital):
    d = desk(hospital)
    a, b, c = patients(hospital, 3)
    first = q.check_in(d.receptionist, a, CLINIC, now=at(0), reason="Đau đầu")
    assert q.ticket_of(first) == "N1-001"
    assert first["identifier"][0] == {"use": "usual", "type": {"text": "Số thứ tự khám"},
                                      "system": q.QUEUE_TICKET_SYSTEM, "value": "N1-001",
                                      "period": {"start": "2026-11-23", "end": "2026-11-23"}}
    assert first["status"] == "arrived" and first["class"]["code"] == "AMB"
    assert first["statusHistory"] == [{"status": "arrived", "period": {"start": "2026-11-23T07:30:00+07:00"}}]
    assert first["location"] == [{"location": {"reference": f"Location/{CLINIC}", "display": "Phòng khám Nội 1"},
                                  "status": "planned"}]
    # the clinic is managed by its department, part of the hospital: the hospital provides the care
    assert first["serviceProvider"] == {"reference": f"Organization/{HOSPITAL}", "display": "Bệnh viện Đa khoa Sante"}
    assert first["priority"]["coding"][0]["code"] == "R" and first["reasonCode"] == [{"text": "Đau đầu"}]
    assert q.ticket_of(q.check_in(d.receptionist, b, CLINIC, now=at(1))) == "N1-002"
    assert q.ticket_of(q.check_in(d.receptionist, c, CHILD_CLINIC, now=at(2))) == "NH-001"  # its own numbers
    # the next day starts again at 001
    assert q.ticket_of(q.check_in(d.receptionist, a, CLINIC, now=at(24 * 60))) == "N1-001"


def test_check_in_refusals(hospital):
    d = desk(hospital)
    a, b = patients(hospital, 2)
    q.check_in(d.receptionist, a, CLINIC, now=at(0))
    with pytest.raises(Anomaly) as e:
        q.check_in(d.receptionist, a, CLINIC, now=at(5))
    assert e.value.category is Category.CONFLICT and "N1-001" in e.value.message and e.value.location == "patient"
    with pytest.raises(Anomaly) as e:
        q.check_in(d.receptionist, b, CLINIC, priority="vip", now=at(5))
    assert e.value.category is Category.UNPROCESSABLE and e.value.location == "priority"
    with pytest.raises(Anomaly) as e:
        q.check_in(d.receptionist, b, "no-such-clinic", now=at(5))
    assert e.value.category is Category.NOT_FOUND and e.value.location == "clinic"
    merged = hospital.read("Patient", b).resource
    merged.update(active=False, link=[{"other": {"reference": f"Patient/{a}"}, "type": "replaced-by"}])
    hospital.update(merged, b)
    with pytest.raises(Anomaly) as e:
        q.check_in(d.receptionist, b, CLINIC, now=at(5))
    assert e.value.category is Category.CONFLICT and f"merged into Patient/{a}" in e.value.message
    manager = GuardedRepository(hospital, staff("manager"))
    with pytest.raises(Anomaly) as e:
        q.check_in(manager, a, CHILD_CLINIC, now=at(5))
    assert e.value.category is Category.FORBIDDEN


def test_concurrent_check_ins_never_share_a_ticket(hospital):
    """Receptionists at several desks check patients in at the same clinic at the same moment."""
    d = desk(hospital)
    people = patients(hospital, 8)
    tickets: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(people))

    def desk_work(pid: str) -> None:
        try:
            start.wait()
            tickets.append(q.ticket_of(q.check_in(d.receptionist, pid, CLINIC, now=at(0))) or "")
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=desk_work, args=(p,)) for p in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(tickets) == [f"N1-{n:03d}" for n in range(1, 9)]


def test_the_queue_order_and_statuses(hospital):
    d = desk(hospital)
    a, b, c, e = patients(hospital, 4)
    q.check_in(d.receptionist, a, CLINIC, now=at(0))
    q.check_in(d.receptionist, b, CLINIC, now=at(5))
    urgent = q.check_in(d.receptionist, c, CLINIC, priority="urgent", now=at(10))
    emergency = q.check_in(d.receptionist, e, CLINIC, priority="emergency", now=at(12))
    entries = q.queue(d.receptionist, CLINIC, now=at(20))
    assert [x.ticket for x in entries] == ["N1-004", "N1-003", "N1-001", "N1-002"]
    assert [x.priority for x in entries] == ["emergency", "urgent", "routine", "routine"]
    first = entries[2]
    assert (first.patient_id, first.patient_name, first.age, first.gender) == (a, "Bệnh nhân 0", 66, "female")
    assert first.waited_minutes == 20.0 and first.waiting and first.called is None

    # the doctor calls the emergency in, then the urgent one: each is with the doctor, named as the attender
    called = q.call_next(d.physician, CLINIC, now=at(21))
    assert called is not None and called.encounter_id == emergency["id"] and called.status == "in-progress"
    assert called.waited_minutes == 9.0
    q.set_status(d.physician, emergency["id"], "finished", now=at(30))
    assert q.call_next(d.physician, CLINIC, now=at(31)).encounter_id == urgent["id"]
    visit = hospital.read("Encounter", urgent["id"]).resource
    assert visit["participant"][0]["individual"]["reference"] == f"Practitioner/{PHYSICIAN}"
    assert visit["location"][0]["status"] == "active"
    entries = q.queue(d.nurse, CLINIC, now=at(32))
    assert [(x.ticket, x.status) for x in entries] == [("N1-001", "arrived"), ("N1-002", "arrived"),
                                                      ("N1-003", "in-progress"), ("N1-004", "finished")]


def test_status_history_follows_the_flow(hospital):
    d = desk(hospital)
    [a] = patients(hospital, 1)
    visit = q.check_in(d.receptionist, a, CLINIC, now=at(0))
    with pytest.raises(Anomaly) as e:
        q.set_status(d.nurse, visit["id"], "finished", now=at(1))
    assert e.value.category is Category.CONFLICT and e.value.location == "status"
    with pytest.raises(Anomaly) as e:
        q.set_status(d.nurse, visit["id"], "sleeping", now=at(1))
    assert e.value.category is Category.UNPROCESSABLE and e.value.location == "status"
    q.set_status(d.nurse, visit["id"], "triaged", now=at(10))
    q.set_status(d.physician, visit["id"], "in-progress", now=at(40))
    done = q.set_status(d.physician, visit["id"], "finished", now=at(55))
    assert done["status"] == "finished" and done["period"] == {"start": "2026-11-23T07:30:00+07:00",
                                                               "end": "2026-11-23T08:25:00+07:00"}
    assert [(h["status"], h["period"]["start"][11:16], h["period"].get("end", "")[11:16])
            for h in done["statusHistory"]] == [("arrived", "07:30", "07:40"), ("triaged", "07:40", "08:10"),
                                                ("in-progress", "08:10", "08:25")]
    assert done["location"][0]["status"] == "completed"
    assert hospital.read("Encounter", visit["id"]).version == 4  # a version per step: the history is kept
    with pytest.raises(Anomaly) as e:
        q.set_status(d.physician, visit["id"], "in-progress", now=at(60))
    assert e.value.category is Category.CONFLICT


def test_waiting_times(hospital):
    d = desk(hospital)
    people = patients(hospital, 5)
    visits = [q.check_in(d.receptionist, p, CLINIC, now=at(10 * i)) for i, p in enumerate(people)]
    for visit, seen in zip(visits[:3], (20, 40, 80)):  # waited 20, 30 and 60 minutes
        q.set_status(d.physician, visit["id"], "in-progress", now=at(seen))
    q.set_status(d.receptionist, visits[4]["id"], "cancelled", now=at(45))  # left without being seen
    stats = q.waiting_times(d.receptionist, CLINIC, MORNING.date(), now=at(90))
    assert (stats.checked_in, stats.seen, stats.still_waiting) == (5, 3, 1)
    assert (stats.mean, stats.median, stats.p90, stats.longest) == (36.7, 30.0, 60.0, 60.0)
    empty = q.waiting_times(d.receptionist, CHILD_CLINIC, MORNING.date(), now=at(90))
    assert (empty.checked_in, empty.mean, empty.p90) == (0, None, None)


def test_the_clinics_of_the_day_with_their_counts(hospital):
    d = desk(hospital)
    a, b, c = patients(hospital, 3)
    q.check_in(d.receptionist, a, CLINIC, now=at(0))
    q.check_in(d.receptionist, b, CLINIC, now=at(1))
    q.check_in(d.receptionist, c, CHILD_CLINIC, now=at(2))
    q.check_in(d.receptionist, c, CLINIC, now=at(-24 * 60))  # yesterday's visit does not count today
    q.call_next(d.physician, CLINIC, now=at(5))
    with hospital.transaction() as tx:  # a room that is not a clinic (no ticket prefix) is not listed
        tx.update({"resourceType": "Location", "id": "xray", "status": "active", "name": "Phòng khám X-quang"}, "xray")
    listed = q.clinics(d.receptionist, now=at(10))
    assert [(x.id, x.name, x.prefix, x.waiting, x.with_doctor, x.done, x.checked_in) for x in listed] == [
        (CHILD_CLINIC, "Phòng khám Nhi", "NH", 1, 0, 0, 1), (CLINIC, "Phòng khám Nội 1", "N1", 1, 1, 0, 2)]
    assert [x.checked_in for x in q.clinics(d.nurse, day=at(-24 * 60).date(), now=at(10))] == [0, 1]
