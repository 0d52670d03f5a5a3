"""The audit spool: request events are safe once appended to the process's journal, are chained exactly once
whoever drains them, survive a kill -9 of the server, and a journal line altered before it was chained is
reported rather than chained as genuine."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import orjson

from sante.auth import audit_spool
from sante.auth.audit import AuditLog, Event

KEY = b"k" * 32


def _events(log: AuditLog) -> list[dict]:
    return [orjson.loads(content) for content in log.iter_all()]


def _users(log: AuditLog) -> list[str]:
    return [e["agent"][0]["altId"] for e in _events(log) if e["agent"][0].get("altId")]


def test_spooled_events_are_chained_once_and_readers_see_them(repo, tmp_path):
    log = AuditLog(repo.engine, KEY).with_spool(tmp_path / "spool")
    for i in range(30):
        log.spool.write([Event("read", username=f"u{i}", patient="p1", entities=[f"Observation/{i}"])])
    assert [p.name for p in (tmp_path / "spool").glob("*.log")]  # journaled, not yet chained
    found = log.search(patient="p1", count=100)  # a reader drains first
    assert len(found) == 30
    log.flush()
    log.flush()  # draining again chains nothing twice
    assert sorted(_users(log)) == sorted(f"u{i}" for i in range(30))
    result = log.verify()
    assert result.ok and result.checked == 30


def test_one_flush_chains_a_backlog_larger_than_one_read(repo, tmp_path, monkeypatch):
    monkeypatch.setattr(audit_spool, "MAX_DRAIN_BYTES", 4096)  # a few events per read
    monkeypatch.setattr(audit_spool, "MAX_FILE_BYTES", 50_000)  # and several files
    log = AuditLog(repo.engine, KEY).with_spool(tmp_path / "spool")
    for i in range(300):
        log.spool.write([Event("read", username=f"u{i}", entities=[f"Observation/{i}"])])
    assert len(log.search(count=1000)) == 300  # the reader's one flush saw every acknowledged event
    assert log.verify().ok


def test_direct_appends_and_spooled_events_share_one_chain(repo, tmp_path):
    log = AuditLog(repo.engine, KEY).with_spool(tmp_path / "spool")
    log.spool.write([Event("read", username="spooled-1")])
    log.record(Event("user-add", username="direct"))  # the command line appends directly
    log.spool.write([Event("read", username="spooled-2")])
    assert log.verify().ok and log.verify().checked == 3
    assert sorted(_users(log)) == ["direct", "spooled-1", "spooled-2"]


def test_an_altered_journal_line_is_reported_not_chained(repo, tmp_path):
    log = AuditLog(repo.engine, KEY).with_spool(tmp_path / "spool")
    log.spool.write([Event("read", username="alice", patient="p1"), Event("read", username="bob", patient="p2")])
    (path,) = (tmp_path / "spool").glob("*.log")
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"alice"', b'"mallory"'))  # same length lines, forged user
    log.flush()
    events = _events(log)
    assert "mallory" not in _users(log) and "bob" in _users(log)
    (alert,) = [e for e in events if e["subtype"][0]["code"] == "audit-integrity"]
    assert alert["outcome"] == "8" and path.name in alert["outcomeDesc"] and "MAC does not match" in alert["outcomeDesc"]
    assert log.verify().ok  # the chain itself is intact: the alert is part of it


def test_a_line_cut_short_by_a_dead_writer_is_dropped_with_its_file(repo, tmp_path):
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    writer = AuditLog(repo.engine, KEY).with_spool(spool_dir)
    writer.spool.write([Event("read", username="complete")])
    writer.spool.close()  # the writer is gone (its lock released) ...
    (path,) = spool_dir.glob("*.log")
    with open(path, "ab") as f:
        f.write(b"0123 {\"t\": \"2026")  # ... having died inside write(): never acknowledged
    reader = AuditLog(repo.engine, KEY).with_spool(spool_dir)
    reader.flush()
    assert _users(reader) == ["complete"]
    assert not list(spool_dir.glob("*.log")), "a finished journal is deleted once drained"
    assert reader.spool_offsets() == {}


def test_a_live_writers_journal_is_kept_and_rotated(repo, tmp_path, monkeypatch):
    monkeypatch.setattr(audit_spool, "MAX_FILE_BYTES", 2000)
    log = AuditLog(repo.engine, KEY).with_spool(tmp_path / "spool")
    for i in range(40):
        log.spool.write([Event("read", username=f"user{i}", entities=[f"Observation/{i}"])])
    files_before = list((tmp_path / "spool").glob("*.log"))
    assert len(files_before) > 3  # rotated past the size limit
    log.flush()
    left = list((tmp_path / "spool").glob("*.log"))
    assert len(left) == 1, "rotated-out journals are deleted once drained; the current one stays"
    assert len(_users(log)) == 40 and log.verify().ok


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from sante.auth.audit import AuditLog, Event
    from sante.store import open_repository

    log = AuditLog(open_repository(sys.argv[1]).engine, b"k" * 32).with_spool(Path(sys.argv[2]))
    tag = sys.argv[3]
    for i in range(int(sys.argv[4])):
        log.spool.write([Event("read", username=f"{tag}-{i}")])
        if i % 50 == 0:
            log.spool.drain(block=False)  # writers drain each other's journals too
    print("WROTE", flush=True)
    """
)


def _run_writer(database_url: str, spool_dir: Path, script: Path, tag: str, n: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, str(script), database_url, str(spool_dir), tag, str(n)],
                            stdout=subprocess.PIPE, text=True, env=env)


def test_concurrent_processes_chain_every_event_exactly_once(repo, database_url, tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    spool_dir = tmp_path / "spool"
    procs = [_run_writer(database_url, spool_dir, script, tag, 300) for tag in ("a", "b", "c")]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert "WROTE" in out
    log = AuditLog(repo.engine, KEY).with_spool(spool_dir)
    users = _users(log)
    assert len(users) == 900 and len(set(users)) == 900
    assert log.verify().ok
    assert not list(spool_dir.glob("*.log")), "every writer exited: their journals are gone"


def test_kill_9_of_a_writer_loses_nothing_acknowledged(repo, database_url, tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER.replace('print("WROTE", flush=True)',
                                     'print("WROTE", flush=True)\nimport time\ntime.sleep(60)'))
    spool_dir = tmp_path / "spool"
    proc = _run_writer(database_url, spool_dir, script, "k", 200)
    assert proc.stdout is not None and proc.stdout.readline().startswith("WROTE")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    log = AuditLog(repo.engine, KEY).with_spool(spool_dir)
    assert sorted(_users(log)) == sorted(f"k-{i}" for i in range(200))
    assert log.verify().ok


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_kill_9_of_the_server_loses_no_acknowledged_access(database_url, tmp_path):
    """The server answers 20 reads and is killed at once: all 20 accesses are in the audit trail afterwards."""
    from sante.api.security import Security
    from sante.store import open_repository

    data_dir = tmp_path / "data"
    repo = open_repository(database_url)
    security = Security.for_repository(repo, data_dir)
    security.users.add("dr-an", "correct horse battery", "physician")
    token = security.tokens.issue(subject="dr-an", role="physician", scopes="user/*.rs", lifetime=600).token
    patient = repo.create({"resourceType": "Patient", "name": [{"family": "Nguyễn"}]})
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "SANTE_DATA_DIR": str(data_dir),
           "SANTE_DATABASE_URL": database_url}
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "sante.api.factory:app", "--factory", "--port",
                               str(port), "--log-level", "warning"], env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/fhir/metadata", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers) as client:
            for _ in range(20):
                assert client.get(f"/fhir/Patient/{patient.id}").status_code == 200
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
    log = AuditLog(repo.engine, security.audit.key).with_spool(data_dir / "audit-spool")
    reads = log.search(patient=patient.id, subtype="read", count=100)
    assert len(reads) == 20
    assert log.verify().ok
