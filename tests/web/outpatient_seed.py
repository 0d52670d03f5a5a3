"""The hospital of the outpatient pages' tests: tests.support.outpatient's (the hospital, two clinics, a physician,
a nurse and a receptionist, a few formulary medicines), staff accounts linked to their Practitioner and bound to
the hospital, a pharmacist and an administrator, and the hospital CA with the physician's signing key."""

from __future__ import annotations

from pathlib import Path

import pytest

from sante.auth import ca
from sante.auth.users import UserStore
from sante.store import Repository
from tests.support.outpatient import CHILD_CLINIC, CLINIC, HOSPITAL, NURSE, PHYSICIAN, RECEPTIONIST, build_hospital
from tests.web.seed import PASSWORD

ORGANIZATION = f"Organization/{HOSPITAL}"
ACCOUNTS = {  # username: (role, practitioner)
    "thu": ("receptionist", RECEPTIONIST), "hoa": ("nurse", NURSE), "lan": ("physician", PHYSICIAN),
    "chi": ("pharmacist", None), "root": ("admin", None),
}
__all__ = ["ACCOUNTS", "CHILD_CLINIC", "CLINIC", "PASSWORD", "seed_outpatient"]


def seed_outpatient(repo: Repository, users: UserStore, data_dir: Path) -> None:
    build_hospital(repo)
    for name, (role, practitioner) in ACCOUNTS.items():
        users.add(name, PASSWORD, role, organization=ORGANIZATION,
                  fhir_user=f"Practitioner/{practitioner}" if practitioner else None)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(ca.PASSPHRASE_ENV, raising=False)
        ca.init_ca(ca.default_ca_dir(data_dir), "Bệnh viện Đa khoa Sante CA")
        ca.issue(ca.default_ca_dir(data_dir), f"Practitioner/{PHYSICIAN}", "BS. Trần Minh Đức")
