"""A small hospital for the outpatient workflow tests, with the demo hospital's representations
(sante.demo.hospital): the hospital Organization, its outpatient department (partOf the hospital), two clinics
(Location rooms managed by the department; "Phòng khám N1" by its alias, the children's clinic by a prefix
identifier), a physician, a nurse and a receptionist, and a few formulary Medications."""

from __future__ import annotations

from dataclasses import dataclass

from sante.auth.guarded import GuardedRepository
from sante.auth.principal import Principal
from sante.auth.scopes import Scopes
from sante.clinical.formulary import medication
from sante.clinical.queue import TICKET_PREFIX_SYSTEM

HOSPITAL = "bvdk-sante"
CLINIC = "bvdk-sante-pk-noi-1"
CHILD_CLINIC = "bvdk-sante-pk-nhi"
PHYSICIAN = "bvdk-sante-nv001"
NURSE = "bvdk-sante-nv002"
RECEPTIONIST = "bvdk-sante-nv003"
DRUGS = ("eml-amlodipine-5mg-tablet", "eml-paracetamol-500mg-tablet", "eml-amoxicillin-500mg-capsule",
         "eml-salbutamol-100ug-1dose-inhaler")


def _practitioner(pid: str, family: str, given: list[str], prefix: str = "") -> dict:
    name = {"use": "official", "text": " ".join([family, *given]), "family": family, "given": given}
    if prefix:
        name["prefix"] = [prefix]
    return {"resourceType": "Practitioner", "id": pid, "active": True, "name": [name]}


def build_hospital(repo) -> None:
    resources = [
        {"resourceType": "Organization", "id": HOSPITAL, "active": True, "name": "Bệnh viện Đa khoa Sante",
         "telecom": [{"system": "phone", "value": "02383844000", "use": "work"}]},
        {"resourceType": "Organization", "id": f"{HOSPITAL}-kham-benh", "active": True, "name": "Khoa Khám bệnh",
         "partOf": {"reference": f"Organization/{HOSPITAL}"}},
        {"resourceType": "Location", "id": CLINIC, "status": "active", "name": "Phòng khám Nội 1", "mode": "instance",
         "alias": ["Phòng khám N1"], "managingOrganization": {"reference": f"Organization/{HOSPITAL}-kham-benh"}},
        {"resourceType": "Location", "id": CHILD_CLINIC, "status": "active", "name": "Phòng khám Nhi",
         "mode": "instance", "identifier": [{"system": TICKET_PREFIX_SYSTEM, "value": "NH"}],
         "managingOrganization": {"reference": f"Organization/{HOSPITAL}-kham-benh"}},
        _practitioner(PHYSICIAN, "Trần", ["Minh", "Đức"], "BS."),
        _practitioner(NURSE, "Lê", ["Thị", "Hoa"], "ĐD."),
        _practitioner(RECEPTIONIST, "Phạm", ["Thu", "Trang"]),
        *(medication(d) for d in DRUGS),
    ]
    with repo.transaction() as tx:
        for r in resources:
            tx.update(r, r["id"])


def staff(role: str, practitioner: str | None = None, organization: str | None = f"Organization/{HOSPITAL}"
          ) -> Principal:
    return Principal(subject=f"{role}-user", role=role, scopes=Scopes.parse("user/*.cruds"),
                     fhir_user=f"Practitioner/{practitioner}" if practitioner else None, organization=organization)


@dataclass
class Desk:
    """The guarded repository as each member of staff uses it."""

    receptionist: GuardedRepository
    nurse: GuardedRepository
    physician: GuardedRepository


def desk(repo) -> Desk:
    return Desk(GuardedRepository(repo, staff("receptionist", RECEPTIONIST)),
                GuardedRepository(repo, staff("nurse", NURSE)),
                GuardedRepository(repo, staff("physician", PHYSICIAN)))
