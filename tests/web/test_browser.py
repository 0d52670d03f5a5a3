"""The web app in a real browser: Debian's Chromium, headless, driven by Playwright, against a real uvicorn server
over the seeded hospital (the `server` and `chromium` fixtures of tests/web/conftest.py). Screenshots of the main pages (Vietnamese and English) go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.web.seed import AN, BHYT, CCCD, PASSWORD

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect


def _context(chromium, *, locale: str = "vi-VN", width: int = 1280, height: int = 900):
    context = chromium.new_context(locale=locale, viewport={"width": width, "height": height})
    context.set_default_timeout(10_000)
    return context


def _shot(page, name: str, *, full_page: bool = False) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def _sign_in(page, base: str, username: str, *, field: str = "Tên đăng nhập", password_field: str = "Mật khẩu",
             button: str = "Đăng nhập") -> None:
    if "/login" not in page.url:
        page.goto(f"{base}/login")
    page.get_by_label(field).fill(username)
    page.get_by_label(password_field).fill(PASSWORD)
    page.get_by_role("button", name=button).click()


def test_a_clinician_signs_in_finds_the_patient_and_reads_the_chart(server, chromium):
    context = _context(chromium)
    page = context.new_page()
    page.goto(f"{server}/")
    expect(page).to_have_url(f"{server}/login")
    expect(page.locator("html")).to_have_attribute("lang", "vi")
    expect(page.get_by_role("heading", name="Đăng nhập")).to_be_visible()
    _shot(page, "login-vi")
    _sign_in(page, server, "lan")
    expect(page.get_by_role("heading", name="Xin chào, lan")).to_be_visible()
    expect(page.locator("#patient-search")).to_be_focused()
    _shot(page, "home-vi")

    box = page.locator("#patient-search")
    names = page.locator("#search-results .patient-name")
    box.fill("nguyen van")
    expect(names).to_have_text(["Nguyễn Văn An"])
    expect(page.locator("#search-results")).to_contain_text(CCCD)
    _shot(page, "search-vi")
    box.fill("Nguyễn")
    expect(names).to_have_text(["Nguyễn Văn An", "Nguyễn Thị Cúc"])
    box.fill(CCCD)
    expect(names).to_have_text(["Nguyễn Văn An"])
    names.first.click()

    expect(page).to_have_url(f"{server}/patients/{AN}")
    banner = page.locator(".banner")
    expect(banner.get_by_role("heading", level=1)).to_have_text("Nguyễn Văn An")
    for text in (CCCD, BHYT, "Penicillin", "Nguy cơ té ngã", "sinh 12/03/1985"):
        expect(banner).to_contain_text(text)
    pulse = page.locator('svg.chart[aria-labelledby^="vital-pulse-title"]')
    expect(pulse).to_be_visible()
    expect(pulse.locator("title").first).to_have_text("Mạch")
    assert pulse.locator("circle").count() == 5
    expect(page.locator("tr.row-flagged")).to_contain_text("Glucose máu")
    _shot(page, "chart-vi", full_page=True)

    # "/" from anywhere on a page goes to the patient search box.
    page.locator("h2#vitals-title").click()
    page.keyboard.press("/")
    expect(page.locator("#patient-search")).to_be_focused()
    context.close()


def test_languages_switch_labels_and_date_formats(server, chromium):
    context = _context(chromium)
    page = context.new_page()
    page.goto(f"{server}/patients/{AN}")
    _sign_in(page, server, "hoa")
    expect(page).to_have_url(f"{server}/patients/{AN}")  # back to the page asked for
    expect(page.locator("#vitals-title")).to_have_text("Dấu hiệu sinh tồn")
    expect(page.locator(".banner")).to_contain_text("sinh 12/03/1985")

    page.get_by_role("link", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page).to_have_url(f"{server}/patients/{AN}")
    expect(page.locator("#vitals-title")).to_have_text("Vital signs")
    expect(page.locator(".banner")).to_contain_text("born 12 Mar 1985")
    expect(page.locator(".banner")).to_contain_text("Allergies")
    _shot(page, "chart-en", full_page=True)

    page.get_by_role("link", name="Français").click()
    expect(page.locator("#vitals-title")).to_have_text("Constantes")
    expect(page.locator(".banner")).to_contain_text("né(e) le 12/03/1985")

    page.get_by_role("link", name="English").click()
    page.get_by_role("link", name="Home").click()
    expect(page.get_by_role("heading", name="Hello, hoa")).to_be_visible()
    _shot(page, "home-en")
    page.locator("#patient-search").fill("nguyen")
    expect(page.locator("#search-results .patient-name")).to_have_count(2)
    expect(page.locator("#search-results .status")).to_have_text("2 patients found")
    _shot(page, "search-en")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{server}/login")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()  # the language cookie stays
    _shot(page, "login-en")
    context.close()


def test_a_browser_in_an_unsupported_language_gets_vietnamese(server, chromium):
    context = _context(chromium, locale="ja-JP")
    page = context.new_page()
    page.goto(f"{server}/login")
    expect(page.get_by_role("heading", name="Đăng nhập")).to_be_visible()
    context.close()


def test_a_manager_is_refused_the_chart(server, chromium):
    context = _context(chromium)
    page = context.new_page()
    _sign_in(page, server, "minh")
    expect(page.get_by_role("link", name="Thống kê", exact=True)).to_be_visible()  # their work: the dashboard
    response = page.goto(f"{server}/patients/{AN}")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("Bạn không có quyền truy cập trang này")
    expect(page.locator("main")).not_to_contain_text("Nguyễn")
    _shot(page, "refused-vi")
    context.close()


def test_sign_out_and_pages_without_a_session_go_to_the_sign_in_page(server, chromium):
    context = _context(chromium)
    page = context.new_page()
    page.goto(f"{server}/patients/{AN}")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fpatients%2F" + AN + "$"))
    _sign_in(page, server, "lan")
    expect(page).to_have_url(f"{server}/patients/{AN}")
    page.get_by_role("button", name="Đăng xuất").click()
    expect(page).to_have_url(f"{server}/login")
    page.goto(f"{server}/patients/{AN}")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    context.close()


def test_a_post_without_the_csrf_token_is_refused(server, chromium):
    context = _context(chromium)
    page = context.new_page()
    _sign_in(page, server, "lan")
    expect(page.get_by_role("heading", name="Xin chào, lan")).to_be_visible()
    # The browser's cookies go with these requests (as with a forged form on another site, minus SameSite).
    assert context.request.post(f"{server}/patients", form={"q": "x"}).status == 403
    assert context.request.post(f"{server}/patients", form={"q": "x", "csrf": "forged"}).status == 403
    token = page.locator('form.signout input[name="csrf"]').get_attribute("value")
    assert context.request.post(f"{server}/patients", form={"csrf": token}).status == 405  # past the gate
    context.close()


def test_the_chart_fits_a_tablet(server, chromium):
    context = _context(chromium, width=768, height=1024)
    page = context.new_page()
    page.goto(f"{server}/patients/{AN}")
    _sign_in(page, server, "lan")
    expect(page.locator(".banner")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 768
    _shot(page, "chart-tablet-vi", full_page=True)
    context.close()
