"""The audit trail: one FHIR AuditEvent (IHE Basic Audit Log Patterns) per read, search, write, export, login,
failed login and emergency override, kept in an append-only, hash-chained log.

Each row's hash is HMAC-SHA256, keyed by a secret kept in the data directory (not in the database), over
`seq | previous hash | content`; `audit_head` holds the newest seq and hash. Editing a row breaks its hash,
deleting one breaks the link of the next (or the head), reordering breaks both: `verify` names the first
row where the chain breaks.

Appending is group-committed: requests that finish together share one database transaction (and one fsync), and
each response waits until its own event is durable, so an access is never served without its audit record.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from sqlalchemy import Engine, select

from sante.store.repository import now_instant
from sante.store.schema import audit_head, audit_log

GENESIS = "0" * 64
EVENT_TYPE = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
              "display": "RESTful Operation"}
LOGIN_TYPE = {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110114",
              "display": "User Authentication"}
SUBTYPE_SYSTEM = "http://hl7.org/fhir/restful-interaction"
ACTIONS = {"create": "C", "read": "R", "vread": "R", "history-instance": "R", "history-type": "R",
           "history-system": "R", "search-type": "E", "search-system": "E", "search-compartment": "E",
           "update": "U", "patch": "U", "delete": "D", "transaction": "E", "batch": "E", "operation": "E",
           "export": "E", "login": "E", "logout": "E", "token": "E", "break-glass": "E", "capabilities": "R"}


def outcome_code(status: int) -> str:
    """AuditEvent.outcome from an HTTP status: 0 success, 4 minor failure (client), 8 serious (server)."""
    return "0" if status < 400 else "4" if status < 500 else "8"


@dataclass(slots=True)
class Event:
    """What one request did, gathered while it runs; rendered to an AuditEvent when it ends."""

    subtype: str
    username: str | None = None
    role: str | None = None
    agent: str | None = None  # Practitioner/1, Patient/2, or None
    address: str | None = None
    patient: str | None = None
    entities: list[str] = field(default_factory=list)  # Type/id[/_history/v]
    query: str | None = None
    status: int = 200
    description: str | None = None
    break_glass: str | None = None  # the stated reason, when an override was in force
    token_id: str | None = None

    def resource(self, recorded: str) -> dict[str, Any]:
        agent: dict[str, Any] = {"requestor": True}
        if self.agent:
            agent["who"] = {"reference": self.agent}
        if self.username:
            agent["altId"] = self.username
            agent.setdefault("who", {"identifier": {"value": self.username}})
        if self.role:
            agent["role"] = [{"text": self.role}]
        if self.address:
            agent["network"] = {"address": self.address, "type": "2"}
        if self.token_id:
            agent["policy"] = [f"urn:sante:token:{self.token_id}"]
        event: dict[str, Any] = {
            "resourceType": "AuditEvent",
            "type": LOGIN_TYPE if self.subtype in ("login", "logout") else EVENT_TYPE,
            "subtype": [{"system": SUBTYPE_SYSTEM, "code": self.subtype}],
            "action": ACTIONS.get(self.subtype, "E"),
            "recorded": recorded,
            "outcome": outcome_code(self.status),
            "agent": [agent],
            "source": {"observer": {"display": "Sante"},
                       "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                                 "code": "4"}]},
        }
        if self.description:
            event["outcomeDesc"] = self.description
        if self.break_glass:
            event["purposeOfEvent"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                                                    "code": "BTG", "display": "break the glass"}],
                                        "text": self.break_glass}]
        entities: list[dict[str, Any]] = []
        if self.patient:
            entities.append({"what": {"reference": f"Patient/{self.patient}"},
                             "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                                      "code": "1"},
                             "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}})
        for ref in self.entities[:50]:
            if ref != f"Patient/{self.patient}":
                entities.append({"what": {"reference": ref},
                                 "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                                          "code": "2"}})
        if self.query is not None:
            entities.append({"type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                                      "code": "2"},
                             "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24"},
                             "query": base64.b64encode(self.query.encode()).decode()})
        if entities:
            event["entity"] = entities
        return event


def _link(key: bytes, seq: int, prev: str, content: bytes) -> str:
    return hmac.new(key, f"{seq}|{prev}|".encode() + content, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    checked: int
    problem: str | None = None
    seq: int | None = None


class AuditLog:
    def __init__(self, engine: Engine, key: bytes) -> None:
        self.engine = engine
        self.key = key
        self.sqlite = engine.dialect.name == "sqlite"

    def append(self, events: list[Event]) -> list[int]:
        """Append events in one transaction, chained after the newest; returns their seq numbers.

        Plain driver SQL (this runs once per group of requests). On SQLite the append commits with
        synchronous=NORMAL: under WAL that survives a crash or kill -9 of any process (the log is in the OS's
        hands), holds the write lock for a fraction of an fsync, and the next synchronous=FULL commit of a clinical
        write puts it on disk with its own."""
        if not events:
            return []
        mark = "?" if self.sqlite else "%s"
        with self.engine.connect() as conn:
            raw = conn.connection.dbapi_connection  # PRAGMA synchronous only outside a transaction: below SQLAlchemy
            if self.sqlite:
                raw.execute("PRAGMA synchronous=NORMAL")
            try:
                conn = conn.execution_options(sante_write=True)  # SQLite: BEGIN IMMEDIATE serialises appenders
                with conn.begin():
                    q = "SELECT seq, hash FROM audit_head WHERE id = 1" + ("" if self.sqlite else " FOR UPDATE")
                    head = conn.exec_driver_sql(q).first()
                    if head is None and not self.sqlite:  # the first appenders race to create the head
                        conn.exec_driver_sql("LOCK TABLE audit_head IN EXCLUSIVE MODE")
                        head = conn.exec_driver_sql(q).first()
                    seq, prev = (head[0], head[1]) if head else (0, GENESIS)
                    rows, seqs = [], []
                    recorded = now_instant()
                    for e in events:
                        seq += 1
                        body = {"resourceType": "AuditEvent", "id": str(seq), **e.resource(recorded)}
                        content = orjson.dumps(body)
                        prev = _link(self.key, seq, prev, content)
                        rows.append((seq, recorded, body["action"], e.subtype, body["outcome"], e.username, e.patient,
                                     content, prev))
                        seqs.append(seq)
                    conn.exec_driver_sql(
                        "INSERT INTO audit_log (seq, recorded, action, subtype, outcome, username, patient, content, "
                        f"hash) VALUES ({', '.join([mark] * 9)})", rows)
                    if head is None:
                        conn.exec_driver_sql(f"INSERT INTO audit_head (id, seq, hash) VALUES (1, {mark}, {mark})",
                                             (seq, prev))
                    else:
                        conn.exec_driver_sql(f"UPDATE audit_head SET seq = {mark}, hash = {mark} WHERE id = 1",
                                             (seq, prev))
            finally:
                if self.sqlite:
                    raw.execute("PRAGMA synchronous=FULL")
        return seqs

    def record(self, event: Event) -> int:
        return self.append([event])[0]

    def verify(self, batch: int = 5000) -> Verification:
        """Walk the whole chain; the first broken link is reported with its seq."""
        prev, expected, checked = GENESIS, 1, 0
        with self.engine.connect() as conn:
            head = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).first()
            after = 0
            while True:
                rows = conn.execute(select(audit_log.c.seq, audit_log.c.content, audit_log.c.hash)
                                    .where(audit_log.c.seq > after).order_by(audit_log.c.seq).limit(batch)).all()
                for seq, content, stored in rows:
                    if seq != expected:
                        return Verification(False, checked, f"events {expected} to {seq - 1} are missing", expected)
                    content = content.encode() if isinstance(content, str) else bytes(content)
                    try:
                        same = orjson.loads(content).get("id") == str(seq)
                    except (orjson.JSONDecodeError, AttributeError):
                        return Verification(False, checked, f"event {seq} was altered (not an AuditEvent)", seq)
                    if not same:
                        return Verification(False, checked, f"event {seq} holds another event's content", seq)
                    link = _link(self.key, seq, prev, content)
                    if not hmac.compare_digest(link, stored):
                        return Verification(False, checked, f"event {seq} was altered (its hash does not match)", seq)
                    prev, expected, checked = stored, seq + 1, checked + 1
                if len(rows) < batch:
                    break
                after = rows[-1][0]
        last = expected - 1
        if head is None:
            if last:
                return Verification(False, checked, "the chain head is missing", last)
            return Verification(True, 0)
        if head[0] != last or head[1] != prev:
            if head[0] > last:
                return Verification(False, checked, f"events {last + 1} to {head[0]} are missing (the newest)",
                                    last + 1)
            return Verification(False, checked, "the chain head does not match the newest event", last)
        return Verification(True, checked)

    def search(self, *, patient: str | None = None, username: str | None = None, since: str | None = None,
               until: str | None = None, action: str | None = None, subtype: str | None = None,
               before: int | None = None, count: int = 50) -> list[tuple[int, bytes]]:
        """(seq, AuditEvent JSON), newest first."""
        c = audit_log.c
        conds = []
        for col, value in ((c.patient, patient), (c.username, username), (c.action, action), (c.subtype, subtype)):
            if value is not None:
                conds.append(col == value)
        if since:
            conds.append(c.recorded >= since)
        if until:
            conds.append(c.recorded < until)
        if before is not None:
            conds.append(c.seq < before)
        q = select(c.seq, c.content).where(*conds).order_by(c.seq.desc()).limit(count)
        with self.engine.connect() as conn:
            return [(r[0], bytes(r[1])) for r in conn.execute(q)]

    def read(self, seq: int) -> bytes | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(audit_log.c.content).where(audit_log.c.seq == seq)).first()
        return bytes(row[0]) if row else None

    def iter_all(self) -> Iterator[bytes]:
        after = 0
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(select(audit_log.c.seq, audit_log.c.content).where(audit_log.c.seq > after)
                                    .order_by(audit_log.c.seq).limit(2000)).all()
            yield from (bytes(r[1]) for r in rows)
            if len(rows) < 2000:
                return
            after = rows[-1][0]


class AuditWriter:
    """Group commit for the event loop: `await record(event)` returns once the event is durable; events that
    arrive while a batch is being written go together in the next one."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self._pending: list[tuple[Event, asyncio.Future[int]]] = []
        self._task: asyncio.Task[None] | None = None

    async def record(self, event: Event) -> int:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((event, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                seqs = await anyio.to_thread.run_sync(self.log.append, [e for e, _ in batch])
            except Exception as exc:  # the requests waiting on this batch fail rather than go unaudited
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), seq in zip(batch, seqs, strict=True):
                if not fut.done():
                    fut.set_result(seq)


__all__ = ["AuditLog", "AuditWriter", "Event", "Verification", "outcome_code"]
