"""A fortnight of activity at the test hospital (tests.web.seed's bv-hanoi) for the dashboard's tests: clinics, a
ward with beds, outpatient visits with their queue history and ICD-10 diagnoses, admissions and discharges — and
a few visits at the other hospital (bv-hue), which bv-hanoi's manager must not count."""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sante.auth.users import UserStore
from sante.store import Repository
from tests.web.seed import AN, LOINC, ORG, OTHER_ORG, PASSWORD, VITAL

VN = timezone(timedelta(hours=7))
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PHYSICAL = "http://terminology.hl7.org/CodeSystem/location-physical-type"
ICD = "http://hl7.org/fhir/sid/icd-10"
DEPARTMENT = "bv-hanoi-noi"
CLINICS = {"pk-noi": "Phòng khám Nội", "pk-nhi": "Phòng khám Nhi", "pk-tmh": "Phòng khám Tai Mũi Họng"}
BEDS = [f"giuong-{n}" for n in range(1, 7)]
CODES = ["I10", "I10", "I10", "E11.9", "E11.9", "J06.9", "J18.9", "K29.7", "A97.0", "M54.5", "J45.9", "N39.0"]
MANAGER = "quan"  # a manager bound to bv-hanoi (tests.web.seed's "minh" is bound to none)


def _location(lid: str, name: str, kind: str, part_of: str | None = None, **more: Any) -> dict[str, Any]:
    loc = {"resourceType": "Location", "id": lid, "name": name, "status": "active",
           "physicalType": {"coding": [{"system": PHYSICAL, "code": kind}]},
           "managingOrganization": {"reference": f"Organization/{DEPARTMENT}"}, **more}
    if part_of:
        loc["partOf"] = {"reference": f"Location/{part_of}"}
    return loc


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), VN)


def activity(today: date) -> list[dict[str, Any]]:
    """The resources, deterministic for a day."""
    rng = random.Random(7)
    out: list[dict[str, Any]] = [
        {"resourceType": "Organization", "id": DEPARTMENT, "name": "Khoa Nội",
         "partOf": {"reference": f"Organization/{ORG}"}},
        *[_location(lid, name, "ro") for lid, name in CLINICS.items()],
        _location("khu-a", "Khu A", "wa"), _location("phong-101", "Phòng 101", "ro", "khu-a"),
        *[_location(b, f"Giường {n}", "bd", "phong-101") for n, b in enumerate(BEDS, 1)],
    ]
    out[-1]["operationalStatus"] = {"system": "http://terminology.hl7.org/CodeSystem/v2-0116", "code": "C"}
    n = 0
    for back in range(13, -1, -1):
        day = today - timedelta(days=back)
        for _ in range(rng.randint(3, 7)):
            n += 1
            clinic = rng.choice(list(CLINICS))
            arrived = _at(day, rng.randint(7, 10), rng.randrange(60))
            if day == today:
                arrived = min(arrived, datetime.now(VN) - timedelta(minutes=90))
            called = arrived + timedelta(minutes=rng.randint(5, 70))
            eid = f"visit-{n}"
            out.append({"resourceType": "Encounter", "id": eid, "status": "finished",
                        "class": {"system": ACT, "code": "AMB"}, "subject": {"reference": "Patient/binh-tran"},
                        "period": {"start": arrived.isoformat(), "end": (called + timedelta(minutes=15)).isoformat()},
                        "statusHistory": [{"status": "arrived", "period": {"start": arrived.isoformat(),
                                                                           "end": called.isoformat()}},
                                          {"status": "in-progress", "period": {"start": called.isoformat()}}],
                        "location": [{"location": {"reference": f"Location/{clinic}"}, "status": "completed"}],
                        "serviceProvider": {"reference": f"Organization/{ORG}"}})
            out.append({"resourceType": "Condition", "id": f"dx-{n}", "subject": {"reference": "Patient/binh-tran"},
                        "encounter": {"reference": f"Encounter/{eid}"},
                        "code": {"coding": [{"system": ICD, "code": rng.choice(CODES)}]}})
    for k, (start_back, days, bed) in enumerate(((9, 4, BEDS[0]), (6, 5, BEDS[1]), (3, None, BEDS[0]),
                                                 (2, None, BEDS[2]))):
        start = _at(today - timedelta(days=start_back), 14)
        end = start + timedelta(days=days) if days else None
        period = {"start": start.isoformat(), **({"end": end.isoformat()} if end else {})}
        out.append({"resourceType": "Encounter", "id": f"stay-{k}", "status": "finished" if end else "in-progress",
                    "class": {"system": ACT, "code": "IMP"}, "subject": {"reference": "Patient/cuc-nguyen"},
                    "period": period, "location": [
                        {"location": {"reference": f"Location/{bed}"}, "status": "completed" if end else "active",
                         "period": period, "physicalType": {"coding": [{"system": PHYSICAL, "code": "bd"}]}}],
                    "serviceProvider": {"reference": f"Organization/{DEPARTMENT}"}})
    for k in range(3):  # the other hospital's visits
        day = today - timedelta(days=k + 1)
        out.append({"resourceType": "Encounter", "id": f"hue-visit-{k}", "status": "finished",
                    "class": {"system": ACT, "code": "AMB"}, "subject": {"reference": "Patient/dung-le"},
                    "period": {"start": _at(day, 8).isoformat(), "end": _at(day, 9).isoformat()},
                    "location": [{"location": {"reference": "Location/pk-noi"}}],
                    "serviceProvider": {"reference": f"Organization/{OTHER_ORG}"}})
    return out


def glucose_results() -> list[dict[str, Any]]:
    """Three earlier glucose results of Nguyễn Văn An (one high), for the laboratory trends of the chart."""
    return [{"resourceType": "Observation", "id": f"an-glucose-{n}", "status": "final",
             "category": [{"coding": [{"system": VITAL, "code": "laboratory"}]}],
             "code": {"coding": [{"system": LOINC, "code": "2345-7", "display": "Glucose"}], "text": "Glucose máu"},
             "subject": {"reference": f"Patient/{AN}"}, "effectiveDateTime": f"2026-10-{day:02d}T01:00:00Z",
             "valueQuantity": {"value": value, "unit": "mmol/L"},
             "referenceRange": [{"low": {"value": 3.9, "unit": "mmol/L"}, "high": {"value": 6.1, "unit": "mmol/L"}}]}
            for n, (day, value) in enumerate(((2, 5.4), (12, 7.9), (22, 5.8)))]


def seed_activity(repo: Repository, users: UserStore, today: date) -> None:
    users.add(MANAGER, PASSWORD, "manager", organization=f"Organization/{ORG}")
    with repo.transaction() as tx:
        for resource in activity(today):
            tx.update(resource, resource["id"])
