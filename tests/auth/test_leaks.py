"""A patient sees only their own record, and staff of one hospital only that hospital's patients: no leak through
reads, searches, includes, chains, reverse chains, counts, history, compartments or bundles."""

from __future__ import annotations

import pytest

from tests.support.api import api_client, client_for


def _ids(bundle: dict) -> set[str]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])}


@pytest.fixture
def admin(repo, tmp_path):
    c = api_client(repo, tmp_path, role="admin", scopes="user/*.cruds", subject="root")
    data = [
        {"resourceType": "Organization", "id": "org1", "name": "Bạch Mai"},
        {"resourceType": "Organization", "id": "org2", "name": "Chợ Rẫy"},
        {"resourceType": "Patient", "id": "p1", "name": [{"family": "Nguyễn", "given": ["An"]}],
         "managingOrganization": {"reference": "Organization/org1"}},
        {"resourceType": "Patient", "id": "p2", "name": [{"family": "Trần", "given": ["Bình"]}],
         "managingOrganization": {"reference": "Organization/org2"}},
    ]
    for pid in ("p1", "p2"):
        for n in range(3):
            data.append({"resourceType": "Observation", "id": f"{pid}-o{n}", "status": "final",
                         "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                         "subject": {"reference": f"Patient/{pid}"}, "valueQuantity": {"value": 60 + n}})
        data.append({"resourceType": "Encounter", "id": f"{pid}-e", "status": "finished",
                     "class": {"code": "AMB"}, "subject": {"reference": f"Patient/{pid}"}})
    for res in data:
        assert c.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res).status_code == 201
    return c


@pytest.fixture
def patient(admin):
    return client_for(admin.app, role="patient", scopes="patient/*.cruds", patient="p1", fhir_user="Patient/p1",
                      subject="an")


def test_patient_reads_only_their_own(patient):
    assert patient.get("/fhir/Patient/p1").status_code == 200
    assert patient.get("/fhir/Observation/p1-o0").status_code == 200
    for url in ("/fhir/Patient/p2", "/fhir/Observation/p2-o0", "/fhir/Observation/p2-o0/_history/1",
                "/fhir/Observation/p2-o0/_history", "/fhir/Patient/p2/Observation", "/fhir/Encounter/p2-e"):
        r = patient.get(url)
        assert r.status_code == 404, (url, r.status_code)
    assert patient.get("/fhir/Organization/org2").status_code == 200  # reference data is not patient data


def test_patient_searches_see_only_their_own(patient):
    own = {f"Observation/p1-o{n}" for n in range(3)}
    assert _ids(patient.get("/fhir/Observation").json()) == own
    assert _ids(patient.get("/fhir/Observation", params={"_id": "p2-o0,p1-o1"}).json()) == {"Observation/p1-o1"}
    assert _ids(patient.get("/fhir/Observation", params={"subject": "Patient/p2"}).json()) == set()
    counted = patient.get("/fhir/Observation", params={"_total": "accurate", "code": "8867-4"}).json()
    assert counted["total"] == 3
    assert patient.get("/fhir/Observation", params={"_summary": "count"}).json()["total"] == 3
    assert _ids(patient.get("/fhir/Patient").json()) == {"Patient/p1"}
    # chains and reverse chains are evaluated inside the patient's rows only
    assert _ids(patient.get("/fhir/Observation", params={"subject:Patient.family": "Tran"}).json()) == set()
    assert _ids(patient.get("/fhir/Patient", params={"_has:Observation:subject:code": "8867-4"}).json()) == {
        "Patient/p1"}
    # includes never bring in another patient's resources
    inc = patient.get("/fhir/Patient", params={"_revinclude": "Observation:subject"}).json()
    assert _ids(inc) == {"Patient/p1"} | {f"Observation/p1-o{n}" for n in range(3)}
    assert patient.get("/fhir/Patient/p2/Observation").status_code == 404


def test_patient_cannot_write_for_someone_else(patient, admin):
    other = {"resourceType": "Observation", "status": "final", "code": {"text": "glucose"},
             "subject": {"reference": "Patient/p2"}, "valueQuantity": {"value": 5.4}}
    assert patient.post("/fhir/Observation", json=other).status_code == 403
    assert _ids(admin.get("/fhir/Observation", params={"subject": "p2"}).json()) == {
        f"Observation/p2-o{n}" for n in range(3)}  # nothing was written
    mine = {**other, "subject": {"reference": "Patient/p1"}}
    assert patient.post("/fhir/Observation", json=mine).status_code == 201  # a home-device reading
    assert patient.put("/fhir/Observation/p2-o0", json={**other, "id": "p2-o0"}).status_code == 404
    assert patient.delete("/fhir/Observation/p2-o0").status_code in (403, 404)
    assert admin.get("/fhir/Observation/p2-o0").status_code == 200


def test_patient_is_refused_wholesale_views(patient):
    assert patient.get("/fhir/Observation/_history").status_code == 403
    assert patient.get("/fhir/_history").status_code == 403
    assert patient.get("/fhir/AuditEvent").status_code == 403
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": "Observation?subject=Patient/p2"}}]}
    assert patient.post("/fhir", json=bundle).status_code == 403


def test_staff_see_their_organizations_patients(admin):
    nurse = client_for(admin.app, role="nurse", scopes="user/*.cruds", organization="Organization/org1",
                       fhir_user="Practitioner/n1", subject="nurse1")
    assert nurse.get("/fhir/Observation/p1-o0").status_code == 200
    assert nurse.get("/fhir/Observation/p2-o0").status_code == 404
    assert _ids(nurse.get("/fhir/Patient").json()) == {"Patient/p1"}
    assert nurse.get("/fhir/Encounter", params={"_total": "accurate"}).json()["total"] == 1
    inc = nurse.get("/fhir/Observation", params={"_include": "Observation:subject", "code": "8867-4"}).json()
    assert _ids(inc) == {f"Observation/p1-o{n}" for n in range(3)} | {"Patient/p1"}


def test_break_the_glass_opens_for_a_time_and_is_flagged(admin):
    nurse = client_for(admin.app, role="nurse", scopes="user/*.cruds", organization="Organization/org1",
                       fhir_user="Practitioner/n1", subject="nurse1")
    assert nurse.post("/auth/break-glass", json={"reason": "short"}).status_code == 400
    r = nurse.post("/auth/break-glass", json={"reason": "unconscious patient in the emergency room",
                                              "minutes": 30})
    assert r.status_code == 200, r.text
    assert nurse.get("/fhir/Observation/p2-o0").status_code == 200
    events = admin.get("/fhir/AuditEvent", params={"agent": "nurse1", "_count": "20"}).json()["entry"]
    flagged = [e["resource"] for e in events if e["resource"].get("purposeOfEvent")]
    assert {e["subtype"][0]["code"] for e in flagged} >= {"break-glass", "read"}
    assert all(e["purposeOfEvent"][0]["coding"][0]["code"] == "BTG" for e in flagged)
    receptionist = client_for(admin.app, role="receptionist", scopes="user/*.cruds", subject="desk")
    assert receptionist.post("/auth/break-glass", json={"reason": "I would like to see everything"}
                             ).status_code == 400


def test_tokens_are_required(admin):
    from fastapi.testclient import TestClient

    anon = TestClient(admin.app, raise_server_exceptions=False)
    assert anon.get("/fhir/metadata").status_code == 200
    for method, url in (("GET", "/fhir/Patient/p1"), ("GET", "/fhir/Observation"), ("POST", "/fhir"),
                        ("GET", "/fhir/openapi.json"), ("GET", "/fhir/AuditEvent"), ("DELETE", "/fhir/Patient/p1")):
        r = anon.request(method, url)
        assert r.status_code == 401, (method, url, r.status_code)
        assert r.json()["resourceType"] == "OperationOutcome"
        assert r.headers["www-authenticate"].startswith("Bearer")
    for bad in ("Bearer nonsense", "Bearer a.b.c", "Basic dXNlcjpwYXNz"):
        assert anon.get("/fhir/Patient/p1", headers={"Authorization": bad}).status_code == 401
    sec = admin.app.state.security
    expired = sec.tokens.issue(subject="x", role="admin", scopes="user/*.cruds", lifetime=-10).token
    assert anon.get("/fhir/Patient/p1", headers={"Authorization": f"Bearer {expired}"}).status_code == 401
    live = sec.tokens.issue(subject="x", role="admin", scopes="user/*.cruds").token
    assert anon.get("/fhir/Patient/p1", headers={"Authorization": f"Bearer {live}"}).status_code == 200
    assert sec.tokens.revoke(live)
    assert anon.get("/fhir/Patient/p1", headers={"Authorization": f"Bearer {live}"}).status_code == 401


def test_treating_organizations_see_the_patient_unless_consent_denies_it(admin):
    nurse = client_for(admin.app, role="nurse", scopes="user/*.cruds", organization="Organization/org1",
                       fhir_user="Practitioner/n1", subject="nurse1")
    assert nurse.get("/fhir/Observation/p2-o0").status_code == 404
    visit = {"resourceType": "Encounter", "id": "p2-visit", "status": "finished", "class": {"code": "EMER"},
             "subject": {"reference": "Patient/p2"}, "serviceProvider": {"reference": "Organization/org1"}}
    assert admin.put("/fhir/Encounter/p2-visit", json=visit).status_code == 201
    assert nurse.get("/fhir/Observation/p2-o0").status_code == 200  # p2 was treated at org1
    assert _ids(nurse.get("/fhir/Patient").json()) == {"Patient/p1", "Patient/p2"}
    consent = {"resourceType": "Consent", "id": "c1", "status": "active",
               "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                     "code": "patient-privacy"}]},
               "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
               "patient": {"reference": "Patient/p2"},
               "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                          "code": "OPTOUT"}]},
               "provision": {"type": "deny", "actor": [{
                   "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                        "code": "PRCP"}]},
                   "reference": {"reference": "Organization/org1"}}]}}
    assert admin.put("/fhir/Consent/c1", json=consent).status_code == 201, admin.put(
        "/fhir/Consent/c1", json=consent).text
    assert nurse.get("/fhir/Observation/p2-o0").status_code == 404  # the patient said no
    assert _ids(nurse.get("/fhir/Patient").json()) == {"Patient/p1"}
    assert admin.put("/fhir/Consent/c1", json={**consent, "status": "inactive"}).status_code == 200
    assert nurse.get("/fhir/Observation/p2-o0").status_code == 200  # withdrawn
    assert admin.put("/fhir/Consent/c1", json=consent).status_code == 200
    nurse.post("/auth/break-glass", json={"reason": "cardiac arrest, history needed now"})
    assert nurse.get("/fhir/Observation/p2-o0").status_code == 200  # an emergency overrides it, audited


def test_operations_follow_the_same_rules(admin):
    patient = client_for(admin.app, role="patient", scopes="patient/*.rs", patient="p1", fhir_user="Patient/p1")
    own = patient.get("/fhir/Patient/p1/$everything")
    assert own.status_code == 200
    assert {e["resource"]["id"] for e in own.json()["entry"]} == {"p1", "p1-o0", "p1-o1", "p1-o2", "p1-e"}
    assert patient.get("/fhir/Patient/p2/$everything").status_code == 404
    assert patient.get("/fhir/Observation/p2-o0/$meta").status_code == 404
    assert patient.get("/fhir/$export", headers={"Prefer": "respond-async"}).status_code == 403
    assert patient.get("/fhir/Patient/$export", headers={"Prefer": "respond-async"}).status_code == 403
    desk = client_for(admin.app, role="receptionist", scopes="user/*.cruds", subject="desk")
    seen = {e["resource"]["resourceType"] for e in desk.get("/fhir/Patient/p2/$everything").json()["entry"]}
    assert seen == {"Patient", "Encounter"}  # no Observations for the front desk
    nurse = client_for(admin.app, role="nurse", scopes="user/*.cruds", organization="Organization/org1",
                       subject="nurse1")
    assert nurse.get("/fhir/Patient/p2/$everything").status_code == 404
    assert nurse.get("/fhir/$export", headers={"Prefer": "respond-async"}).status_code == 403
    system = client_for(admin.app, role="system", scopes="system/*.rs")
    assert system.get("/fhir/$export", headers={"Prefer": "respond-async"}).status_code == 202


def test_export_jobs_belong_to_who_started_them(admin):
    import time

    one = client_for(admin.app, role="system", scopes="system/*.rs", subject="bridge-1")
    two = client_for(admin.app, role="system", scopes="system/*.rs", subject="bridge-2")
    started = one.get("/fhir/$export", headers={"Prefer": "respond-async"}, params={"_type": "Patient"})
    status_url = started.headers["content-location"].split("/fhir", 1)[1]
    for _ in range(100):
        r = one.get(f"/fhir{status_url}")
        if r.status_code == 200:
            break
        time.sleep(0.05)
    assert r.status_code == 200
    file_url = r.json()["output"][0]["url"].split("/fhir", 1)[1]
    assert one.get(f"/fhir{file_url}").status_code == 200
    assert two.get(f"/fhir{status_url}").status_code == 404
    assert two.get(f"/fhir{file_url}").status_code == 404
    assert two.delete(f"/fhir{status_url}").status_code == 404
    assert admin.get(f"/fhir{status_url}").status_code == 200
