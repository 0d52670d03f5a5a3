"""Numbers handed out in sequence (the MRN at registration, the queue ticket at check-in), without races: the
writer that hands one out takes its turn on the counter's name, then reads the numbers already given over the
whole database (not only the records its principal may see: a number must be unique among all of them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from sante.store import Transaction
from sante.store.search import parse_search, run_search


def serialise_writers(tx: Transaction, name: str) -> None:
    """Until tx ends, other write transactions that serialise on the same name wait for it.

    PostgreSQL: a transaction-scoped advisory lock on a 64-bit hash of the name; the waiting transaction's next
    statement sees what the first committed (READ COMMITTED). SQLite: a write transaction holds the database's
    write lock from its start (BEGIN IMMEDIATE, sante.store.repository), so writers take turns already."""
    if tx.conn.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(f"sante:{name}".encode()).digest()[:8], "big", signed=True)
        tx.conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (key,))


def count_all(tx: Transaction, rtype: str, query: list[tuple[str, str]]) -> int:
    """How many resources of the whole database match a search."""
    return int(run_search(tx, parse_search(rtype, [*query, ("_summary", "count")], strict=True)).total or 0)


def every_record(tx: Transaction, rtype: str, query: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
    """Every resource of the whole database that matches a search, whatever the principal may see: for counting
    the numbers already handed out, never for showing."""
    page = [*query, ("_count", "1000")]
    while True:
        result = run_search(tx, parse_search(rtype, page, strict=True))
        yield from (m.resource for m in result.matches if m.resource is not None)
        if not result.next_cursor:
            return
        page = [*query, ("_count", "1000"), ("_cursor", result.next_cursor)]


__all__ = ["count_all", "every_record", "serialise_writers"]
