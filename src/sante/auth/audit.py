"""The audit trail: one FHIR AuditEvent (IHE Basic Audit Log Patterns) per read, search, write, export, login,
failed login and emergency override, kept in an append-only, hash-chained log.

Each row's hash is HMAC-SHA256, keyed by a secret kept in the data directory (not in the database), over
`seq | previous hash | content`; `audit_head` holds the newest seq and hash. Editing a row breaks its hash,
deleting one breaks the link of the next (or the head), reordering breaks both: `verify` names the first
row where the chain breaks.

A server's request events go first to a spool of per-process journal files (sante.auth.audit_spool): the
response waits until its own event has been appended there, so an access is never served without its audit
record, and a background drainer chains the spooled events into the log in batches. Without a spool (the command
line, tests) the AuditWriter group-commits: requests that finish together share one database transaction.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from sqlalchemy import Engine, select

from sante.store.repository import now_instant, write_transaction
from sante.store.schema import audit_head, audit_log

if TYPE_CHECKING:
    from sante.auth.audit_spool import AuditSpool

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
    return hmac.digest(key, f"{seq}|{prev}|".encode() + content, "sha256").hex()


# An AuditEvent's JSON starts with this; its id is spliced in after it when the event is chained, so a rendered
# event (spooled, or appended directly) is serialized once.
BODY_PREFIX = b'{"resourceType":"AuditEvent",'


@dataclass(frozen=True, slots=True)
class Rendered:
    """An event rendered for the log: its AuditEvent JSON without id, and the columns searched on."""

    recorded: str
    subtype: str
    action: str
    outcome: str
    username: str | None
    patient: str | None
    body: bytes  # starts with BODY_PREFIX

    @classmethod
    def of(cls, event: Event, recorded: str) -> Rendered:
        resource = event.resource(recorded)
        return cls(recorded, event.subtype, resource["action"], resource["outcome"], event.username, event.patient,
                   orjson.dumps(resource))


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
        self.spool: AuditSpool | None = None

    def with_spool(self, directory: Path) -> AuditLog:
        """Let request events go through a spool in directory (see sante.auth.audit_spool); returns self."""
        from sante.auth.audit_spool import AuditSpool

        self.spool = AuditSpool(directory, self)
        return self

    def flush(self) -> None:
        """Chain whatever is spooled (readers call this first, so they see every acknowledged event)."""
        if self.spool is not None:
            self.spool.drain(block=True)

    def append(self, events: list[Event]) -> list[int]:
        """Append events in one transaction, chained after the newest; returns their seq numbers."""
        if not events:
            return []
        recorded = now_instant()
        return self._append([Rendered.of(e, recorded) for e in events])

    def append_spooled(self, spooled: list[Rendered], offsets: dict[str, int]) -> list[int]:
        """Chain events read back from spool files and record, in the same transaction, how far each file has
        been read: every spooled event is chained exactly once."""
        return self._append(spooled, offsets)

    def spool_offsets(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {r[0]: r[1] for r in conn.exec_driver_sql("SELECT name, read_to FROM audit_spool")}

    def forget_spool_files(self, names: list[str]) -> None:
        mark = "?" if self.sqlite else "%s"
        with write_transaction(self.engine) as conn:
            conn.exec_driver_sql(f"DELETE FROM audit_spool WHERE name = {mark}", [(n,) for n in names])

    def _chain(self, items: list[Rendered], head: tuple[int, str] | None) -> list[tuple]:
        """The audit_log rows for items, chained after head."""
        seq, prev = head if head else (0, GENESIS)
        rows = []
        cut = len(BODY_PREFIX)
        for r in items:
            seq += 1
            content = b"%s\"id\":\"%d\",%s" % (r.body[:cut], seq, r.body[cut:])
            prev = _link(self.key, seq, prev, content)
            rows.append((seq, r.recorded, r.action, r.subtype, r.outcome, r.username, r.patient, content, prev))
        return rows

    def _append(self, items: list[Rendered], offsets: dict[str, int] | None = None) -> list[int]:
        """Plain driver SQL (this runs once per group of events). The rows are rendered and chained before the
        write lock is taken, after the head as last seen, and again inside only if another appender moved the
        head meanwhile: the lock is held for the inserts alone. On SQLite the append commits with
        synchronous=NORMAL: under WAL that survives a crash or kill -9 of any process (the log is in the OS's
        hands), holds the write lock for a fraction of an fsync, and the next synchronous=FULL commit of a clinical
        write puts it on disk with its own."""
        mark = "?" if self.sqlite else "%s"
        q = "SELECT seq, hash FROM audit_head WHERE id = 1"
        with self.engine.connect() as conn:
            seen = conn.exec_driver_sql(q).first()
            conn.rollback()
            seen = (seen[0], seen[1]) if seen else None
            rows = self._chain(items, seen)
            raw = conn.connection.dbapi_connection  # PRAGMA synchronous only outside a transaction: below SQLAlchemy
            if self.sqlite:
                raw.execute("PRAGMA synchronous=NORMAL")
            try:
                conn = conn.execution_options(sante_write=True)  # SQLite: BEGIN IMMEDIATE serialises appenders
                with conn.begin():
                    head = conn.exec_driver_sql(q + ("" if self.sqlite else " FOR UPDATE")).first()
                    if head is None and not self.sqlite:  # the first appenders race to create the head
                        conn.exec_driver_sql("LOCK TABLE audit_head IN EXCLUSIVE MODE")
                        head = conn.exec_driver_sql(q).first()
                    head = (head[0], head[1]) if head else None
                    if head != seen:
                        rows = self._chain(items, head)
                    if rows:
                        conn.exec_driver_sql(
                            "INSERT INTO audit_log (seq, recorded, action, subtype, outcome, username, patient, "
                            f"content, hash) VALUES ({', '.join([mark] * 9)})", rows)
                        last = (rows[-1][0], rows[-1][8])
                        if head is None:
                            conn.exec_driver_sql(f"INSERT INTO audit_head (id, seq, hash) VALUES (1, {mark}, {mark})",
                                                 last)
                        else:
                            conn.exec_driver_sql(f"UPDATE audit_head SET seq = {mark}, hash = {mark} WHERE id = 1",
                                                 last)
                    if offsets:
                        names = [(n,) for n in offsets]
                        conn.exec_driver_sql(f"DELETE FROM audit_spool WHERE name = {mark}", names)
                        conn.exec_driver_sql(f"INSERT INTO audit_spool (name, read_to) VALUES ({mark}, {mark})",
                                             list(offsets.items()))
            finally:
                if self.sqlite:
                    raw.execute("PRAGMA synchronous=FULL")
        return [r[0] for r in rows]

    def record(self, event: Event) -> int:
        return self.append([event])[0]

    def verify(self, batch: int = 5000) -> Verification:
        """Walk the whole chain; the first broken link is reported with its seq."""
        self.flush()
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
        self.flush()
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
        self.flush()
        with self.engine.connect() as conn:
            row = conn.execute(select(audit_log.c.content).where(audit_log.c.seq == seq)).first()
        return bytes(row[0]) if row else None

    def iter_all(self) -> Iterator[bytes]:
        self.flush()
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
        """Returns the event's seq, or 0 when it went to the spool (chained within a drain interval)."""
        if self.log.spool is not None:
            self.log.spool.write([event])  # one append to this process's journal: microseconds, no lock
            return 0
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


__all__ = ["BODY_PREFIX", "AuditLog", "AuditWriter", "Event", "Rendered", "Verification", "outcome_code"]
