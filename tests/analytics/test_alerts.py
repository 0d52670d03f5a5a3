"""Outbreak alerts (sante.analytics.alerts) over a real repository: five years of weekly dengue cases in Nghệ An
with a surge in one week; the recommended detector flags it once, a Flag and a Communication to the province's
public-health officers are written once however often it runs, and an officer's verdict closes the Flag."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from sante.analytics import alerts
from sante.analytics import indicators as ind
from sante.anomaly import Anomaly, Category
from sante.auth.users import UserStore
from sante.clinical.admin_units import COMMUNE_SYSTEM, PROVINCE_SYSTEM
from sante.store import open_repository
from sante.store.search import parse_search, run_search
from tests.analytics.population_seed import weekly_dengue, write

SURGE = (2025, 30)
BASELINE = [1, 2, 0, 1, 3, 1, 2, 1, 0, 2, 1, 1, 2]  # cases a week, repeated
NOW = datetime(2025, 7, 28, 3, 0, tzinfo=UTC)


def history() -> dict[tuple[int, int], int]:
    """Weekly cases from 2020-W30 to the week before the surge, then 30 in the surge week."""
    out, n = {}, 0
    for year in range(2020, 2026):
        for week in range(1, 53):
            if (2020, 30) <= (year, week) < SURGE:
                out[(year, week)] = BASELINE[n % len(BASELINE)]
                n += 1
    out[SURGE] = 30
    return out


def public_health_centre() -> list[dict[str, Any]]:
    return [
        {"resourceType": "Organization", "id": "cdc-40", "name": "CDC Nghệ An",
         "identifier": [{"system": alerts.JURISDICTION_SYSTEM, "value": "40"}]},
        {"resourceType": "Practitioner", "id": "officer", "name": [{"family": "Lê", "given": ["Thu"]}]},
        {"resourceType": "PractitionerRole", "id": "officer-cdc", "active": True,
         "practitioner": {"reference": "Practitioner/officer"}, "organization": {"reference": "Organization/cdc-40"},
         "code": [{"coding": [{"system": alerts.STAFF_ROLE_SYSTEM, "code": "public_health"}]}]},
        {"resourceType": "Practitioner", "id": "desk", "name": [{"family": "Hồ", "given": ["Lan"]}]},
    ]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    folder: Path = tmp_path_factory.mktemp("alerts")
    repo = open_repository(f"sqlite:///{folder / 'sante.db'}")
    write(repo, public_health_centre() + weekly_dengue("40", history()))
    users = UserStore(repo.engine)
    users.add("thu", "correct horse battery", "public_health", fhir_user="Practitioner/desk",
              organization="Organization/cdc-40")
    users.add("other", "correct horse battery", "public_health", fhir_user="Practitioner/officer",
              organization="Organization/elsewhere")
    yield repo
    repo.close()


def search(repo: Any, rtype: str, *query: tuple[str, str]) -> list[dict[str, Any]]:
    with repo.reader() as tx:
        return [m.resource for m in run_search(tx, parse_search(rtype, [*query, ("_count", "1000")])).matches]


def test_the_detector_flags_the_surge_and_not_an_ordinary_week(repo):
    data = ind.load_population(repo)
    [signal] = alerts.detect_signals(data, SURGE)
    assert (signal.disease, signal.level, signal.place, signal.week, signal.observed) == ("dengue", "province", "40",
                                                                                         SURGE, 30)
    assert 0 < signal.expected < signal.upperbound < 30
    assert alerts.detect_signals(data, (2025, 29)) == []
    [by_commune] = alerts.detect_signals(data, SURGE, level="commune")
    assert by_commune.place == "16681"
    with pytest.raises(Anomaly):
        alerts.detect_signals(data, SURGE, level="district")


def test_an_alarm_writes_one_flag_and_one_communication_however_often_it_runs(repo):
    data = ind.load_population(repo)
    first = alerts.raise_alerts(repo, data, SURGE, now=NOW)
    again = alerts.raise_alerts(repo, data, SURGE, now=NOW)
    assert len(first.created) == 1 and first.already == 0
    assert again.created == () and again.already == 1
    [flag] = search(repo, "Flag", ("identifier", f"{alerts.ALERT_SYSTEM}|dengue/province/40/2025-W30"))
    assert flag["status"] == "active" and flag["id"] == first.created[0]
    assert flag["category"][0]["coding"][0]["code"] == "public-health"
    assert {c["code"] for c in flag["code"]["coding"]} == {"A90", "A91", "A97"}
    assert flag["period"] == {"start": "2025-07-21", "end": "2025-07-27"}
    signal = {e["url"]: e for e in flag["extension"][0]["extension"]}
    assert signal["observed"]["valueInteger"] == 30 and signal["method"]["valueCode"]
    assert 0 < signal["expected"]["valueDecimal"] < signal["upperBound"]["valueDecimal"] < 30
    location = repo.read("Location", flag["subject"]["reference"].split("/")[1]).resource
    assert location["identifier"] == [{"system": PROVINCE_SYSTEM, "value": "40"}]
    assert location["name"] == "Tỉnh Nghệ An" and location["managingOrganization"]["reference"] == \
        "Organization/cdc-40"
    [message] = search(repo, "Communication", ("identifier", f"{alerts.ALERT_SYSTEM}|dengue/province/40/2025-W30"))
    assert message["about"] == [{"reference": f"Flag/{flag['id']}"}]
    assert {r["reference"] for r in message["recipient"]} == {"PractitionerRole/officer-cdc", "Practitioner/desk"}
    assert "Sốt xuất huyết Dengue" in message["payload"][0]["contentString"]
    assert len(search(repo, "Location", ("identifier", f"{PROVINCE_SYSTEM}|40"))) == 1


def test_a_commune_alarm_has_a_commune_location_and_the_provinces_officers(repo):
    data = ind.load_population(repo)
    run = alerts.raise_alerts(repo, data, SURGE, level="commune", now=NOW)
    [flag_id] = run.created
    flag = repo.read("Flag", flag_id).resource
    location = repo.read("Location", flag["subject"]["reference"].split("/")[1]).resource
    assert location["identifier"] == [{"system": COMMUNE_SYSTEM, "value": "16681"}]
    [message] = search(repo, "Communication", ("identifier", f"{alerts.ALERT_SYSTEM}|dengue/commune/16681/2025-W30"))
    assert {r["reference"] for r in message["recipient"]} == {"PractitionerRole/officer-cdc", "Practitioner/desk"}


def test_the_verdict_closes_the_flag_and_counts_for_the_method(repo):
    found = alerts.list_alerts(repo)
    assert [a.level for a in found] == ["province", "commune"] or [a.level for a in found] == ["commune", "province"]
    province = next(a for a in found if a.level == "province")
    assert province.active and province.verdict is None and province.place_name == "Tỉnh Nghệ An"
    with pytest.raises(Anomaly) as wrong:
        alerts.record_verdict(repo, province.id, "maybe", "Practitioner/desk")
    assert wrong.value.category == Category.INCORRECT
    judged = alerts.record_verdict(repo, province.id, "confirmed", "Practitioner/desk", now=NOW)
    assert not judged.active and judged.verdict == "confirmed" and judged.judged_by == "Practitioner/desk"
    assert judged.version == province.version + 1
    flag = repo.read("Flag", province.id).resource
    assert flag["status"] == "inactive"
    with pytest.raises(Anomaly) as twice:
        alerts.record_verdict(repo, province.id, "false-alarm", "Practitioner/desk")
    assert twice.value.category == Category.CONFLICT
    commune = next(a for a in alerts.list_alerts(repo) if a.level == "commune")
    alerts.record_verdict(repo, commune.id, "false-alarm", "Practitioner/desk")
    [method] = alerts.precision_by_method(alerts.list_alerts(repo))
    assert (method.alerts, method.confirmed, method.false_alarms, method.precision) == (2, 1, 1, 0.5)


def test_the_last_complete_week():
    assert alerts.last_complete_week(date(2025, 7, 28)) == (2025, 30)  # a Monday: the week that just ended
    assert alerts.last_complete_week(date(2025, 1, 3)) == (2024, 52)
