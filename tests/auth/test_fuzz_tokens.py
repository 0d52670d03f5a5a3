"""Fuzzing the API with and without tokens: never a 5xx, never an answer without a valid token, and a patient's
token never brings back another patient's data, whatever the query."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sante.auth.roles import patient_data_types
from sante.store import open_repository
from tests.support.api import api_client, client_for

TYPES = ["Patient", "Observation", "Encounter", "Condition", "Organization", "Provenance", "AuditEvent", "Bundle"]
PARAMS = ["_id", "subject", "patient", "subject:Patient.name", "subject:Patient.family", "code", "_include",
          "_revinclude", "_include:iterate", "_has:Observation:subject:code", "_has:Observation:patient:_id",
          "_total", "_summary", "_count", "_sort", "name", "family", "organization", "general-practitioner",
          "encounter", "_elements", "_list", "identifier"]
VALUES = ["Observation:derived-from", "Observation:focus", "p1", "p2", "Patient/p2", "Patient/p1", "p2-o0", "Observation:subject", "Patient:organization",
          "Encounter:subject", "Observation:patient", "*", "accurate", "count", "Trần", "Tran", "Nguyen",
          "8867-4", "http://loinc.org|8867-4", "-date", "Patient/p2,Patient/p1", "org2", "Organization/org2", ""]
text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)


@pytest.fixture(scope="module")
def admin(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz-auth")
    c = api_client(open_repository(f"sqlite:///{d / 'f.db'}"), d, role="admin", scopes="user/*.cruds")
    c.put("/fhir/Organization/org2", json={"resourceType": "Organization", "id": "org2", "name": "Chợ Rẫy"})
    for pid, family in (("p1", "Nguyễn"), ("p2", "Trần")):
        c.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid, "name": [{"family": family}],
                                            "managingOrganization": {"reference": "Organization/org2"}})
        c.put(f"/fhir/Encounter/{pid}-e", json={"resourceType": "Encounter", "id": f"{pid}-e", "status": "finished",
                                                "class": {"code": "AMB"}, "subject": {"reference": f"Patient/{pid}"}})
        for n in range(2):
            c.put(f"/fhir/Observation/{pid}-o{n}", json={
                "resourceType": "Observation", "id": f"{pid}-o{n}", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": f"Patient/{pid}"}, "encounter": {"reference": f"Encounter/{pid}-e"}})
    # Links across patients, for includes to follow: p1's reading derived from p2's; p2's reading about p1.
    for oid, extra in (("p1-o0", {"derivedFrom": [{"reference": "Observation/p2-o0"}]}),
                       ("p2-o1", {"focus": [{"reference": "Patient/p1"}]})):
        body = c.get(f"/fhir/Observation/{oid}").json()
        assert c.put(f"/fhir/Observation/{oid}", json={**body, **extra}).status_code == 200
    return c


@pytest.fixture(scope="module")
def patient(admin):
    return client_for(admin.app, role="patient", scopes="patient/*.rs", patient="p1", fhir_user="Patient/p1")


def _foreign(resource: dict) -> bool:
    """Whether a resource returned to p1 belongs to someone else."""
    if resource.get("resourceType") not in patient_data_types():
        return False
    refs = [resource.get(k, {}).get("reference", "") for k in ("subject", "patient") if isinstance(resource.get(k), dict)]
    return str(resource.get("id", "")).startswith("p2") or "Patient/p2" in refs


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(rtype="Observation", query=[("_include", "Observation:derived-from")])
@example(rtype="Patient", query=[("_revinclude", "Observation:focus")])
@example(rtype="Observation", query=[("_include:iterate", "Observation:derived-from"),
                                     ("_include:iterate", "Observation:subject")])
@given(rtype=st.sampled_from(TYPES),
       query=st.lists(st.tuples(st.sampled_from(PARAMS), st.sampled_from(VALUES) | text), max_size=4))
def test_a_patient_never_sees_another_patients_data(patient, rtype, query):
    r = patient.get(f"/fhir/{rtype}", params=query)
    assert r.status_code < 500, r.text[:300]
    if r.status_code == 200:
        body = r.json()
        for entry in body.get("entry", []):
            assert not _foreign(entry.get("resource", {})), (rtype, query, entry)
        if "total" in body:
            assert body["total"] <= {"Observation": 2, "Encounter": 1, "Patient": 1}.get(rtype, 10**6)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.lists(st.sampled_from(["Patient", "p2", "p1", "Observation", "p2-o0", "_history", "1",
                                      "$everything", "Encounter", "p2-e", "_search"]) | text, min_size=1, max_size=4),
       method=st.sampled_from(["get", "delete"]))
def test_a_patient_never_reads_another_patient_by_path(patient, path, method):
    url = "/fhir/" + "/".join(quote(p, safe="$_") or "x" for p in path)
    r = getattr(patient, method)(url)
    assert r.status_code < 500, r.text[:300]
    if r.status_code == 200 and r.headers.get("content-type", "").startswith("application/fhir+json"):
        body = r.json()
        resources = [e.get("resource", {}) for e in body.get("entry", [])] if body.get(
            "resourceType") == "Bundle" else [body]
        for res in resources:
            assert not _foreign(res), (url, res)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.lists(text, min_size=0, max_size=3), method=st.sampled_from(["get", "post", "put", "delete"]),
       auth=st.sampled_from(["", "Bearer ", "Bearer x.y.z", "Basic Zm9vOmJhcg==", "Bearer eyJhbGciOiJub25lIn0.e30."]))
def test_without_a_valid_token_nothing_but_the_public_documents(admin, path, method, auth):
    anon = TestClient(admin.app, raise_server_exceptions=False)
    url = "/fhir/" + "/".join(quote(p, safe="$_") or "x" for p in path)
    r = anon.request(method, url, headers={"Authorization": auth} if auth else {})
    assert r.status_code < 500, r.text[:300]
    if url.rstrip("/") != "/fhir/metadata":
        assert r.status_code in (401, 404, 405), (method, url, r.status_code)
        assert "p1" not in r.text and "p2" not in r.text
