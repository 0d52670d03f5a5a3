"""Bulk loading of FHIR files (resources, Bundles, NDJSON; .gz too) through the same path as the API.

Transaction and batch Bundles go through `process_bundle`; any other resource is stored as a PUT of its own id
(or a create when it has none), so loading the same folder twice changes nothing but versions. Shared entries
that generators repeat in every bundle (Organization, Practitioner, Location, Medication with an identifier) are
turned into conditional creates on their first identifier, so they are stored once.
"""

from __future__ import annotations

import gzip
import multiprocessing
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sante.anomaly import Anomaly
from sante.store.bundles import PreparedBundle, commit_transaction, prepare_bundle, process_bundle
from sante.store.repository import Repository

SHARED_TYPES = ("Organization", "Practitioner", "Location", "Medication", "PractitionerRole")


@dataclass(slots=True)
class LoadSummary:
    files: int = 0
    resources: int = 0
    failures: list[str] = field(default_factory=list)


def fhir_files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and _is_fhir_file(f))
        else:
            out.append(p)
    return out


def _is_fhir_file(f: Path) -> bool:
    return f.name.endswith((".json", ".json.gz", ".ndjson", ".ndjson.gz"))


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def _documents(path: Path) -> Iterator[tuple[str, Any]]:
    raw = _read(path)
    if path.name.endswith((".ndjson", ".ndjson.gz")):
        for n, line in enumerate(raw.splitlines(), 1):
            if line.strip():
                yield f"{path}:{n}", orjson.loads(line)
    else:
        yield str(path), orjson.loads(raw)


def dedupe_shared_entries(bundle: dict[str, Any]) -> None:
    """Give repeated shared entries (see SHARED_TYPES) an ifNoneExist on their first identifier."""
    for e in bundle.get("entry", []):
        res, req = e.get("resource"), e.get("request")
        if not isinstance(res, dict) or not isinstance(req, dict) or req.get("method") != "POST":
            continue
        if res.get("resourceType") in SHARED_TYPES and "ifNoneExist" not in req:
            ident = next((i for i in res.get("identifier", []) if i.get("value")), None)
            if ident:
                system = ident.get("system", "")
                req["ifNoneExist"] = f"identifier={system}|{ident['value']}" if system else \
                    f"identifier={ident['value']}"


def _as_transaction(resource: dict[str, Any]) -> dict[str, Any]:
    rtype, rid = resource["resourceType"], resource.get("id")
    request = {"method": "PUT", "url": f"{rtype}/{rid}"} if rid else {"method": "POST", "url": rtype}
    return {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": resource, "request": request}]}


def prepare_document(doc: Any) -> PreparedBundle:
    """The prepared transaction for one parsed document (pure: runs in worker processes)."""
    if not isinstance(doc, dict) or "resourceType" not in doc:
        raise ValueError("not a FHIR resource (no resourceType)")
    if doc["resourceType"] == "Bundle" and doc.get("type") in ("transaction", "batch"):
        dedupe_shared_entries(doc)
        return prepare_bundle(doc)
    return prepare_bundle(_as_transaction(doc))


# (where, the prepared Bundle as bytes, or the error message): bytes cross process boundaries cheaply.
Prepared = list[tuple[str, bytes | str]]
GROUP_RESOURCES = 2000  # transaction Bundles committed together (one fsync) up to about this many resources


def prepare_file(path: Path) -> tuple[Path, Prepared]:
    """Read, parse and prepare every document of a file; errors become messages (pure: runs in workers)."""
    out: Prepared = []
    try:
        for where, doc in _documents(path):
            try:
                out.append((where, prepare_document(doc).to_bytes()))
            except Anomaly as a:
                out.append((where, f"{a.location + ': ' if a.location else ''}{a.message}"))
            except ValueError as e:
                out.append((where, str(e)))
    except (OSError, orjson.JSONDecodeError, gzip.BadGzipFile, EOFError) as e:
        out.append((str(path), f"cannot read: {e}"))
    return path, out


def _failure(where: str, a: Anomaly) -> str:
    return f"{where}: {a.location + ': ' if a.location else ''}{a.message}"


class _Committer:
    """Commits prepared documents in groups: one database transaction (one fsync) for several transaction
    Bundles, each still all-or-nothing: if a group fails it is rolled back and its Bundles retried one by one.
    Files are reported to on_file only once everything they hold is committed."""

    def __init__(self, repo: Repository, summary: LoadSummary, on_file: Any, group_resources: int) -> None:
        self.repo, self.summary, self.on_file = repo, summary, on_file
        self.group_resources = group_resources
        self.docs: list[tuple[str, bytes]] = []  # (where, prepared bytes) waiting for the group commit
        self.files: list[tuple[Path, list[tuple[str, bytes]], bool]] = []  # (path, its docs, failed already)
        self.size = 0

    def add(self, path: Path, prepared: Prepared) -> None:
        docs, failed = [], False
        for where, item in prepared:
            if isinstance(item, str):
                self.summary.failures.append(f"{where}: {item}")
                failed = True
            else:
                docs.append((where, item))
                self.size += item.count(b'"resourceType"')  # roughly the resources it holds
        self.files.append((path, docs, failed))
        if self.size >= self.group_resources:
            self.flush()

    def flush(self) -> None:
        if not self.files:
            return
        docs = [d for _, file_docs, _ in self.files for d in file_docs]
        written: dict[str, int] = {}
        failed: set[str] = set()
        try:
            with self.repo.transaction() as tx:
                for where, data in docs:
                    prepared = PreparedBundle.from_bytes(data)
                    if prepared.type != "transaction":
                        raise _NotGroupable
                    written[where] = len(commit_transaction(tx, prepared))
        except (Anomaly, _NotGroupable):
            written.clear()
            for where, data in docs:  # one by one, from fresh copies: committing mutates a prepared Bundle
                before = len(self.summary.failures)
                try:
                    written[where] = _commit(self.repo, PreparedBundle.from_bytes(data), where,
                                             self.summary.failures)
                except Anomaly as a:
                    self.summary.failures.append(_failure(where, a))
                if len(self.summary.failures) > before:
                    failed.add(where)
        for path, file_docs, failed_before in self.files:
            n = sum(written.get(where, 0) for where, _ in file_docs)
            self.summary.files += 1
            self.summary.resources += n
            if self.on_file:
                self.on_file(path, n, failed_before or any(where in failed for where, _ in file_docs))
        self.files, self.size = [], 0


class _NotGroupable(Exception):
    """A batch Bundle: its entries commit one by one, never inside a group."""


def _commit(repo: Repository, prepared: PreparedBundle, where: str = "", failures: list[str] | None = None) -> int:
    """Commit one prepared document; a batch's failing entries go to `failures` (a batch never raises)."""
    entries = process_bundle(repo, None, prepared)["entry"]
    written = 0
    for i, e in enumerate(entries):
        response = e.get("response", {})
        if str(response.get("status", "")).startswith("2"):
            written += 1
        elif failures is not None:
            issue = (response.get("outcome") or {}).get("issue", [{}])[0]
            loc = (issue.get("expression") or [f"Bundle.entry[{i}]"])[0]
            failures.append(f"{where}: {loc}: {issue.get('diagnostics', 'failed')}")
    return written


def load_paths(
    repo: Repository,
    paths: list[Path],
    on_file: Callable[[Path, int, bool], None] | None = None,
    workers: int | None = None,
    group_resources: int = GROUP_RESOURCES,
) -> LoadSummary:
    """Load every FHIR file under paths; a failing document is reported and the rest goes on.

    Files are read, validated and indexed in `workers` processes (default: one per core beyond the writer,
    at least one) while this process commits them in order, several transaction Bundles per database
    transaction; a file is reported to `on_file` only after its commit.
    """
    files = fhir_files(paths)
    summary = LoadSummary()
    n = workers if workers is not None else max(1, (os.cpu_count() or 2) - 1)
    if n <= 1 or len(files) < 4:
        results = map(prepare_file, files)
        pool = None
    else:
        pool = multiprocessing.get_context("spawn").Pool(n)
        results = pool.imap(prepare_file, files, chunksize=1)
    committer = _Committer(repo, summary, on_file, group_resources)
    try:
        for path, prepared in results:
            committer.add(path, prepared)
        committer.flush()
    finally:
        if pool is not None:
            pool.terminate()
    repo.optimize(full=True)  # new data: give the query planner fresh statistics
    return summary
