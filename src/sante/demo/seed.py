"""Seeding the demo hospital into a repository: generate, write, create the accounts, load Synthea.

Everything is written through `sante.store.bundles` as transaction Bundles, so every resource is validated and
indexed like any other write: the facility and the formulary are put at their stable ids (PUT), each patient's
resources are created together (POST, one Bundle per patient, referring to each other by urn:uuid fullUrls).
All of it goes into one database transaction, so an interrupted seed leaves nothing behind. The hospital
Organization carries the seed marker: when it is there, a second `sante demo` on the same database writes no
resource again and only adds what is missing (user accounts, Synthea files not loaded yet).
"""

from __future__ import annotations

import dataclasses
import getpass
import gzip
import os
import random
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from sante.auth.audit import AuditLog, Event
from sante.auth.secrets import load_or_create
from sante.auth.users import UserStore
from sante.demo import DEFAULT_PATIENTS, DEFAULT_SEED, care
from sante.demo.hospital import (
    HOSPITAL_ID,
    SEED_MARKER_SYSTEM,
    Hospital,
    build_hospital,
    hospital_organization,
    hospital_resources,
)
from sante.store import Repository
from sante.store.bundles import commit_transaction, prepare_bundle
from sante.store.search import matching_ids

ACCOUNTS_FILE = "demo-accounts.txt"
SYNTHEA_SYSTEM = "https://github.com/synthetichealth/synthea"
PROGRESS_EVERY = 2000  # resources written between two progress reports
BUNDLE_ENTRIES = 500  # entries per transaction Bundle of reference data

# Progress: (what is being done, resources just written, new estimate of the total or None).
Progress = Callable[[str, int, int | None], None]


def _no_progress(_what: str, _n: int, _total: int | None) -> None:
    pass


@dataclass(slots=True)
class DemoData:
    """The generated hospital, ready to write."""

    hospital: Hospital
    facility: list[dict[str, Any]]  # every resource of the facility but the hospital Organization
    organization: dict[str, Any]  # the hospital Organization (with the seed marker)
    medications: list[dict[str, Any]]
    patients: list[care.PatientRecord]

    def resource_count(self) -> int:
        return len(self.facility) + 1 + len(self.medications) + sum(len(p.resources) for p in self.patients)

    def stats(self) -> dict[str, int]:
        return {"patients": len(self.patients), "beds": len(self.hospital.beds),
                "occupied": sum(1 for p in self.patients if p.current_bed), "staff": len(self.hospital.staff),
                "queue": sum(len(p.queue) for p in self.patients)}


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    role: str
    fhir_user: str | None
    organization: str | None
    who: str  # the person, for the printed list
    password: str = ""


@dataclass(slots=True)
class SeedReport:
    seeded: bool  # False: the hospital was already there
    resources: int = 0  # demo hospital resources written
    synthea_files: int = 0
    synthea_resources: int = 0
    synthea_failures: list[str] = field(default_factory=list)
    accounts: list[Account] = field(default_factory=list)
    new_accounts: int = 0
    seconds: float = 0.0
    stats: dict[str, int] = field(default_factory=dict)  # what was seeded (see DemoData.stats)


def demo_now() -> datetime:
    """Now in Viet Nam, to the second: the moment the demo's "today" is built around."""
    return datetime.now(care.VIETNAM).replace(microsecond=0)


def _rng(seed: int, part: str) -> random.Random:
    return random.Random(f"sante-demo:{seed}:{part}")


def generate(seed: int = DEFAULT_SEED, patients: int = DEFAULT_PATIENTS, now: datetime | None = None) -> DemoData:
    """The whole demo hospital as resources, deterministic for (seed, patients, now)."""
    now = now or demo_now()
    hospital = build_hospital(_rng(seed, "hospital"))
    medications, formulary = care.formulary()
    ctx = care.CareContext(seed, now, hospital, formulary)
    records = list(care.records(ctx, patients))
    care.assign_queue_tickets(records, now.date())
    bed_status = {bed: "H" for bed in ctx.discharged_today}  # being made ready for the next patient
    bed_status.update({r.current_bed: "O" for r in records if r.current_bed})
    free = [b.id for b in hospital.beds if b.id not in bed_status]
    for bed in _rng(seed, "beds").sample(free, min(3, len(free))):
        bed_status[bed] = "C"  # closed for repairs
    facility = list(hospital_resources(hospital, bed_status))
    return DemoData(hospital, facility, hospital_organization(), medications, records)


def is_seeded(repo: Repository) -> bool:
    """Whether the demo hospital is complete in this repository (its Organization carries the seed marker)."""
    with repo.reader() as tx:
        return bool(matching_ids(tx, "Organization", f"identifier={SEED_MARKER_SYSTEM}|{HOSPITAL_ID}", "seed"))


def transaction_bundle(resources: Iterable[dict[str, Any]], *, create: bool) -> dict[str, Any]:
    """A transaction Bundle of resources: created (POST, the server gives the ids; the resources refer to each other
    by fullUrl, urn:uuid:<id>) or put at their own ids (PUT: the facility and the formulary, whose ids are stable)."""
    def entry(r: dict[str, Any]) -> dict[str, Any]:
        if create:
            return {"fullUrl": f"urn:uuid:{r['id']}", "resource": r,
                    "request": {"method": "POST", "url": r["resourceType"]}}
        return {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}

    return {"resourceType": "Bundle", "type": "transaction", "entry": [entry(r) for r in resources]}


def _chunks(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def write_demo(repo: Repository, data: DemoData, progress: Progress) -> dict[str, str]:
    """Write the generated hospital in one database transaction (all or nothing: an interrupted seed leaves no
    trace), as transaction Bundles: the facility, the formulary, a Bundle per patient, the hospital Organization.
    Returns where each created Patient and RelatedPerson went: urn:uuid:<generated id> -> Type/<stored id>."""
    stored: dict[str, str] = {}
    steps = [("Bệnh viện (facility)", False, _chunks(data.facility, BUNDLE_ENTRIES)),
             ("Danh mục thuốc (formulary)", False, _chunks(data.medications, BUNDLE_ENTRIES)),
             (f"{len(data.patients)} bệnh nhân (patients)", True, (p.resources for p in data.patients)),
             ("Bệnh viện (facility)", False, iter([[data.organization]]))]
    with repo.transaction() as tx:
        for what, create, bundles in steps:
            pending = 0
            for resources in bundles:
                wanted = {n: f"urn:uuid:{r['id']}" for n, r in enumerate(resources)
                          if create and r["resourceType"] in ("Patient", "RelatedPerson")}
                # (preparing takes the ids out of created resources: the server gives them theirs)
                responses = commit_transaction(tx, prepare_bundle(transaction_bundle(resources, create=create)))
                for n, urn in wanted.items():
                    stored[urn] = responses[n]["response"]["location"].split("/_history")[0]
                pending += len(resources)
                if pending >= PROGRESS_EVERY:
                    progress(what, pending, None)
                    pending = 0
            progress(what, pending, None)
    return stored


# -- accounts -----------------------------------------------------------------------------------------------------

def staff_accounts(hospital: Hospital) -> list[Account]:
    """An account for the first staff member of each staff role, bound to the hospital."""
    from sante.auth.roles import ROLES

    out = []
    for role in ROLES:
        staff = next((s for s in hospital.staff if s.role == role), None)
        if staff is not None:
            out.append(Account(role, role, f"Practitioner/{staff.practitioner}", f"Organization/{HOSPITAL_ID}",
                               f"{staff.display}, {staff.title}, {hospital.departments[staff.department].name}"))
    return out


def portal_accounts(data: DemoData) -> list[Account]:
    """The patient portal's account (patient 0) and a parent's account (the mother or father of patient 1), linked
    to their generated resources (urn:uuid:<id>) until they are stored."""
    patient, child = data.patients[care.PORTAL_PATIENT], data.patients[care.PORTAL_CHILD]
    out = [Account("patient", "patient", f"urn:uuid:{patient.patient_id}", None, patient.person.name.text)]
    if child.related_person:
        parent = next(r for r in child.resources if r["id"] == child.related_person)
        out.append(Account("related_person", "related_person", f"urn:uuid:{child.related_person}", None,
                           f"{parent['name'][0]['text']} ({parent['relationship'][0]['text'].lower()} của bệnh "
                           f"nhân {child.person.name.text})"))
    return out


def read_accounts_file(path: Path) -> dict[str, Account]:
    """The accounts of a demo accounts file, with their passwords (empty if there is none)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    out = {}
    for line in lines:
        parts = line.split("\t")
        if line.startswith("#") or len(parts) < 5:
            continue
        role, username, password, fhir_user, who = parts[:5]
        out[username] = Account(username, role, None if fhir_user == "-" else fhir_user, None, who, password)
    return out


def write_accounts_file(path: Path, accounts: list[Account]) -> None:
    """The accounts and their passwords, readable by the owner alone (mode 0600)."""
    lines = ["# Sante demo hospital: user accounts (synthetic data, demo only; never reuse these passwords).",
             "# role\tusername\tpassword\tlinked to\twho"]
    lines += [f"{a.role}\t{a.username}\t{a.password}\t{a.fhir_user or '-'}\t{a.who}" for a in accounts]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)  # also when the file was there before, with wider rights


def new_password() -> str:
    """Twelve letters and digits (nothing a shell or a copy-and-paste would trip on)."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
    return "".join(secrets.choice(alphabet) for _ in range(12))


def ensure_accounts(repo: Repository, data_dir: Path, plan: list[Account]) -> tuple[list[Account], int]:
    """Create the planned accounts that do not exist; give a new password to an existing one whose password is not
    in the accounts file. Accounts of the file that are not planned (the portal ones, on a later run) are kept.
    Returns (every account with its password, how many were created)."""
    users = UserStore(repo.engine)
    path = data_dir / ACCOUNTS_FILE
    known = read_accounts_file(path)
    planned = {a.username for a in plan}
    plan = plan + [a for a in known.values() if a.username not in planned]
    legacy = data_dir / "demo-admin-password"  # written by earlier versions of scripts/demo.sh
    passwords = {a.username: a.password for a in known.values()}
    if "admin" not in passwords and legacy.exists():
        passwords["admin"] = legacy.read_text(encoding="utf-8").strip()
    existing = {u.username for u in users.list()}
    out, events = [], []
    for a in plan:
        password = passwords.get(a.username, "")
        if a.username not in existing:
            password = new_password()
            users.add(a.username, password, a.role, fhir_user=a.fhir_user, organization=a.organization)
            events.append(Event("user-add", username=f"os:{getpass.getuser()}", entities=[f"user:{a.username}"],
                                description=f"demo user {a.username} added with role {a.role}"))
        elif not password:
            password = new_password()
            users.set_password(a.username, password)
        out.append(Account(a.username, a.role, a.fhir_user, a.organization, a.who, password))
    if events:
        AuditLog(repo.engine, load_or_create(data_dir, "audit")).append(events)
    write_accounts_file(path, out)
    return out, len(events)


# -- Synthea ------------------------------------------------------------------------------------------------------


def synthea_pending(repo: Repository, folder: Path) -> list[Path]:
    """The Synthea files whose patient is not in the repository yet (a file without one is always pending)."""
    from sante.store.loader import fhir_files

    pending = []
    with repo.reader() as tx:
        for path in fhir_files([folder]):
            ident = _synthea_patient(path)
            if ident is None or not matching_ids(tx, "Patient", f"identifier={SYNTHEA_SYSTEM}|{ident}", str(path)):
                pending.append(path)
    return pending


def _synthea_patient(path: Path) -> str | None:
    try:
        raw = path.read_bytes()
        doc = orjson.loads(gzip.decompress(raw) if path.name.endswith(".gz") else raw)
    except (OSError, orjson.JSONDecodeError, gzip.BadGzipFile, EOFError):
        return None
    for e in doc.get("entry", []) if isinstance(doc, dict) else []:
        r = e.get("resource") or {}
        if r.get("resourceType") == "Patient":
            return next((i.get("value") for i in r.get("identifier", []) if i.get("system") == SYNTHEA_SYSTEM), None)
    return None


# -- the whole seed -----------------------------------------------------------------------------------------------


def stock_pharmacies(repo: Repository, data: DemoData, now: datetime) -> int:
    """Opening stock for the hospital's pharmacies: every medication the demo prescribes, two lots each (one
    expiring within three months, so the expiry list has something to show), received as the pharmacy's own
    records (sante.clinical.pharmacy). Returns how many receipts were written."""
    from sante.auth.guarded import GuardedRepository
    from sante.auth.principal import Principal
    from sante.auth.scopes import Scopes
    from sante.clinical import pharmacy

    prescribed = sorted({r["medicationReference"]["reference"].split("/", 1)[1] for p in data.patients
                         for r in p.resources if r.get("resourceType") == "MedicationRequest"
                         and "medicationReference" in r})
    operator = GuardedRepository(repo, Principal("demo-seed", "system", Scopes.parse("system/*.cruds")))
    rng = _rng(DEFAULT_SEED, "stock")
    written = 0
    for room in ("nha-thuoc", "kho"):
        pharmacy_id = data.hospital.rooms.get(room)
        if pharmacy_id is None:
            continue
        for n, med in enumerate(prescribed):
            soon = (now + timedelta(days=rng.randint(20, 80))).date()
            later = (now + timedelta(days=rng.randint(300, 700))).date()
            for lot, expiry, quantity in ((f"L{n:03d}A", soon, rng.choice((20, 50, 100))),
                                          (f"L{n:03d}B", later, rng.choice((200, 500, 1000)))):
                pharmacy.receive(operator, pharmacy_id, med, quantity, lot, expiry, "Công ty Dược phẩm Trung ương",
                                 now=now)
                written += 1
    return written


SIGNING_ROLES = ("physician", "nurse", "radiologist", "lab_technician", "pharmacist")


def ensure_signing_keys(data_dir: Path, accounts: list[Account]) -> int:
    """The hospital CA (created once) and a signing key for every clinical account linked to a Practitioner
    that has none yet, so the demo's physicians can sign visits and discharge summaries; returns how many keys
    were issued."""
    from sante.auth import ca

    ca_dir = ca.default_ca_dir(data_dir)
    if not ca.ca_exists(ca_dir):
        ca.init_ca(ca_dir, "BV Da khoa Sante demo CA")
    issued = 0
    for account in accounts:
        ref = account.fhir_user or ""
        if account.role not in SIGNING_ROLES or not ref.startswith("Practitioner/"):
            continue
        if ca.has_signer(ca_dir, ref):
            continue
        ca.issue(ca_dir, ref, account.who or account.username)
        issued += 1
    return issued


def seed_demo(repo: Repository, data_dir: Path, *, patients: int = DEFAULT_PATIENTS, seed: int = DEFAULT_SEED,
              synthea: Path | None = None, now: datetime | None = None,
              progress: Progress = _no_progress, notifiable_cases: bool = False) -> SeedReport:
    """Seed the demo hospital (unless it is there), its accounts and the Synthea patients (those missing); with
    `notifiable_cases`, five years of notifiable-disease cases and their alerts too (sante.demo.surveillance)."""
    if patients < 2:
        raise ValueError("the demo needs at least 2 patients (the portal accounts are linked to the first two)")
    started = time.perf_counter()
    now = now or demo_now()
    report = SeedReport(seeded=not is_seeded(repo))
    synthea_files = synthea_pending(repo, synthea) if synthea is not None and synthea.is_dir() else []
    # One bar over everything: resources written, Synthea estimated (~280 a patient) until its files are read.
    per_file, base = 300, 0

    if report.seeded:
        progress("Tạo dữ liệu (generating)", 0, None)
        data = generate(seed, patients, now)
        plan = staff_accounts(data.hospital)
        base = data.resource_count()
        progress("Bệnh viện (facility)", 0, base + per_file * len(synthea_files))
        portal = portal_accounts(data)
        stored = write_demo(repo, data, progress)
        report.resources, report.stats = base, data.stats()
        plan += [dataclasses.replace(a, fhir_user=stored[a.fhir_user or ""]) for a in portal]
    else:
        plan = staff_accounts(build_hospital(_rng(seed, "hospital")))
        progress("Đã có (already seeded)", 0, max(1, per_file * len(synthea_files)))
    progress("Tài khoản (accounts)", 0, None)
    report.accounts, report.new_accounts = ensure_accounts(repo, data_dir, plan)
    ensure_signing_keys(data_dir, report.accounts)
    if report.seeded:
        progress("Kho thuốc (pharmacy stock)", 0, None)
        report.resources += stock_pharmacies(repo, data, now)
        if notifiable_cases:
            from sante.demo import surveillance

            report.resources += surveillance.seed_surveillance(repo, data.hospital, seed, now, progress)
    if synthea_files:
        from sante.store.loader import load_paths

        def on_file(_path: Path, written: int, _failed: bool) -> None:
            report.synthea_files += 1
            report.synthea_resources += written
            average = report.synthea_resources / report.synthea_files
            progress("Synthea (bệnh nhân Synthea)", written,
                     base + round(report.synthea_resources + average * (len(synthea_files) - report.synthea_files)))

        summary = load_paths(repo, synthea_files, on_file)
        report.synthea_failures = summary.failures
    elif report.seeded:
        repo.optimize(full=True)  # new data: fresh statistics for the query planner
    report.seconds = time.perf_counter() - started
    return report
