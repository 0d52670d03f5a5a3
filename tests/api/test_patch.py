"""PATCH: JSON Patch and FHIRPath Patch over HTTP; bad patches are 422 naming the failing operation."""

from __future__ import annotations

import pytest

from tests.support.api import api_client

PATIENT = {
    "resourceType": "Patient", "id": "p1", "active": True, "gender": "female",
    "name": [{"family": "Nguyễn", "given": ["Thị", "Mai"]}],
    "identifier": [{"system": "urn:vn:cccd", "value": "001092002222"}, {"system": "urn:vn:bhyt", "value": "DN4790123456789"}],
}


def op(kind: str, path: str, **parts) -> dict:
    p = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    for name, value in parts.items():
        p.append({"name": name, **value})
    return {"name": "operation", "part": p}


def fhirpath_patch(*ops: dict) -> dict:
    return {"resourceType": "Parameters", "parameter": list(ops)}


@pytest.fixture
def client(repo, tmp_path):
    c = api_client(repo, tmp_path)
    assert c.put("/fhir/Patient/p1", json=PATIENT).status_code == 201
    return c


def send(client, body, ctype="application/fhir+json", **headers):
    import orjson

    return client.patch("/fhir/Patient/p1", content=orjson.dumps(body), headers={"Content-Type": ctype, **headers})


def test_fhirpath_patch_operations(client):
    r = send(client, fhirpath_patch(
        op("replace", "Patient.gender", value={"valueCode": "other"}),
        op("delete", "Patient.identifier.where(system = 'urn:vn:bhyt')"),
        op("add", "Patient", name={"valueString": "birthDate"}, value={"valueDate": "1992-11-30"}),
        op("insert", "Patient.name[0].given", index={"valueInteger": 0}, value={"valueString": "Lê"}),
        op("move", "Patient.name[0].given", source={"valueInteger": 2}, destination={"valueInteger": 1}),
        op("add", "Patient", name={"valueString": "telecom"},
           value={"part": [{"name": "system", "valueCode": "phone"}, {"name": "value", "valueString": "0901234567"}]}),
        op("delete", "Patient.deceased"),  # deleting nothing is allowed
    ))
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["gender"] == "other" and p["birthDate"] == "1992-11-30"
    assert [i["system"] for i in p["identifier"]] == ["urn:vn:cccd"]
    assert p["name"][0]["given"] == ["Lê", "Mai", "Thị"]
    assert p["telecom"] == [{"system": "phone", "value": "0901234567"}]  # a repeating element: an array
    assert p["meta"]["versionId"] == "2"


def test_json_patch(client):
    r = send(client, [{"op": "replace", "path": "/gender", "value": "male"}], "application/json-patch+json")
    assert r.status_code == 200 and r.json()["gender"] == "male"


@pytest.mark.parametrize("body,ctype,status,location", [
    (fhirpath_patch(op("replace", "Patient.identifier", value={"valueString": "x"})), "application/fhir+json",
     422, "Parameters.parameter[0]"),
    (fhirpath_patch(op("explode", "Patient")), "application/fhir+json", 422, "Parameters.parameter[0]"),
    (fhirpath_patch(op("replace", "Patient.name.(", value={"valueString": "x"})), "application/fhir+json",
     422, "Parameters.parameter[0]"),
    (fhirpath_patch(op("replace", "Patient.gender", value={"valueCode": "xyz"})), "application/fhir+json",
     422, "Patient.gender"),
    ({"resourceType": "Patient"}, "application/fhir+json", 422, "resourceType"),
    ([{"op": "remove", "path": "/nope"}], "application/json-patch+json", 422, None),
])
def test_bad_patches_are_422_and_change_nothing(client, body, ctype, status, location):
    r = send(client, body, ctype)
    assert r.status_code == status, r.text
    if location:
        assert r.json()["issue"][0]["expression"] == [location]
    assert client.get("/fhir/Patient/p1").json()["meta"]["versionId"] == "1"


def test_patch_honours_if_match(client):
    r = send(client, fhirpath_patch(op("replace", "Patient.active", value={"valueBoolean": False})),
             **{"If-Match": 'W/"7"'})
    assert r.status_code == 412
