"""The weekly outbreak detection that runs by itself (sante.analytics.alert_schedule): it checks the last complete
week once, skips while another process holds the lock, moves on with the calendar, and starts and stops with the
server (the app's lifespan)."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sante.analytics import alerts
from sante.analytics.alert_schedule import AlertScheduler
from sante.anomaly import Anomaly
from sante.api.app import create_app
from sante.settings import Settings
from sante.store import open_repository
from sante.store.search import parse_search, run_search
from tests.analytics.population_seed import weekly_dengue, write
from tests.analytics.test_alerts import history, public_health_centre

AFTER_SURGE = date(2025, 7, 28)  # Monday of 2025-W31: the last complete week is the surge week, 2025-W30


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Any]:
    repo = open_repository(f"sqlite:///{tmp_path / 'sante.db'}")
    write(repo, public_health_centre() + weekly_dengue("40", history()))
    yield repo
    repo.close()


def flags(repo: Any) -> list[dict[str, Any]]:
    with repo.reader() as tx:
        query = parse_search("Flag", [("identifier", f"{alerts.ALERT_SYSTEM}|"), ("_count", "100")])
        return [m.resource for m in run_search(tx, query).matches]


def test_the_last_complete_week_is_checked_once(repo, tmp_path):
    today = [AFTER_SURGE]
    schedule = AlertScheduler(repo, tmp_path, today=lambda: today[0])
    run = schedule.run_due()
    assert run is not None and run.signals == 1 and len(run.created) == 1
    assert schedule.checked_week() == "2025-W30"
    assert [f["identifier"][0]["value"] for f in flags(repo)] == ["dengue/province/40/2025-W30"]
    assert schedule.run_due() is None  # the same week again: nothing is run
    today[0] = date(2025, 8, 3)  # Sunday of W31: W30 is still the last complete week
    assert schedule.run_due() is None
    today[0] = date(2025, 8, 4)  # a week later: W31 is checked, an ordinary week, no new alert
    run = schedule.run_due()
    assert run is not None and run.signals == 0 and run.created == ()
    assert schedule.checked_week() == "2025-W31" and len(flags(repo)) == 1


def test_a_process_holding_the_lock_makes_the_others_skip(repo, tmp_path):
    schedule = AlertScheduler(repo, tmp_path, today=lambda: AFTER_SURGE)
    (tmp_path / "alerts").mkdir()
    with open(tmp_path / "alerts" / "province.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another worker is checking the week
        assert schedule.run_due() is None
        assert schedule.checked_week() is None and flags(repo) == []
    assert schedule.run_due() is not None and len(flags(repo)) == 1  # lock released: this one runs


def test_two_schedulers_of_one_data_dir_raise_each_alert_once(repo, tmp_path):
    first = AlertScheduler(repo, tmp_path, today=lambda: AFTER_SURGE)
    second = AlertScheduler(repo, tmp_path, today=lambda: AFTER_SURGE)
    assert first.run_due() is not None
    assert second.run_due() is None  # the marker written by the first
    assert len(flags(repo)) == 1


def test_the_server_runs_the_schedule_while_it_serves(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("SANTE_ALERT_INTERVAL", "3600")
    app = create_app(repo, data_dir=tmp_path)
    schedule: AlertScheduler = app.state.alert_schedule
    schedule.delay, schedule.today = 0.05, lambda: AFTER_SURGE
    assert schedule.interval == 3600
    with TestClient(app) as client:  # the lifespan starts the thread
        deadline = time.monotonic() + 30
        while schedule.checked_week() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert schedule.checked_week() == "2025-W30"
        assert client.get("/fhir/metadata").status_code == 200
    assert schedule._thread is None  # stopped with the server
    assert len(flags(repo)) == 1


def test_an_interval_of_zero_switches_the_schedule_off(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("SANTE_ALERT_INTERVAL", "0")
    app = create_app(repo, data_dir=tmp_path)
    with TestClient(app):
        assert app.state.alert_schedule._thread is None
    assert not (tmp_path / "alerts").exists()


def test_a_bad_interval_is_one_clear_error():
    with pytest.raises(Anomaly) as e:
        Settings.from_env({"SANTE_ALERT_INTERVAL": "hourly"})
    assert "SANTE_ALERT_INTERVAL" in e.value.message and "'hourly'" in e.value.message
    assert Settings.from_env({"SANTE_ALERT_INTERVAL": "600"}).alert_interval == 600.0
    assert Settings.from_env({}).alert_interval == 3600.0
