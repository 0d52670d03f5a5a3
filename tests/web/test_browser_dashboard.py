"""The manager's dashboard and the chart's additions in a real browser (Debian's Chromium, headless, Playwright)
against a real uvicorn server (tests.web.conftest's `server`, over this module's hospital: the web seed and a
fortnight of activity). Screenshots go to test-artifacts/screenshots/dashboard-*.png and chart-additions-*.png."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from sante.api import create_app
from sante.store import open_repository
from tests.support.browser import shot, signed_in_page
from tests.web.activity_seed import MANAGER, VN, glucose_results, seed_activity
from tests.web.seed import AN, seed

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    data_dir: Path = tmp_path_factory.mktemp("browser-dashboard")
    repo = open_repository(f"sqlite:///{data_dir / 'sante.db'}")
    app = create_app(repo, data_dir=data_dir)
    seed(repo, app.state.security.users)
    seed_activity(repo, app.state.security.users, datetime.now(VN).date())
    with repo.transaction() as tx:
        for resource in glucose_results():
            tx.update(resource, resource["id"])
    yield app
    repo.close()


_page = signed_in_page


def _no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_the_manager_reaches_the_dashboard_from_the_menu(server, chromium):
    context, page = _page(chromium, server, MANAGER)
    page.get_by_role("link", name="Thống kê", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Hoạt động bệnh viện")
    expect(page.locator("svg[role=img]")).to_have_count(6)
    expect(page.get_by_role("img", name="Lượt khám theo ngày và phòng khám")).to_be_visible()
    expect(page.get_by_role("radio", name="30 ngày gần nhất")).to_be_checked()
    page.get_by_text("Xem số liệu dạng bảng").first.click()  # the chart's figures as a table
    expect(page.locator(".dash-visits table")).to_be_visible()
    shot(page, "dashboard-vi")
    context.close()


def test_the_period_changes_in_place_and_is_announced(server, chromium):
    context, page = _page(chromium, server, MANAGER, locale="en-GB")
    page.goto(f"{server}/dashboard")
    page.get_by_role("radio", name="Last 7 days").check()
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#period-status")).to_contain_text("(7 days)")
    assert "days=7" in page.url
    expect(page.locator(".dash-visits tbody tr")).to_have_count(7)
    expect(page.get_by_role("radio", name="Last 7 days")).to_be_checked()
    shot(page, "dashboard-7-days-en")
    context.close()


def test_a_wrong_custom_period_is_explained_next_to_its_field(server, chromium):
    context, page = _page(chromium, server, MANAGER, locale="en-GB")
    page.goto(f"{server}/dashboard")
    today = datetime.now(VN).date()
    page.get_by_label("From", exact=True).fill(today.isoformat())
    page.get_by_label("To", exact=True).fill((today - timedelta(days=3)).isoformat())
    expect(page.get_by_role("radio", name="Other dates")).to_be_checked()  # choosing a date picks it
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#period-to-error")).to_have_text("The last day cannot be before the first.")
    expect(page.get_by_label("To", exact=True)).to_have_attribute("aria-invalid", "true")
    shot(page, "dashboard-error-en")
    context.close()


def test_the_dashboard_on_a_tablet(server, chromium):
    context, page = _page(chromium, server, MANAGER, width=768, height=1024)
    page.goto(f"{server}/dashboard?days=90")
    expect(page.locator("svg[role=img]")).to_have_count(6)
    assert _no_horizontal_scroll(page)
    shot(page, "dashboard-tablet-vi")
    context.close()


def test_a_nurse_is_refused_the_dashboard_and_a_manager_the_chart(server, chromium):
    context, page = _page(chromium, server, "hoa")
    response = page.goto(f"{server}/dashboard")
    assert response is not None and response.status == 403
    context.close()
    context, page = _page(chromium, server, MANAGER)
    response = page.goto(f"{server}/patients/{AN}")
    assert response is not None and response.status == 403
    context.close()


def test_a_physician_adds_to_the_chart(server, chromium, tmp_path):
    context, page = _page(chromium, server, "lan", locale="en-GB")
    page.goto(f"{server}/patients/{AN}")
    # an allergy: wrong first (no criticality), then right
    page.get_by_text("Add an allergy").click()
    page.get_by_label("Substance").fill("Aspirin")
    page.get_by_label("Reaction", exact=True).fill("Angioedema")
    page.get_by_role("button", name="Save the allergy").click()
    expect(page.locator("#allergy-criticality-error")).to_have_text("Choose the criticality.")
    expect(page.get_by_label("Substance")).to_have_value("Aspirin")
    shot(page, "chart-additions-errors-en")
    page.get_by_label("Criticality").select_option("high")
    page.get_by_role("button", name="Save the allergy").click()
    expect(page.locator("#allergies")).to_contain_text("Aspirin")
    expect(page.locator(".banner-safety")).to_contain_text("Aspirin")
    # a problem, found by its name through the ICD-10 search
    page.get_by_text("Add a problem").click()
    page.get_by_label("Diagnosis (ICD-10)").press_sequentially("pneumonia", delay=30)
    expect(page.locator('#icd10-options option[value="J18.9 – Pneumonia, unspecified"]')).to_have_count(1)
    page.get_by_label("Diagnosis (ICD-10)").fill("J18.9 – Pneumonia, unspecified")
    page.get_by_role("button", name="Add to the problem list").click()
    expect(page.locator("#problems")).to_contain_text("J18.9")
    # an immunization
    page.get_by_text("Record an immunization").click()
    page.get_by_label("Vaccine").select_option("influenza")
    page.get_by_label("Date given").fill((datetime.now(VN).date() - timedelta(days=10)).isoformat())
    page.get_by_label("Dose number").fill("1")
    page.get_by_role("button", name="Save the immunization").click()
    expect(page.locator("#immunizations")).to_contain_text("Influenza")
    # a document (htmx sends it with the session's CSRF token)
    pdf = tmp_path / "ket-qua-sieu-am.pdf"
    pdf.write_bytes(PDF)
    page.get_by_text("Add a document").click()
    page.get_by_label("Title").fill("Ultrasound report")
    page.get_by_label("Kind of document").select_option("imaging")
    page.get_by_label("File").set_input_files(str(pdf))
    page.get_by_role("button", name="Add the document").click()
    expect(page.locator("#documents")).to_contain_text("Ultrasound report")
    link = page.locator("#documents a", has_text="Ultrasound report")
    response = page.request.get(f"{server}{link.get_attribute('href')}")
    assert response.status == 200 and response.body() == PDF
    # the laboratory trend, its range shaded and the high results marked
    expect(page.locator(".lab-trend").filter(has_text="Glucose máu").locator(".dot-flagged")).to_have_count(2)
    shot(page, "chart-additions-en")
    context.close()


def test_the_chart_additions_in_vietnamese_on_a_tablet(server, chromium):
    context, page = _page(chromium, server, "lan", width=768, height=1024)
    page.goto(f"{server}/patients/{AN}")
    expect(page.get_by_role("heading", name="Dị ứng và không dung nạp")).to_be_visible()
    page.get_by_text("Thêm dị ứng").click()
    page.get_by_text("Thêm tài liệu", exact=True).click()
    assert _no_horizontal_scroll(page)
    shot(page, "chart-additions-tablet-vi")
    context.close()
