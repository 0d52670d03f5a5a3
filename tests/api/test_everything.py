"""Patient/$everything, streamed: complete, in order, paged without skips or repeats, read in bounded chunks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import orjson
import pytest
from sqlalchemy import event

from sante.api import operations
from sante.fhir.validate import validate
from tests.support.api import api_client

CHUNK = 4  # far below the number of resources of the patient: every response takes several chunks


@pytest.fixture
def client(repo, tmp_path):
    subject = {"reference": "Patient/p"}
    with repo.transaction() as tx:  # seeded straight into the repository: one transaction, no HTTP round trips
        tx.update({"resourceType": "Patient", "id": "p", "gender": "female"}, "p")
        tx.update({"resourceType": "Patient", "id": "q", "gender": "male"}, "q")
        for k in range(13):
            tx.update({"resourceType": "Observation", "id": f"o{k:02}", "status": "final",
                       "code": {"text": f"obs {k}"}, "subject": subject}, f"o{k:02}")
        for k in range(5):
            tx.update({"resourceType": "Condition", "id": f"c{k}", "subject": subject}, f"c{k}")
        for _ in range(4):
            tx.create({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                       "subject": subject})
        # not in p's compartment: another patient's Observation, an Organization, a deleted Observation of p
        tx.update({"resourceType": "Observation", "id": "other", "status": "final", "code": {"text": "x"},
                   "subject": {"reference": "Patient/q"}}, "other")
        tx.create({"resourceType": "Organization", "name": "BV Chợ Rẫy"})
        tx.update({"resourceType": "Observation", "id": "gone", "status": "final", "code": {"text": "x"},
                   "subject": subject}, "gone")
    repo.delete("Observation", "gone")
    return api_client(repo, tmp_path)


class Chunks(list):
    """The chunk queries of a stream, and `stream_held()`: connections checked out now, other than the audit
    drainer's."""

    stream_held: Callable[[], int]


@pytest.fixture
def chunks(monkeypatch, repo):
    """Shrink the chunk size and record every chunk query: its size, and whether it ran with a connection held."""
    calls = Chunks()
    real = operations.everything_chunk
    out: dict[int, str] = {}  # connection record -> name of the thread that checked it out

    def checkout(dbapi_conn, record, proxy):
        out[id(record)] = threading.current_thread().name

    def checkin(dbapi_conn, record):
        out.pop(id(record), None)

    calls.stream_held = lambda: sum(1 for name in list(out.values()) if name != "sante-audit-drain")
    event.listen(repo.engine, "checkout", checkout)
    event.listen(repo.engine, "checkin", checkin)

    def spy(repo_, query, position, limit, **kw):
        # connections out before this chunk's query: none may be left over from the request. The audit spool's
        # background drainer appends to the log once a second on its own connection; that one is not the stream's.
        held = calls.stream_held()
        rows, after = real(repo_, query, position, limit, **kw)
        calls.append({"limit": limit, "rows": len(rows), "held": held, "on_loop": _on_event_loop()})
        return rows, after

    monkeypatch.setattr(operations, "EVERYTHING_CHUNK", CHUNK)
    monkeypatch.setattr(operations, "everything_chunk", spy)
    return calls


def expected_order(client) -> list[str]:
    """The Patient first, then each compartment type by name, ids ascending."""
    obs = [f"Observation/o{k:02}" for k in range(13)]
    cond = [f"Condition/c{k}" for k in range(5)]
    enc = sorted(f"Encounter/{e['resource']['id']}" for e in client.get("/fhir/Encounter").json()["entry"])
    return ["Patient/p", *cond, *enc, *obs]


def keys(bundle: dict) -> list[str]:
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])]


def next_url(bundle: dict) -> str | None:
    nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
    return "/" + nxt[0].split("://", 1)[1].split("/", 1)[1] if nxt else None


def errors(bundle: dict) -> list:
    return [i for i in validate(bundle) if i.severity in ("error", "fatal")]


def test_whole_compartment_streams_in_bounded_chunks(client, chunks, repo):
    r = client.get("/fhir/Patient/p/$everything")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    bundle = orjson.loads(r.content)
    assert keys(bundle) == expected_order(client)  # complete, in order, no duplicates, nothing foreign
    assert bundle["total"] == 23 and next_url(bundle) is None
    assert all(e["fullUrl"].endswith(k) and e["search"] == {"mode": "match"}
               for e, k in zip(bundle["entry"], keys(bundle), strict=True))
    assert errors(bundle) == []
    # 23 resources in chunks of at most 4: at least 6 queries, none holding a connection left from the one before
    assert len(chunks) >= 6 and max(c["rows"] for c in chunks) <= CHUNK and max(c["limit"] for c in chunks) <= CHUNK
    assert all(c["held"] == 0 for c in chunks)
    assert chunks.stream_held() == 0
    # PostgreSQL round trips run in the thread pool, off the event loop; SQLite's local reads run inline
    assert all(c["on_loop"] == (repo.dialect == "sqlite") for c in chunks)


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_pages_concatenate_to_the_whole(client, chunks):
    whole = expected_order(client)
    for count in (1, 3, 4, 5, 7, 22, 23, 24, 100):  # around the chunk size (4) and the compartment's size (23)
        seen, url, pages = [], f"/fhir/Patient/p/$everything?_count={count}", 0
        while url:
            b = client.get(url).json()
            assert errors(b) == []
            assert 1 <= len(b.get("entry", [])) <= count
            seen += keys(b)
            url, pages = next_url(b), pages + 1
            assert ("total" in b) == (pages == 1 and url is None)  # total only when one response holds everything
            assert url is None or f"_count={count}" in url
        assert seen == whole, count
        assert pages == -(-23 // count)
    assert max(c["rows"] for c in chunks) <= CHUNK


def test_writes_between_pages_neither_skip_nor_repeat(client, chunks):
    first = client.get("/fhir/Patient/p/$everything?_count=8").json()
    client.put("/fhir/Observation/o00", json={"resourceType": "Observation", "id": "o00", "status": "amended",
                                               "code": {"text": "obs 0"}, "subject": {"reference": "Patient/p"}})
    client.put("/fhir/Observation/zz", json={"resourceType": "Observation", "id": "zz", "status": "final",
                                              "code": {"text": "new"}, "subject": {"reference": "Patient/p"}})
    seen, url = keys(first), next_url(first)
    while url:
        b = client.get(url).json()
        seen += keys(b)
        url = next_url(b)
    assert seen == [*expected_order(client), "Observation/zz"]


def test_type_and_since_filters(client, chunks):
    b = client.get("/fhir/Patient/p/$everything?_type=Condition,Patient&_type=Organization").json()
    assert keys(b) == ["Patient/p", *[f"Condition/c{k}" for k in range(5)]] and b["total"] == 6
    stamp = client.put("/fhir/Condition/c3", json={"resourceType": "Condition", "id": "c3",
                                                   "subject": {"reference": "Patient/p"}}).json()["meta"]["lastUpdated"]
    client.put("/fhir/Observation/o05", json={"resourceType": "Observation", "id": "o05", "status": "amended",
                                              "code": {"text": "obs 5"}, "subject": {"reference": "Patient/p"}})
    b = client.get("/fhir/Patient/p/$everything", params={"_since": stamp}).json()
    assert keys(b) == ["Condition/c3", "Observation/o05"]
    empty = client.get("/fhir/Patient/p/$everything?_type=Organization").json()
    assert "entry" not in empty and empty["total"] == 0 and errors(empty) == []


def test_pretty_output_is_the_same_bundle(client, chunks):
    plain = client.get("/fhir/Patient/p/$everything?_count=10").json()
    pretty = client.get("/fhir/Patient/p/$everything?_count=10&_pretty=true")
    assert b"\n  " in pretty.content
    assert orjson.loads(pretty.content)["entry"] == plain["entry"]


def test_errors_are_operation_outcomes(client):
    client.delete("/fhir/Patient/q")
    for url, status, where in [
        ("/fhir/Patient/nobody/$everything", 404, None),
        ("/fhir/Patient/q/$everything", 410, None),  # deleted
        ("/fhir/Patient/p/$everything?_type=Nope", 400, "_type"),
        ("/fhir/Patient/p/$everything?_count=-1", 400, "_count"),
        ("/fhir/Patient/p/$everything?_since=yesterday", 400, "_since"),
        ("/fhir/Patient/p/$everything?_cursor=garbage", 400, "_cursor"),
        ("/fhir/Patient/p/$everything?_cursor=WyJOb3BlIiwiIl0", 400, "_cursor"),  # ["Nope",""]
        ("/fhir/Patient/p/$everything?start=2024-01-01", 400, "start"),
    ]:
        r = client.get(url)
        assert r.status_code == status and r.json()["resourceType"] == "OperationOutcome", url
        if where:
            assert r.json()["issue"][0]["expression"] == [where], url
