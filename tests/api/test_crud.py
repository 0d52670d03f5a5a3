"""The REST interactions over HTTP, on both backends: statuses, headers and OperationOutcome errors."""

from __future__ import annotations

import pytest

from tests.support.api import api_client

PATIENT = {"resourceType": "Patient", "name": [{"family": "Nguyễn", "given": ["Thị", "Mai"]}], "gender": "female"}


@pytest.fixture
def client(repo, tmp_path):
    return api_client(repo, tmp_path)


def outcome_of(resp) -> dict:
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome", body
    return body["issue"][0]


def test_metadata_lists_what_is_supported(client):
    cs = client.get("/fhir/metadata").json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    patient = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Patient")
    assert {"code": "read"} in patient["interaction"]


def test_create_read_update_vread_delete(client):
    r = client.post("/fhir/Patient", json=PATIENT)
    assert r.status_code == 201 and r.headers["etag"] == 'W/"1"'
    pid = r.json()["id"]
    assert r.headers["location"].endswith(f"/fhir/Patient/{pid}/_history/1")
    assert r.headers["content-type"].startswith("application/fhir+json")

    got = client.get(f"/fhir/Patient/{pid}")
    assert got.status_code == 200 and got.json()["name"][0]["family"] == "Nguyễn"

    changed = {**PATIENT, "id": pid, "gender": "other"}
    up = client.put(f"/fhir/Patient/{pid}", json=changed, headers={"If-Match": 'W/"1"'})
    assert up.status_code == 200 and up.json()["meta"]["versionId"] == "2"
    stale = client.put(f"/fhir/Patient/{pid}", json=changed, headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412 and outcome_of(stale)["code"] == "conflict"

    assert client.get(f"/fhir/Patient/{pid}/_history/1").json()["gender"] == "female"
    hist = client.get(f"/fhir/Patient/{pid}/_history").json()
    assert hist["type"] == "history" and [e["resource"]["meta"]["versionId"] for e in hist["entry"]] == ["2", "1"]

    assert client.delete(f"/fhir/Patient/{pid}").status_code == 200
    gone = client.get(f"/fhir/Patient/{pid}")
    assert gone.status_code == 410 and outcome_of(gone)["code"] == "deleted"


def test_update_as_create_and_prefer(client):
    r = client.put("/fhir/Patient/bn-001", json={**PATIENT, "id": "bn-001"}, headers={"Prefer": "return=minimal"})
    assert r.status_code == 201 and r.content == b"" and r.headers["etag"] == 'W/"1"'
    r = client.post("/fhir/Patient", json=PATIENT, headers={"Prefer": "return=OperationOutcome"})
    assert r.status_code == 201 and outcome_of(r)["severity"] == "information"


@pytest.mark.parametrize(
    "method,url,body,status,location",
    [
        ("post", "/fhir/Patient", b"{not json", 400, None),
        ("post", "/fhir/Patient", b"[1,2]", 400, None),
        ("post", "/fhir/Patient", b'{"resourceType": "Observation"}', 400, "resourceType"),
        ("post", "/fhir/Nonsense", b'{"resourceType": "Nonsense"}', 404, "type"),
        ("put", "/fhir/Patient/a1", b'{"resourceType": "Patient", "id": "b2"}', 400, "id"),
        ("put", "/fhir/Patient/bad$id", b'{"resourceType": "Patient", "id": "bad$id"}', 400, "id"),
        ("get", "/fhir/Patient/missing", None, 404, None),
        ("get", "/fhir/Patient/x/_history/abc", None, 400, "vid"),
        ("get", "/fhir/Patient?_format=xml", None, 400, "_format"),
        ("get", "/fhir/_history?_count=many", None, 400, "_count"),
        ("get", "/fhir/_history?_since=yesterday", None, 400, "_since"),
    ],
)
def test_errors_are_operation_outcomes(client, method, url, body, status, location):
    kwargs = {"content": body, "headers": {"Content-Type": "application/fhir+json"}} if body is not None else {}
    r = getattr(client, method)(url, **kwargs)
    assert r.status_code == status
    issue = outcome_of(r)
    assert issue["severity"] == "error" and issue["diagnostics"]
    if location:
        assert issue["expression"] == [location]


def test_history_pages_never_repeat(client):
    ids = [client.post("/fhir/Patient", json=PATIENT).json()["id"] for _ in range(5)]
    page = client.get("/fhir/Patient/_history?_count=2").json()
    seen = [e["resource"]["id"] for e in page["entry"]]
    while any(link["relation"] == "next" for link in page["link"]):
        nxt = next(link["url"] for link in page["link"] if link["relation"] == "next")
        client.post("/fhir/Patient", json=PATIENT)  # concurrent writes must not shift the pages
        page = client.get(nxt).json()
        seen += [e["resource"]["id"] for e in page["entry"]]
    assert seen == list(reversed(ids))
