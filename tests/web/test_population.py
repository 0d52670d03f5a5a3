"""The population-health page (/population) and its alerts without a browser: who may see them, the filters and
their errors, the map of 34 provinces, the curve with its bound and forecast, the CSV and Excel exports, three
languages, the alert raised, judged and audited, and no patient named anywhere."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest
from openpyxl import load_workbook

from sante.api import create_app
from sante.store import open_repository
from tests.web.activity_seed import VN
from tests.web.conftest import csrf_of, sign_in
from tests.web.population_seed import OFFICER, SURGE_CASES, dengue_history, last_complete_week, seed_population
from tests.web.seed import seed


@pytest.fixture(scope="module")
def population_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    data_dir: Path = tmp_path_factory.mktemp("population")
    repo = open_repository(f"sqlite:///{data_dir / 'sante.db'}")
    app = create_app(repo, data_dir=data_dir)
    seed(repo, app.state.security.users)
    seed_population(repo, app.state.security.users, datetime.now(VN).date())
    yield app
    repo.close()


def _tiles(html: str) -> dict[str, str]:
    return dict(re.findall(r'<span class="tile-label">([^<]+)</span><span class="tile-value">([^<]+)</span>', html))


def _last_weeks(weeks: int) -> dict[tuple[int, int], int]:
    """The Nghệ An dengue cases of the seed per week of the last `weeks` complete weeks."""
    last = last_complete_week(datetime.now(VN).date())
    monday = datetime.fromisocalendar(*last, 1).date()
    shown = {(monday - timedelta(weeks=n)).isocalendar()[:2] for n in range(weeks)}
    return {w: n for w, n in dengue_history(datetime.now(VN).date()).items() if w in shown}


def _dengue_in_last_weeks(weeks: int) -> int:
    return sum(_last_weeks(weeks).values())


def _weeks_with_dengue(weeks: int) -> int:
    return sum(1 for n in _last_weeks(weeks).values() if n)


@pytest.mark.parametrize("user", ["hoa", "lan", "thu", "chi", "tam"])
def test_clinical_staff_are_refused_the_population_pages(population_site, user):
    b = sign_in(population_site, user)
    for path in ("/population", "/population/alerts", "/population/export?format=csv"):
        assert b.get(path).status_code == 403, path
    assert b.post("/population/alerts/run", data={"level": "province", "csrf": csrf_of(b.get("/").text)}
                  ).status_code == 403
    assert 'href="/population"' not in b.get("/").text


@pytest.mark.parametrize("user", [OFFICER, "minh", "root"])
def test_public_health_managers_and_administrators_see_it(population_site, user):
    b = sign_in(population_site, user)
    assert 'href="/population"' in b.get("/").text
    assert b.get("/population").status_code == 200 and b.get("/population/alerts").status_code == 200


def test_the_page_in_vietnamese_with_the_map_of_34_provinces(population_site):
    html = sign_in(population_site, OFFICER).get("/population").text
    assert "<h1>Y tế công cộng</h1>" in html and 'href="/static/population.css"' in html
    for title in ("Số ca theo tuần: Tất cả bệnh truyền nhiễm phải báo cáo", "Số ca theo tỉnh/thành phố",
                  "Số ca theo tuổi và giới", "Số ca theo bệnh", "Quản lý bệnh mạn tính"):
        assert title in html, title
    svg = html.split('<svg class="chart choropleth"')[1].split("</svg>")[0]
    paths = re.findall(r'<path class="province [^"]*" data-code="(\d\d)" d="M[^"]+"><title>([^<]+)</title>', svg)
    assert len(paths) == 34 and len({code for code, _ in paths}) == 34
    tips = dict(paths)
    assert tips["40"].startswith("Tỉnh Nghệ An · số ca: ") and tips["96"] == "Tỉnh Cà Mau · số ca: 0"
    count = tips["40"].removeprefix("Tỉnh Nghệ An · số ca: ")
    table = html.split('class="table-wrap pop-map-table"')[1].split("</table>")[0]  # the same data as a table
    assert f'<th scope="row">Nghệ An</th><td class="num">{count}</td>' in table and table.count("<tr>") == 35


def test_the_curve_has_its_upper_bound_alarm_and_forecast(population_site):
    html = sign_in(population_site, OFFICER, lang="en").get("/population?disease=dengue&province=40&weeks=26").text
    curve = html.split('<svg class="chart chart-curve"')[1].split("</svg>")[0]
    assert curve.count('class="bar bar-') == _weeks_with_dengue(26)  # a bar per week with cases
    assert 'class="line line-bound"' in curve and 'class="line line-forecast"' in curve
    assert 'class="forecast-band95"' in curve and 'class="forecast-band80"' in curve
    last = last_complete_week(datetime.now(VN).date())
    assert f"W{last[1]:02d}/{last[0]} · cases: {SURGE_CASES} · upper bound" in curve and "· alarm</title>" in curve
    assert curve.count('class="dot forecast-dot"') == 8
    tiles = _tiles(html)
    assert tiles["Cases"] == str(_dengue_in_last_weeks(26))
    assert tiles["Weeks with an alarm"] != "0"


def test_the_filters_narrow_what_is_counted(population_site):
    b = sign_in(population_site, OFFICER, lang="en")
    everyone = _tiles(b.get("/population?weeks=156&disease=dengue").text)["Cases"]
    men = _tiles(b.get("/population?weeks=156&disease=dengue&sex=male").text)["Cases"]
    hanoi = b.get("/population?weeks=156&disease=dengue&province=01").text
    assert int(men) < int(everyone)
    assert 'value="00004"' in hanoi and "Phường Ba Đình" in hanoi  # the province's communes to choose from
    assert "Cases by commune: Thành phố Hà Nội" in hanoi
    children = _tiles(b.get("/population?weeks=156&disease=dengue&age=0-4").text)["Cases"]
    assert children == "0"


def test_bad_filters_are_explained_next_to_their_fields(population_site):
    b = sign_in(population_site, OFFICER)
    r = b.get("/population?province=99&disease=plague-of-frogs&sex=x")
    assert r.status_code == 200 and 'id="f-province-error"' in r.text
    assert "Chọn một tỉnh/thành phố trong danh sách." in r.text and "Chọn một bệnh trong danh sách." in r.text
    assert 'aria-invalid="true" aria-describedby="f-sex-error"' in r.text
    r = b.get("/population?province=01&commune=16681")  # a commune of Nghệ An
    assert "Chọn một xã/phường của tỉnh trong danh sách." in r.text
    en = sign_in(population_site, OFFICER, lang="en")
    today = datetime.now(VN).date()
    r = en.get(f"/population?weeks=custom&from={today.isoformat()}&to={(today - timedelta(days=3)).isoformat()}")
    assert 'id="period-to-error">The last day cannot be before the first.' in r.text
    r = en.get("/population?weeks=custom&from=yesterday&to=")
    assert "Enter the first day as a date." in r.text and "Enter the last day." in r.text
    assert en.get("/population/export?weeks=custom&from=x&format=csv").status_code == 400


def test_the_csv_export_has_the_filtered_table(population_site):
    b = sign_in(population_site, OFFICER, lang="en")
    r = b.get("/population/export?weeks=52&disease=dengue&format=csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0] == ["ISO week", "Disease", "ICD-10", "Province code", "Province", "Cases"]
    assert {row[1] for row in rows[1:]} == {"Dengue fever"} and {row[3] for row in rows[1:]} == {"40"}
    assert sum(int(row[5]) for row in rows[1:]) == _dengue_in_last_weeks(52)
    assert rows[-1][0] == "{}-W{:02d}".format(*last_complete_week(datetime.now(VN).date()))
    assert rows[-1][5] == str(SURGE_CASES)
    by_commune = list(csv.reader(io.StringIO(b.get("/population/export?weeks=52&province=40&format=csv")
                                             .content.decode("utf-8-sig"))))
    assert by_commune[0][3:5] == ["Commune code", "Commune"] and by_commune[1][3:5] == ["16681", "Phường Thành Vinh"]


def test_the_excel_export_has_the_same_table_in_the_users_language(population_site):
    r = sign_in(population_site, OFFICER, lang="fr").get("/population/export?weeks=52&disease=dengue&format=xlsx")
    assert r.status_code == 200 and "spreadsheetml" in r.headers["content-type"]
    sheet = load_workbook(io.BytesIO(r.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == ("Semaine ISO", "Maladie", "CIM-10", "Code de la province", "Province", "Cas")
    assert sum(row[5] for row in rows[1:]) == _dengue_in_last_weeks(52) and rows[1][1] == "Dengue"


def test_english_and_french(population_site):
    en = sign_in(population_site, OFFICER, lang="en").get("/population").text
    assert "<h1>Population health</h1>" in en and "Cases by age and sex" in en and "Download Excel" in en
    fr = sign_in(population_site, OFFICER, lang="fr").get("/population").text
    assert "<h1>Santé publique</h1>" in fr and "Cas par âge et sexe" in fr and "Télécharger en Excel" in fr


def test_htmx_updates_the_page_in_place(population_site):
    r = sign_in(population_site, OFFICER).get("/population?weeks=12", headers={"HX-Request": "true"})
    assert r.status_code == 200 and 'id="population"' in r.text and 'id="filter-status"' in r.text


def test_the_page_names_no_patient(population_site):
    b = sign_in(population_site, OFFICER)
    html = b.get("/population?weeks=156").text + b.get("/population/export?weeks=156&format=csv").text
    for secret in ("Nguyễn Văn An", "an-nguyen", "binh-tran", "kid1", "Patient/", "w40-"):
        assert secret not in html
    assert b.get("/patients/an-nguyen").status_code in (403, 404)  # and still no chart


def test_an_alert_is_raised_once_listed_judged_and_audited(population_site):
    b = sign_in(population_site, OFFICER, lang="en")
    csrf = csrf_of(b.get("/population/alerts").text)
    r = b.post("/population/alerts/run", data={"level": "province", "csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/population/alerts?ran=1"
    r = b.post("/population/alerts/run", data={"level": "province", "csrf": csrf})
    assert r.headers["location"] == "/population/alerts?ran=0"  # the same week again: nothing new
    listing = b.get("/population/alerts").text
    assert listing.count('<a href="/population/alerts/') == 1 and "Dengue fever" in listing
    assert "Tỉnh Nghệ An" in listing and "To check" in listing
    assert 'class="line line-bound"' in listing.split('<svg class="chart chart-curve"')[1]  # the newest's curve
    flag_id = re.search(r'<a href="/population/alerts/([^"]+)"', listing).group(1)
    page = b.get(f"/population/alerts/{flag_id}").text
    assert 'class="line line-bound"' in page and "Record the verdict" in page
    wrong = b.post(f"/population/alerts/{flag_id}/verdict", data={"verdict": "perhaps", "csrf": csrf})
    assert wrong.status_code == 400 and 'id="verdict-error">Choose confirmed outbreak or false alarm.' in wrong.text
    r = b.post(f"/population/alerts/{flag_id}/verdict", data={"verdict": "confirmed", "csrf": csrf})
    assert r.status_code == 303
    page = b.get(r.headers["location"]).text
    assert "The verdict was recorded." in page and "Confirmed outbreak" in page and "Record the verdict" not in page
    again = b.post(f"/population/alerts/{flag_id}/verdict", data={"verdict": "false-alarm", "csrf": csrf})
    assert again.status_code == 409 and "This alert was judged already." in again.text
    precision = b.get("/population/alerts").text.split('id="precision-title"')[1]
    assert re.search(r"<td class=\"num\">1</td><td class=\"num\">1</td><td class=\"num\">0</td>"
                     r"<td class=\"num\">0</td><td class=\"num\">100 %</td>", precision)
    events = [orjson.loads(e) for _, e in population_site.state.security.audit.search(username=OFFICER, count=20)]
    judged = next(e for e in events if "/verdict" in e.get("outcomeDesc", ""))
    assert any(x.get("what", {}).get("reference") == f"Flag/{flag_id}" for x in judged.get("entity", []))
    assert judged["agent"][0]["altId"] == OFFICER


def test_a_nurse_cannot_judge_an_alert(population_site):
    b = sign_in(population_site, "hoa")
    r = b.post("/population/alerts/anything/verdict", data={"verdict": "confirmed", "csrf": csrf_of(b.get("/").text)})
    assert r.status_code == 403


def test_an_unknown_alert_is_not_found(population_site):
    assert sign_in(population_site, OFFICER).get("/population/alerts/no-such-flag").status_code == 404


def test_douglas_peucker_keeps_the_shape_and_drops_what_a_pixel_would_not_show():
    from sante.web.choropleth import douglas_peucker

    line = [(0.0, 0.0), (1.0, 0.001), (2.0, 0.0), (3.0, 1.0), (4.0, 0.0)]
    assert douglas_peucker(line, 0.01) == [(0.0, 0.0), (2.0, 0.0), (3.0, 1.0), (4.0, 0.0)]
    assert douglas_peucker(line, 2.0) == [(0.0, 0.0), (4.0, 0.0)]


def test_the_map_classes_and_its_projection():
    from sante.web.choropleth import class_of, classes, projection, provinces

    legend = classes([0, 10, 3])
    assert [c.css for c in legend] == ["choro-0", "choro-1", "choro-2", "choro-3", "choro-4", "choro-5"]
    assert (class_of(0, legend), class_of(1, legend), class_of(10, legend)) == ("choro-0", "choro-1", "choro-5")
    assert [c.css for c in classes([0, 0])] == ["choro-0"]
    assert len(provinces()) == 34 and all(p.rings for p in provinces())
    proj = projection()
    hanoi, ca_mau = proj.xy((105.85, 21.03)), proj.xy((105.15, 9.18))
    assert hanoi[1] < ca_mau[1] and 0 <= hanoi[0] <= 360 and proj.height > 360  # north up, taller than wide
