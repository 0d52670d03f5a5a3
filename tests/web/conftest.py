"""Fixtures of the web app's tests: a seeded hospital (tests.web.seed) behind the whole application, browsers
signed in as its users, and, for the Playwright tests, a real uvicorn server on a free port."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sante.api import create_app
from sante.store import open_repository
from tests.support.live_server import live_server
from tests.web.seed import PASSWORD, seed


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """The application over a seeded SQLite database (shared by a module's tests: they only read, or sign in)."""
    data_dir: Path = tmp_path_factory.mktemp("site")
    repo = open_repository(f"sqlite:///{data_dir / 'sante.db'}")
    app = create_app(repo, data_dir=data_dir)
    seed(repo, app.state.security.users)
    yield app
    repo.close()


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def browser(app, *, lang: str | None = None) -> TestClient:
    headers = {"Accept-Language": lang} if lang else {}
    return TestClient(app, follow_redirects=False, raise_server_exceptions=False, headers=headers)


def sign_in(app, username: str, *, lang: str | None = None, password: str = PASSWORD) -> TestClient:
    """A browser signed in as `username` (through the sign-in page, as a person would)."""
    b = browser(app, lang=lang)
    form = b.get("/login")
    r = b.post("/login", data={"username": username, "password": password, "csrf": csrf_of(form.text), "next": "/"})
    assert r.status_code == 303, r.text
    return b


# -- the Playwright tests' live server and browser (the area modules' test_browser_<area>.py use these; a module
# that overrides `site` gets its own server over its own hospital) ---------------------------------------------
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server(site) -> Iterator[str]:
    """A real uvicorn server on a free port of the loopback, serving the module's site."""
    with live_server(site) as url:
        yield url


@pytest.fixture(scope="module")
def chromium() -> Iterator:
    """Debian's Chromium, headless, driven by Playwright (skipped where it is not installed, failed on CI)."""
    import os

    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Chromium is not installed: the test command must install it (scripts/test.sh)")
        pytest.skip("Debian's chromium is not installed (scripts/test.sh installs it)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield browser
        browser.close()
