"""The repository's tables (SQLAlchemy Core) and their versioned migrations.

`resource_history` keeps every version of every resource (the record of care is never overwritten);
`resources` holds the current version of each logical resource for fast reads. `seq` is a global, strictly
increasing write sequence: history paging and bulk export cursor on it, so they never skip or repeat a row
under concurrent writes.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    select,
    text,
)

metadata = MetaData()

SEQ = BigInteger().with_variant(Integer(), "sqlite")  # SQLite's rowid alias must be INTEGER

resource_history = Table(
    "resource_history",
    metadata,
    Column("seq", SEQ, primary_key=True, autoincrement=True),
    Column("type", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", String(40), nullable=False),  # FHIR instant, UTC, fixed width: sorts as text
    Column("method", String(8), nullable=False),  # POST | PUT | PATCH | DELETE
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", LargeBinary, nullable=True),  # JSON bytes; NULL for a deletion
    Index("ix_history_version", "type", "id", "version", unique=True),
    Index("ix_history_type_seq", "type", "seq"),
)

resources = Table(
    "resources",
    metadata,
    Column("type", String(64), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("seq", SEQ, nullable=False),
    Column("last_updated", String(40), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", LargeBinary, nullable=True),
    Index("ix_resources_type_seq", "type", "seq"),
)

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", String(40), nullable=False),
)


def _v1_initial(conn: Connection) -> None:
    for table in (resource_history, resources):
        table.create(conn, checkfirst=True)


# Ordered migrations: index + 1 is the schema version each one brings the database to. Append only.
MIGRATIONS: list[Callable[[Connection], None]] = [_v1_initial]


def migrate(conn: Connection, now: str) -> int:
    """Bring the database to the newest schema version; returns that version."""
    schema_version.create(conn, checkfirst=True)
    current = conn.execute(select(schema_version.c.version).order_by(schema_version.c.version.desc())).first()
    done = current[0] if current else 0
    for number, step in enumerate(MIGRATIONS[done:], start=done + 1):
        step(conn)
        conn.execute(schema_version.insert().values(version=number, applied_at=now))
    return len(MIGRATIONS)


def sqlite_pragmas() -> list[str]:
    # WAL: readers never block the writer; synchronous=FULL: a commit is on disk before it is acknowledged.
    return ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON", "PRAGMA busy_timeout=30000"]


__all__ = ["metadata", "resource_history", "resources", "schema_version", "migrate", "sqlite_pragmas", "text"]
