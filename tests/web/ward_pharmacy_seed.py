"""The wards and the pharmacy of the web app's test hospital (on top of tests.web.seed): two departments with
their wards, rooms and beds (one bed being cleaned, one closed), two patients in bed with their ward orders, the
outpatient pharmacy and the inpatient store with stock, prescriptions waiting at the pharmacy, staff accounts
linked to their Practitioner (bound to the hospital) and the hospital CA with the physician's signing key.

Times are relative to now: the stays began days ago and today's doses are on the record."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sante.auth import ca
from sante.auth.guarded import GuardedRepository
from sante.auth.principal import Principal
from sante.auth.scopes import Scopes
from sante.auth.users import UserStore
from sante.clinical import formulary, pharmacy
from sante.clinical.service_support import VIETNAM, fhir_time
from sante.store import Repository
from tests.web.seed import ORG, PASSWORD

PHYSICAL = "http://terminology.hl7.org/CodeSystem/location-physical-type"
BED_STATUS = "http://terminology.hl7.org/CodeSystem/v2-0116"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
RX_CATEGORY = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"
PARACETAMOL = "eml-paracetamol-500mg-tablet"
AMOXICILLIN = "eml-amoxicillin-500mg-capsule"
CEFTRIAXONE = "eml-ceftriaxone-1g-powder-for-injection"
OUTPATIENT_PHARMACY = "bvh-nha-thuoc"
INPATIENT_PHARMACY = "bvh-kho"
WARD = "bvh-noi-a"
SURGERY_WARD = "bvh-ngoai-b"
HUNG, LAN_VO = "hung-pham", "lan-vo"  # in bed
HUNG_STAY, LAN_STAY = "stay-hung", "stay-lan"
PHYSICIAN, NURSE, PHARMACIST = "bs.nam", "dd.mai", "ds.ha"
STAFF = {  # username: (role, Practitioner id, name)
    PHYSICIAN: ("physician", "bs-nam", "BS. Hoàng Nam"),
    NURSE: ("nurse", "dd-mai", "ĐD. Vũ Thị Mai"),
    PHARMACIST: ("pharmacist", "ds-ha", "DS. Đỗ Thu Hà"),
}
# Orders
CEFTRIAXONE_ORDER, PRN_ORDER, STOPPED_ORDER = "rx-hung-ceftriaxon", "rx-hung-paracetamol", "rx-hung-stopped"
BINH_RX = ("rx-binh-paracetamol", "rx-binh-amoxicillin")  # one prescription: amoxicillin is short (10 of 15)
CUC_RX = "rx-cuc-paracetamol"  # the oldest waiting


def _location(lid: str, name: str, kind: str | None, part_of: str | None, org: str | None = None,
              **more: Any) -> dict[str, Any]:
    loc: dict[str, Any] = {"resourceType": "Location", "id": lid, "status": "active", "name": name,
                           "mode": "instance"}
    if kind:
        loc["physicalType"] = {"coding": [{"system": PHYSICAL, "code": kind}]}
    if org:
        loc["managingOrganization"] = {"reference": f"Organization/{org}"}
    if part_of:
        loc["partOf"] = {"reference": f"Location/{part_of}"}
    loc.update(more)
    return loc


def _beds(ward: str, room: int, n: int, org: str, status: dict[int, str] | None = None) -> list[dict[str, Any]]:
    out = [_location(f"{ward}-{room}", f"Phòng {room}", "ro", ward, org)]
    for b in range(1, n + 1):
        code = (status or {}).get(b, "U")
        out.append(_location(f"{ward}-{room}-{b}", f"Giường {b}", "bd", f"{ward}-{room}", org,
                             operationalStatus={"system": BED_STATUS, "code": code}))
    return out


def facility() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"resourceType": "Organization", "id": "bvh-noi", "name": "Khoa Nội", "partOf": {"reference": f"Organization/{ORG}"}},
        {"resourceType": "Organization", "id": "bvh-ngoai", "name": "Khoa Ngoại",
         "partOf": {"reference": f"Organization/{ORG}"}},
        _location("bvh", "Bệnh viện Hà Nội", "si", None, ORG),
        _location("bvh-noi", "Khoa Nội", "wi", "bvh", "bvh-noi"),
        _location(WARD, "Khoa Nội – Khu A", "wa", "bvh-noi", "bvh-noi"),
        *_beds(WARD, 201, 3, "bvh-noi"),
        *_beds(WARD, 202, 3, "bvh-noi", {2: "C", 3: "H"}),
        _location("bvh-ngoai", "Khoa Ngoại", "wi", "bvh", "bvh-ngoai"),
        _location(SURGERY_WARD, "Khoa Ngoại – Khu B", "wa", "bvh-ngoai", "bvh-ngoai"),
        *_beds(SURGERY_WARD, 301, 2, "bvh-ngoai"),
    ]
    for lid, name, kind in ((OUTPATIENT_PHARMACY, "Nhà thuốc bệnh viện", "OUTPHARM"),
                            (INPATIENT_PHARMACY, "Kho thuốc – Cấp phát nội trú", "INPHARM")):
        out.append(_location(lid, name, "ro", "bvh", ORG, type=[{"coding": [{"system": ROLE_CODE, "code": kind}]}]))
    for _role, pid, name in STAFF.values():
        prefix, _, rest = name.partition(" ")
        family, *given = rest.split(" ")
        out.append({"resourceType": "Practitioner", "id": pid,
                    "name": [{"text": rest, "family": family, "given": given, "prefix": [prefix]}]})
    out += [formulary.medication(m) for m in (PARACETAMOL, AMOXICILLIN, CEFTRIAXONE)]  # type: ignore[misc]
    return out


def _stay(eid: str, pid: str, name: str, bed: str, room: str, start: datetime, reason: str) -> dict[str, Any]:
    at = fhir_time(start)

    def entry(lid: str, display: str, kind: str) -> dict[str, Any]:
        return {"location": {"reference": f"Location/{lid}", "display": display}, "status": "active",
                "period": {"start": at}, "physicalType": {"coding": [{"system": PHYSICAL, "code": kind}]}}

    return {
        "resourceType": "Encounter", "id": eid, "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": f"Patient/{pid}", "display": name}, "period": {"start": at},
        "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": reason}]}],
        "hospitalization": {"admitSource": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/admit-source",
                                                        "code": "emd"}]}},
        "location": [entry(WARD, "Khoa Nội – Khu A", "wa"), entry(room, f"Phòng {room.rsplit('-', 1)[1]}", "ro"),
                     entry(bed, f"Giường {bed.rsplit('-', 1)[1]}", "bd")],
        "serviceProvider": {"reference": "Organization/bvh-noi", "display": "Khoa Nội"},
    }


def _order(rid: str, pid: str, medication: str, authored: datetime, quantity: float, unit: str, *,
           encounter: str | None = None, category: str = "outpatient", status: str = "active",
           text: str = "Uống 1 viên/lần, 3 lần/ngày", timing: dict[str, Any] | None = None,
           dose: tuple[float, str] = (1, "viên"), as_needed: bool = False) -> dict[str, Any]:
    dosage: dict[str, Any] = {"text": text, "doseAndRate": [{"doseQuantity": {"value": dose[0], "unit": dose[1]}}]}
    if timing:
        dosage["timing"] = timing
    if as_needed:
        dosage["asNeededBoolean"] = True
    order: dict[str, Any] = {
        "resourceType": "MedicationRequest", "id": rid, "status": status, "intent": "order",
        "category": [{"coding": [{"system": RX_CATEGORY, "code": category}]}],
        "medicationReference": {"reference": f"Medication/{medication}",
                                "display": formulary.product(medication).label},  # type: ignore[union-attr]
        "subject": {"reference": f"Patient/{pid}"}, "authoredOn": fhir_time(authored),
        "requester": {"reference": "Practitioner/bs-nam", "display": "BS. Hoàng Nam"},
        "dosageInstruction": [dosage],
        "dispenseRequest": {"quantity": {"value": quantity, "unit": unit}, "numberOfRepeatsAllowed": 0},
    }
    if encounter:
        order["encounter"] = {"reference": f"Encounter/{encounter}"}
    return order


def patients_and_care(now: datetime) -> list[dict[str, Any]]:
    admitted = (now - timedelta(days=3)).replace(hour=9, minute=30, second=0, microsecond=0)
    twice_daily = {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}}
    out: list[dict[str, Any]] = []
    for pid, family, given, gender, born in ((HUNG, "Phạm", ["Văn", "Hùng"], "male", "1950-04-02"),
                                             (LAN_VO, "Võ", ["Thị", "Lan"], "female", "1978-10-21")):
        out.append({"resourceType": "Patient", "id": pid, "gender": gender, "birthDate": born,
                    "name": [{"use": "official", "family": family, "given": given, "text": " ".join([family, *given])}],
                    "identifier": [{"system": "urn:vn:cccd", "value": f"0010{born[:4]}00{len(pid):04d}"}],
                    "managingOrganization": {"reference": f"Organization/{ORG}"}})
    out += [
        _stay(HUNG_STAY, HUNG, "Phạm Văn Hùng", f"{WARD}-201-1", f"{WARD}-201", admitted, "J18.9"),
        _stay(LAN_STAY, LAN_VO, "Võ Thị Lan", f"{WARD}-201-2", f"{WARD}-201", admitted + timedelta(days=1), "K35.8"),
        _order(CEFTRIAXONE_ORDER, HUNG, CEFTRIAXONE, admitted + timedelta(hours=1), 14, "lọ", encounter=HUNG_STAY,
               category="inpatient", text="Tiêm tĩnh mạch chậm 1 lọ/lần, 2 lần/ngày", timing=twice_daily,
               dose=(1, "lọ")),
        _order(PRN_ORDER, HUNG, PARACETAMOL, admitted + timedelta(hours=1), 10, "viên", encounter=HUNG_STAY,
               category="inpatient", text="Uống 1 viên khi sốt trên 38,5 °C", as_needed=True),
        _order(STOPPED_ORDER, HUNG, AMOXICILLIN, admitted + timedelta(hours=1), 10, "viên", encounter=HUNG_STAY,
               category="inpatient", status="stopped", timing=twice_daily),
        _order(CUC_RX, "cuc-nguyen", PARACETAMOL, now - timedelta(hours=5), 10, "viên"),
        _order(BINH_RX[0], "binh-tran", PARACETAMOL, now - timedelta(hours=2), 20, "viên"),
        _order(BINH_RX[1], "binh-tran", AMOXICILLIN, now - timedelta(hours=2), 15, "viên",
               text="Uống 1 viên/lần, 3 lần/ngày trong 5 ngày"),
    ]
    return out


def stock(repo: Repository, today: date) -> None:
    """Paracetamol in two lots (the first expiring within 90 days), amoxicillin short, ceftriaxone in the store."""
    keeper = GuardedRepository(repo, Principal(subject="seed", role="system", scopes=Scopes.parse("system/*.cruds")))
    year = today.replace(year=today.year + 1)
    for where, medication, quantity, lot, expiry, unit in (
            (OUTPATIENT_PHARMACY, PARACETAMOL, 100, "P-2401", today + timedelta(days=60), "viên"),
            (OUTPATIENT_PHARMACY, PARACETAMOL, 200, "P-2402", year, "viên"),
            (OUTPATIENT_PHARMACY, AMOXICILLIN, 10, "A-0107", year, "viên"),
            (INPATIENT_PHARMACY, CEFTRIAXONE, 40, "C-1120", year, "lọ")):
        pharmacy.receive(keeper, where, medication, quantity, lot, expiry, "Công ty Dược phẩm Trung ương 1",
                         unit=unit)


def seed_wards_and_pharmacy(repo: Repository, users: UserStore, data_dir: Path, now: datetime | None = None) -> None:
    """Write the facility, the stays and orders, the stock, the staff accounts and their signing keys."""
    now = now or datetime.now(VIETNAM)
    for username, (role, pid, _name) in STAFF.items():
        users.add(username, PASSWORD, role, fhir_user=f"Practitioner/{pid}", organization=f"Organization/{ORG}")
    with repo.transaction() as tx:
        for resource in [*facility(), *patients_and_care(now)]:
            tx.update(resource, resource["id"])
    stock(repo, now.date())
    ca_dir = ca.default_ca_dir(data_dir)
    ca.init_ca(ca_dir, "Bệnh viện Hà Nội CA")
    ca.issue(ca_dir, "Practitioner/bs-nam", "BS. Hoàng Nam")


def ward_pharmacy_site(folder: Path) -> Iterator[Any]:
    """The API and web app over the seeded test hospital with its wards and pharmacies, in folder (a module
    fixture's temporary directory); the repository is closed when the fixture ends."""
    from sante.api import create_app
    from sante.store import open_repository
    from tests.web.seed import seed

    repo = open_repository(f"sqlite:///{folder / 'sante.db'}")
    app = create_app(repo, data_dir=folder)
    seed(repo, app.state.security.users)
    seed_wards_and_pharmacy(repo, app.state.security.users, folder)
    yield app
    repo.close()
