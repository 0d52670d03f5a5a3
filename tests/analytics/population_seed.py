"""A small population for the population-health tests: patients living in known communes of Hà Nội (01) and Nghệ An
(40), notifiable-disease cases on known days (ISO-week boundaries among them), a refuted diagnosis, hypertension
and diabetes with treatment and results, children's vaccinations, qualitative laboratory results and stays."""

from __future__ import annotations

from datetime import date
from typing import Any

from sante.clinical.admin_units import fhir_address
from sante.store import Repository

ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
BA_DINH, NGOC_HA, THANH_VINH = "00004", "00008", "16681"  # two wards of Hà Nội (01), one of Nghệ An (40)
TODAY = date.today()  # the children are 2 and 3 years old whenever the tests run


def patient(pid: str, gender: str, birth: str, commune: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Patient", "id": pid, "gender": gender, "birthDate": birth,
                           "name": [{"family": "Nguyễn", "given": [pid]}]}
    if commune:
        out["address"] = [fhir_address("Số 1", commune)]
    return out


def condition(cid: str, pid: str, code: str, onset: str, *, status: str = "active",
              verification: str = "confirmed") -> dict[str, Any]:
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{pid}"},
            "code": {"coding": [{"system": ICD10, "code": code}]}, "onsetDateTime": onset,
            "clinicalStatus": {"coding": [{"system": CLINICAL, "code": status}]},
            "verificationStatus": {"coding": [{"system": VERIFICATION, "code": verification}]}}


def blood_pressure(oid: str, pid: str, when: str, systolic: float, diastolic: float) -> dict[str, Any]:
    def part(code: str, value: float) -> dict[str, Any]:
        return {"code": {"coding": [{"system": LOINC, "code": code}]}, "valueQuantity": {"value": value,
                                                                                        "unit": "mmHg"}}

    return {"resourceType": "Observation", "id": oid, "status": "final", "subject": {"reference": f"Patient/{pid}"},
            "code": {"coding": [{"system": LOINC, "code": "85354-9"}]}, "effectiveDateTime": when,
            "component": [part("8480-6", systolic), part("8462-4", diastolic)]}


def result(oid: str, pid: str, code: str, when: str, *, value: float | None = None,
           positive: bool | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Observation", "id": oid, "status": "final",
                           "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when,
                           "code": {"coding": [{"system": LOINC, "code": code, "display": f"Test {code}"}]}}
    if value is not None:
        out["valueQuantity"] = {"value": value, "unit": "%"}
    if positive is not None:
        out["valueCodeableConcept"] = {"coding": [{"system": SNOMED, "code": "10828004" if positive else "260385009"}]}
    return out


def population() -> list[dict[str, Any]]:
    out = [
        patient("a", "female", "2019-06-01", BA_DINH), patient("b", "male", "1990-02-01", BA_DINH),
        patient("c", "male", "1950", NGOC_HA),  # a partial birth date: 1 January
        patient("d", "female", "1985-05-05", THANH_VINH),
        patient("e", "male", "2000-01-01", None),  # no address: in the totals, not on the map
        patient("kid1", "female", str(TODAY.year - 2) + "-01-15", BA_DINH),
        patient("kid2", "male", str(TODAY.year - 3) + "-03-15", BA_DINH),
        # dengue: 2024-12-30 is a Monday of ISO week 2025-W01; 2025-01-05 (Sunday) too; 2025-01-06 is W02
        condition("d1", "a", "A91", "2024-12-30T08:00:00+07:00"),
        condition("d2", "b", "A90", "2025-01-05"),
        condition("d3", "c", "A97.0", "2025-01-06"),
        condition("d4", "d", "A91", "2025-01-07"),
        condition("d5", "e", "A91", "2025-01-08"),
        condition("d6", "b", "A91", "2025-01-09", verification="refuted"),  # not counted
        condition("h1", "a", "B08.4", "2020-12-31"),  # 2020-W53
        condition("m1", "b", "B05.9", "2025-01-06"),
        condition("x1", "b", "J18.9", "2025-01-06"),  # pneumonia: not notifiable
        # chronic: c hypertensive, treated, last BP controlled; d diabetic, untreated, last HbA1c 8.1 %
        condition("ht", "c", "I10", "2020-01-01"), condition("dm", "d", "E11.9", "2021-01-01"),
        {"resourceType": "MedicationRequest", "id": "rx1", "status": "active", "intent": "order",
         "subject": {"reference": "Patient/c"}, "medicationCodeableConcept": {"text": "amlodipine"}},
        {"resourceType": "MedicationRequest", "id": "rx2", "status": "completed", "intent": "order",
         "subject": {"reference": "Patient/d"}, "medicationCodeableConcept": {"text": "metformin"}},
        blood_pressure("bp1", "c", "2025-01-01", 160, 100), blood_pressure("bp2", "c", "2025-02-01", 130, 80),
        result("a1c", "d", "4548-4", "2025-01-10", value=8.1),
        result("ns1", "a", "75377-6", "2025-01-07", positive=True),
        result("ns2", "b", "75377-6", "2025-01-07", positive=False),
        result("ns3", "c", "75377-6", "2025-01-08", positive=False),
        {"resourceType": "Immunization", "id": "v1", "status": "completed", "patient": {"reference": "Patient/kid1"},
         "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "05"}], "text": "Sởi – Rubella"},
         "occurrenceDateTime": str(TODAY.year - 1) + "-02-01"},
        # a stay of 3 days in January 2025, and a visit
        {"resourceType": "Encounter", "id": "s1", "status": "finished", "class": {"code": "IMP"},
         "subject": {"reference": "Patient/b"}, "period": {"start": "2025-01-06T09:00:00+07:00",
                                                           "end": "2025-01-09T10:00:00+07:00"}},
        {"resourceType": "Encounter", "id": "o1", "status": "finished", "class": {"code": "AMB"},
         "subject": {"reference": "Patient/a"}, "period": {"start": "2025-01-07T09:00:00+07:00",
                                                           "end": "2025-01-07T09:30:00+07:00"}},
        {"resourceType": "Location", "id": "bed1", "status": "active", "name": "G1",
         "physicalType": {"coding": [{"code": "bd"}]}},
        {"resourceType": "Location", "id": "bed2", "status": "active", "name": "G2",
         "physicalType": {"coding": [{"code": "bd"}]}},
    ]
    return out


def write(repo: Repository, resources: list[dict[str, Any]]) -> None:
    with repo.transaction() as tx:
        for r in resources:
            tx.update(r, r["id"])


def weekly_dengue(province: str, counts: dict[tuple[int, int], int]) -> list[dict[str, Any]]:
    """Dengue cases living in `province` (Nghệ An: the ward of Thành Vinh; else Ba Đình, Hà Nội) on the Wednesday of
    each ISO week given ((year, week) -> cases): a patient and a Condition each."""
    commune = THANH_VINH if province == "40" else BA_DINH
    resources: list[dict[str, Any]] = []
    for (year, week), count in counts.items():
        day = date.fromisocalendar(year, week, 3)
        for n in range(count):
            pid = f"w{province}-{year}-{week}-{n}"
            resources += [patient(pid, "male" if n % 2 else "female", "1990-01-01", commune),
                          condition(f"c{pid}", pid, "A91", day.isoformat())]
    return resources
