"""The guarded repository (sante.auth.guarded): the API's authorization rules for code that is not the API (the web
app's pages), and the audit event told what was touched. On both backends."""

from __future__ import annotations

import pytest

from sante.anomaly import Anomaly, Category
from sante.auth.audit import Event
from sante.auth.guarded import GuardedRepository
from sante.auth.principal import Principal
from sante.auth.scopes import Scopes


def _obs(oid: str, pid: str, **more) -> dict:
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "pulse"},
            "subject": {"reference": f"Patient/{pid}"}, **more}


@pytest.fixture
def hospital(repo):
    with repo.transaction() as tx:
        for res in [
            {"resourceType": "Organization", "id": "a", "name": "A"},
            {"resourceType": "Organization", "id": "b", "name": "B"},
            {"resourceType": "Patient", "id": "p1", "managingOrganization": {"reference": "Organization/a"}},
            {"resourceType": "Patient", "id": "p2", "managingOrganization": {"reference": "Organization/b"}},
            _obs("o2", "p2"),
            _obs("o1", "p1", hasMember=[{"reference": "Observation/o2"}]),  # a link to another hospital's patient
            {"resourceType": "Medication", "id": "m", "code": {"text": "Amlodipin"}},
            {"resourceType": "MedicationRequest", "id": "rx", "status": "active", "intent": "order",
             "subject": {"reference": "Patient/p1"}, "medicationReference": {"reference": "Medication/m"}},
        ]:
            tx.update(res, res["id"])
    return repo


def staff(role: str = "nurse", organization: str | None = "Organization/a") -> Principal:
    return Principal(subject=f"{role}-user", role=role, scopes=Scopes.parse("user/*.cruds"), organization=organization)


def _category(call) -> Category:
    with pytest.raises(Anomaly) as e:
        call()
    return e.value.category


def test_reads_follow_the_rules_and_name_the_patient(hospital):
    event = Event("read")
    g = GuardedRepository(hospital, staff(), event)
    assert g.read("Observation", "o1").id == "o1"
    assert event.patient == "p1" and event.entities == ["Observation/o1"]
    assert _category(lambda: g.read("Patient", "p2")) == Category.NOT_FOUND  # another hospital's: not known
    assert _category(lambda: g.read("Patient", "nobody")) == Category.NOT_FOUND
    receptionist = GuardedRepository(hospital, staff("receptionist"))
    assert receptionist.read("Patient", "p1").id == "p1"
    assert _category(lambda: receptionist.read("Observation", "o1")) == Category.FORBIDDEN
    manager = GuardedRepository(hospital, staff("manager", None))
    assert _category(lambda: manager.read("Patient", "p1")) == Category.FORBIDDEN


def test_searches_return_only_what_the_principal_may_see_includes_too(hospital):
    event = Event("search-type")
    g = GuardedRepository(hospital, staff(), event)
    found = g.search("Observation", [("_include", "Observation:has-member")])
    assert [m.id for m in found.matches] == ["o1"]
    assert found.included == []  # o2 belongs to a patient of another hospital
    assert event.entities == ["Observation/o1"]
    admin = GuardedRepository(hospital, staff("admin", None)).search("Observation", {"_id": "o1",
                                                                               "_include": "Observation:has-member"})
    assert [m.id for m in admin.matches] == ["o1"] and [m.id for m in admin.included] == ["o2"]
    rx = g.search("MedicationRequest", {"patient": "Patient/p1", "_include": "MedicationRequest:medication"})
    assert [m.id for m in rx.included] == ["m"]  # reference data: everyone may read it
    with g.reader() as tx:  # several searches in one transaction, the compartment checked first
        assert [m.id for m in tx.search("Observation", [], compartment=("Patient", "p1")).matches] == ["o1"]
        assert _category(lambda: tx.search("Observation", [], compartment=("Patient", "p2"))) == Category.NOT_FOUND
    assert _category(lambda: g.search("Observation", {"nonsense": "1"})) == Category.INCORRECT  # strict
    patient = Principal(subject="an", role="patient", scopes=Scopes.parse("patient/*.rs"), patient="p2")
    assert [m.id for m in GuardedRepository(hospital, patient).search("Observation", {}).matches] == ["o2"]


def test_writes_stay_inside_what_the_principal_may_write(hospital):
    event = Event("operation")
    g = GuardedRepository(hospital, staff(), event)
    created = g.create(_obs("ignored", "p1"))
    assert created.id != "ignored" and event.entities == [f"Observation/{created.id}"] and event.patient == "p1"
    assert _category(lambda: g.create(_obs("x", "p2"))) == Category.FORBIDDEN  # another hospital's patient
    assert hospital.history("Observation") and len(GuardedRepository(hospital, staff("admin", None))
                                                   .search("Observation", {}).matches) == 3  # nothing of it stored
    updated = g.update({**_obs("o1", "p1"), "status": "amended"})
    assert updated.version == 2 and updated.resource["status"] == "amended"
    assert _category(lambda: g.update({**_obs("o2", "p2"), "status": "amended"})) == Category.NOT_FOUND
    assert _category(lambda: GuardedRepository(hospital, staff("receptionist")).create(_obs("y", "p1"))) \
        == Category.FORBIDDEN
    assert _category(lambda: GuardedRepository(hospital, staff("pharmacist")).update(_obs("o1", "p1"))) \
        == Category.FORBIDDEN
