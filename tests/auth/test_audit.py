"""The audit trail: one AuditEvent per access, searchable by patient, user, time and action; an altered,
deleted or reordered event is detected and named."""

from __future__ import annotations

import base64

import orjson
import pytest
from sqlalchemy import delete, select, update

from sante.auth.audit import AuditLog, Event
from sante.store.schema import audit_head, audit_log
from tests.support.api import api_client, client_for


@pytest.fixture
def log(repo):
    return AuditLog(repo.engine, b"k" * 32)


def _fill(log: AuditLog, n: int) -> None:
    log.append([Event("read", username=f"u{i % 3}", patient=f"p{i % 2}", entities=[f"Observation/{i}"])
                for i in range(n)])


def test_an_intact_chain_verifies(log):
    assert log.verify().ok and log.verify().checked == 0
    _fill(log, 10)
    for _ in range(5):
        log.record(Event("search-type", username="x"))
    result = log.verify()
    assert result.ok and result.checked == 15


def test_an_altered_event_is_named(log, repo):
    _fill(log, 8)
    with repo.engine.begin() as conn:
        content = conn.execute(select(audit_log.c.content).where(audit_log.c.seq == 5)).scalar_one()
        forged = orjson.loads(content)
        forged["agent"][0]["altId"] = "someone-else"
        conn.execute(update(audit_log).where(audit_log.c.seq == 5).values(content=orjson.dumps(forged)))
    result = log.verify()
    assert not result.ok and result.seq == 5 and "altered" in result.problem


def test_a_deleted_event_is_named(log, repo):
    _fill(log, 8)
    with repo.engine.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq == 3))
    result = log.verify()
    assert not result.ok and result.seq == 3 and "missing" in result.problem


def test_deleting_the_newest_events_is_detected(log, repo):
    _fill(log, 8)
    with repo.engine.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq >= 7))
    result = log.verify()
    assert not result.ok and result.seq == 7


def test_reordered_events_are_detected(log, repo):
    _fill(log, 6)
    with repo.engine.begin() as conn:
        rows = {r.seq: r for r in conn.execute(select(audit_log).where(audit_log.c.seq.in_([2, 4])))}
        for a, b in ((2, 4), (4, 2)):
            conn.execute(update(audit_log).where(audit_log.c.seq == a).values(
                content=rows[b].content, hash=rows[b].hash))
    result = log.verify()
    assert not result.ok and result.seq == 2


def test_a_key_from_elsewhere_cannot_rebuild_the_chain(log, repo):
    _fill(log, 4)
    other = AuditLog(repo.engine, b"z" * 32)
    assert not other.verify().ok
    with repo.engine.begin() as conn:  # wiping the head does not hide anything either
        conn.execute(delete(audit_head))
    assert not log.verify().ok


def test_every_api_access_is_audited(repo, tmp_path):
    admin = api_client(repo, tmp_path, role="admin", scopes="user/*.cruds", subject="root",
                       fhir_user="Practitioner/admin")
    admin.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
           "subject": {"reference": "Patient/p1"}}
    created = admin.post("/fhir/Observation", json=obs)
    oid = created.json()["id"]
    doctor = client_for(admin.app, role="physician", scopes="user/*.cruds", subject="dr.lan",
                        fhir_user="Practitioner/lan")
    doctor.get(f"/fhir/Observation/{oid}")
    doctor.get("/fhir/Observation", params={"subject": "Patient/p1"})
    doctor.delete("/fhir/Patient/p1")  # refused: physicians do not delete
    from fastapi.testclient import TestClient

    TestClient(admin.app).get("/fhir/Patient/p1")  # no token
    events = [e["resource"] for e in admin.get("/fhir/AuditEvent", params={"_count": "50"}).json()["entry"]]
    by_user = [(e["agent"][0].get("altId"), e["subtype"][0]["code"], e["outcome"]) for e in events]
    assert ("dr.lan", "read", "0") in by_user
    assert ("dr.lan", "search-type", "0") in by_user
    assert ("dr.lan", "delete", "4") in by_user
    assert (None, "read", "4") in by_user  # the failed, anonymous attempt
    assert ("root", "create", "0") in by_user
    read = next(e for e in events if e["agent"][0].get("altId") == "dr.lan" and e["subtype"][0]["code"] == "read")
    refs = {x["what"]["reference"] for x in read["entity"] if "what" in x}
    assert refs == {"Patient/p1", f"Observation/{oid}"}  # the patient is named even for an Observation read
    assert read["agent"][0]["who"] == {"reference": "Practitioner/lan"}
    assert read["action"] == "R" and read["recorded"]
    search = next(e for e in events if e["subtype"][0]["code"] == "search-type")
    query = next(x["query"] for x in search["entity"] if "query" in x)
    assert base64.b64decode(query).decode() == "subject=Patient%2Fp1"
    create = next(e for e in events if e["subtype"][0]["code"] == "create")
    assert f"Observation/{oid}" in {x["what"]["reference"] for x in create["entity"] if "what" in x}
    # searchable by patient, user, action and time
    for params, expect in (({"patient": "p1"}, {"dr.lan", "root", None}), ({"agent": "dr.lan"}, {"dr.lan"}),
                           ({"action": "D"}, {"dr.lan"})):
        found = admin.get("/fhir/AuditEvent", params=params).json()["entry"]
        assert {e["resource"]["agent"][0].get("altId") for e in found} == expect, params
    assert admin.get("/fhir/AuditEvent", params={"date": "gt2100-01-01"}).json()["entry"] == []
    assert admin.get("/fhir/AuditEvent", params={"date": "not-a-date"}).status_code == 400
    first = events[-1]["id"]
    assert admin.get(f"/fhir/AuditEvent/{first}").json()["id"] == first
    assert admin.put(f"/fhir/AuditEvent/{first}", json=events[-1]).status_code == 405
    assert admin.app.state.security.audit.verify().ok
