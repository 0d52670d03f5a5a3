"""The clinical data repository: versioned FHIR resources on SQLite (embedded) or PostgreSQL (production).

Every write creates a new version in `resource_history` and moves the current pointer in `resources`, inside
one database transaction: a write is acknowledged only after its commit, and a group of writes (a FHIR
transaction Bundle) is all-or-nothing. The server owns `id` on create, `meta.versionId` and `meta.lastUpdated`.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, and_, create_engine, event, select
from sqlalchemy.exc import IntegrityError, OperationalError

from sante.anomaly import Anomaly, Category, incorrect
from sante.store.schema import (
    INDEX_TABLES,
    forget_text_rows,
    metadata,
    migrate,
    resource_history,
    resources,
    sqlite_pragmas,
    sync_text_index,
)

IndexRows = dict[str, list[tuple[Any, ...]]]

ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")


_SECOND: tuple[int, str] = (0, "")  # the last second formatted, and its text (strftime costs microseconds)


def now_instant() -> str:
    """The current time as a fixed-width FHIR instant in UTC (microseconds), so text order is time order."""
    global _SECOND
    ns = time.time_ns()
    sec, micros = divmod(ns // 1000, 1_000_000)
    cached = _SECOND
    if cached[0] != sec:
        cached = _SECOND = (sec, datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{micros:06d}+00:00"


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One version of a resource as stored."""

    type: str
    id: str
    version: int
    last_updated: str
    deleted: bool
    content: bytes | None  # the JSON of the version (None for a deletion)
    seq: int = 0
    method: str = ""

    @property
    def resource(self) -> dict[str, Any] | None:
        return orjson.loads(self.content) if self.content is not None else None

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'


def _stamp(resource: dict[str, Any], rid: str, version: int, last_updated: str) -> bytes:
    """The resource with server-owned fields set, serialised; `id` and `meta` placed first for readability."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = last_updated
    body = {"resourceType": resource["resourceType"], "id": rid, "meta": meta}
    for k, v in resource.items():
        if k not in body:
            body[k] = v
    return orjson.dumps(body)


def split_body(resource: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """(the client's meta, the JSON of everything but resourceType/id/meta): what stamp_body needs later."""
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    return meta, orjson.dumps({k: v for k, v in resource.items() if k not in ("resourceType", "id", "meta")})


def stamp_body(rtype: str, rid: str, version: int, last_updated: str, meta: dict[str, Any], body: bytes) -> bytes:
    """The same bytes as _stamp, assembled from split_body's parts without parsing the resource again."""
    head = (b'{"resourceType":' + orjson.dumps(rtype) + b',"id":' + orjson.dumps(rid) + b',"meta":'
            + orjson.dumps({**meta, "versionId": str(version), "lastUpdated": last_updated}))
    return head + b"}" if body == b"{}" else head + b"," + body[1:]


def _row(r: Any) -> StoredResource:
    m = r._mapping
    return StoredResource(
        type=m["type"],
        id=m["id"],
        version=m["version"],
        last_updated=m["last_updated"],
        deleted=bool(m["deleted"]),
        content=bytes(m["content"]) if m["content"] is not None else None,
        seq=m["seq"],
        method=m.get("method", ""),
    )


_CURRENT = "SELECT type, id, version, seq, last_updated, deleted, content FROM resources WHERE type = ? AND id = ?"
_CURRENT_FOR_UPDATE = _CURRENT + " FOR UPDATE"
_VERSION = ("SELECT seq, type, id, version, last_updated, method, deleted, content FROM resource_history "
            "WHERE type = ? AND id = ? AND version = ?")


class Transaction:
    """Reads and writes inside one database transaction (see Repository.transaction)."""

    def __init__(self, conn: Connection, for_update: bool) -> None:
        self.conn = conn
        self._for_update = for_update

    # -- reads ------------------------------------------------------------------------------------------------
    def _sql(self, text: str) -> str:
        return text if self.conn.dialect.name == "sqlite" else text.replace("?", "%s")

    def current(self, rtype: str, rid: str) -> StoredResource | None:
        """The current version (possibly a deletion), or None if the resource never existed."""
        # Plain SQL on the hottest path: building the statement object would cost ten times the query.
        sql = _CURRENT_FOR_UPDATE if self._for_update else _CURRENT
        r = self.conn.exec_driver_sql(self._sql(sql), (rtype, rid)).first()
        return _row(r) if r else None

    def read(self, rtype: str, rid: str) -> StoredResource:
        cur = self.current(rtype, rid)
        if cur is None:
            raise Anomaly(Category.NOT_FOUND, f"{rtype}/{rid} is not known")
        if cur.deleted:
            raise Anomaly(Category.DELETED, f"{rtype}/{rid} was deleted (version {cur.version})")
        return cur

    def vread(self, rtype: str, rid: str, version: int) -> StoredResource:
        r = self.conn.exec_driver_sql(self._sql(_VERSION), (rtype, rid, version)).first()
        if r is None:
            raise Anomaly(Category.NOT_FOUND, f"{rtype}/{rid} has no version {version}")
        row = _row(r)
        if row.deleted:
            raise Anomaly(Category.DELETED, f"{rtype}/{rid} version {version} is a deletion")
        return row

    def history(
        self,
        rtype: str | None = None,
        rid: str | None = None,
        *,
        since: str | None = None,
        before_seq: int | None = None,
        count: int = 100,
    ) -> list[StoredResource]:
        """Versions newest first; page on with before_seq = the last returned seq."""
        h = resource_history.c
        conds = []
        if rtype is not None:
            conds.append(h.type == rtype)
        if rid is not None:
            conds.append(h.id == rid)
        if since is not None:
            conds.append(h.last_updated >= since)
        if before_seq is not None:
            conds.append(h.seq < before_seq)
        q = select(resource_history).where(*conds).order_by(h.seq.desc()).limit(count)
        return [_row(r) for r in self.conn.execute(q)]

    # -- writes -----------------------------------------------------------------------------------------------
    def create(self, resource: dict[str, Any], rid: str | None = None, *, checked: bool = False) -> StoredResource:
        """A new resource with a server-assigned id (or the given one, which must be free); validated first."""
        rtype = _resource_type(resource)
        if not checked:
            require_valid(resource)
        if rid is None:
            rid = new_id()
        else:
            _check_id(rid)
            if self.current(rtype, rid) is not None:
                raise Anomaly(Category.CONFLICT, f"{rtype}/{rid} already exists")
        return self._write(rtype, rid, 1, resource, "POST")

    def update(
        self,
        resource: dict[str, Any],
        rid: str,
        if_match: int | None = None,
        *,
        index: IndexRows | None = None,
        checked: bool = False,
    ) -> tuple[StoredResource, bool]:
        """A new version of rtype/rid (created if absent: update-as-create). Returns (stored, created)."""
        rtype = _resource_type(resource)
        _check_id(rid)
        if not checked:
            require_valid(resource)
        cur = self.current(rtype, rid)
        if if_match is not None and (cur is None or cur.version != if_match):
            have = "no version" if cur is None else f"version {cur.version}"
            raise Anomaly(
                Category.PRECONDITION_FAILED, f"{rtype}/{rid}: If-Match expects version {if_match}, found {have}"
            )
        version = cur.version + 1 if cur else 1
        created = cur is None or cur.deleted
        return self._write(rtype, rid, version, resource, "PUT", index), created

    def delete(self, rtype: str, rid: str, if_match: int | None = None) -> StoredResource | None:
        """Soft delete: a deletion version; None when there was nothing to delete (idempotent)."""
        cur = self.current(rtype, rid)
        if if_match is not None and (cur is None or cur.version != if_match):
            raise Anomaly(Category.PRECONDITION_FAILED, f"{rtype}/{rid}: If-Match expects version {if_match}")
        if cur is None or cur.deleted:
            return None
        return self._write(rtype, rid, cur.version + 1, None, "DELETE")

    def _write(
        self,
        rtype: str,
        rid: str,
        version: int,
        resource: dict[str, Any] | None,
        method: str,
        index: IndexRows | None = None,
    ) -> StoredResource:
        ts = now_instant()
        content = _stamp(resource, rid, version, ts) if resource is not None else None
        deleted = resource is None
        res = self.conn.execute(
            resource_history.insert().values(
                type=rtype, id=rid, version=version, last_updated=ts, method=method, deleted=deleted, content=content
            )
        )
        seq = res.inserted_primary_key[0]
        values = {"version": version, "seq": seq, "last_updated": ts, "deleted": deleted, "content": content}
        if version == 1:
            self.conn.execute(resources.insert().values(type=rtype, id=rid, **values))
        else:
            self.conn.execute(
                resources.update().where(and_(resources.c.type == rtype, resources.c.id == rid)).values(**values)
            )
            forget_text_rows(self.conn, rtype, rid)  # out of the full-text index while their words are known
            for table in INDEX_TABLES.values():
                self.conn.execute(table.delete().where(and_(table.c.res_type == rtype, table.c.res_id == rid)))
        if resource is not None:
            self._insert_index(rtype, rid, index if index is not None else _index_rows(resource))
        return StoredResource(rtype, rid, version, ts, deleted, content, seq, method)

    def create_many(self, items: list[tuple[Any, str, IndexRows]]) -> list[StoredResource]:
        """Create many new resources with a few batched statements. Each item is (resource, fresh id, index rows),
        where the resource is a dict or, already serialised by split_body, a (type, meta, body) tuple.

        The ids must be new (server-assigned); this is the bulk path of transaction Bundles and loads.
        """
        if not items:
            return []
        ts = now_instant()
        seqs = self._allocate_seqs(len(items))
        history, current, out = [], [], []
        index: dict[str, list[tuple[Any, ...]]] = {}
        for n, (resource, rid, rows) in enumerate(items):
            seq = seqs[n]
            if type(resource) is tuple:
                rtype = resource[0]
                content = stamp_body(rtype, rid, 1, ts, resource[1], resource[2])
            else:
                rtype = resource["resourceType"]
                content = _stamp(resource, rid, 1, ts)
            history.append((seq, rtype, rid, 1, ts, "POST", False, content))
            current.append((rtype, rid, 1, seq, ts, False, content))
            for kind, krows in rows.items():
                if krows:
                    index.setdefault(kind, []).extend((rtype, rid, *map(_sql_value, r)) for r in krows)
            out.append(StoredResource(rtype, rid, 1, ts, False, content, seq, "POST"))
        self._insert_rows("resource_history", ("seq", "type", "id", "version", "last_updated", "method", "deleted",
                                               "content"), history)
        self._insert_rows("resources", ("type", "id", "version", "seq", "last_updated", "deleted", "content"), current)
        for kind, rows in index.items():
            table = INDEX_TABLES[kind]
            self._insert_rows(table.name, tuple(c.name for c in table.columns), rows)
        if "text" in index:
            sync_text_index(self.conn)
        return out

    def _allocate_seqs(self, n: int) -> list[int]:
        """n increasing history sequence numbers reserved for this transaction."""
        if self.conn.dialect.name == "sqlite":
            # Writers hold SQLite's write lock (BEGIN IMMEDIATE), so max+1.. cannot race.
            top = int(self.conn.exec_driver_sql("SELECT coalesce(max(seq), 0) FROM resource_history").scalar_one())
            return list(range(top + 1, top + 1 + n))
        return sorted(
            self.conn.exec_driver_sql(
                "SELECT nextval(pg_get_serial_sequence('resource_history', 'seq')) FROM generate_series(1, %(n)s)",
                {"n": n},
            ).scalars().all()
        )

    def _insert_rows(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        mark = "?" if self.conn.dialect.name == "sqlite" else "%s"
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
        self.conn.exec_driver_sql(sql, rows)

    def _insert_index(self, rtype: str, rid: str, index: IndexRows) -> None:
        for kind, rows in index.items():
            if not rows:
                continue
            table = INDEX_TABLES[kind]
            names = [c.name for c in table.columns][2:]
            self.conn.execute(
                table.insert(),
                [{"res_type": rtype, "res_id": rid, **dict(zip(names, map(_sql_value, row)))} for row in rows],
            )
        if index.get("text"):
            sync_text_index(self.conn)


def _sql_value(v: Any) -> Any:
    return float(v) if isinstance(v, Decimal) else v


def require_valid(resource: dict[str, Any]) -> None:
    from sante.store.validation import require_valid as check

    check(resource)


def _index_rows(resource: dict[str, Any]) -> IndexRows:
    from sante.store.indexer import index_rows

    return index_rows(resource)


def _resource_type(resource: Any) -> str:
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise incorrect("a resource must be a JSON object with a resourceType", "resourceType")
    return resource["resourceType"]


def _check_id(rid: str) -> None:
    if not ID_RE.fullmatch(rid or ""):
        raise incorrect(f"{rid!r} is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .)", "id")


class Repository:
    """The one repository interface over both backends; selected by a database URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        self.engine = _engine(url)
        with write_transaction(self.engine) as conn:  # processes starting together migrate one at a time
            if self.dialect == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(5736110)")  # 'sante' migrations
            self.schema_version = migrate(conn, now_instant())
        self.optimize()

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A write transaction: committed when the block ends, rolled back on any exception."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(sante_write=True)
                with conn.begin():
                    yield Transaction(conn, for_update=self.dialect == "postgresql")
        except IntegrityError as e:
            # Two writers raced for the same new version or id: the loser retries or reports a conflict.
            raise Anomaly(Category.CONFLICT, f"concurrent write conflict: {e.orig}") from None
        except OperationalError as e:
            raise Anomaly(Category.FAULT, f"database unavailable: {e.orig}") from None

    @contextmanager
    def reader(self) -> Iterator[Transaction]:
        """A read-only snapshot (one transaction) for consistent multi-query reads."""
        with self.engine.connect() as conn, conn.begin():
            yield Transaction(conn, for_update=False)

    # Single-operation conveniences, each its own transaction.
    def create(self, resource: dict[str, Any], rid: str | None = None) -> StoredResource:
        with self.transaction() as tx:
            return tx.create(resource, rid)

    def update(self, resource: dict[str, Any], rid: str, if_match: int | None = None) -> tuple[StoredResource, bool]:
        with self.transaction() as tx:
            return tx.update(resource, rid, if_match)

    def delete(self, rtype: str, rid: str, if_match: int | None = None) -> StoredResource | None:
        with self.transaction() as tx:
            return tx.delete(rtype, rid, if_match)

    def read(self, rtype: str, rid: str) -> StoredResource:
        with self.reader() as tx:
            return tx.read(rtype, rid)

    def vread(self, rtype: str, rid: str, version: int) -> StoredResource:
        with self.reader() as tx:
            return tx.vread(rtype, rid, version)

    def history(self, rtype: str | None = None, rid: str | None = None, **kw: Any) -> list[StoredResource]:
        with self.reader() as tx:
            return tx.history(rtype, rid, **kw)

    def optimize(self, *, full: bool = False) -> None:
        """Refresh the query planner's statistics: `full` after bulk loads (sampled, so seconds even on millions
        of rows); otherwise SQLite's cheap `PRAGMA optimize`, which analyses only what looks stale."""
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn.exec_driver_sql("PRAGMA analysis_limit=2000")
                conn.exec_driver_sql("ANALYZE" if full else "PRAGMA optimize")
            elif full:
                conn.exec_driver_sql("ANALYZE")
            conn.commit()

    def close(self) -> None:
        self.engine.sante_closed = True  # type: ignore[attr-defined]  # background users (audit drains) stop
        self.engine.dispose()


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: on SQLite it takes the write lock up front (BEGIN IMMEDIATE), so it waits
    its turn instead of failing with "database is locked" when another writer commits after it began reading."""
    with engine.connect() as conn:
        conn.execution_options(sante_write=True)
        with conn.begin():
            yield conn


def _engine(url: str) -> Engine:
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if not url.startswith("sqlite"):
        return create_engine(url, pool_size=20, max_overflow=20, pool_pre_ping=True)
    # A connection per concurrent request thread (the API's thread pool has 40): readers never queue for one.
    engine = create_engine(url, pool_size=40, max_overflow=0, pool_timeout=60)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # transactions are begun explicitly below
        for pragma in sqlite_pragmas():
            dbapi_conn.execute(pragma)

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Writers take the write lock up front: no deadlock upgrading a read lock, no SQLITE_BUSY mid-transaction.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("sante_write") else "BEGIN")

    return engine


def open_repository(url: str) -> Repository:
    """Open (and migrate) the repository at a database URL: sqlite:///path or postgresql://..."""
    if url.startswith("sqlite:///"):
        from pathlib import Path

        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    return Repository(url)


__all__ = ["Repository", "StoredResource", "Transaction", "metadata", "open_repository"]
