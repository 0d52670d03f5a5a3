"""The API with audit writing switched off: only bench/http_load.py uses it, as the baseline that the audit
overhead is measured against. Not reachable from `sante serve`."""

from __future__ import annotations

from fastapi import FastAPI

from sante.api.app import create_app
from sante.api.security import Security
from sante.settings import Settings
from sante.store import open_repository


class _NoWriter:
    async def record(self, event: object) -> int:
        return 0


def app() -> FastAPI:
    settings = Settings.from_env()
    repo = open_repository(settings.database_url)
    security = Security.for_repository(repo, settings.data_dir)
    security.writer = _NoWriter()  # type: ignore[assignment]
    return create_app(repo, settings.data_dir, security=security)
