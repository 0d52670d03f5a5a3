"""The application as configured by the environment (for `sante serve` and uvicorn workers)."""

from __future__ import annotations

from fastapi import FastAPI

from sante.api.app import create_app
from sante.settings import Settings
from sante.store import open_repository


def app() -> FastAPI:
    settings = Settings.from_env()
    return create_app(open_repository(settings.database_url), settings.data_dir)
