"""The population-health page and its alerts in a real browser (Debian's Chromium, headless, Playwright) against a
real uvicorn server (tests.web.conftest's `server`, over this module's hospital: tests.web.population_seed).
Screenshots go to test-artifacts/screenshots/population-*.png."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from sante.api import create_app
from sante.store import open_repository
from tests.support.browser import shot, signed_in_page
from tests.web.activity_seed import VN
from tests.web.population_seed import OFFICER, seed_population
from tests.web.seed import seed

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    data_dir: Path = tmp_path_factory.mktemp("browser-population")
    repo = open_repository(f"sqlite:///{data_dir / 'sante.db'}")
    app = create_app(repo, data_dir=data_dir)
    seed(repo, app.state.security.users)
    seed_population(repo, app.state.security.users, datetime.now(VN).date())
    yield app
    repo.close()


def _page(chromium, server: str, username: str, **options):
    return signed_in_page(chromium, server, username, timeout_ms=20_000, **options)


def test_an_officer_filters_by_disease_and_province_and_sees_map_curve_and_forecast(server, chromium):
    context, page = _page(chromium, server, OFFICER)
    page.get_by_role("link", name="Y tế công cộng", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Y tế công cộng")
    expect(page.locator("svg.choropleth path.province")).to_have_count(34)
    page.get_by_label("Bệnh", exact=True).select_option("dengue")
    page.get_by_label("Tỉnh/thành phố", exact=True).select_option("40")  # shows the province at once
    expect(page.locator("#filter-status")).to_contain_text("Tỉnh Nghệ An")
    assert "province=40" in page.url and "disease=dengue" in page.url
    expect(page.get_by_role("img", name="Số ca theo tuần: Sốt xuất huyết Dengue")).to_be_visible()
    curve = page.locator("svg.chart-curve")
    expect(curve.locator("polyline.line-bound")).to_have_count(1)
    expect(curve.locator("polyline.line-forecast")).to_have_count(1)
    expect(curve.locator("polygon.forecast-band95")).to_have_count(1)
    expect(curve.locator("rect.bar-alarm").last).to_be_visible()
    expect(page.locator("svg.choropleth path.province-selected")).to_have_attribute("data-code", "40")
    expect(page.get_by_label("Xã/phường", exact=True).locator("option")).to_have_count(131)  # Nghệ An's 130 + all
    page.get_by_text("Xem số liệu dạng bảng").first.click()
    expect(page.locator(".pop-curve table")).to_be_visible()
    shot(page, "population-vi")
    context.close()


def test_an_officer_opens_an_alert_and_confirms_it(server, chromium):
    context, page = _page(chromium, server, OFFICER)
    page.goto(f"{server}/population")
    page.get_by_role("link", name="Cảnh báo dịch").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Cảnh báo dịch")
    page.get_by_role("button", name="Kiểm tra ngay").click()
    expect(page.get_by_role("status")).to_have_text("1 cảnh báo mới.")
    expect(page.locator("table.pop-alerts tbody tr")).to_have_count(1)
    expect(page.locator("table.pop-alerts")).to_contain_text("Sốt xuất huyết Dengue")
    expect(page.locator(".pop-newest svg.chart-curve polyline.line-bound")).to_have_count(1)
    shot(page, "population-alerts-vi")
    page.locator("table.pop-alerts tbody tr a").first.click()
    expect(page.locator("svg.chart-curve polyline.line-bound")).to_have_count(1)
    page.get_by_role("button", name="Ghi nhận kết luận").click()  # no verdict chosen: told next to the choices
    expect(page.locator("#verdict-error")).to_have_text("Chọn xác nhận có dịch hoặc báo động giả.")
    page.get_by_label("Xác nhận có dịch").check()
    shot(page, "population-alert-vi")
    page.get_by_role("button", name="Ghi nhận kết luận").click()
    expect(page.get_by_role("status")).to_have_text("Đã ghi nhận kết luận.")
    expect(page.locator(".dash-tile").filter(has_text="Kết luận")).to_contain_text("Xác nhận có dịch")
    page.get_by_role("link", name="Cảnh báo dịch").click()
    expect(page.locator("table.pop-alerts .verdict-confirmed")).to_have_text("Xác nhận có dịch")
    expect(page.locator("section", has_text="Độ chính xác của các phương pháp phát hiện").locator("tbody td").last
           ).to_have_text("100 %")
    context.close()


def test_the_page_in_english_and_on_a_tablet(server, chromium):
    context, page = _page(chromium, server, OFFICER, locale="en-GB")
    page.goto(f"{server}/population?disease=dengue")
    expect(page.get_by_role("heading", level=1)).to_have_text("Population health")
    expect(page.get_by_role("img", name="Cases by province")).to_be_visible()
    expect(page.get_by_role("img", name="Cases by age and sex")).to_be_visible()
    shot(page, "population-en")
    context.close()
    context, page = _page(chromium, server, OFFICER, width=768, height=1024)
    page.goto(f"{server}/population")
    expect(page.locator("svg.choropleth path.province")).to_have_count(34)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "population-tablet-vi")
    context.close()


def test_a_nurse_is_refused(server, chromium):
    context, page = _page(chromium, server, "hoa")
    for path in ("/population", "/population/alerts"):
        response = page.goto(f"{server}{path}")
        assert response is not None and response.status == 403
    context.close()
