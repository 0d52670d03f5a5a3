"""Server time of the web app's heaviest pages on a grown hospital: the patient chart, the bed board (/wards) and
the manager's dashboard (/dashboard, the default 30 days), on a database of 100,000 patients.

    python bench/web.py [--patients 100000] [--repeat 100] [--budget 360] [--workers N]

The hospital is the demo's facility (sante.demo.hospital: departments, wards, 282 beds, ten clinics, staff) with
patients from a lean generator of its own: each patient has a few outpatient visits over the last two years (queue
history, an ICD-10 diagnosis, blood pressure, sometimes a laboratory result), a quarter of them a past
admission, and the first ones the current admissions that fill 85% of the beds. Everything is written through the
repository as transaction Bundles (validated and indexed like any write: sante.store.bundles), 500 patients a
Bundle, prepared in `--workers` processes while this one commits. The database (SQLite) and its data folder are
cached under bench/.cache/ (web-<patients>.db); a run that reaches its generation `--budget` (seconds) stops
generating, measures what is there and says so; the next run goes on from where it stopped.

Measured in-process: requests go through Starlette's TestClient to the whole ASGI application (security
middleware with its session sign-in and audit event, the page, the template); the time is the server's, from the
application's first line to its response's last byte, taken by a wrapper around the application. `--repeat`
requests per page after a warm-up; charts of patients drawn at random.

Ends with one line: `web: chart p95 X ms, bed board p95 Y ms, dashboard p95 Z ms (goal < 150 ms each): ok|short`
(exit status 0 when every goal is met, 1 otherwise).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from sante.demo.hospital import HOSPITAL_ID, Hospital, build_hospital, hospital_organization, hospital_resources
from sante.demo.people import random_name
from sante.store import Repository, open_repository

CACHE = ROOT / "bench" / ".cache"
GOAL_MS = 150.0
PASSWORD = "bench web password"
USERS = {"bench-manager": "manager", "bench-physician": "physician", "bench-nurse": "nurse"}
PER_BUNDLE = 500  # patients per transaction Bundle
HISTORY_DAYS = 730
OCCUPANCY = 0.85  # of the beds, taken by the current admissions
VN = timezone(timedelta(hours=7))
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
PHYSICAL = "http://terminology.hl7.org/CodeSystem/location-physical-type"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
MRN = "https://sante.health/fhir/sid/mrn"
DIAGNOSES = (("I10", 18), ("J06.9", 12), ("E11.9", 10), ("K29.7", 8), ("J18.9", 6), ("M54.5", 6), ("E78.5", 6),
             ("B34.9", 5), ("N39.0", 4), ("K21.0", 4), ("J02.9", 4), ("A09", 3), ("A97.0", 3), ("J45.9", 3),
             ("J44.9", 3), ("R51", 3), ("I20.9", 2), ("I63.9", 2), ("S06.0", 2), ("O80", 2), ("N18.9", 1))
LABS = (("2345-7", "Glucose", "Glucose máu", "mmol/L", 3.9, 6.1), ("2160-0", "Creatinine", "Creatinin", "umol/L", 62,
                                                                                   115),
        ("4548-4", "Hemoglobin A1c", "HbA1c", "%", 4.0, 6.0), ("1742-6", "ALT", "ALT (GPT)", "U/L", 7, 40))


# -- the hospital ---------------------------------------------------------------------------------------------------
def _hospital() -> Hospital:
    return build_hospital(random.Random("sante-bench-web:hospital"))


def _current_beds(h: Hospital) -> list[Any]:
    """The beds of the current admissions, in the order of the patients that lie in them (0, 1, ...)."""
    beds = [b for b in h.beds if b.department != "cap-cuu"]
    random.Random("sante-bench-web:beds").shuffle(beds)
    return beds[:int(OCCUPANCY * len(beds))]


def _weighted(rng: random.Random, options: tuple[tuple[Any, int], ...]) -> Any:
    return rng.choices([o for o, _ in options], [w for _, w in options])[0]


def _t(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


class _Patient:
    """One generated patient's resources (deterministic for the patient's index and the anchor time)."""

    def __init__(self, h: Hospital, index: int, anchor: datetime, current_bed: Any | None) -> None:
        self.h, self.index, self.anchor = h, index, anchor
        self.rng = random.Random(f"sante-bench-web:patient:{index}")
        self.ids = random.Random(f"sante-bench-web:ids:{index}")
        self.out: list[dict[str, Any]] = []
        self.pid = self.new_id()
        self.subject = {"reference": f"urn:uuid:{self.pid}"}
        self.person(current_bed)

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.ids.getrandbits(128), version=4))

    def add(self, resource: dict[str, Any]) -> str:
        resource["id"] = self.new_id()
        self.out.append(resource)
        return resource["id"]

    def person(self, current_bed: Any | None) -> None:
        rng = self.rng
        gender = rng.choice(("male", "female"))
        born = self.anchor.date() - timedelta(days=rng.randint(365, 90 * 365))
        name = random_name(rng, gender, born.year)
        self.out.append({
            "resourceType": "Patient", "id": self.pid, "active": True,
            "identifier": [{"system": MRN, "value": f"BN{self.index:07d}"}], "name": [name.fhir()],
            "gender": gender, "birthDate": born.isoformat(),
            "managingOrganization": {"reference": f"Organization/{HOSPITAL_ID}"}})
        for _ in range(_weighted(rng, ((1, 35), (2, 35), (3, 20), (4, 10)))):
            self.visit(self.anchor - timedelta(days=rng.uniform(0, HISTORY_DAYS)))
        if current_bed is not None:
            self.stay(current_bed, self.anchor - timedelta(days=rng.uniform(0.1, 8)), None)
        elif rng.random() < 0.25:
            start = self.anchor - timedelta(days=rng.uniform(3, HISTORY_DAYS))
            end = start + timedelta(days=rng.randint(2, 10), hours=rng.randint(0, 8))
            self.stay(rng.choice(self.h.beds), start, min(end, self.anchor - timedelta(hours=1)))

    def condition(self, encounter: str, when: datetime) -> str:
        code = _weighted(self.rng, DIAGNOSES)
        return self.add({
            "resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active" if code in ("I10", "E11.9", "E78.5") else "resolved"}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                      "code": "encounter-diagnosis"}]}],
            "code": {"coding": [{"system": ICD10, "code": code}]}, "subject": self.subject,
            "encounter": {"reference": f"urn:uuid:{encounter}"}, "recordedDate": _t(when)})

    def observation(self, encounter: str, when: datetime, category: str, code: str, display: str,
                    **value: Any) -> None:
        self.add({"resourceType": "Observation", "status": "final",
                  "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
                  "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
                  "subject": self.subject, "encounter": {"reference": f"urn:uuid:{encounter}"},
                  "effectiveDateTime": _t(when), **value})

    def visit(self, day: datetime) -> None:
        rng, h = self.rng, self.h
        local = day.astimezone(VN)
        arrived = local.replace(hour=rng.randint(7, 10), minute=rng.randrange(60), second=0, microsecond=0)
        if arrived > self.anchor:
            arrived = self.anchor - timedelta(hours=3)
        triaged = arrived + timedelta(minutes=rng.randint(3, 20))
        called = triaged + timedelta(minutes=int(rng.lognormvariate(3.2, 0.5)))
        ended = called + timedelta(minutes=rng.randint(8, 25))
        clinic = rng.choice(list(h.clinics.values()))
        eid = self.new_id()
        cid = self.condition(eid, called)
        self.out.append({
            "resourceType": "Encounter", "id": eid, "status": "finished", "class": {"system": ACT, "code": "AMB"},
            "type": [{"text": "Khám bệnh ngoại trú"}], "subject": self.subject,
            "period": {"start": _t(arrived), "end": _t(ended)},
            "statusHistory": [{"status": "arrived", "period": {"start": _t(arrived), "end": _t(triaged)}},
                              {"status": "triaged", "period": {"start": _t(triaged), "end": _t(called)}},
                              {"status": "in-progress", "period": {"start": _t(called), "end": _t(ended)}}],
            "location": [{"location": {"reference": f"Location/{clinic.id}", "display": clinic.plan.name},
                          "status": "completed"}],
            "serviceProvider": {"reference": f"Organization/{HOSPITAL_ID}"},
            "diagnosis": [{"condition": {"reference": f"urn:uuid:{cid}"}, "rank": 1}]})
        self.observation(eid, triaged, "vital-signs", "85354-9", "Blood pressure panel", component=[
            {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
             "valueQuantity": {"value": rng.randint(100, 170), "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
             "valueQuantity": {"value": rng.randint(60, 100), "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}])
        if rng.random() < 0.35:
            code, display, _text, unit, low, high = rng.choice(LABS)
            value = round(rng.uniform(low * 0.8, high * 1.4), 1)
            flag = "H" if value > high else "L" if value < low else "N"
            self.observation(eid, called + timedelta(minutes=40), "laboratory", code, display,
                             valueQuantity={"value": value, "unit": unit, "system": UCUM, "code": unit},
                             interpretation=[{"coding": [{"system": INTERPRETATION, "code": flag}]}],
                             referenceRange=[{"low": {"value": low, "unit": unit},
                                              "high": {"value": high, "unit": unit}}])

    def stay(self, bed: Any, start: datetime, end: datetime | None) -> None:
        h = self.h
        period = {"start": _t(start), **({"end": _t(end)} if end else {})}
        eid = self.new_id()
        cid = self.condition(eid, start)
        locations = [{"location": {"reference": f"Location/{loc}", "display": h.location_name(loc)},
                      "status": "active" if end is None else "completed", "period": period,
                      "physicalType": {"coding": [{"system": PHYSICAL, "code": kind}]}}
                     for loc, kind in ((bed.ward, "wa"), (bed.room, "ro"), (bed.id, "bd"))]
        stay: dict[str, Any] = {
            "resourceType": "Encounter", "id": eid, "status": "finished" if end else "in-progress",
            "class": {"system": ACT, "code": "IMP"}, "type": [{"text": "Điều trị nội trú"}], "subject": self.subject,
            "period": period, "location": locations,
            "serviceProvider": {"reference": f"Organization/{HOSPITAL_ID}-{bed.department}"},
            "diagnosis": [{"condition": {"reference": f"urn:uuid:{cid}"}, "rank": 1}]}
        if end is not None:
            stay["length"] = {"value": max(1, (end.astimezone(VN).date() - start.astimezone(VN).date()).days),
                              "unit": "ngày", "system": UCUM, "code": "d"}
        self.out.append(stay)
        self.observation(eid, start + timedelta(minutes=20), "vital-signs", "8867-4", "Heart rate",
                         valueQuantity={"value": self.rng.randint(70, 120), "unit": "/min", "system": UCUM,
                                        "code": "/min"})


def _bundle(resources: list[dict[str, Any]], *, create: bool) -> dict[str, Any]:
    def entry(r: dict[str, Any]) -> dict[str, Any]:
        if create:
            return {"fullUrl": f"urn:uuid:{r['id']}", "resource": r,
                    "request": {"method": "POST", "url": r["resourceType"]}}
        return {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}

    return {"resourceType": "Bundle", "type": "transaction", "entry": [entry(r) for r in resources]}


def prepare_patients(task: tuple[int, int, str]) -> tuple[int, Any]:
    """Generate patients [first, last) and prepare their transaction Bundle (pure: runs in the workers)."""
    from sante.store.bundles import prepare_bundle

    first, last, anchor_text = task
    anchor = datetime.fromisoformat(anchor_text)
    h = _hospital()
    current = _current_beds(h)
    resources = [r for i in range(first, last)
                 for r in _Patient(h, i, anchor, current[i] if i < len(current) else None).out]
    return len(resources), prepare_bundle(_bundle(resources, create=True))


def _facility(repo: Repository, data_dir: Path) -> None:
    """The demo's facility (its beds marked as the current admissions take them) and the bench's users."""
    from sante.auth.users import UserStore
    from sante.store.bundles import commit_transaction, prepare_bundle

    h = _hospital()
    status = {b.id: "O" for b in _current_beds(h)}
    resources = [*hospital_resources(h, status), hospital_organization()]
    with repo.transaction() as tx:
        for n in range(0, len(resources), 500):
            commit_transaction(tx, prepare_bundle(_bundle(resources[n:n + 500], create=False)))
    users = UserStore(repo.engine)
    for name, role in USERS.items():
        users.add(name, PASSWORD, role, organization=f"Organization/{HOSPITAL_ID}")


def _patients_stored(repo: Repository) -> int:
    with repo.reader() as tx:
        return int(tx.conn.exec_driver_sql("SELECT count(*) FROM resources WHERE type = 'Patient'").scalar_one())


def build(patients: int, budget: float, workers: int, console: Console) -> tuple[Path, Path, int]:
    """The cached database of `patients` patients (as many as `budget` seconds allow): (db, data dir, stored)."""
    from sante.store.bundles import commit_transaction

    CACHE.mkdir(parents=True, exist_ok=True)
    db, data_dir, meta_path = (CACHE / f"web-{patients}.db", CACHE / f"web-{patients}",
                               CACHE / f"web-{patients}.json")
    data_dir.mkdir(exist_ok=True)
    if not meta_path.exists() or not db.exists():
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        anchor = datetime.now(VN).replace(microsecond=0)
        repo = open_repository(f"sqlite:///{db}")
        _facility(repo, data_dir)
        meta_path.write_text(json.dumps({"anchor": anchor.isoformat(), "patients": patients}))
    else:
        repo = open_repository(f"sqlite:///{db}")
    anchor_text = json.loads(meta_path.read_text())["anchor"]
    done = _patients_stored(repo)
    if done >= patients:
        repo.close()
        return db, data_dir, done
    started = time.perf_counter()
    tasks = [(n, min(n + PER_BUNDLE, patients), anchor_text) for n in range(done, patients, PER_BUNDLE)]
    pool = multiprocessing.get_context("fork").Pool(workers) if workers > 0 else None
    results = pool.imap(prepare_patients, tasks) if pool else map(prepare_patients, tasks)
    written, stopped = 0, False
    columns = (TextColumn("[bold]generating[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("patients"),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task("patients", total=patients, completed=done, rate="")
            for (_first, last, _), (count, prepared) in zip(tasks, results, strict=False):
                with repo.transaction() as tx:
                    commit_transaction(tx, prepared)
                written += count
                elapsed = time.perf_counter() - started
                progress.update(bar, completed=last, rate=f"{written / elapsed:,.0f} resources/s")
                if elapsed > budget and last < patients:
                    stopped = True
                    break
    finally:
        if pool is not None:
            pool.terminate()
    repo.optimize(full=True)
    stored = _patients_stored(repo)
    repo.close()
    elapsed = time.perf_counter() - started
    console.print(f"wrote {written:,} resources ({stored - done:,} patients) in {elapsed:.0f} s: "
                  f"{stored:,} of {patients:,} patients stored")
    if stopped:
        console.print(f"[yellow]generation budget ({budget:.0f} s) reached: measuring {stored:,} patients; run again "
                      f"to add the rest[/]")
    return db, data_dir, stored


# -- measuring ------------------------------------------------------------------------------------------------------
class ServerTimer:
    """The application, timed: from its first line to its response's last byte (the server's time only)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.last = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = time.perf_counter()

        async def timed(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last = time.perf_counter() - started

        await self.app(scope, receive, timed)


def _signed_in(timer: ServerTimer, username: str) -> Any:
    import re

    from fastapi.testclient import TestClient

    client = TestClient(timer, follow_redirects=False, headers={"Accept-Language": "vi"})
    form = client.get("/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    r = client.post("/login", data={"username": username, "password": PASSWORD, "csrf": csrf, "next": "/"})
    assert r.status_code == 303, r.text[:500]
    return client


def _measure(timer: ServerTimer, client: Any, paths: list[str], repeat: int) -> tuple[float, list[float]]:
    """(the first request's time, the times of `repeat` requests after a warm-up)."""
    first = 0.0
    for n, path in enumerate(paths[:5]):  # warm-up: templates compiled, caches filled
        assert client.get(path).status_code == 200, path
        if n == 0:
            first = timer.last * 1000
    times = []
    for n in range(repeat):
        r = client.get(paths[n % len(paths)])
        assert r.status_code == 200, (paths[n % len(paths)], r.status_code)
        times.append(timer.last * 1000)
    return first, times


def _p95(xs: list[float]) -> float:
    return sorted(xs)[int(0.95 * (len(xs) - 1))]


def measure(db: Path, data_dir: Path, repeat: int) -> dict[str, tuple[float, list[float]]]:
    from sante.api import create_app
    from sante.api.factory import settle_heap

    repo = open_repository(f"sqlite:///{db}")
    timer = ServerTimer(create_app(repo, data_dir=data_dir))
    settle_heap()  # as `sante serve` does (sante.api.factory)
    with repo.reader() as tx:
        ids = [r[0] for r in tx.conn.exec_driver_sql(
            "SELECT id FROM resources WHERE type = 'Patient' ORDER BY random() LIMIT 200")]
    results = {
        "chart": _measure(timer, _signed_in(timer, "bench-physician"), [f"/patients/{i}" for i in ids], repeat),
        "bed board": _measure(timer, _signed_in(timer, "bench-nurse"), ["/wards"], repeat),
        "dashboard": _measure(timer, _signed_in(timer, "bench-manager"), ["/dashboard"], repeat),
    }
    repo.close()
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=100, help="requests per page")
    ap.add_argument("--budget", type=float, default=360, help="seconds of generation in this run at most")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes preparing Bundles (0: this "
                    "one)")
    args = ap.parse_args()
    console = Console()
    db, data_dir, stored = build(args.patients, args.budget, args.workers, console)
    with open_repository(f"sqlite:///{db}").reader() as tx:
        total = tx.conn.exec_driver_sql("SELECT count(*) FROM resources").scalar_one()
    console.print(f"database: {stored:,} patients, {total:,} resources ({db}); measured in-process through the ASGI "
                  f"application, server time per request, {args.repeat} requests per page")
    results = measure(db, data_dir, args.repeat)
    table = Table("page", "first request", "p50", "p95", "max")
    for page, (first, times) in results.items():
        table.add_row(page, f"{first:.1f} ms", f"{statistics.median(times):.1f} ms", f"{_p95(times):.1f} ms",
                      f"{max(times):.1f} ms")
    console.print(table)
    console.print("first request: right after the server started (the dashboard counts the period's days then, and "
                  "only today afterwards: sante.clinical.statistics.StatisticsCache)")
    p95 = {page: _p95(times) for page, (_, times) in results.items()}
    ok = all(v < GOAL_MS for v in p95.values()) and stored >= args.patients
    size = "" if stored >= args.patients else f" at {stored:,} of {args.patients:,} patients"
    print(f"web: chart p95 {p95['chart']:.0f} ms, bed board p95 {p95['bed board']:.0f} ms, dashboard p95 "
          f"{p95['dashboard']:.0f} ms (goal < {GOAL_MS:.0f} ms each){size}: {'ok' if ok else 'short'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
