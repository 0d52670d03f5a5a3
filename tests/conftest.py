"""Shared fixtures: every store and API test runs on both backends, SQLite and a real PostgreSQL."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import TempPostgres, postgres_bindir

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
_db_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared (reference data) is not present")
    return SHARED


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[TempPostgres]:
    if postgres_bindir() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed: the test command must install it")
        pytest.skip("PostgreSQL is not installed")
    server = TempPostgres().start()
    yield server
    server.stop()


def _fresh_postgres_url(server: TempPostgres) -> str:
    import psycopg

    name = f"t{next(_db_numbers)}"
    with psycopg.connect(server.url.replace("postgresql://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sante.db'}"
    return _fresh_postgres_url(request.getfixturevalue("postgres_server"))


@pytest.fixture
def repo(database_url: str):
    from sante.store import open_repository

    r = open_repository(database_url)
    yield r
    r.close()
