"""A small hospital for the web app's tests: users of every kind of role and a few patients written through the
repository, one of them (Nguyễn Văn An) with a full record — identifiers, vital signs over several days, an
allergy, an alert, problems, medications, laboratory results (one flagged high) and encounters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sante.auth.users import UserStore
from sante.clinical.identifiers import fhir_identifier
from sante.store import Repository

PASSWORD = "correct horse battery"
AN = "an-nguyen"
CCCD = "001085012345"
BHYT = "DN4790123456789"
MRN = "BV-000123"
PHONE = "0912345678"
ORG = "bv-hanoi"
OTHER_ORG = "bv-hue"
USERS = {  # username: (role, organization)
    "thu": ("receptionist", None), "hoa": ("nurse", None), "lan": ("physician", None),
    "chi": ("pharmacist", None), "tam": ("lab_technician", None), "minh": ("manager", None),
    "root": ("admin", None), "hue": ("nurse", OTHER_ORG),
}
VITAL = "http://terminology.hl7.org/CodeSystem/observation-category"
LOINC = "http://loinc.org"
INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
START = datetime(2026, 11, 16, 1, 0, tzinfo=UTC)  # 08:00 in Hanoi


def _patient(pid: str, family: str, given: list[str], gender: str, birth: str, cccd: str, org: str,
             **more: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"use": "official", "family": family, "given": given,
                                                            "text": " ".join([family, *given])}],
            "gender": gender, "birthDate": birth, "managingOrganization": {"reference": f"Organization/{org}"},
            "identifier": [{"system": "urn:vn:cccd", "value": cccd}], **more}


def _vital(n: int, when: datetime, code: str, display: str, value: float | None, unit: str,
           components: list[tuple[str, str, float]] | None = None) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation", "id": f"an-vital-{n}", "status": "final",
        "category": [{"coding": [{"system": VITAL, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
        "subject": {"reference": f"Patient/{AN}"}, "effectiveDateTime": when.isoformat().replace("+00:00", "Z"),
    }
    if value is not None:
        obs["valueQuantity"] = {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    if components:
        obs["component"] = [{"code": {"coding": [{"system": LOINC, "code": c, "display": d}]},
                             "valueQuantity": {"value": v, "unit": "mmHg", "system": "http://unitsofmeasure.org",
                                               "code": "mm[Hg]"}} for c, d, v in components]
    return obs


def an_record() -> list[dict[str, Any]]:
    """Nguyễn Văn An's whole record."""
    an = _patient(AN, "Nguyễn", ["Văn", "An"], "male", "1985-03-12", CCCD, ORG,
                  telecom=[{"system": "phone", "value": PHONE, "use": "mobile"}])
    # Sante's own identifiers (sante.clinical.identifiers); the other patients have others' (urn:vn:cccd).
    an["identifier"] = [fhir_identifier("cccd", CCCD), fhir_identifier("bhyt", BHYT), fhir_identifier("mrn", MRN)]
    out: list[dict[str, Any]] = [an]
    pulses, systolic, diastolic = [78, 84, 92, 88, 76], [128, 135, 150, 142, 132], [82, 86, 95, 90, 84]
    temps, spo2 = [36.8, 37.4, 38.2, 37.6, 36.9], [98, 97, 95, 96, 98]
    n = 0
    for day in range(5):
        when = START + timedelta(days=day)
        for code, display, value, unit in (("8867-4", "Heart rate", pulses[day], "/min"),
                                           ("8310-5", "Body temperature", temps[day], "Cel"),
                                           ("59408-5", "Oxygen saturation", spo2[day], "%"),
                                           ("9279-1", "Respiratory rate", 16 + day % 3, "/min")):
            n += 1
            out.append(_vital(n, when, code, display, value, unit))
        n += 1
        out.append(_vital(n, when, "85354-9", "Blood pressure panel", None, "",
                          [("8480-6", "Systolic", systolic[day]), ("8462-4", "Diastolic", diastolic[day])]))
    n += 1
    out.append(_vital(n, START, "29463-7", "Body weight", 68.5, "kg"))
    out += [
        {"resourceType": "AllergyIntolerance", "id": "an-allergy", "patient": {"reference": f"Patient/{AN}"},
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                                        "code": "active"}]},
         "criticality": "high", "code": {"text": "Penicillin"},
         "reaction": [{"manifestation": [{"text": "Phát ban"}]}]},
        {"resourceType": "Flag", "id": "an-flag", "status": "active", "code": {"text": "Nguy cơ té ngã"},
         "subject": {"reference": f"Patient/{AN}"}},
        {"resourceType": "Condition", "id": "an-htn", "subject": {"reference": f"Patient/{AN}"},
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                        "code": "active"}]},
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10",
                              "display": "Tăng huyết áp vô căn"}]}, "onsetDateTime": "2019-06-01"},
        {"resourceType": "Condition", "id": "an-dm", "subject": {"reference": f"Patient/{AN}"},
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                        "code": "active"}]},
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11",
                              "display": "Đái tháo đường type 2"}]}, "onsetDateTime": "2021-09-15"},
        {"resourceType": "Medication", "id": "amlodipine", "code": {"text": "Amlodipin 5 mg viên"}},
        {"resourceType": "MedicationRequest", "id": "an-rx-1", "status": "active", "intent": "order",
         "medicationReference": {"reference": "Medication/amlodipine"}, "subject": {"reference": f"Patient/{AN}"},
         "authoredOn": "2026-11-16", "dosageInstruction": [{"text": "1 viên uống buổi sáng"}]},
        {"resourceType": "MedicationRequest", "id": "an-rx-2", "status": "active", "intent": "order",
         "medicationCodeableConcept": {"text": "Metformin 500 mg viên"}, "subject": {"reference": f"Patient/{AN}"},
         "authoredOn": "2026-11-16", "dosageInstruction": [{"text": "1 viên × 2 lần/ngày sau ăn"}]},
        {"resourceType": "MedicationRequest", "id": "an-rx-3", "status": "stopped", "intent": "order",
         "medicationCodeableConcept": {"text": "Paracetamol 500 mg viên"}, "subject": {"reference": f"Patient/{AN}"},
         "authoredOn": "2026-11-10"},
        {"resourceType": "Observation", "id": "an-glucose", "status": "final",
         "category": [{"coding": [{"system": VITAL, "code": "laboratory"}]}],
         "code": {"coding": [{"system": LOINC, "code": "2345-7", "display": "Glucose"}], "text": "Glucose máu"},
         "subject": {"reference": f"Patient/{AN}"}, "effectiveDateTime": "2026-11-18T00:30:00Z",
         "valueQuantity": {"value": 8.2, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
         "interpretation": [{"coding": [{"system": INTERP, "code": "H"}]}],
         "referenceRange": [{"low": {"value": 3.9, "unit": "mmol/L"}, "high": {"value": 6.1, "unit": "mmol/L"}}]},
        {"resourceType": "Observation", "id": "an-creatinine", "status": "final",
         "category": [{"coding": [{"system": VITAL, "code": "laboratory"}]}],
         "code": {"coding": [{"system": LOINC, "code": "2160-0", "display": "Creatinine"}], "text": "Creatinin"},
         "subject": {"reference": f"Patient/{AN}"}, "effectiveDateTime": "2026-11-18T00:30:00Z",
         "valueQuantity": {"value": 88, "unit": "µmol/L", "system": "http://unitsofmeasure.org", "code": "umol/L"},
         "referenceRange": [{"low": {"value": 62, "unit": "µmol/L"}, "high": {"value": 115, "unit": "µmol/L"}}]},
        {"resourceType": "Encounter", "id": "an-visit", "status": "in-progress",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
         "type": [{"text": "Điều trị nội trú"}], "subject": {"reference": f"Patient/{AN}"},
         "period": {"start": "2026-11-16T00:45:00Z"}, "location": [{"location": {"display": "Khoa Nội tim mạch"}}],
         "serviceProvider": {"reference": f"Organization/{ORG}"}},
    ]
    return out


def others() -> list[dict[str, Any]]:
    return [
        _patient("binh-tran", "Trần", ["Thị", "Bình"], "female", "1992-07-01", "001192004567", ORG),
        _patient("cuc-nguyen", "Nguyễn", ["Thị", "Cúc"], "female", "1958-11-30", "001158009876", ORG),
        _patient("dung-le", "Lê", ["Văn", "Dũng"], "male", "2001-01-20", "046201001111", OTHER_ORG),
    ]


def seed(repo: Repository, users: UserStore) -> None:
    """Write the users and the patients (through the repository)."""
    for name, (role, org) in USERS.items():
        users.add(name, PASSWORD, role, organization=f"Organization/{org}" if org else None)
    with repo.transaction() as tx:
        for org in (ORG, OTHER_ORG):
            tx.update({"resourceType": "Organization", "id": org, "name": org}, org)
        for resource in [*others(), *an_record()]:
            tx.update(resource, resource["id"])
