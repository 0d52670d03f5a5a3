"""$export (async Bulk Data), $everything, $meta and $validate over HTTP, on both backends."""

from __future__ import annotations

import time

import orjson
import pytest

from tests.support.api import api_client


@pytest.fixture
def client(repo, tmp_path):
    c = api_client(repo, tmp_path)
    for pid in ("a", "b"):
        c.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid, "gender": "female"})
        for k in range(3):
            c.post("/fhir/Observation", json={
                "resourceType": "Observation", "status": "final", "code": {"text": f"obs {k}"},
                "subject": {"reference": f"Patient/{pid}"}})
    c.post("/fhir/Organization", json={"resourceType": "Organization", "name": "BV Chợ Rẫy"})
    return c


def wait_for(client, status_url: str) -> dict:
    path = status_url.split("://", 1)[1].split("/", 1)[1]
    for _ in range(200):
        r = client.get("/" + path)
        if r.status_code == 200:
            return r.json()
        assert r.status_code == 202 and "x-progress" in r.headers
        time.sleep(0.05)
    raise AssertionError("export did not finish")


def ndjson(client, url: str) -> list[dict]:
    path = url.split("://", 1)[1].split("/", 1)[1]
    r = client.get("/" + path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+ndjson")
    return [orjson.loads(line) for line in r.content.splitlines()]


def test_system_export_writes_every_type(client):
    r = client.get("/fhir/$export", headers={"Prefer": "respond-async"})
    assert r.status_code == 202
    manifest = wait_for(client, r.headers["content-location"])
    counts = {o["type"]: o["count"] for o in manifest["output"]}
    assert counts == {"Observation": 6, "Organization": 1, "Patient": 2}
    patients = ndjson(client, next(o["url"] for o in manifest["output"] if o["type"] == "Patient"))
    assert sorted(p["id"] for p in patients) == ["a", "b"]


def test_patient_export_with_type_filter_and_group(client):
    r = client.post("/fhir/Patient/$export?_type=Observation", headers={"Prefer": "respond-async"})
    manifest = wait_for(client, r.headers["content-location"])
    assert [(o["type"], o["count"]) for o in manifest["output"]] == [("Observation", 6)]
    client.put("/fhir/Group/g1", json={"resourceType": "Group", "id": "g1", "type": "person", "actual": True,
                                       "member": [{"entity": {"reference": "Patient/b"}}]})
    r = client.get("/fhir/Group/g1/$export", headers={"Prefer": "respond-async"})
    manifest = wait_for(client, r.headers["content-location"])
    # Group is itself in the Patient compartment (Group.member), so the group's definition is exported too
    assert {o["type"]: o["count"] for o in manifest["output"]} == {"Patient": 1, "Observation": 3, "Group": 1}


def test_export_errors(client):
    assert client.get("/fhir/$export").status_code == 400  # no Prefer: respond-async
    bad = client.get("/fhir/$export?_type=Nope", headers={"Prefer": "respond-async"})
    assert bad.status_code == 400 and bad.json()["issue"][0]["expression"] == ["_type"]
    assert client.get("/fhir/$export-status/unknown").status_code == 404
    assert client.get("/fhir/Group/none/$export", headers={"Prefer": "respond-async"}).status_code == 404


def test_everything_pages_through_the_compartment(client):
    seen, url = [], "/fhir/Patient/a/$everything?_count=2"
    while url:
        b = client.get(url).json()
        seen += [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in b["entry"]]
        nxt = [link["url"] for link in b["link"] if link["relation"] == "next"]
        url = "/" + nxt[0].split("://", 1)[1].split("/", 1)[1] if nxt else None
    assert seen[0] == "Patient/a" and len(seen) == 4 and len(set(seen)) == 4
    assert client.get("/fhir/Patient/zz/$everything").status_code == 404


def test_meta_and_validate(client):
    meta = client.get("/fhir/Patient/a/$meta").json()
    assert meta["parameter"][0]["valueMeta"]["versionId"] == "1"
    ok = client.post("/fhir/Patient/$validate", json={"resourceType": "Patient", "gender": "female"}).json()
    assert ok["issue"][0]["severity"] == "information"
    bad = client.post("/fhir/Patient/$validate", json={"resourceType": "Patient", "gender": "xyz"}).json()
    assert any(i["severity"] == "error" and i["expression"] == ["Patient.gender"] for i in bad["issue"])
