"""Transaction and batch Bundles: atomicity, reference rewriting, conditional create, on both backends."""

from __future__ import annotations

import pytest

from tests.support.api import api_client


@pytest.fixture
def client(repo, tmp_path):
    return api_client(repo, tmp_path)


def org_entry(full: str) -> dict:
    return {
        "fullUrl": full,
        "resource": {"resourceType": "Organization", "name": "Bệnh viện Bạch Mai",
                     "identifier": [{"system": "urn:vn:facility", "value": "01-001"}]},
        "request": {"method": "POST", "url": "Organization", "ifNoneExist": "identifier=urn:vn:facility|01-001"},
    }


def uid(kind: str, n: int) -> str:
    return f"urn:uuid:00000000-0000-4000-{ {'org': 8000, 'pat': 9000, 'enc': 'a000'}[kind] }-{n:012d}"


def visit_bundle(n: int) -> dict:
    return {
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            org_entry(uid("org", n)),
            {"fullUrl": uid("pat", n),
             "resource": {"resourceType": "Patient", "name": [{"family": f"Lê {n}"}],
                          "managingOrganization": {"reference": uid("org", n)}},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": uid("enc", n),
             "resource": {"resourceType": "Encounter", "status": "finished",
                          "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                          "subject": {"reference": uid("pat", n)},
                          "serviceProvider": {"reference": "Organization?identifier=urn:vn:facility|01-001"}},
             "request": {"method": "POST", "url": "Encounter"}},
        ],
    }


def test_transaction_rewrites_references_and_creates_shared_entries_once(client):
    first = client.post("/fhir", json=visit_bundle(1))
    assert first.status_code == 200, first.text
    statuses = [e["response"]["status"] for e in first.json()["entry"]]
    assert statuses == ["201 Created"] * 3
    second = client.post("/fhir", json=visit_bundle(2)).json()
    assert second["entry"][0]["response"]["status"] == "200 OK"  # the Organization already exists
    orgs = client.get("/fhir/Organization").json()["entry"]
    assert len(orgs) == 1
    org_id = orgs[0]["resource"]["id"]
    enc = client.get("/fhir/Encounter?subject:Patient.name=le 2").json()["entry"][0]["resource"]
    pid = enc["subject"]["reference"].split("/")[1]
    assert client.get(f"/fhir/Patient/{pid}").json()["managingOrganization"]["reference"] == f"Organization/{org_id}"
    assert enc["serviceProvider"]["reference"] == f"Organization/{org_id}"


def test_transaction_is_atomic(client):
    bundle = visit_bundle(3)
    bundle["entry"].append({"resource": {"resourceType": "Patient", "id": "x"},
                            "request": {"method": "PUT", "url": "Patient/y"}})  # id mismatch: fails
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"][0].startswith("Bundle.entry[3]")
    assert client.get("/fhir/Patient").json()["entry"] == []
    assert client.get("/fhir/Organization").json()["entry"] == []


def test_batch_entries_succeed_or_fail_alone(client):
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "Phạm"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/does-not-exist"}},
    ]}
    r = client.post("/fhir", json=batch).json()
    assert r["type"] == "batch-response"
    assert r["entry"][0]["response"]["status"] == "201 Created"
    assert r["entry"][1]["response"]["status"] == "404"
    assert r["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("body,location", [
    ({"resourceType": "Bundle", "type": "collection"}, "Bundle.type"),
    ({"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "FOO", "url": "x"}}]},
     "Bundle.entry[0].request.method"),
    ({"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "POST", "url": "Patient"}}]},
     "Bundle.entry[0].resource"),
])
def test_malformed_bundles_are_400(client, body, location):
    r = client.post("/fhir", json=body)
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == [location]
