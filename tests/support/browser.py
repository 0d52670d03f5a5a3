"""Browser-test helpers shared by the web app's Playwright tests: a signed-in page, and screenshots saved as test
artefacts (test-artifacts/screenshots/)."""

from __future__ import annotations

from pathlib import Path

from tests.web.seed import PASSWORD

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def signed_in_page(chromium, server: str, username: str, *, locale: str = "vi-VN", width: int = 1280,
                   height: int = 900, timeout_ms: int = 10_000):
    """(context, page) of a new browser context signed in as `username` (the demo password), on the home page."""
    context = chromium.new_context(locale=locale, viewport={"width": width, "height": height})
    context.set_default_timeout(timeout_ms)
    page = context.new_page()
    page.goto(f"{server}/login")
    page.locator("input[name=username]").fill(username)
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("form button[type=submit]").first.click()
    page.wait_for_url(f"{server}/")
    return context, page


def shot(page, name: str) -> None:
    """A full-page screenshot, test-artifacts/screenshots/NAME.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
