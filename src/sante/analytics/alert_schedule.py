"""Weekly outbreak alerts without anyone pressing a button.

Every server process runs one `AlertScheduler`: a daemon thread that wakes every `interval` seconds (first a
`delay` after start-up) and, when the last complete ISO week (in the hospital's time zone) has not been checked
yet, runs the detectors for it (`sante.analytics.alerts.raise_alerts`) and records the week in
`<data dir>/alerts/<level>.week`.  Several workers share one data directory: an exclusive, non-blocking file lock
lets one of them run while the others skip, and the marker is read again under the lock, so a week is checked
once.  `raise_alerts` itself writes nothing for an alarm raised before, so a crash between the alerts and the
marker only repeats a harmless run.

Configured by SANTE_ALERT_INTERVAL (seconds between checks, default 3600; 0 switches the schedule off).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sante.analytics.alerts import AlertRun, last_complete_week, raise_alerts
from sante.analytics.indicators import PopulationCache
from sante.store import Repository

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 3600.0
DEFAULT_DELAY = 60.0  # let the server start (and a demo finish seeding) before the first check


def week_key(week: tuple[int, int]) -> str:
    return f"{week[0]}-W{week[1]:02d}"


class AlertScheduler:
    def __init__(self, repo: Repository, data_dir: Path, *, time_zone: str = "Asia/Ho_Chi_Minh",
                 level: str = "province", interval: float = DEFAULT_INTERVAL, delay: float = DEFAULT_DELAY,
                 today: Callable[[], date] | None = None) -> None:
        self.repo, self.level = repo, level
        self.interval, self.delay = interval, delay
        self.directory = Path(data_dir) / "alerts"
        self.marker = self.directory / f"{level}.week"
        zone = ZoneInfo(time_zone)
        self.today = today or (lambda: datetime.now(zone).date())
        self._population = PopulationCache(max_age=0.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def checked_week(self) -> str | None:
        """The last week checked, as '2026-W46', or None."""
        try:
            return self.marker.read_text().strip() or None
        except FileNotFoundError:
            return None

    def run_due(self) -> AlertRun | None:
        """Check the last complete week unless it was checked already (or another process is checking it now):
        the run, or None when nothing was due."""
        week = last_complete_week(self.today())
        key = week_key(week)
        if self.checked_week() == key:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / f"{self.level}.lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None  # another worker is checking it
            if self.checked_week() == key:
                return None
            run = raise_alerts(self.repo, self._population.get(self.repo), week, level=self.level)
            scratch = self.marker.with_suffix(".tmp")
            scratch.write_text(key + "\n")
            os.replace(scratch, self.marker)
        log.info("outbreak detection for %s per %s: %d alarms, %d new alerts", key, self.level, run.signals,
                 len(run.created))
        return run

    def _loop(self) -> None:
        wait = self.delay
        while not self._stop.wait(wait):
            wait = self.interval
            try:
                self.run_due()
            except Exception:  # the next round tries again; the server goes on serving
                log.exception("scheduled outbreak detection failed (retrying in %.0f s)", self.interval)

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="sante-alert-schedule", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            with contextlib.suppress(RuntimeError):
                self._thread.join(10)
            self._thread = None


__all__ = ["DEFAULT_DELAY", "DEFAULT_INTERVAL", "AlertScheduler", "week_key"]
