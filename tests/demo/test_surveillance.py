"""The demo's notifiable-disease cases (sante.demo.surveillance): seasonal dengue and hand-foot-mouth disease, the
two outbreaks, the public-health centres, and the alert of the dengue outbreak addressed to the demo's officer."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, datetime, timedelta, timezone

import pytest

from sante.analytics import alerts
from sante.analytics import indicators as ind
from sante.demo import surveillance
from sante.demo.seed import _rng, build_hospital
from sante.store import open_repository
from sante.store.search import parse_search, run_search

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone(timedelta(hours=7)))
LAST_MONDAY = date(2026, 11, 16)  # of the last complete week


def test_dengue_peaks_in_the_rainy_season_and_the_outbreaks_stand_out():
    cases = surveillance.planned_cases(random.Random(1), LAST_MONDAY)
    months = Counter(c.onset.month for c in cases if c.code == "A97.0")
    assert sum(months[m] for m in (9, 10, 11)) > 3 * sum(months[m] for m in (2, 3, 4))
    hfmd = Counter(c.onset.month for c in cases if c.code == "B08.4")
    assert hfmd[4] > hfmd[1] and hfmd[10] > hfmd[7]  # two peaks
    measles = Counter((c.province, c.onset.isocalendar()[:2]) for c in cases if c.code == "B05.9")
    outbreak = [(LAST_MONDAY - timedelta(weeks=n)).isocalendar()[:2] for n in range(26, 31)]
    assert sum(measles[("38", w)] for w in outbreak) >= 15
    last = [(LAST_MONDAY - timedelta(weeks=n)).isocalendar()[:2] for n in range(3)]
    dengue_nghe_an = Counter(c.onset.isocalendar()[:2] for c in cases if c.code == "A97.0" and c.province == "40")
    assert all(dengue_nghe_an[w] >= 8 for w in last)
    assert min(c.onset for c in cases) < LAST_MONDAY - timedelta(weeks=5 * 52)  # the detector's five years


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory):
    repo = open_repository(f"sqlite:///{tmp_path_factory.mktemp('surveillance') / 'sante.db'}")
    written = surveillance.seed_surveillance(repo, build_hospital(_rng(1, "hospital")), 1, NOW, lambda *a: None)
    yield repo, written
    repo.close()


def test_the_cases_are_conditions_of_patients_with_a_2025_address(seeded):
    repo, written = seeded
    data = ind.load_population(repo)
    assert written > 2 * len(data.cases) > 4000
    assert {c.person.province for c in data.cases} <= {"40", "42", "38", "01", "79", "48"}
    assert all(c.person.commune for c in data.cases)
    assert Counter(c.disease for c in data.cases).most_common(1)[0][0] == "dengue"


def test_the_dengue_outbreak_is_flagged_and_sent_to_the_demo_officer(seeded):
    repo, _ = seeded
    found = [a for a in alerts.list_alerts(repo) if a.disease == "dengue" and a.place == "40"]
    assert found and max(a.week for a in found) == (2026, 47)
    with repo.reader() as tx:
        messages = run_search(tx, parse_search("Communication", [
            ("identifier", f"{alerts.ALERT_SYSTEM}|dengue/province/40/2026-W47")])).matches
    [message] = messages
    assert message.resource["recipient"] == [{"reference": "PractitionerRole/cdc-nghe-an-giam-sat"}]
    again = alerts.raise_alerts(repo, ind.load_population(repo), (2026, 47), now=NOW)
    assert again.created == () and again.already >= 1
