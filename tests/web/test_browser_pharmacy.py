"""The pharmacy in a real browser (Debian's Chromium, headless, driven by Playwright; the live server and the
browser of tests/web/conftest.py): a pharmacist receives stock (the medication found as she types), dispenses a
waiting prescription first expiry first out (the stock goes down, the prescription leaves the queue); a nurse is
refused the pharmacy. Screenshots go to test-artifacts/screenshots/pharmacy-*.png."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.web.seed import PASSWORD
from tests.web.ward_pharmacy_seed import BINH_RX, NURSE, PHARMACIST, ward_pharmacy_site

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    yield from ward_pharmacy_site(tmp_path_factory.mktemp("pharmacy-browser"))


def _page(chromium, *, width: int = 1280, height: int = 900):
    context = chromium.new_context(locale="vi-VN", viewport={"width": width, "height": height})
    context.set_default_timeout(10_000)
    return context, context.new_page()


def _shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"pharmacy-{name}.png"), full_page=True)


def _sign_in(page, base: str, path: str, username: str) -> None:
    page.goto(f"{base}{path}")
    page.get_by_label("Tên đăng nhập").fill(username)
    page.get_by_label("Mật khẩu").fill(PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()


def _on_hand(page, lot: str):
    return page.locator("table.stock tbody tr", has=page.locator("td", has_text=re.compile(f"^{lot}$"))).locator(
        "td.num")


def test_a_pharmacist_receives_stock_and_dispenses_a_prescription(server, chromium):
    context, page = _page(chromium)
    _sign_in(page, server, "/pharmacy", PHARMACIST)
    expect(page.get_by_role("heading", level=1)).to_have_text("Đơn chờ cấp phát")
    rows = page.locator("table.queue tbody tr")
    expect(rows).to_have_count(3)  # Nguyễn Văn An's two orders (no quantity), Cúc, Bình — oldest first
    expect(rows.nth(1)).to_contain_text("Nguyễn Thị Cúc")
    binh = rows.filter(has_text="Trần Thị Bình")
    for text in ("BS. Hoàng Nam", "Amoxicilin 500 mg, viên nang", "15 viên", "Paracetamol 500 mg, viên nén",
                 "20 viên"):
        expect(binh).to_contain_text(text)
    _shot(page, "queue-vi")

    # The amoxicillin is short (10 of 15): a receipt of a new lot, the medication found as one types.
    page.get_by_role("link", name="Tồn kho").click()
    expect(page.locator("#low-title")).to_contain_text("Sắp hết thuốc")
    expect(page.locator(".alert-card").first).to_contain_text("Amoxicilin 500 mg, viên nang")
    expect(page.locator(".alert-card").nth(1)).to_contain_text("P-2401")  # expires within 90 days
    expect(_on_hand(page, "A-0107")).to_have_text("10 viên")
    page.locator("#medication-q").fill("amoxi")
    page.locator("#medication-results").get_by_role("button", name="Amoxicilin 500 mg, viên nang").click()
    expect(page.locator("#medication-picker .picked-code")).to_contain_text("Amoxicilin 500 mg, viên nang")
    expect(page.locator("#receipt-unit")).to_have_value("viên")
    page.locator("#receipt-quantity").fill("100")
    page.locator("#receipt-lot").fill("A-0299")
    page.locator("#receipt-expiry").fill((date.today() + timedelta(days=730)).isoformat())
    page.locator("#receipt-supplier").fill("Công ty Dược Hậu Giang")
    page.get_by_role("button", name="Ghi nhận nhập kho").click()
    expect(page.locator(".message-ok")).to_have_text("Đã ghi nhận nhập kho.")
    expect(_on_hand(page, "A-0299")).to_have_text("100 viên")
    expect(page.locator(".alert-card").first).not_to_contain_text("Amoxicilin")
    _shot(page, "stock-vi")

    # Dispensing the prescription: lots first expiry first out; each drug, then the queue without it.
    page.get_by_role("link", name="Đơn chờ cấp phát").click()
    page.locator("table.queue tbody tr", has_text="Trần Thị Bình").get_by_role("link", name=re.compile("^Cấp phát")).click()
    expect(page.locator("#banner-name")).to_have_text("Trần Thị Bình")
    amox = page.locator(f"#line-{BINH_RX[1]}")
    expect(amox.locator(".dl-on-hand")).to_have_text("Tồn kho dùng được 110 viên")
    expect(amox.locator("table.lots tbody tr")).to_have_text([re.compile("A-0107.*10 viên"),
                                                             re.compile("A-0299.*5 viên")])
    para = page.locator(f"#line-{BINH_RX[0]}")
    expect(para.locator("table.lots tbody tr")).to_have_text([re.compile("P-2401.*20 viên")])
    _shot(page, "dispense-vi")
    amox.get_by_role("button", name=re.compile("^Cấp phát")).click()
    expect(page.locator(".message-ok")).to_have_text("Đã cấp phát.")
    expect(page.locator(".dispense-line")).to_have_count(1)
    page.locator(".dispense-line").get_by_role("button", name=re.compile("^Cấp phát")).click()
    expect(page.locator(".message-ok")).to_have_text("Đã cấp phát: đơn thuốc đã rời hàng chờ.")
    expect(page.locator("main")).not_to_contain_text("Trần Thị Bình")
    expect(page.locator("table.queue tbody tr")).to_have_count(2)

    page.get_by_role("link", name="Tồn kho").click()
    expect(_on_hand(page, "P-2401")).to_have_text("80 viên")  # 100 − 20
    expect(_on_hand(page, "A-0299")).to_have_text("95 viên")  # 10 from A-0107 (used up), 5 from here
    expect(page.locator("table.stock")).not_to_contain_text("A-0107")
    context.close()


def test_the_pages_fit_a_tablet(server, chromium):
    context, page = _page(chromium, width=768, height=1024)
    _sign_in(page, server, "/pharmacy/stock", PHARMACIST)
    expect(page.locator("table.stock")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 768
    page.goto(f"{server}/pharmacy")
    assert page.evaluate("document.documentElement.scrollWidth") <= 768
    context.close()


def test_a_nurse_is_refused_the_pharmacy(server, chromium):
    context, page = _page(chromium)
    _sign_in(page, server, "/", NURSE)
    expect(page.get_by_role("link", name="Khoa Dược")).to_have_count(0)
    response = page.goto(f"{server}/pharmacy")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("Bạn không có quyền truy cập trang này")
    expect(page.locator("main")).not_to_contain_text("Trần Thị Bình")
    _shot(page, "refused-nurse-vi")
    context.close()
