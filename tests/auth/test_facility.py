"""Staff bound to an organization see the patients of their whole facility (the hospital and its departments,
linked by Organization.partOf), not another facility's; data about no patient (a pharmacy's stock receipts) is
not held back from them; and a patient's Consent denying the hospital covers its departments."""

from __future__ import annotations

import pytest

from tests.support.api import api_client, client_for


def _put(client, resource):
    r = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource)
    assert r.status_code in (200, 201), r.text


@pytest.fixture
def facility(repo, tmp_path):
    admin = api_client(repo, tmp_path, role="admin", scopes="user/*.cruds", subject="root")
    orgs = [{"resourceType": "Organization", "id": "bv", "name": "Bệnh viện A"},
            {"resourceType": "Organization", "id": "bv-noi", "name": "Khoa Nội", "partOf": {"reference": "Organization/bv"}},
            {"resourceType": "Organization", "id": "bv-noi-tm", "name": "Đơn vị Tim mạch",
             "partOf": {"reference": "Organization/bv-noi"}},
            {"resourceType": "Organization", "id": "other", "name": "Bệnh viện B"}]
    for org in orgs:
        _put(admin, org)
    # p1 treated by a department, p2 managed by the hospital itself, p3 by the other hospital only.
    _put(admin, {"resourceType": "Patient", "id": "p1", "name": [{"family": "Nguyễn"}]})
    _put(admin, {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"},
                 "subject": {"reference": "Patient/p1"}, "serviceProvider": {"reference": "Organization/bv-noi-tm"}})
    _put(admin, {"resourceType": "Patient", "id": "p2", "name": [{"family": "Trần"}],
                 "managingOrganization": {"reference": "Organization/bv"}})
    _put(admin, {"resourceType": "Patient", "id": "p3", "name": [{"family": "Lê"}],
                 "managingOrganization": {"reference": "Organization/other"}})
    for pid in ("p1", "p2", "p3"):
        _put(admin, {"resourceType": "Observation", "id": f"o-{pid}", "status": "final", "code": {"text": "pulse"},
                     "subject": {"reference": f"Patient/{pid}"}})
    _put(admin, {"resourceType": "SupplyDelivery", "id": "receipt-1", "status": "completed",
                 "suppliedItem": {"quantity": {"value": 100}, "itemCodeableConcept": {"text": "Paracetamol 500 mg"}}})
    return admin.app


@pytest.mark.parametrize("org", ["bv", "bv-noi", "bv-noi-tm"])
def test_any_unit_of_a_facility_sees_the_facilitys_patients(facility, org):
    nurse = client_for(facility, role="nurse", scopes="user/*.rs", organization=f"Organization/{org}")
    for pid in ("p1", "p2"):
        assert nurse.get(f"/fhir/Patient/{pid}").status_code == 200
        assert nurse.get(f"/fhir/Observation/o-{pid}").status_code == 200
    assert nurse.get("/fhir/Patient/p3").status_code == 404
    assert nurse.get("/fhir/Observation/o-p3").status_code == 404
    found = nurse.get("/fhir/Patient", params={"_total": "accurate"}).json()
    assert found["total"] == 2


def test_another_facility_sees_only_its_own(facility):
    nurse = client_for(facility, role="nurse", scopes="user/*.rs", organization="Organization/other")
    assert nurse.get("/fhir/Patient/p3").status_code == 200
    assert nurse.get("/fhir/Patient/p1").status_code == 404
    assert nurse.get("/fhir/Patient/p2").status_code == 404


def test_data_about_no_patient_is_visible_to_bound_staff(facility):
    pharmacist = client_for(facility, role="pharmacist", scopes="user/*.cruds", organization="Organization/bv-noi")
    assert pharmacist.get("/fhir/SupplyDelivery/receipt-1").status_code == 200
    assert len(pharmacist.get("/fhir/SupplyDelivery").json()["entry"]) == 1
    r = pharmacist.post("/fhir/SupplyDelivery", json={"resourceType": "SupplyDelivery", "status": "completed",
                                                      "suppliedItem": {"quantity": {"value": 5}}})
    assert r.status_code == 201, r.text


def test_a_consent_denying_the_hospital_covers_its_departments(facility):
    admin = client_for(facility, role="admin", scopes="user/*.cruds", subject="root")
    _put(admin, {"resourceType": "Consent", "id": "c1", "status": "active",
                 "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                       "code": "patient-privacy"}]},
                 "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                 "patient": {"reference": "Patient/p1"},
                 "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                            "code": "OPTOUT"}]},
                 "provision": {"type": "deny", "actor": [{
                     "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                          "code": "PRCP"}]},
                     "reference": {"reference": "Organization/bv"}}]}})
    nurse = client_for(facility, role="nurse", scopes="user/*.rs", organization="Organization/bv-noi-tm")
    assert nurse.get("/fhir/Patient/p1").status_code == 404
    assert nurse.get("/fhir/Patient/p2").status_code == 200
