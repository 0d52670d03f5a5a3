"""The wards in a real browser (Debian's Chromium, headless, driven by Playwright; the live server and the browser
of tests/web/conftest.py): a nurse admits a patient from the bed board into a free bed, moves her to another bed
and gives a dose on the medication administration record; a physician discharges her with a signed summary and
prints it; the bed board before and after. Screenshots go to test-artifacts/screenshots/wards-*.png."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.web.seed import PASSWORD
from tests.web.ward_pharmacy_seed import (
    CEFTRIAXONE_ORDER,
    HUNG_STAY,
    NURSE,
    PHYSICIAN,
    WARD,
    ward_pharmacy_site,
)

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
FREE_BED, NEXT_BED = f"{WARD}-202-1", f"{WARD}-201-3"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    yield from ward_pharmacy_site(tmp_path_factory.mktemp("wards-browser"))


def _page(chromium, *, locale: str = "vi-VN", width: int = 1280, height: int = 900):
    context = chromium.new_context(locale=locale, viewport={"width": width, "height": height})
    context.set_default_timeout(10_000)
    return context, context.new_page()


def _shot(page, name: str, *, full_page: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"wards-{name}.png"), full_page=full_page)


def _sign_in(page, base: str, path: str, username: str) -> None:
    page.goto(f"{base}{path}")
    page.get_by_label("Tên đăng nhập").fill(username)
    page.get_by_label("Mật khẩu").fill(PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()
    expect(page).to_have_url(re.compile(re.escape(path.split("?")[0])))


def _bed(page, bed_id: str):
    return page.locator(f"#bed-{bed_id}")


def test_admission_transfer_dose_and_discharge(server, chromium):
    context, page = _page(chromium)
    _sign_in(page, server, "/wards", NURSE)
    expect(page.get_by_role("heading", level=1)).to_have_text("Sơ đồ giường bệnh")
    expect(_bed(page, FREE_BED)).to_have_class(re.compile("bed-free"))
    expect(_bed(page, FREE_BED).locator(".bed-status")).to_have_text("Trống")  # in words, not only in colour
    expect(_bed(page, f"{WARD}-201-1")).to_contain_text("Phạm Văn Hùng")
    expect(page.locator(".ward-figures").last).to_contain_text("Công suất 40%")
    _shot(page, "board-vi")

    # Admission, from the free bed's tile: the patient, then department → ward → bed and the reason (ICD-10).
    _bed(page, FREE_BED).get_by_role("link", name=re.compile("Nhập viện vào đây")).click()
    page.locator("#admit-patient-search").fill("tran thi binh")
    page.locator("#admit-patients .patient-name", has_text="Trần Thị Bình").click()
    expect(page.locator("#banner-name")).to_have_text("Trần Thị Bình")
    expect(page.locator("#bed")).to_have_value(FREE_BED)
    page.locator("#department").select_option(label="Khoa Ngoại")  # the wards and beds follow the department
    expect(page.locator("#ward")).to_have_value("bvh-ngoai-b")
    expect(page.locator("#bed option")).to_have_text(["Chọn giường trống", "Phòng 301 · Giường 1",
                                                      "Phòng 301 · Giường 2"])
    page.locator("#department").select_option(label="Khoa Nội")
    expect(page.locator("#ward")).to_have_value(WARD)
    page.locator("#bed").select_option(FREE_BED)
    page.locator("#reason-q").fill("viem phoi")
    page.locator("#reason-results").get_by_role("button", name=re.compile(r"^J18\.9 ")).click()
    expect(page.locator("#reason-picker .picked-code")).to_contain_text("J18.9")
    page.locator("#admit-source").select_option("outp")
    _shot(page, "admit-vi")
    page.get_by_role("button", name="Nhập viện", exact=True).click()
    expect(page.locator(".message-ok")).to_have_text("Đã nhập viện cho người bệnh.")
    stay_url = page.url.split("?")[0]
    expect(page.locator(".facts")).to_contain_text("Phòng 202 · Giường 1")

    page.get_by_role("link", name="Nội trú").click()  # the bed board now shows her
    expect(_bed(page, FREE_BED)).to_have_class(re.compile("bed-occupied"))
    expect(_bed(page, FREE_BED)).to_contain_text("Trần Thị Bình")
    expect(_bed(page, FREE_BED)).to_contain_text("1 ngày nằm viện")

    # A move to another bed.
    _bed(page, FREE_BED).get_by_role("link", name="Trần Thị Bình").click()
    expect(page).to_have_url(stay_url)
    page.locator("#move-bed").select_option(NEXT_BED)
    page.get_by_role("button", name="Chuyển giường").click()
    expect(page.locator(".message-ok")).to_have_text("Người bệnh đã được chuyển sang giường mới.")
    history = page.locator("#move tbody tr")
    expect(history).to_have_count(2)
    expect(history.nth(1)).to_contain_text("Phòng 201 · Giường 3")
    expect(history.nth(1)).to_contain_text("hiện tại")

    # A dose given on the medication administration record (Phạm Văn Hùng's ceftriaxone, today).
    page.goto(f"{server}/wards/stays/{HUNG_STAY}")
    order = page.locator(f"#order-{CEFTRIAXONE_ORDER}")
    expect(order.locator(".dose-given")).to_have_count(0)
    order.locator("details.give summary").first.click()
    form = order.locator("details.give[open] form")
    expect(form.get_by_label(re.compile("^Liều"))).to_have_value("1")
    _shot(page, "stay-mar-give-vi")
    form.get_by_role("button", name="Ghi nhận đã dùng").click()
    expect(page.locator(".message-ok")).to_have_text("Đã ghi nhận liều thuốc.")
    order = page.locator(f"#order-{CEFTRIAXONE_ORDER}")
    expect(order.locator(".dose-given")).to_have_count(1)
    expect(order.locator(".dose-given")).to_contain_text("Đã dùng")
    expect(order.locator(".dose-given")).to_contain_text("1 lọ · ĐD. Vũ Thị Mai")
    _shot(page, "stay-mar-vi")
    context.close()

    # The physician discharges her: the summary is signed, the bed is free, the summary prints.
    context, page = _page(chromium)
    _sign_in(page, server, stay_url.removeprefix(server), PHYSICIAN)
    page.get_by_role("link", name="Ra viện", exact=True).click()
    expect(page.get_by_role("heading", name="Ra viện và tóm tắt bệnh án")).to_be_visible()
    expect(page.locator("#section-reason")).to_have_value("J18.9 – Viêm phổi, không đặc hiệu")
    expect(page.locator("#diagnoses-picker .picked-code")).to_contain_text("J18.9")
    page.locator("#section-course").fill("Điều trị Ceftriaxon 7 ngày, hết sốt từ ngày thứ 3, phổi hết ran.")
    page.locator("#diagnoses-q").fill("I10")
    page.locator("#diagnoses-results").get_by_role("button", name=re.compile(r"^I10 ")).click()
    expect(page.locator("#diagnoses-picker .picked-code")).to_have_count(2)
    # The picker comes back with the focus in its search box (to add another code): wait for that focus before
    # typing elsewhere, or a slow machine's late focus takes the next field's text.
    expect(page.locator("#diagnoses-q")).to_be_focused()
    page.locator("#section-medications").fill("Amoxicilin 500 mg × 2 viên/ngày × 5 ngày")
    page.locator("#section-follow_up").fill("Tái khám sau 1 tuần tại Phòng khám Nội")
    expect(page.locator("#disposition")).to_have_value("home")
    _shot(page, "discharge-vi")
    page.get_by_role("button", name="Ký tóm tắt và cho ra viện").click()
    expect(page.locator(".message-ok")).to_contain_text("Người bệnh đã ra viện")
    expect(page.locator("#stay-title")).to_contain_text("Đã ra viện")
    summary = page.locator(".summary")
    expect(summary).to_contain_text("Đã ký số")
    expect(summary).to_contain_text("Chẩn đoán ra viện (ICD-10)")
    expect(summary).to_contain_text("I10")
    link = page.get_by_role("link", name="In tóm tắt bệnh án ra viện")
    pdf = page.request.get(f"{server}{link.get_attribute('href')}")
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"].startswith("inline") and pdf.body().startswith(b"%PDF")
    _shot(page, "stay-discharged-vi")

    page.goto(f"{server}/wards?unit={WARD}")
    expect(_bed(page, NEXT_BED)).to_have_class(re.compile("bed-free"))
    expect(page.locator("main")).not_to_contain_text("Trần Thị Bình")
    page.get_by_role("link", name="English").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Bed board")
    expect(_bed(page, NEXT_BED).locator(".bed-status")).to_have_text("Free")
    _shot(page, "board-en")
    context.close()


def test_the_board_and_a_stay_fit_a_tablet(server, chromium):
    context, page = _page(chromium, width=768, height=1024)
    _sign_in(page, server, "/wards", NURSE)
    expect(page.locator(".ward").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 768
    _shot(page, "board-tablet-vi")
    page.goto(f"{server}/wards/stays/{HUNG_STAY}")
    expect(page.locator("#mar")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 768
    _shot(page, "stay-tablet-vi")
    context.close()


def test_a_pharmacist_is_refused_the_wards(server, chromium):
    context, page = _page(chromium)
    _sign_in(page, server, "/", "ds.ha")
    expect(page.get_by_role("link", name="Nội trú")).to_have_count(0)
    response = page.goto(f"{server}/wards")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("Bạn không có quyền truy cập trang này")
    context.close()
