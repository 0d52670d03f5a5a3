"""The population-health page's hospital: the web seed (tests.web.seed), a public-health officer (`ytcc`) bound to
CDC Nghệ An, the analytics tests' small population, and three years of weekly dengue in Nghệ An ending with a
surge in the last complete week (so that the detector alarms there and the page has an alert to judge)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sante.analytics.alerts import JURISDICTION_SYSTEM, STAFF_ROLE_SYSTEM
from sante.auth.users import UserStore
from sante.store import Repository
from tests.analytics.population_seed import population, weekly_dengue, write
from tests.web.seed import PASSWORD

OFFICER = "ytcc"
BASELINE = [1, 2, 0, 1, 3, 1, 2, 1, 0, 2, 1, 1, 2]
SURGE_CASES = 30


def last_complete_week(today: date) -> tuple[int, int]:
    year, week, _ = (today - timedelta(days=7)).isocalendar()
    return year, week


def dengue_history(today: date) -> dict[tuple[int, int], int]:
    """160 weeks of baseline dengue in Nghệ An, then SURGE_CASES in the last complete week."""
    surge = date.fromisocalendar(*last_complete_week(today), 1)
    out = {}
    for n in range(160, 0, -1):
        year, week, _ = (surge - timedelta(weeks=n)).isocalendar()
        out[(year, week)] = BASELINE[n % len(BASELINE)]
    out[last_complete_week(today)] = SURGE_CASES
    return out


def public_health_centre() -> list[dict[str, Any]]:
    return [
        {"resourceType": "Organization", "id": "cdc-40", "name": "CDC Nghệ An",
         "identifier": [{"system": JURISDICTION_SYSTEM, "value": "40"}]},
        {"resourceType": "Practitioner", "id": "ytcc-thu", "name": [{"family": "Lê", "given": ["Thu"]}]},
        {"resourceType": "PractitionerRole", "id": "ytcc-thu-cdc", "active": True,
         "practitioner": {"reference": "Practitioner/ytcc-thu"}, "organization": {"reference": "Organization/cdc-40"},
         "code": [{"coding": [{"system": STAFF_ROLE_SYSTEM, "code": "public_health"}]}]},
    ]


def seed_population(repo: Repository, users: UserStore, today: date) -> None:
    users.add(OFFICER, PASSWORD, "public_health", fhir_user="Practitioner/ytcc-thu",
              organization="Organization/cdc-40")
    write(repo, public_health_centre() + population() + weekly_dengue("40", dengue_history(today)))
