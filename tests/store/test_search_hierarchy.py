"""Token :below / :above over the code system hierarchies of the FHIR R4 package, on both backends."""

from __future__ import annotations

import pytest

from sante.anomaly import Anomaly
from sante.fhir.model import ancestors, code_system_known, descendants, systems_with_code
from sante.store.search import parse_search, run_search
from tests.support.api import api_client

ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
OTHER = "http://example.org/fhir/CodeSystem/local-encounter-class"


def encounter(eid: str, system: str, code: str) -> dict:
    return {"resourceType": "Encounter", "id": eid, "status": "finished", "class": {"system": system, "code": code},
            "subject": {"reference": "Patient/p1"}}


def condition(cid: str, status: str) -> dict:
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": "Patient/p1"},
            "code": {"text": "Đái tháo đường"},
            "clinicalStatus": {"coding": [{"system": CLINICAL, "code": status}]}}


def observation(oid: str, status: str, encounter_id: str | None = None) -> dict:
    res = {"resourceType": "Observation", "id": oid, "status": status, "code": {"text": "glucose"},
           "subject": {"reference": "Patient/p1"}}
    if encounter_id:
        res["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    return res


@pytest.fixture
def stored(repo):
    repo.update({"resourceType": "Patient", "id": "p1"}, "p1")
    for res in (encounter("imp", ACT, "IMP"), encounter("acute", ACT, "ACUTE"), encounter("nonac", ACT, "NONAC"),
                encounter("amb", ACT, "AMB"), encounter("emer", ACT, "EMER"),
                encounter("local-acute", OTHER, "ACUTE"),  # the same code in a system we know nothing of
                condition("c-active", "active"), condition("c-relapse", "relapse"),
                condition("c-resolved", "resolved"), condition("c-remission", "remission"),
                observation("o-final", "final", "acute"), observation("o-amended", "amended", "amb"),
                observation("o-corrected", "corrected", "nonac")):
        repo.update(res, res["id"])
    return repo


def find(repo, rtype: str, name: str, value: str) -> list[str]:
    with repo.reader() as tx:
        return sorted(m.id for m in run_search(tx, parse_search(rtype, [(name, value)])).matches)


def test_hierarchies_come_from_the_r4_code_systems() -> None:
    assert descendants(ACT, "IMP") == {"IMP", "ACUTE", "NONAC"}  # nested concepts
    assert {"IMP", "AMB", "EMER", "HH", "VR"} <= descendants(ACT, "_ActEncounterCode")
    assert ancestors(ACT, "ACUTE") >= {"ACUTE", "IMP", "_ActEncounterCode"}
    assert "AMB" not in ancestors(ACT, "ACUTE")
    # v3 states further parents with the `child` property: DALG sits under ALG and under DINT.
    assert {"ALG", "DINT"} <= ancestors(ACT, "DALG")
    assert "DALG" in descendants(ACT, "ALG") and "DALG" in descendants(ACT, "DINT")
    assert descendants(CLINICAL, "inactive") == {"inactive", "remission", "resolved"}
    assert descendants("http://hl7.org/fhir/administrative-gender", "male") == {"male"}  # flat, yet known
    assert descendants(ACT, "NOT-A-CODE") == {"NOT-A-CODE"}
    assert descendants("http://snomed.info/sct", "73211009") is None
    assert ancestors(OTHER, "ACUTE") is None
    assert code_system_known(ACT) and not code_system_known(OTHER)
    assert "http://hl7.org/fhir/observation-status" in systems_with_code("amended")


def test_below_finds_the_code_and_what_it_subsumes(stored) -> None:
    assert find(stored, "Encounter", "class:below", f"{ACT}|IMP") == ["acute", "imp", "nonac"]
    assert find(stored, "Encounter", "class:below", f"{ACT}|ACUTE") == ["acute"]  # not local-acute
    assert find(stored, "Encounter", "class:below", f"{ACT}|_ActEncounterCode") == [
        "acute", "amb", "emer", "imp", "nonac"]
    assert find(stored, "Encounter", "class:below", f"{ACT}|IMP,{ACT}|AMB") == ["acute", "amb", "imp", "nonac"]
    assert find(stored, "Condition", "clinical-status:below", f"{CLINICAL}|inactive") == ["c-remission",
                                                                                          "c-resolved"]
    assert find(stored, "Condition", "clinical-status:below", f"{CLINICAL}|active") == ["c-active", "c-relapse"]
    assert find(stored, "Condition", "clinical-status", f"{CLINICAL}|inactive") == []  # without: the code only


def test_above_finds_the_code_and_what_subsumes_it(stored) -> None:
    assert find(stored, "Encounter", "class:above", f"{ACT}|ACUTE") == ["acute", "imp"]
    assert find(stored, "Encounter", "class:above", f"{ACT}|IMP") == ["imp"]
    assert find(stored, "Encounter", "class:above", f"{ACT}|AMB") == ["amb"]
    assert find(stored, "Condition", "clinical-status:above", f"{CLINICAL}|relapse") == ["c-active", "c-relapse"]


def test_codes_without_a_system(stored) -> None:
    # Observation.status is a plain code (indexed without a system): its binding's code system applies.
    assert find(stored, "Observation", "status:below", "amended") == ["o-amended", "o-corrected"]
    assert find(stored, "Observation", "status:below", "|amended") == ["o-amended", "o-corrected"]
    assert find(stored, "Observation", "status:above", "corrected") == ["o-amended", "o-corrected"]
    assert find(stored, "Observation", "status:below", "final") == ["o-final"]
    # A bare code matches itself in any system, and its relatives in the systems that define it.
    assert find(stored, "Encounter", "class:below", "IMP") == ["acute", "imp", "nonac"]
    assert find(stored, "Encounter", "class:above", "ACUTE") == ["acute", "imp", "local-acute"]


def test_below_in_chains_and_with_other_criteria(stored) -> None:
    assert find(stored, "Observation", "encounter.class:below", f"{ACT}|IMP") == ["o-corrected", "o-final"]
    with stored.reader() as tx:
        req = parse_search("Observation", [("status:below", "amended"), ("encounter.class:below", f"{ACT}|IMP")])
        assert [m.id for m in run_search(tx, req).matches] == ["o-corrected"]


@pytest.mark.parametrize("value", [
    "http://snomed.info/sct|73211009",  # a hierarchy this server does not have
    f"{OTHER}|ACUTE",
    "73211009",  # a bare code in no known code system
    f"{ACT}|",  # no code
])
def test_unknown_hierarchies_are_400(stored, value) -> None:
    with pytest.raises(Anomaly) as e:
        find(stored, "Encounter", "class:below", value)
    assert e.value.category.status == 400
    assert e.value.location == "class:below"


def test_hierarchy_search_over_http(stored, tmp_path) -> None:
    client = api_client(stored, tmp_path)
    r = client.get("/fhir/Encounter", params={"class:below": f"{ACT}|IMP"})
    assert r.status_code == 200, r.text
    assert sorted(e["resource"]["id"] for e in r.json()["entry"]) == ["acute", "imp", "nonac"]
    r = client.get("/fhir/Condition", params={"clinical-status:above": f"{CLINICAL}|remission"})
    assert sorted(e["resource"]["id"] for e in r.json()["entry"]) == ["c-remission"]
    r = client.get("/fhir/Condition", params={"clinical-status:below": f"{CLINICAL}|inactive", "_total": "accurate"})
    assert r.json()["total"] == 2
    r = client.get("/fhir/Encounter", params={"class:below": "http://snomed.info/sct|73211009"})
    assert r.status_code == 400
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "not known" in outcome["issue"][0]["diagnostics"]
