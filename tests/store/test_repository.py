"""Versioned storage: create, read, vread, update, delete, history and atomic transactions, on both backends."""

from __future__ import annotations

import pytest

from sante.anomaly import Anomaly, Category


def patient(family: str = "Nguyễn", **extra) -> dict:
    return {"resourceType": "Patient", "name": [{"family": family, "given": ["Văn", "An"]}], **extra}


def test_create_assigns_id_and_server_meta(repo):
    stored = repo.create(patient(meta={"tag": [{"code": "demo"}], "versionId": "99"}))
    r = repo.read("Patient", stored.id).resource
    assert r["id"] == stored.id and len(stored.id) == 36
    assert r["meta"]["versionId"] == "1"  # the client's versionId is overwritten
    assert r["meta"]["tag"] == [{"code": "demo"}]  # other meta is kept
    assert r["meta"]["lastUpdated"] == stored.last_updated
    assert r["name"][0]["family"] == "Nguyễn"


def test_update_keeps_every_version(repo):
    first = repo.create(patient())
    second, created = repo.update(patient("Trần", id=first.id), first.id)
    assert not created and second.version == 2
    assert repo.read("Patient", first.id).resource["name"][0]["family"] == "Trần"
    assert repo.vread("Patient", first.id, 1).resource["name"][0]["family"] == "Nguyễn"
    assert [h.version for h in repo.history("Patient", first.id)] == [2, 1]


def test_update_as_create_and_if_match(repo):
    stored, created = repo.update(patient(id="p1"), "p1")
    assert created and stored.version == 1
    with pytest.raises(Anomaly) as e:
        repo.update(patient(id="p1"), "p1", if_match=5)
    assert e.value.category is Category.PRECONDITION_FAILED
    stored, _ = repo.update(patient(id="p1"), "p1", if_match=1)
    assert stored.version == 2


def test_delete_is_soft_and_idempotent(repo):
    stored = repo.create(patient())
    deleted = repo.delete("Patient", stored.id)
    assert deleted is not None and deleted.version == 2 and deleted.deleted
    assert repo.delete("Patient", stored.id) is None
    with pytest.raises(Anomaly) as e:
        repo.read("Patient", stored.id)
    assert e.value.category is Category.DELETED
    assert repo.vread("Patient", stored.id, 1).resource["name"][0]["family"] == "Nguyễn"
    again, created = repo.update(patient(id=stored.id), stored.id)
    assert created and again.version == 3


def test_missing_resources_and_bad_ids(repo):
    with pytest.raises(Anomaly) as e:
        repo.read("Patient", "nope")
    assert e.value.category is Category.NOT_FOUND
    with pytest.raises(Anomaly) as e:
        repo.vread("Patient", "nope", 1)
    assert e.value.category is Category.NOT_FOUND
    with pytest.raises(Anomaly) as e:
        repo.update(patient(), "bad id!")
    assert e.value.category is Category.INCORRECT
    with pytest.raises(Anomaly) as e:
        repo.create({"name": "no resourceType"})
    assert e.value.category is Category.INCORRECT


def test_transaction_is_all_or_nothing(repo):
    kept = repo.create(patient())
    with pytest.raises(Anomaly), repo.transaction() as tx:
        tx.create(patient("Lê"), "tx-1")
        tx.update(patient("Phạm", id=kept.id), kept.id)
        tx.create(patient("Lê"), "tx-1")  # conflict: aborts everything above
    with pytest.raises(Anomaly):
        repo.read("Patient", "tx-1")
    assert repo.read("Patient", kept.id).version == 1


def test_history_paging_by_sequence_and_since(repo):
    ids = [repo.create(patient(f"F{i}")).id for i in range(5)]
    obs = repo.create({"resourceType": "Observation", "status": "final", "code": {"text": "x"}})
    page1 = repo.history(count=3)
    page2 = repo.history(count=3, before_seq=page1[-1].seq)
    seen = [h.id for h in page1 + page2]
    assert seen == [obs.id, *reversed(ids)]
    assert [h.id for h in repo.history("Patient", count=100)] == list(reversed(ids))
    since = repo.read("Patient", ids[3]).last_updated
    assert [h.id for h in repo.history(since=since)] == [obs.id, ids[4], ids[3]]
