"""Notifiable-disease cases for the demo's population-health page (/population): five years of weekly cases
of dengue, hand-foot-mouth disease, influenza, acute diarrhoea, tuberculosis, viral hepatitis and a few rarer
diseases, each a Condition (ICD-10 code, onset date) on a synthetic patient living in Nghệ An (most), Hà Tĩnh,
Thanh Hóa or (the commoner diseases) another province. Five years: the detector's baseline.

Dengue peaks in the rainy season (July–November), hand-foot-mouth disease twice a year (March–May, September–
November), influenza in winter and spring, diarrhoea in summer. Two outbreaks stand out: measles in Thanh Hóa
about half a year ago, and dengue in Nghệ An in the last three complete weeks, which the detector flags.

The provinces' public-health centres (CDC Nghệ An, CDC Hà Tĩnh) are Organizations carrying their province's code
(sante.analytics.alerts.JURISDICTION_SYSTEM); the demo's public-health officer (the `public_health` account, a
member of the hospital's planning department) also holds a public_health PractitionerRole at CDC Nghệ An, so the
alerts of Nghệ An are addressed to them. After writing the cases, the alerts of the last weeks are raised.
Deterministic for (seed, now); a few seconds of seeding.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sante.analytics.alerts import JURISDICTION_SYSTEM, STAFF_ROLE_SYSTEM, raise_alerts
from sante.analytics.indicators import load_population
from sante.clinical import admin_units, icd10
from sante.demo.hospital import Hospital
from sante.demo.people import PeopleFactory
from sante.store import Repository
from sante.store.bundles import commit_transaction, prepare_bundle

WEEKS = 5 * 52 + 8  # the detector's five baseline years, and the weeks shown after them
ALERT_WEEKS = 6  # the weeks whose alerts are raised after seeding
VIETNAM_TZ_HOURS = 7
PLACES = (("40", 60.0), ("42", 15.0), ("38", 15.0), ("01", 4.0), ("79", 3.0), ("48", 3.0))
NEAR_PLACES = PLACES[:3]  # where the rarer diseases are seen: Nghệ An and its neighbours
COMMON = 1.5  # cases a week: diseases below this are seen near the hospital only
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
BUNDLE_CASES = 250  # cases (patient + condition) per transaction Bundle
CDC = (("cdc-nghe-an", "40", "Trung tâm Kiểm soát Bệnh tật tỉnh Nghệ An"),
       ("cdc-ha-tinh", "42", "Trung tâm Kiểm soát Bệnh tật tỉnh Hà Tĩnh"))
CDC_OF = {province: org_id for org_id, province, _name in CDC}


@dataclass(frozen=True, slots=True)
class Pattern:
    """A disease's weekly cases over all the places: a base level, a yearly cycle peaking in `peak_week`."""

    code: str  # the ICD-10 code recorded
    base: float  # mean cases a week
    amplitude: float  # 0: flat; 1: the peak week has twice the mean, the trough none
    peak_week: int
    ages: tuple[int, int]


PATTERNS = (
    Pattern("A97.0", 4.0, 0.9, 40, (2, 70)),  # dengue, the rainy season
    Pattern("B08.4", 2.5, 0.7, 17, (0, 6)),  # hand-foot-mouth disease (a second peak in the autumn, below)
    Pattern("J10.1", 2.0, 0.8, 6, (1, 85)),  # influenza, winter
    Pattern("A09", 2.0, 0.4, 27, (0, 80)),  # acute diarrhoea, summer
    Pattern("A15.0", 0.8, 0.0, 1, (18, 85)),  # tuberculosis
    Pattern("B18.1", 0.4, 0.0, 1, (20, 70)),  # chronic hepatitis B
    Pattern("U07.1", 0.3, 0.3, 5, (10, 90)),  # COVID-19
    Pattern("A01.0", 0.1, 0.0, 1, (5, 60)),  # typhoid
    Pattern("B05.9", 0.15, 0.0, 1, (0, 15)),  # measles
)


@dataclass(frozen=True, slots=True)
class Outbreak:
    code: str
    province: str
    weeks_ago: tuple[int, int]  # first and last, counted back from the last complete week (0)
    extra: float  # more cases a week


OUTBREAKS = (Outbreak("B05.9", "38", (30, 26), 6.0), Outbreak("A97.0", "40", (2, 0), 14.0))


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth; means here are small)."""
    if mean <= 0:
        return 0
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def _weekly_mean(p: Pattern, monday: date) -> float:
    week = monday.isocalendar()[1]
    cycle = math.cos(2 * math.pi * (week - p.peak_week) / 52)
    if p.code == "B08.4":
        cycle = max(cycle, math.cos(2 * math.pi * (week - 40) / 52))
    return p.base * max(0.0, 1 + p.amplitude * cycle)


def _weighted(rng: random.Random, choices: tuple[tuple[str, float], ...]) -> str:
    total = sum(w for _, w in choices)
    x = rng.random() * total
    for value, weight in choices:
        x -= weight
        if x <= 0:
            return value
    return choices[-1][0]


@dataclass(frozen=True, slots=True)
class PlannedCase:
    code: str
    province: str
    onset: date


def planned_cases(rng: random.Random, last_monday: date) -> list[PlannedCase]:
    """The cases of the WEEKS weeks ending with the week of `last_monday`, outbreaks included."""
    out = []
    for n in range(WEEKS):
        monday = last_monday - timedelta(weeks=WEEKS - 1 - n)
        ago = WEEKS - 1 - n
        for p in PATTERNS:
            for _ in range(_poisson(rng, _weekly_mean(p, monday))):
                places = PLACES if p.base >= COMMON else NEAR_PLACES
                out.append(PlannedCase(p.code, _weighted(rng, places), monday + timedelta(days=rng.randrange(7))))
        for o in OUTBREAKS:
            if o.weeks_ago[1] <= ago <= o.weeks_ago[0]:
                for _ in range(_poisson(rng, o.extra)):
                    out.append(PlannedCase(o.code, o.province, monday + timedelta(days=rng.randrange(7))))
    return out


def _ages(code: str) -> tuple[int, int]:
    return next(p.ages for p in PATTERNS if p.code == code)


def _condition(case: PlannedCase, patient_urn: str, rid: str, today: date, rng: random.Random) -> dict[str, Any]:
    entry = icd10.lookup(case.code)
    onset = datetime.combine(case.onset, time(rng.randint(6, 20), rng.randrange(60)))
    recorded = min(case.onset + timedelta(days=rng.randint(0, 3)), today)
    resolved = (today - case.onset).days > 28 and not case.code.startswith(("A15", "B18"))
    coding: dict[str, str] = {"system": icd10.ICD10_SYSTEM, "code": case.code}
    if entry is not None:
        coding["display"] = entry.vi
    return {
        "resourceType": "Condition", "id": rid,
        "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "resolved" if resolved else "active"}]},
        "verificationStatus": {"coding": [{"system": CONDITION_VERIFICATION, "code": "confirmed"}]},
        "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "encounter-diagnosis"}]}],
        "code": {"coding": [coding], "text": entry.vi if entry else case.code},
        "subject": {"reference": patient_urn},
        "onsetDateTime": onset.isoformat() + f"+{VIETNAM_TZ_HOURS:02d}:00",
        "recordedDate": recorded.isoformat(),
    }


def case_resources(seed: int, today: date) -> Iterator[list[dict[str, Any]]]:
    """The cases as Bundles' worth of resources: a Patient (name, sex, birth date, address; managed by its
    province's public-health centre where the demo has one) and its Condition."""
    rng = random.Random(f"sante-demo:{seed}:surveillance")
    ids = random.Random(f"sante-demo:{seed}:surveillance-ids")
    people = PeopleFactory(today)
    last_monday = today - timedelta(days=today.weekday() + 7)  # the last complete week
    batch: list[dict[str, Any]] = []
    for case in planned_cases(rng, last_monday):
        age = min(rng.randint(*_ages(case.code)), 95)
        person = people.person(rng, age)
        commune = rng.choice(admin_units.communes(case.province))
        pid, cid = (str(uuid.UUID(int=ids.getrandbits(128), version=4)) for _ in range(2))
        batch.append({"resourceType": "Patient", "id": pid, "active": True, "name": [person.name.fhir()],
                      "gender": person.gender, "birthDate": person.birth_date.isoformat(),
                      "address": [admin_units.fhir_address(person.line, commune.code)]})
        if case.province in CDC_OF:
            batch[-1]["managingOrganization"] = {"reference": f"Organization/{CDC_OF[case.province]}"}
        batch.append(_condition(case, f"urn:uuid:{pid}", cid, today, rng))
        if len(batch) >= 2 * BUNDLE_CASES:
            yield batch
            batch = []
    if batch:
        yield batch


def public_health_resources(hospital: Hospital) -> list[dict[str, Any]]:
    """The provinces' public-health centres, and the demo officer's role at CDC Nghệ An."""
    out: list[dict[str, Any]] = []
    for org_id, province, name in CDC:
        out.append({"resourceType": "Organization", "id": org_id, "active": True, "name": name,
                    "identifier": [{"system": JURISDICTION_SYSTEM, "value": province}],
                    "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type",
                                          "code": "govt", "display": "Government"}]}]})
    officer = next((s for s in hospital.staff if s.role == "public_health"), None)
    if officer is not None:
        out.append({"resourceType": "PractitionerRole", "id": "cdc-nghe-an-giam-sat", "active": True,
                    "practitioner": {"reference": f"Practitioner/{officer.practitioner}"},
                    "organization": {"reference": f"Organization/{CDC[0][0]}"},
                    "code": [{"coding": [{"system": STAFF_ROLE_SYSTEM, "code": "public_health"}],
                              "text": "Cán bộ giám sát dịch tễ"}]})
    return out


def _put_bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                      for r in resources]}


def _post_bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r,
                       "request": {"method": "POST", "url": r["resourceType"]}} for r in resources]}


def seed_surveillance(repo: Repository, hospital: Hospital, seed: int, now: datetime,
                      progress: Callable[[str, int, int | None], None]) -> int:
    """Write the public-health centres and the cases (one database transaction), then raise the alerts of the
    last ALERT_WEEKS weeks. Returns how many resources were written."""
    today = now.date()
    written = 0
    with repo.transaction() as tx:
        centres = public_health_resources(hospital)
        commit_transaction(tx, prepare_bundle(_put_bundle(centres)))
        written += len(centres)
        for batch in case_resources(seed, today):
            commit_transaction(tx, prepare_bundle(_post_bundle(batch)))
            written += len(batch)
            progress("Ca bệnh truyền nhiễm (notifiable cases)", len(batch), None)
    data = load_population(repo)
    last = today - timedelta(days=today.weekday() + 7)
    for n in range(ALERT_WEEKS - 1, -1, -1):
        year, week, _ = (last - timedelta(weeks=n)).isocalendar()
        run = raise_alerts(repo, data, (year, week), now=now)
        written += 2 * len(run.created)
    return written


__all__ = ["OUTBREAKS", "PATTERNS", "case_resources", "planned_cases", "public_health_resources",
           "seed_surveillance"]
