"""FHIR Bulk Data export: NDJSON files per resource type, written with bounded memory whatever the database size.

Resources are read in keyset-paged batches (type, id) and written line by line, so memory holds one batch at a
time. A job's state lives in its folder (`job.json`), so a status poll needs no shared memory and survives a
restart of the web worker.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import and_, false, select

from sante.fhir.model import patient_compartment, r4
from sante.store.repository import Repository, now_instant
from sante.store.schema import INDEX_TABLES, resources

BATCH = 1000


@dataclass(frozen=True, slots=True)
class ExportRequest:
    level: str  # "system" | "patient" | "group"
    types: tuple[str, ...] = ()  # empty: all
    since: str | None = None
    group_id: str | None = None
    request_url: str = ""
    owner: str | None = None  # who asked: only they (and administrators) may see the job and its files


def compartment_types() -> dict[str, list[str]]:
    """Resource type -> its reference parameters linking it to a Patient (the Patient compartment)."""
    return {
        r["code"]: r.get("param", [])
        for r in patient_compartment()["resource"]
        if r.get("param") and r["code"] != "Patient"  # the Patient itself is listed first by callers
    }


def iter_type(repo: Repository, rtype: str, since: str | None = None, patient_ids: list[str] | None = None
              ) -> Iterator[bytes]:
    """JSON of every current resource of a type, in id order, one batch in memory at a time."""
    after = ""
    while True:
        with repo.reader() as tx:
            q = select(resources.c.id, resources.c.content).where(
                resources.c.type == rtype, resources.c.deleted == false(), resources.c.id > after
            )
            if since is not None:
                q = q.where(resources.c.last_updated >= since)
            if patient_ids is not None:
                q = q.where(_in_compartment(rtype, patient_ids))
            rows = tx.conn.execute(q.order_by(resources.c.id).limit(BATCH)).all()
        for _rid, content in rows:
            yield bytes(content)
        if len(rows) < BATCH:
            return
        after = rows[-1][0]


def _in_compartment(rtype: str, patient_ids: list[str]) -> Any:
    if rtype == "Patient":
        return resources.c.id.in_(patient_ids)
    params = compartment_types().get(rtype, [])
    t = INDEX_TABLES["reference"]
    return resources.c.id.in_(
        select(t.c.res_id).where(
            and_(t.c.res_type == rtype, t.c.param.in_(params), t.c.target_type == "Patient",
                 t.c.target_id.in_(patient_ids))
        )
    )


class ExportJobs:
    """Export jobs under a folder: start, status, files, cancel."""

    def __init__(self, repo: Repository, folder: Path) -> None:
        self.repo = repo
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)

    def start(self, req: ExportRequest) -> str:
        job = uuid.uuid4().hex
        d = self.folder / job
        d.mkdir()
        self._state(job, {"status": "in-progress", "progress": "starting", "request": req.request_url,
                          "transactionTime": now_instant(), "owner": req.owner})
        threading.Thread(target=self._run, args=(job, req), daemon=True).start()
        return job

    def _state(self, job: str, state: dict[str, Any]) -> None:
        tmp = self.folder / job / "job.json.tmp"
        tmp.write_bytes(orjson.dumps(state))
        tmp.replace(self.folder / job / "job.json")

    def status(self, job: str) -> dict[str, Any] | None:
        f = self.folder / _safe(job) / "job.json"
        return orjson.loads(f.read_bytes()) if f.exists() else None

    def file(self, job: str, name: str) -> Path | None:
        f = self.folder / _safe(job) / _safe(name)
        return f if f.is_file() and f.suffix == ".ndjson" else None

    def cancel(self, job: str) -> bool:
        d = self.folder / _safe(job)
        if not d.is_dir():
            return False
        (d / "cancelled").touch()
        return True

    def _patients(self, req: ExportRequest) -> list[str] | None:
        if req.level == "system":
            return None
        if req.level == "group":
            group = self.repo.read("Group", req.group_id or "").resource or {}
            return [m["entity"]["reference"].split("/")[-1] for m in group.get("member", [])
                    if m.get("entity", {}).get("reference", "").startswith("Patient/")]
        return [rid for rid, in self._all_ids("Patient")]

    def _all_ids(self, rtype: str) -> Iterator[tuple[str]]:
        for raw in iter_type(self.repo, rtype):
            yield (orjson.loads(raw)["id"],)

    def _run(self, job: str, req: ExportRequest) -> None:
        d = self.folder / job
        state = self.status(job) or {}
        try:
            patients = self._patients(req)
            if req.types:
                types = list(req.types)
            elif patients is not None:
                types = ["Patient", *sorted(compartment_types())]
            else:
                types = sorted(r4().resource_types)
            output = []
            for n, rtype in enumerate(types, 1):
                if (d / "cancelled").exists():
                    return
                count = 0
                path = d / f"{rtype}.ndjson"
                with path.open("wb") as f:
                    for raw in iter_type(self.repo, rtype, req.since, patients):
                        f.write(raw)
                        f.write(b"\n")
                        count += 1
                if count:
                    output.append({"type": rtype, "count": count, "file": path.name})
                else:
                    path.unlink()
                state["progress"] = f"{n}/{len(types)} types"
                self._state(job, state)
            state.update(status="completed", output=output)
        except Exception as e:
            state.update(status="failed", error=str(e))
        self._state(job, state)


def _safe(name: str) -> str:
    return "".join(ch for ch in name if ch.isalnum() or ch in "-_.").lstrip(".")
