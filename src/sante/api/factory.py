"""The application as configured by the environment (for `sante serve` and uvicorn workers)."""

from __future__ import annotations

import gc

from fastapi import FastAPI

from sante.api.app import create_app
from sante.settings import Settings
from sante.store import open_repository


def settle_heap() -> None:
    """Take what the application loaded at start (the FHIR definitions, the catalogues, the templates) out of the
    garbage collector's way: a full collection walked it all again every few requests, 100 ms each time on the
    web pages (bench/web.py)."""
    gc.collect()
    gc.freeze()


def app() -> FastAPI:
    settings = Settings.from_env()
    application = create_app(open_repository(settings.database_url), settings.data_dir)
    settle_heap()
    return application
