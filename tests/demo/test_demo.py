"""The demo hospital: its structure, people, accounts and care, seeded once (20 patients) for the whole module."""

from __future__ import annotations

import re
import shutil
import stat
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from sante.auth.roles import ROLES
from sante.auth.users import UserStore
from sante.clinical import admin_units
from sante.clinical.identifiers import BHYT_SYSTEM, CCCD_SYSTEM, check_cccd_against, parse_bhyt, parse_cccd
from sante.demo import care, seed
from sante.demo.hospital import HOSPITAL_ID
from sante.demo.people import FAMILY_NAMES
from sante.store import open_repository
from sante.store.search import parse_search, run_search
from tests.conftest import SHARED, _fresh_postgres_url

NOW = datetime(2025, 11, 20, 10, 30, tzinfo=timezone(timedelta(hours=7)))
PATIENTS = 20
PATIENT_TYPES = {  # resource type -> its search parameter for the patient
    "Encounter": "subject", "Observation": "subject", "Condition": "subject", "MedicationRequest": "subject",
    "DiagnosticReport": "subject", "Immunization": "patient", "AllergyIntolerance": "patient",
    "Procedure": "subject", "RelatedPerson": "patient",
}


def search(repo: Any, rtype: str, *query: tuple[str, str]) -> list[dict[str, Any]]:
    """Every match of a search, page after page."""
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = [*query, ("_count", "1000"), *([("_cursor", cursor)] if cursor else [])]
        with repo.reader() as tx:
            result = run_search(tx, parse_search(rtype, params))
        out += [m.resource for m in result.matches]
        cursor = result.next_cursor
        if not cursor:
            return out


def count(repo: Any, table: str) -> int:
    with repo.engine.connect() as conn:
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())


@pytest.fixture(scope="module")
def quick_passwords() -> Any:
    """argon2 at its cheapest: the accounts' hashing would otherwise take most of the module's time."""
    from argon2 import PasswordHasher

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sante.auth.passwords._hasher", PasswordHasher(time_cost=1, memory_cost=256, parallelism=1))
        yield


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, quick_passwords: None) -> Any:
    """The demo with 20 patients and, when ../shared is there, the smallest Synthea patient."""
    data_dir = tmp_path_factory.mktemp("demo")
    synthea = None
    if (SHARED / "data" / "synthea-r4").is_dir():
        synthea = data_dir / "synthea"
        synthea.mkdir()
        shutil.copy(min((SHARED / "data" / "synthea-r4").glob("*.json.gz"), key=lambda p: p.stat().st_size), synthea)
    repo = open_repository(f"sqlite:///{data_dir / 'sante.db'}")
    report = seed.seed_demo(repo, data_dir, patients=PATIENTS, seed=7, now=NOW, synthea=synthea)
    yield repo, data_dir, report, synthea
    repo.close()


def test_hospital_locations_form_a_tree_of_beds(seeded):
    repo, _, report, _ = seeded
    locations = {r["id"]: r for r in search(repo, "Location")}
    kind = {rid: r["physicalType"]["coding"][0]["code"] for rid, r in locations.items()}
    beds = [rid for rid, k in kind.items() if k == "bd"]
    assert len(beds) == report.stats["beds"] >= 250
    for rid, loc in locations.items():  # every location leads up to the hospital site
        path = [rid]
        while "partOf" in locations[path[-1]]:
            path.append(locations[path[-1]]["partOf"]["reference"].removeprefix("Location/"))
        assert path[-1] == HOSPITAL_ID and kind[HOSPITAL_ID] == "si"
        if kind[rid] == "bd":
            assert [kind[p] for p in path] == ["bd", "ro", "wa", "wi", "si"]
            assert loc["operationalStatus"]["code"] in ("O", "U", "H", "C")
    departments = {locations[p]["name"] for p in locations if kind[p] == "wi"}
    assert {"Khoa Nội", "Khoa Ngoại", "Khoa Nhi", "Khoa Sản", "Khoa Hồi sức tích cực", "Khoa Khám bệnh",
            "Khoa Xét nghiệm", "Khoa Chẩn đoán hình ảnh", "Khoa Dược"} <= departments
    assert any(t["coding"][0]["code"] == "OUTPHARM" for r in locations.values() for t in r.get("type", []))
    assert len(search(repo, "HealthcareService")) >= 10


def test_occupied_beds_are_those_of_current_admissions(seeded):
    repo, _, report, _ = seeded
    occupied = {r["id"] for r in search(repo, "Location", ("operational-status", "O"))}
    admitted = search(repo, "Encounter", ("class", "IMP"), ("status", "in-progress"))
    in_beds = {loc["location"]["reference"].removeprefix("Location/") for e in admitted for loc in e["location"]
               if loc["status"] == "active" and loc["physicalType"]["coding"][0]["code"] == "bd"}
    assert occupied == in_beds and len(occupied) == report.stats["occupied"] > 0
    for e in search(repo, "Encounter", ("class", "IMP"), ("status", "finished")):
        assert e["period"]["end"] > e["period"]["start"] and e["length"]["value"] >= 1


def test_every_role_has_an_account_that_signs_in(seeded):
    repo, data_dir, report, _ = seeded
    users = UserStore(repo.engine)
    by_role = {a.role: a for a in report.accounts}
    assert set(by_role) == set(ROLES) - {"system"}
    for a in report.accounts:
        user = users.authenticate(a.username, a.password)
        assert user.role == a.role and user.fhir_user == a.fhir_user
        rtype, rid = a.fhir_user.split("/")
        assert repo.read(rtype, rid).resource is not None
        if rtype == "Practitioner":
            assert user.organization == f"Organization/{HOSPITAL_ID}"
            assert search(repo, "PractitionerRole", ("practitioner", a.fhir_user))
    path = data_dir / seed.ACCOUNTS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert {u: a.password for u, a in seed.read_accounts_file(path).items()} == {
        a.username: a.password for a in report.accounts}


def test_patients_look_vietnamese_and_their_identifiers_agree(seeded):
    repo, _, _, _ = seeded
    patients = search(repo, "Patient", ("organization", f"Organization/{HOSPITAL_ID}"))
    assert len(patients) == PATIENTS
    families = {f for f, _ in FAMILY_NAMES}
    insured = 0
    for p in patients:
        name = p["name"][0]
        assert name["family"] in families and name["text"] == " ".join([name["family"], *name["given"]])
        ids = {i["system"]: i["value"] for i in p["identifier"]}
        cccd = parse_cccd(ids[CCCD_SYSTEM], today=NOW.date())
        assert check_cccd_against(cccd, p["birthDate"], p["gender"]) == []
        if BHYT_SYSTEM in ids:
            insured += 1
            card = parse_bhyt(ids[BHYT_SYSTEM])
            assert len(card.number) == 15 and card.warnings == ()
        elif (NOW.date().year - int(p["birthDate"][:4])) < 6:
            pytest.fail("children under six are insured")
        for phone in p.get("telecom", []):
            assert re.fullmatch(r"0[35789]\d{8}", phone["value"])
        for address in p["address"]:
            codes = {e["url"]: e["valueCoding"]["code"] for e in address["extension"][0]["extension"]}
            if address["use"] == "old":
                assert admin_units.legacy_ward(codes["legacyWard"]) is not None
            else:
                assert admin_units.commune(codes["commune"]) is not None
    assert insured > PATIENTS // 2  # most have a card (whether all do depends on the draw)


def test_every_patient_resource_is_found_by_patient_search(seeded):
    repo, _, _, _ = seeded
    patients = search(repo, "Patient")  # the hospital's and Synthea's
    for rtype, param in PATIENT_TYPES.items():
        found = sum(len(search(repo, rtype, (param, f"Patient/{p['id']}"))) for p in patients)
        assert found == len(search(repo, rtype)) > 0, rtype
    stored = {(r["resourceType"], r["id"]) for t in (*PATIENT_TYPES, "Patient") for r in search(repo, t)}
    ours = [mr for mr in search(repo, "MedicationRequest") if "medicationReference" in mr]
    assert ours
    for mr in ours:  # the demo's prescriptions point at formulary products, their encounter and reason
        assert mr["medicationReference"]["reference"].startswith("Medication/eml-")
        for ref in (mr["encounter"], *mr.get("reasonReference", [])):
            assert tuple(ref["reference"].split("/")) in stored
        assert mr["dosageInstruction"][0]["timing"]["repeat"]["boundsDuration"]["value"] > 0
        assert mr["dispenseRequest"]["quantity"]["value"] > 0


def test_the_care_fits_the_problems(seeded):
    repo, _, _, _ = seeded
    for cond in search(repo, "Condition", ("code", "http://hl7.org/fhir/sid/icd-10|E11.9")):
        hba1c = search(repo, "Observation", ("subject", cond["subject"]["reference"]), ("code", "4548-4"))
        assert all(o["valueQuantity"]["value"] > 6.5 for o in hba1c)
    children = [p for p in search(repo, "Patient") if int(p["birthDate"][:4]) > NOW.year - 6]
    assert children and all(search(repo, "Immunization", ("patient", f"Patient/{p['id']}")) for p in children)
    queue = [e for e in search(repo, "Encounter", ("class", "AMB"), ("date", "ge2025-11-20"))
             if any(i["system"] == care.QUEUE_TICKET_SYSTEM for i in e.get("identifier", []))]
    assert queue and all(re.fullmatch(r"[A-Z]{2}-\d{3}", e["identifier"][0]["value"]) for e in queue)
    assert all(e["period"]["start"].startswith("2025-11-20") for e in queue)
    assert {e["status"] for e in queue} <= {"arrived", "triaged", "in-progress", "finished"}
    assert len(search(repo, "Medication")) > 400


def test_a_second_run_writes_nothing(seeded):
    repo, data_dir, first, _ = seeded
    before = count(repo, "resource_history"), count(repo, "users")
    again = seed.seed_demo(repo, data_dir, patients=PATIENTS, seed=7, now=NOW)
    assert not again.seeded and again.new_accounts == 0 and again.resources == 0
    assert (count(repo, "resource_history"), count(repo, "users")) == before
    assert {a.username: a.password for a in again.accounts} == {a.username: a.password for a in first.accounts}


def test_the_generator_is_deterministic():
    def dump(s: int) -> bytes:
        data = seed.generate(seed=s, patients=4, now=NOW)
        return orjson.dumps([data.facility, data.organization, [p.resources for p in data.patients]])

    assert dump(3) == dump(3)
    assert dump(3) != dump(4)


def test_synthea_patients_are_loaded_once(seeded):
    repo, _, report, synthea = seeded
    if synthea is None:
        pytest.skip("../shared (Synthea patients) is not present")
    assert report.synthea_files == 1 and report.synthea_resources > 0 and not report.synthea_failures
    assert seed.synthea_pending(repo, synthea) == []
    assert len(search(repo, "Patient")) == PATIENTS + 1


def test_cli_prints_where_to_sign_in(seeded, capsys, monkeypatch):
    from sante.cli import main

    _, data_dir, report, _ = seeded
    monkeypatch.delenv("SANTE_DATABASE_URL", raising=False)
    monkeypatch.setenv("SANTE_DATA_DIR", str(data_dir / "elsewhere"))
    code = main(["demo", "--data-dir", str(data_dir), "--port", "8181", "--no-synthea", "--seed-only"])
    out = capsys.readouterr().out
    assert code == 0 and "already seeded" in out
    assert "http://127.0.0.1:8181/" in out and "http://127.0.0.1:8181/fhir" in out
    for a in report.accounts:
        assert re.search(rf"^  {a.username}\s+{re.escape(a.password)}\s", out, re.M), a.username


def test_cli_refuses_too_few_patients(capsys, tmp_path):
    from sante.cli import main

    assert main(["demo", "--data-dir", str(tmp_path), "--patients", "1", "--seed-only"]) == 2
    assert "at least 2" in capsys.readouterr().err


def test_seeds_on_postgresql(postgres_server, tmp_path, quick_passwords):
    repo = open_repository(_fresh_postgres_url(postgres_server))
    first = seed.seed_demo(repo, tmp_path, patients=2, now=NOW)
    assert first.seeded and seed.is_seeded(repo)
    written = count(repo, "resource_history")
    assert written == first.resources
    again = seed.seed_demo(repo, tmp_path, patients=2, now=NOW)
    assert not again.seeded and count(repo, "resource_history") == written
    repo.close()


def test_the_demo_physicians_can_sign(tmp_path):
    """Seeding gives the hospital a CA and each clinical account linked to a Practitioner its signing key, once."""
    from sante.auth import ca
    from sante.demo.seed import SIGNING_ROLES, Account, ensure_signing_keys

    accounts = [Account("bs.an", "physician", "Practitioner/bs-an", "Organization/h", "BS. Nguyễn Văn An"),
                Account("dd.binh", "nurse", "Practitioner/dd-binh", "Organization/h", "ĐD. Trần Thị Bình"),
                Account("thungan", "receptionist", "Practitioner/tn", "Organization/h", "Lê Văn C"),
                Account("admin", "admin", None, None, "Quản trị")]
    assert ensure_signing_keys(tmp_path, accounts) == 2
    ca_dir = ca.default_ca_dir(tmp_path)
    assert ca.hospital_ca(ca_dir) is not None
    assert ca.has_signer(ca_dir, "Practitioner/bs-an") and ca.has_signer(ca_dir, "Practitioner/dd-binh")
    assert not ca.has_signer(ca_dir, "Practitioner/tn") and "receptionist" not in SIGNING_ROLES
    _, chain = ca.load_signer(ca_dir, "Practitioner/bs-an")
    assert ca.practitioner_of(chain[0]) == "Practitioner/bs-an"
    assert ensure_signing_keys(tmp_path, accounts) == 0  # a second run keeps the keys


def test_the_demo_pharmacies_have_stock(tmp_path):
    """The pharmacies open with two lots of every prescribed medication, one of them expiring soon."""
    from sante.auth.guarded import GuardedRepository
    from sante.auth.principal import Principal
    from sante.auth.scopes import Scopes
    from sante.clinical import pharmacy
    from sante.demo.seed import seed_demo
    from sante.store import open_repository

    repo = open_repository(f"sqlite:///{tmp_path / 'demo.db'}")
    seed_demo(repo, tmp_path, patients=8)
    pharmacist = GuardedRepository(repo, Principal("ds", "pharmacist", Scopes.parse("user/*.cruds")))
    lines = pharmacy.stock(pharmacist, "bvdk-sante-duoc-nha-thuoc")
    assert lines and all(line.on_hand > 0 for line in lines)
    assert {line.lot[-1] for line in lines} == {"A", "B"}
    assert pharmacy.expiring(pharmacist, "bvdk-sante-duoc-nha-thuoc", within_days=90)
