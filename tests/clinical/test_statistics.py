"""The facility's statistics (sante.clinical.statistics): aggregates of the manager's own facility only, counted
from the index tables on both backends; no patient data leaves the module, and only managers and administrators
get them."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta, timezone

import pytest

from sante.anomaly import Anomaly, Category
from sante.auth.guarded import GuardedRepository
from sante.auth.principal import Principal
from sante.auth.scopes import Scopes
from sante.clinical import statistics
from sante.clinical.statistics import Period, StatisticsCache, facility_statistics

VN = timezone(timedelta(hours=7))
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=VN)
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PHYSICAL = "http://terminology.hl7.org/CodeSystem/location-physical-type"
ICD = "http://hl7.org/fhir/sid/icd-10"


def _t(day: int, hour: int, minute: int = 0) -> str:
    return datetime(2026, 11, day, hour, minute, tzinfo=VN).isoformat()


def _location(lid: str, name: str, kind: str, part_of: str | None = None, org: str | None = None, **more) -> dict:
    loc = {"resourceType": "Location", "id": lid, "name": name, "status": "active",
           "physicalType": {"coding": [{"system": PHYSICAL, "code": kind}]}, **more}
    if part_of:
        loc["partOf"] = {"reference": f"Location/{part_of}"}
    if org:
        loc["managingOrganization"] = {"reference": f"Organization/{org}"}
    return loc


def _visit(eid: str, org: str, place: str, start: str, *, status: str = "finished", called: str | None = None,
           klass: str = "AMB", diagnoses: tuple[str, ...] = ()) -> dict:
    enc = {"resourceType": "Encounter", "id": eid, "status": status, "class": {"system": ACT, "code": klass},
           "subject": {"reference": "Patient/p1"}, "period": {"start": start},
           "location": [{"location": {"reference": f"Location/{place}"}}],
           "serviceProvider": {"reference": f"Organization/{org}"},
           "statusHistory": [{"status": "arrived", "period": {"start": start, **({"end": called} if called else {})}}]}
    if called:
        enc["statusHistory"].append({"status": "in-progress", "period": {"start": called}})
    if status == "finished":
        enc["period"]["end"] = called or start
    if diagnoses:
        enc["diagnosis"] = [{"condition": {"reference": f"Condition/{c}"}} for c in diagnoses]
    return enc


def _stay(eid: str, org: str, bed: str, start: str, end: str | None = None, status: str = "in-progress") -> dict:
    period = {"start": start, **({"end": end} if end else {})}
    return {"resourceType": "Encounter", "id": eid, "status": status, "class": {"system": ACT, "code": "IMP"},
            "subject": {"reference": "Patient/p2"}, "period": period,
            "location": [{"location": {"reference": f"Location/{bed}"}, "status": "completed" if end else "active",
                          "period": period, "physicalType": {"coding": [{"system": PHYSICAL, "code": "bd"}]}}],
            "serviceProvider": {"reference": f"Organization/{org}"}}


def _condition(cid: str, code: str, encounter: str | None = None, verification: str = "confirmed") -> dict:
    cond = {"resourceType": "Condition", "id": cid, "subject": {"reference": "Patient/p1"},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                               "code": verification}]},
            "code": {"coding": [{"system": ICD, "code": code}]}}
    if encounter:
        cond["encounter"] = {"reference": f"Encounter/{encounter}"}
    return cond


@pytest.fixture
def hospitals(repo):
    resources = [
        {"resourceType": "Organization", "id": "h1", "name": "Bệnh viện 1"},
        {"resourceType": "Organization", "id": "h1-noi", "name": "Khoa Nội", "partOf": {"reference": "Organization/h1"}},
        {"resourceType": "Organization", "id": "h2", "name": "Bệnh viện 2"},
        {"resourceType": "Patient", "id": "p1", "managingOrganization": {"reference": "Organization/h1"}},
        {"resourceType": "Patient", "id": "p2", "managingOrganization": {"reference": "Organization/h1"}},
        _location("c1", "Phòng khám Nội 1", "ro", org="h1"),
        _location("c2", "Phòng khám Nhi", "ro", org="h1"),
        _location("er", "Khoa Cấp cứu", "wi", org="h1"),
        _location("w1", "Khoa Nội – Khu A", "wa", org="h1-noi"),
        _location("r1", "Phòng 101", "ro", "w1", "h1-noi"),
        _location("b1", "Giường 1", "bd", "r1", "h1-noi"),
        _location("b2", "Giường 2", "bd", "r1", "h1-noi"),
        _location("b3", "Giường 3", "bd", "r1", "h1-noi",
                  operationalStatus={"system": "http://terminology.hl7.org/CodeSystem/v2-0116", "code": "C"}),
        _location("w2", "Other ward", "wa", org="h2"),
        _location("b9", "Other bed", "bd", "w2", "h2"),
        _visit("e1", "h1-noi", "c1", _t(18, 8), called=_t(18, 8, 30)),
        _visit("e2", "h1", "c1", _t(19, 6, 30), called=_t(19, 6, 50)),  # 18 Nov in UTC, 19 Nov in Viet Nam
        _visit("e3", "h1", "c2", _t(19, 9), called=_t(19, 10), diagnoses=("d-e119",)),
        _visit("e4", "h2", "c1", _t(19, 9), called=_t(19, 9, 5)),  # another hospital's
        _visit("e5", "h1", "c1", _t(19, 9), status="cancelled"),
        _visit("e6", "h1", "c1", _t(17, 9), called=_t(17, 9, 10)),  # before the period
        _visit("e7", "h1", "er", _t(20, 2), status="in-progress", klass="EMER"),
        _visit("e8", "h1", "c1", _t(20, 9, 30), status="arrived"),  # still waiting: no waiting time yet
        _stay("s1", "h1-noi", "b2", _t(10, 10), _t(19, 9), status="finished"),
        _stay("s2", "h1-noi", "b1", _t(19, 14)),
        _stay("s3", "h2", "b9", _t(19, 8)),
        _stay("s4", "h1", "b2", _t(19, 15), status="cancelled"),
        _condition("d-i10-a", "I10", "e1"),
        _condition("d-e119", "E11.9"),  # linked from Encounter e3's diagnosis only
        _condition("d-i10-b", "I10", "e3"),
        _condition("d-j189", "J18.9", "s2"),
        _condition("d-other", "I10", "e4"),
        _condition("d-refuted", "J45", "e1", verification="refuted"),
        _condition("d-old", "K29.7", "e6"),
    ]
    with repo.transaction() as tx:
        for r in resources:
            tx.update(r, r["id"])
    return repo


def _principal(role: str, organization: str | None) -> Principal:
    return Principal(subject=role, role=role, scopes=Scopes.parse("user/*.cruds"), organization=organization)


def _figures(repo, role: str = "manager", organization: str | None = "Organization/h1-noi"):
    guarded = GuardedRepository(repo, _principal(role, organization))
    return facility_statistics(guarded, Period(date(2026, 11, 18), date(2026, 11, 20)), zone=VN, now=NOW)


def test_visits_per_day_and_clinic_count_the_facility_only(hospitals):
    s = _figures(hospitals)
    assert s.days == (date(2026, 11, 18), date(2026, 11, 19), date(2026, 11, 20))
    assert set(s.facility) == {"h1", "h1-noi"}  # a department's manager counts the whole hospital
    by_place = {v.name: v.per_day for v in s.visits}
    assert by_place == {"Phòng khám Nội 1": (1, 1, 1), "Phòng khám Nhi": (0, 1, 0), "Khoa Cấp cứu": (0, 0, 1)}
    assert s.visits[0].name == "Phòng khám Nội 1" and s.visits_per_day == (1, 2, 2) and s.total_visits == 5


def test_waiting_times_per_day_are_the_median_and_90th_percentile(hospitals):
    waits = {w.day.day: (w.seen, w.median, w.p90) for w in _figures(hospitals).waits}
    assert waits == {18: (1, 30.0, 30.0), 19: (2, 40.0, 60.0), 20: (0, None, None)}
    s = _figures(hospitals)
    assert (s.wait_median, s.wait_p90) == (30.0, 60.0)  # over the three visits seen: 20, 30, 60 minutes


def test_stays_admissions_discharges_length_and_occupancy(hospitals):
    s = _figures(hospitals)
    assert [(d.admissions, d.discharges, d.occupied) for d in s.stays] == [(0, 0, 1), (1, 1, 1), (0, 0, 1)]
    assert s.admissions == 1 and s.discharges == 1 and s.average_length_of_stay == 9.0
    assert [(w.name, w.beds, w.occupied, w.free, w.closed) for w in s.wards] == [("Khoa Nội – Khu A", 3, 1, 1, 1)]
    assert s.beds_in_service == 2 and s.wards[0].rate == 0.5


def test_top_diagnoses_count_visits_by_icd10_code_with_their_chapter(hospitals):
    top = _figures(hospitals).diagnoses
    assert [(d.code, d.encounters) for d in top] == [("I10", 2), ("E11.9", 1), ("J18.9", 1)]
    assert top[0].chapter is not None and top[0].chapter.number == "IX" and top[0].entry is not None


def test_nothing_but_numbers_and_reference_data_leaves_the_module(hospitals):
    s = _figures(hospitals)
    text = repr(dataclasses.asdict(s))
    for secret in ("p1", "p2", "e1", "e3", "s2", "d-i10-a", "Patient", "Encounter"):
        assert f"'{secret}'" not in text and f"{secret}/" not in text


def test_an_administrator_without_organization_counts_every_hospital(hospitals):
    s = _figures(hospitals, "admin", None)
    assert s.facility == () and s.total_visits == 6 and s.admissions == 2
    assert {w.name for w in s.wards} == {"Khoa Nội – Khu A", "Other ward"}


@pytest.mark.parametrize("role", ["nurse", "physician", "public_health", "receptionist"])
def test_other_roles_are_refused(hospitals, role):
    with pytest.raises(Anomaly) as e:
        _figures(hospitals, role)
    assert e.value.category == Category.FORBIDDEN


def test_a_period_runs_forward(hospitals):
    guarded = GuardedRepository(hospitals, _principal("manager", "Organization/h1"))
    with pytest.raises(Anomaly) as e:
        facility_statistics(guarded, Period(date(2026, 11, 20), date(2026, 11, 18)), zone=VN, now=NOW)
    assert e.value.category == Category.INCORRECT


# -- the cache of days already counted ------------------------------------------------------------------------------
def _cached(repo, cache: StatisticsCache, counted: list):
    guarded = GuardedRepository(repo, _principal("manager", "Organization/h1"))
    return facility_statistics(guarded, Period(date(2026, 11, 18), date(2026, 11, 20)), zone=VN, now=NOW,
                               cache=cache)


@pytest.fixture
def counting(monkeypatch):
    """The runs of days counted afresh, call by call."""
    counted: list = []
    original = statistics.count_days

    def count(conn, facility, first, last, zone, now):
        counted.append((first.day, last.day))
        return original(conn, facility, first, last, zone, now)

    monkeypatch.setattr(statistics, "count_days", count)
    return counted


def _summary(s) -> tuple:
    return (s.visits_per_day, [(w.seen, w.median) for w in s.waits], [(d.admissions, d.discharges, d.occupied)
                                                                      for d in s.stays],
            [(d.code, d.encounters) for d in s.diagnoses])


def test_the_days_before_today_are_counted_once_while_nothing_changes(hospitals, counting):
    cache = StatisticsCache()
    first = _cached(hospitals, cache, counting)
    assert counting == [(18, 20)]
    again = _cached(hospitals, cache, counting)
    assert counting == [(18, 20), (20, 20)]  # today only
    assert _summary(first) == _summary(again) == _summary(_figures(hospitals, organization="Organization/h1"))


def test_a_write_to_a_past_day_is_counted_at_once(hospitals, counting):
    cache = StatisticsCache()
    _cached(hospitals, cache, counting)
    with hospitals.transaction() as tx:  # e1 (18 Nov) cancelled, e6 (17 Nov) moved to 19 Nov, a diagnosis for e2
        e1 = tx.read("Encounter", "e1").resource
        e1["status"] = "cancelled"
        tx.update(e1, "e1")
        e6 = tx.read("Encounter", "e6").resource
        e6["period"] = {"start": _t(19, 11), "end": _t(19, 11, 30)}
        tx.update(e6, "e6")
        tx.update(_condition("d-new", "J18.9", "e2"), "d-new")
    after = _cached(hospitals, cache, counting)
    assert counting[1:] == [(18, 20)]  # both days touched, and today
    assert after.visits_per_day == (0, 3, 2)
    assert dict((d.code, d.encounters) for d in after.diagnoses)["J18.9"] == 2
    assert _summary(after) == _summary(_figures(hospitals, organization="Organization/h1"))


def test_too_many_writes_forget_everything(hospitals, counting):
    cache = StatisticsCache(max_changes=0)
    _cached(hospitals, cache, counting)
    with hospitals.transaction() as tx:
        tx.update(_condition("d-late", "I10", "e3"), "d-late")
    _cached(hospitals, cache, counting)
    assert counting == [(18, 20), (18, 20)]
