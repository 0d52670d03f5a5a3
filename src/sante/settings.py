"""Configuration: one typed settings object read from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    database_url: str
    time_zone: str = "Asia/Ho_Chi_Minh"  # where the hospital is: the web app shows times in it
    alert_interval: float = 3600.0  # seconds between checks for a new week of outbreak detection; 0: off

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("SANTE_DATA_DIR", "data")).expanduser()
        url = env.get("SANTE_DATABASE_URL") or f"sqlite:///{data_dir / 'sante.db'}"
        interval = env.get("SANTE_ALERT_INTERVAL") or "3600"
        try:
            alert_interval = float(interval)
        except ValueError:
            from sante.anomaly import incorrect

            raise incorrect(f"SANTE_ALERT_INTERVAL must be a number of seconds, not {interval!r}",
                            "SANTE_ALERT_INTERVAL") from None
        return cls(data_dir=data_dir, database_url=url,
                   time_zone=env.get("SANTE_TIME_ZONE") or "Asia/Ho_Chi_Minh", alert_interval=alert_interval)
