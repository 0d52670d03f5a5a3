"""The manager's dashboard (/dashboard) without a browser: who may see it, the period form, the charts with their
tables in three languages, the facility's own figures only, and no patient named anywhere."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest

from sante.api import create_app
from sante.store import open_repository
from tests.web.activity_seed import MANAGER, VN, activity, seed_activity
from tests.web.conftest import sign_in
from tests.web.seed import AN, ORG, seed


@pytest.fixture(scope="module")
def activity_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    data_dir: Path = tmp_path_factory.mktemp("dashboard")
    repo = open_repository(f"sqlite:///{data_dir / 'sante.db'}")
    app = create_app(repo, data_dir=data_dir)
    seed(repo, app.state.security.users)
    seed_activity(repo, app.state.security.users, datetime.now(VN).date())
    yield app
    repo.close()


def _tiles(html: str) -> dict[str, str]:
    return dict(re.findall(r'<span class="tile-label">([^<]+)</span><span class="tile-value">([^<]+)</span>', html))


def _table_rows(html: str, figure: str) -> int:
    section = html.split(f'class="card dash-figure dash-{figure}"')[1].split("</section>")[0]
    return section.count('<th scope="row"')


def test_a_manager_sees_the_dashboard_in_vietnamese(activity_site):
    r = sign_in(activity_site, MANAGER).get("/dashboard")
    assert r.status_code == 200
    html = r.text
    assert "<h1>Hoạt động bệnh viện</h1>" in html and 'href="/static/dashboard.css"' in html
    for title in ("Lượt khám theo ngày và phòng khám", "Thời gian chờ khám", "Nhập viện và ra viện",
                  "Công suất sử dụng giường theo thời gian", "Giường theo khoa phòng hiện nay", "10 chẩn đoán hàng đầu"):
        assert title in html, title
    assert html.count('role="img"') == 6 and html.count("<details") == 6  # each chart with its table
    assert 'aria-current="page"' in html.split('href="/dashboard"')[1][:40]  # the menu's current page
    assert "30 ngày gần nhất" in html and _table_rows(html, "visits") == 30


def test_the_facility_counts_its_own_visits_only(activity_site):
    today = datetime.now(VN).date()
    resources = activity(today)
    own = sum(1 for r in resources if r["resourceType"] == "Encounter" and r["class"]["code"] == "AMB"
              and r["serviceProvider"]["reference"] == f"Organization/{ORG}")
    mine = _tiles(sign_in(activity_site, MANAGER, lang="en").get("/dashboard").text)
    everyone = _tiles(sign_in(activity_site, "minh", lang="en").get("/dashboard").text)  # no organization: all
    assert mine["Visits"] == str(own) and everyone["Visits"] == str(own + 3)
    assert mine["Beds occupied now"] == "40%"  # 2 of the 5 beds in service (one closed)


def test_the_page_names_no_patient(activity_site):
    html = sign_in(activity_site, MANAGER).get("/dashboard?days=90").text
    for secret in ("Trần Thị Bình", "binh-tran", "Nguyễn Thị Cúc", "cuc-nguyen", "visit-1", "stay-0", "dx-1"):
        assert secret not in html


def test_diagnoses_come_with_their_icd10_chapter_and_figures_are_written_per_language(activity_site):
    en = sign_in(activity_site, MANAGER, lang="en").get("/dashboard").text
    assert "Top 10 diagnoses" in en and "I10" in en and "IX · Diseases of the circulatory system" in en
    assert "Hypertension" in en or "hypertension" in en
    fr = sign_in(activity_site, MANAGER, lang="fr").get("/dashboard").text
    assert "Activité de l’hôpital" in fr and "Les 10 diagnostics les plus fréquents" in fr
    assert re.search(r"\d+,\d jours", fr) or "Durée moyenne de séjour" in fr
    vi = sign_in(activity_site, MANAGER).get("/dashboard").text
    assert "Bệnh của hệ tuần hoàn" in vi and "Tăng huyết áp" in vi


@pytest.mark.parametrize("days,rows", [("7", 7), ("90", 90), ("junk", 30)])
def test_the_presets(activity_site, days, rows):
    html = sign_in(activity_site, MANAGER).get(f"/dashboard?days={days}").text
    assert _table_rows(html, "visits") == rows and _table_rows(html, "waits") == rows


def test_a_custom_period_and_its_errors_next_to_the_fields(activity_site):
    b = sign_in(activity_site, MANAGER, lang="en")
    today = datetime.now(VN).date()
    first = today - timedelta(days=4)
    r = b.get(f"/dashboard?days=custom&from={first.isoformat()}&to={today.isoformat()}")
    assert r.status_code == 200 and _table_rows(r.text, "visits") == 5 and "(5 days)" in r.text
    r = b.get(f"/dashboard?days=custom&from={today.isoformat()}&to={first.isoformat()}")
    assert 'id="period-to-error">The last day cannot be before the first.</p>' in r.text
    assert 'aria-invalid="true" aria-describedby="period-to-error"' in r.text and "dash-figure" not in r.text
    r = b.get("/dashboard?days=custom&from=31/12/2025&to=")
    assert 'id="period-from-error">Enter the first day as a date.' in r.text
    assert 'id="period-to-error">Enter the last day.' in r.text
    r = b.get(f"/dashboard?days=custom&from={first.isoformat()}&to={(today + timedelta(days=1)).isoformat()}")
    assert "The last day cannot be after today." in r.text
    r = b.get(f"/dashboard?days=custom&from={(today - timedelta(days=400)).isoformat()}&to={today.isoformat()}")
    assert "A period lasts at most a year." in r.text


def test_htmx_updates_the_dashboard_in_place(activity_site):
    r = sign_in(activity_site, MANAGER).get("/dashboard?days=7", headers={"HX-Request": "true"})
    assert r.status_code == 200 and 'id="dashboard"' in r.text and 'id="period-status"' in r.text


@pytest.mark.parametrize("user", ["hoa", "lan", "thu", "chi"])
def test_clinical_staff_are_refused_the_dashboard(activity_site, user):
    b = sign_in(activity_site, user)
    r = b.get("/dashboard")
    assert r.status_code == 403 and "Bạn không có quyền truy cập trang này" in r.text
    assert 'href="/dashboard"' not in b.get("/").text  # and it is not in their menu


def test_a_manager_sees_aggregates_but_still_not_a_chart(activity_site):
    b = sign_in(activity_site, MANAGER)
    assert 'href="/dashboard"' in b.get("/").text
    assert b.get(f"/patients/{AN}").status_code == 403
    assert sign_in(activity_site, "root").get("/dashboard").status_code == 200  # administrators too


def test_the_dashboard_leaves_an_audit_event_without_a_patient(activity_site):
    sign_in(activity_site, MANAGER).get("/dashboard?days=7")
    events = [orjson.loads(e) for _, e in activity_site.state.security.audit.search(username=MANAGER, count=5)]
    event = next(e for e in events if "/dashboard" in e.get("outcomeDesc", ""))
    assert event["outcome"] == "0" and "aggregates only" in event["outcomeDesc"]
    assert not any(str(x.get("what", {}).get("reference", "")).startswith("Patient/") for x in event.get("entity", []))


# -- the bar charts of sante.web.svg ----------------------------------------------------------------------------------
def test_stacked_bars_are_an_accessible_image_with_a_tooltip_per_bar():
    from sante.web.svg import Bars, bar_chart, stacked_bar_chart

    series = [Bars("s0", "Nội <1>", [3, 0, 2]), Bars("s1", "Nhi", [1, 4, 0])]
    svg = str(stacked_bar_chart("v", "Visits", "3 days", ["01/11", "02/11", "03/11"], series, value_text=str))
    assert svg.startswith('<svg class="chart chart-bars"') and 'aria-labelledby="v-title v-desc"' in svg
    assert svg.count("<rect") == 4  # zero-height bars are not drawn
    assert "<title>01/11 · Nội &lt;1&gt;: 3</title>" in svg and ">5<" in svg  # the axis tops at the highest stack
    grouped = str(bar_chart("g", "Stays", "", ["a", "b"], [Bars("x", "X", [1, 0]), Bars("y", "Y", [1, 1])],
                            value_text=lambda v: f"{v:.0f}"))
    assert grouped.count("<rect") == 3 and grouped.count('class="grid"') == 2  # no half-step: counts are whole
    assert "style=" not in svg + grouped and str(stacked_bar_chart("e", "", "", [], [], value_text=str)) == ""


def test_horizontal_bars_cut_long_labels_but_keep_them_whole_in_their_title():
    from sante.web.svg import Bars, horizontal_bar_chart

    label = "E11.9 · Đái tháo đường typ 2 không có biến chứng, một tên rất dài"
    svg = str(horizontal_bar_chart("d", "Top", "", [label, "I10"], [Bars("d", "Visits", [7, 3])], value_text=str,
                                   label_width=120))
    assert "…" in svg and f"<title>{label}</title>" in svg and svg.count("<rect") == 2
