"""FHIR search over HTTP on both backends: parameter types, modifiers, prefixes, chains, includes, paging."""

from __future__ import annotations

import pytest

from tests.support.api import api_client

UCUM = "http://unitsofmeasure.org"


def obs(pid: str, code: str, value: float, unit: str, when: str) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


@pytest.fixture
def client(repo, tmp_path):
    c = api_client(repo, tmp_path)
    people = [
        ("p1", "Nguyễn", ["Văn", "An"], "male", "1980-04-12", "001080001111"),
        ("p2", "Nguyen", ["Thị", "Bình"], "female", "1992-11-30", "001092002222"),
        ("p3", "Trần", ["Đức"], "male", "2001-01-05", "001201003333"),
    ]
    for pid, family, given, gender, birth, cccd in people:
        r = c.put(f"/fhir/Patient/{pid}", json={
            "resourceType": "Patient", "id": pid, "name": [{"family": family, "given": given}],
            "gender": gender, "birthDate": birth,
            "identifier": [{"system": "urn:vn:cccd", "value": cccd}],
        })
        assert r.status_code == 201, r.text
    glucose = [("p1", 5.1, "2024-01-10T08:00:00Z"), ("p1", 7.9, "2024-03-02T08:00:00Z"),
               ("p1", 6.2, "2024-06-20T08:00:00Z"), ("p2", 4.8, "2024-02-14T08:00:00Z")]
    for pid, value, when in glucose:
        assert c.post("/fhir/Observation", json=obs(pid, "2339-0", value, "mmol/L", when)).status_code == 201
    assert c.post("/fhir/Observation", json=obs("p3", "8867-4", 72, "/min", "2024-05-01T09:00:00Z")).status_code == 201
    return c


def ids(bundle: dict, mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == mode]


def families(bundle: dict) -> set[str]:
    return {e["resource"]["name"][0]["family"] for e in bundle["entry"]}


def test_string_search_is_accent_insensitive(client):
    assert families(client.get("/fhir/Patient?name=nguyen").json()) == {"Nguyễn", "Nguyen"}
    assert families(client.get("/fhir/Patient?family=Nguyễn").json()) == {"Nguyễn", "Nguyen"}
    assert families(client.get("/fhir/Patient?family:exact=Nguyễn").json()) == {"Nguyễn"}
    assert families(client.get("/fhir/Patient?given:contains=uc").json()) == {"Trần"}
    assert families(client.get("/fhir/Patient?given=duc").json()) == {"Trần"}


def test_token_and_date_search(client):
    assert ids(client.get("/fhir/Patient?identifier=urn:vn:cccd|001092002222").json()) == ["p2"]
    assert ids(client.get("/fhir/Patient?identifier=001092002222").json()) == ["p2"]
    assert sorted(ids(client.get("/fhir/Patient?gender=male").json())) == ["p1", "p3"]
    assert ids(client.get("/fhir/Patient?gender:not=male").json()) == ["p2"]
    assert ids(client.get("/fhir/Patient?birthdate=1992").json()) == ["p2"]
    assert sorted(ids(client.get("/fhir/Patient?birthdate=ge1990-01-01").json())) == ["p2", "p3"]
    assert ids(client.get("/fhir/Patient?birthdate=lt1990&gender=male").json()) == ["p1"]
    assert sorted(ids(client.get("/fhir/Patient?birthdate=1980,2001").json())) == ["p1", "p3"]


def test_observations_by_patient_code_and_date_sorted(client):
    b = client.get("/fhir/Observation?subject=Patient/p1&code=http://loinc.org|2339-0"
                   "&date=ge2024-02-01&_sort=-date").json()
    values = [e["resource"]["valueQuantity"]["value"] for e in b["entry"]]
    assert values == [6.2, 7.9]


def test_quantity_with_unit_conversion(client):
    hits = client.get(f"/fhir/Observation?value-quantity=gt6|{UCUM}|mmol/L").json()
    assert sorted(e["resource"]["valueQuantity"]["value"] for e in hits["entry"]) == [6.2, 7.9]
    # 7000 umol/L = 7 mmol/L: compared in the canonical unit
    hits = client.get(f"/fhir/Observation?value-quantity=gt7000|{UCUM}|umol/L").json()
    assert [e["resource"]["valueQuantity"]["value"] for e in hits["entry"]] == [7.9]


def test_chain_has_include_revinclude(client):
    chained = client.get("/fhir/Observation?subject:Patient.name=tran").json()
    assert [e["resource"]["code"]["coding"][0]["code"] for e in chained["entry"]] == ["8867-4"]
    has = client.get("/fhir/Patient?_has:Observation:subject:code=2339-0").json()
    assert sorted(ids(has)) == ["p1", "p2"]
    inc = client.get("/fhir/Observation?code=8867-4&_include=Observation:subject").json()
    assert ids(inc, "include") == ["p3"]
    rev = client.get("/fhir/Patient?_id=p2&_revinclude=Observation:subject").json()
    assert ids(rev) == ["p2"] and len(ids(rev, "include")) == 1


def test_totals_summary_missing_and_compartment(client):
    b = client.get("/fhir/Observation?code=2339-0&_total=accurate&_count=1").json()
    assert b["total"] == 4 and len(b["entry"]) == 1
    assert client.get("/fhir/Observation?_summary=count").json()["total"] == 5
    assert ids(client.get("/fhir/Patient?telecom:missing=false").json()) == []
    comp = client.get("/fhir/Patient/p1/Observation").json()
    assert len(comp["entry"]) == 3
    summary = client.get("/fhir/Patient?_id=p1&_elements=gender").json()["entry"][0]["resource"]
    assert "gender" in summary and "name" not in summary
    assert summary["meta"]["tag"][-1]["code"] == "SUBSETTED"


def test_paging_is_stable_under_concurrent_writes(client):
    seen = []
    url = "/fhir/Observation?_count=2&_sort=date"
    while url:
        b = client.get(url).json()
        seen += [e["resource"]["effectiveDateTime"] for e in b["entry"]]
        nxt = [link["url"] for link in b["link"] if link["relation"] == "next"]
        # a write between pages must neither repeat nor skip what was there
        client.post("/fhir/Observation", json=obs("p2", "2339-0", 5.0, "mmol/L", "2023-01-01T00:00:00Z"))
        url = nxt[0] if nxt else None
    assert seen == sorted(seen) and len(seen) == len(set(seen)) and len(seen) >= 5


@pytest.mark.parametrize(
    "url,location",
    [
        ("/fhir/Patient?birthdate=12-12-2020", "birthdate"),
        ("/fhir/Observation?value-quantity=abc", "value-quantity"),
        ("/fhir/Patient?_count=-1", "_count"),
        ("/fhir/Patient?_sort=nonsense", "_sort"),
        ("/fhir/Patient?gender:missing=maybe", "gender:missing"),
    ],
)
def test_bad_search_values_are_400(client, url, location):
    r = client.get(url)
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == [location]


def test_unknown_parameters_strict_and_lenient(client):
    assert client.get("/fhir/Patient?shoe-size=42").status_code == 200
    strict = client.get("/fhir/Patient?shoe-size=42", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400 and strict.json()["issue"][0]["expression"] == ["shoe-size"]


def test_post_search_matches_get(client):
    r = client.post("/fhir/Patient/_search", content="family=nguyen&gender=female",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert ids(r.json()) == ["p2"]


def test_token_in_value_set_and_list_membership(client):
    vs = "http://hl7.org/fhir/ValueSet/administrative-gender"
    assert sorted(ids(client.get(f"/fhir/Patient?gender:in={vs}").json())) == ["p1", "p2", "p3"]
    assert ids(client.get(f"/fhir/Patient?gender:not-in={vs}").json()) == []
    # LOINC codes are not in the R4 package's value sets: an unknown value set is a clear 400
    r = client.get("/fhir/Observation?code:in=http://example.org/ValueSet/none")
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["code:in"]
    client.put("/fhir/List/ward-a", json={
        "resourceType": "List", "id": "ward-a", "status": "current", "mode": "working",
        "entry": [{"item": {"reference": "Patient/p1"}}, {"item": {"reference": "Patient/p3"}}]})
    assert sorted(ids(client.get("/fhir/Patient?_list=ward-a").json())) == ["p1", "p3"]
    assert ids(client.get("/fhir/Patient?_list=ward-a&gender=male&birthdate=lt1990").json()) == ["p1"]
