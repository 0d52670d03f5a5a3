"""The web app's pages without a browser (starlette's TestClient): sign-in, languages, patient search, the chart,
refusals by role and organization, CSRF, sign-out and the audit trail of every page."""

from __future__ import annotations

import orjson
import pyotp
import pytest
from sqlalchemy import event

from sante.auth.guarded import GuardedRepository
from sante.auth.web_session import session_principal
from sante.web.chart import load_chart
from sante.web.i18n import Formats
from tests.web.conftest import browser, csrf_of, sign_in
from tests.web.seed import AN, BHYT, CCCD, MRN, PASSWORD, an_record


def _events(app, **filters) -> list[dict]:
    return [orjson.loads(e) for _, e in app.state.security.audit.search(**filters)]


# -- signing in ----------------------------------------------------------------------------------------------------
def test_pages_need_sign_in_while_the_api_keeps_its_401(site):
    b = browser(site)
    r = b.get(f"/patients/{AN}")
    assert r.status_code == 303 and r.headers["location"] == f"/login?next=%2Fpatients%2F{AN}"
    assert b.get("/").headers["location"] == "/login"
    r = b.get("/patients?q=an", headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/patients?q=an"})
    assert r.status_code == 401 and r.headers["HX-Redirect"] == "/login?next=%2Fpatients%3Fq%3Dan"
    r = b.get("/fhir/Patient")
    assert r.status_code == 401 and r.json()["resourceType"] == "OperationOutcome"
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = b.get("/static/htmx.min.js")
    assert r.status_code == 200 and "htmx" in r.text[:200]


def test_sign_in_page_speaks_vietnamese_unless_asked_otherwise(site):
    r = browser(site).get("/login")
    assert '<html lang="vi">' in r.text and "Đăng nhập" in r.text and "Tên đăng nhập" in r.text
    assert "Se connecter" in browser(site, lang="fr-FR,fr;q=0.9,en;q=0.5").get("/login").text
    assert "Sign in" in browser(site, lang="en-US,en;q=0.9").get("/login").text
    assert "Đăng nhập" in browser(site, lang="de-DE").get("/login").text  # not spoken here: Vietnamese
    b = browser(site, lang="en")
    r = b.get("/lang", params={"to": "fr", "next": "/login"})
    assert r.status_code == 303 and r.headers["location"] == "/login" and "sante_lang=fr" in r.headers["set-cookie"]
    assert '<html lang="fr">' in b.get("/login").text  # the cookie wins over Accept-Language
    assert b.get("/lang", params={"to": "en", "next": "https://evil.example/"}).headers["location"] == "/"


def test_sign_in_brings_the_user_back_to_the_page_asked_for(site):
    b = browser(site)
    login_url = b.get(f"/patients/{AN}").headers["location"]
    form = b.get(login_url)
    assert f'name="next" value="/patients/{AN}"' in form.text
    r = b.post("/login", data={"username": "lan", "password": PASSWORD, "csrf": csrf_of(form.text),
                               "next": f"/patients/{AN}"})
    assert r.status_code == 303 and r.headers["location"] == f"/patients/{AN}"
    assert b.get(r.headers["location"]).status_code == 200


def test_a_failed_sign_in_says_how_the_lock_out_works(site):
    b = browser(site)
    form = b.get("/login")
    r = b.post("/login", data={"username": "chi", "password": "wrong wrong wrong", "csrf": csrf_of(form.text)})
    assert r.status_code == 401 and "Tên đăng nhập hoặc mật khẩu không đúng." in r.text
    assert "Sau 5 lần đăng nhập sai liên tiếp, tài khoản bị khóa 15 phút." in r.text
    assert 'value="chi"' in r.text  # the username is kept, the password is not
    site.state.oauth_limits[0].clear()


def test_the_one_time_code_is_asked_for_once_the_password_is_right(site):
    secret = pyotp.parse_uri(site.state.security.users.enable_totp("tam")).secret
    b = browser(site, lang="en")
    form = b.get("/login")
    r = b.post("/login", data={"username": "tam", "password": PASSWORD, "csrf": csrf_of(form.text)})
    assert r.status_code == 401 and 'name="totp"' in r.text and 'name="password"' not in r.text
    assert "sante_session" not in r.headers.get("set-cookie", "")
    pending = r.text.split('name="pending" value="')[1].split('"')[0]
    wrong = "000000" if pyotp.TOTP(secret).now() != "000000" else "111111"
    r = b.post("/login", data={"pending": pending, "totp": wrong, "csrf": csrf_of(r.text)})
    assert r.status_code == 401 and "This code is not right" in r.text
    r = b.post("/login", data={"pending": pending[:-3] + "abc", "totp": pyotp.TOTP(secret).now(),
                               "csrf": csrf_of(r.text)})
    assert r.status_code == 400  # a forged step token
    form = b.get("/login")
    r = b.post("/login", data={"pending": pending, "totp": pyotp.TOTP(secret).now(), "csrf": csrf_of(form.text)})
    assert r.status_code == 303 and "sante_session" in r.headers["set-cookie"]
    site.state.oauth_limits[0].clear()


# -- patient search --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("typed,expected", [
    ("nguyen van", ["Nguyễn Văn An"]),
    ("Nguyễn", ["Nguyễn Văn An", "Nguyễn Thị Cúc"]),
    ("NGUYEN an", ["Nguyễn Văn An"]),
    (CCCD, ["Nguyễn Văn An"]),
    (BHYT.lower(), ["Nguyễn Văn An"]),
    (MRN, ["Nguyễn Văn An"]),
    ("0912 345 678", ["Nguyễn Văn An"]),
    ("+84912345678", ["Nguyễn Văn An"]),
    ("12/03/1985", ["Nguyễn Văn An"]),
    ("nguyen 1958", ["Nguyễn Thị Cúc"]),
    ("tran thi binh", ["Trần Thị Bình"]),
])
def test_search_finds_patients_by_name_identifier_phone_or_birth_date(site, typed, expected):
    b = sign_in(site, "lan")
    r = b.get("/patients", params={"q": typed}, headers={"HX-Request": "true"})
    assert r.status_code == 200 and "<html" not in r.text  # the results alone, for htmx
    names = [part.split("<")[0].strip() for part in r.text.split('class="patient-name">')[1:]]
    assert names == expected


def test_search_explains_what_it_could_not_do(site):
    b = sign_in(site, "lan")
    assert "Ngày này không tồn tại" in b.get("/patients", params={"q": "31/02/1985"}).text
    assert "Nhập ít nhất hai chữ cái" in b.get("/patients", params={"q": "a"}).text
    assert "Không tìm thấy người bệnh nào với “zzzz”." in b.get("/patients", params={"q": "zzzz"}).text
    page = b.get("/patients", params={"q": "nguyen van"})  # the whole page, for a link or a reload
    assert "<html" in page.text and 'value="nguyen van"' in page.text and "Nguyễn Văn An" in page.text


def test_staff_of_another_hospital_find_only_their_patients(site):
    b = sign_in(site, "hue")  # a nurse of bv-hue
    assert "patient-name" not in b.get("/patients", params={"q": "nguyen"}).text
    assert "Lê Văn Dũng" in b.get("/patients", params={"q": "le van"}).text
    r = b.get(f"/patients/{AN}")
    assert r.status_code == 404 and "Không tìm thấy trang" in r.text and "Nguyễn" not in r.text
    assert b.get("/patients/dung-le").status_code == 200


# -- the chart ------------------------------------------------------------------------------------------------------------
def test_chart_shows_the_banner_and_every_section(site):
    r = sign_in(site, "lan").get(f"/patients/{AN}")
    assert r.status_code == 200
    html = r.text
    banner = html.split('class="banner"')[1].split("</section>")[0]
    for expected in ("Nguyễn Văn An", "Nam", Formats("vi").age("1985-03-12"), "sinh 12/03/1985", "CCCD", CCCD, "BHYT",
                     BHYT, "Mã BN", MRN, "Penicillin", "Phát ban", "nguy cơ cao", "Nguy cơ té ngã"):
        assert expected in banner, expected
    assert '<svg class="chart"' in html and '<title id="vital-pulse-title">Mạch</title>' in html
    assert "5 lần đo từ 16/11/2026 đến 20/11/2026" in html  # the chart's description, for screen readers
    assert "Huyết áp" in html and "150/95" in html and "38,2" in html  # Vietnamese decimal comma
    assert "Glucose máu" in html and "3,9–6,1 mmol/L" in html and 'class="flag flag-high">Cao<' in html
    assert "Creatinin" in html and "62–115 µmol/L" in html
    assert "Tăng huyết áp vô căn" in html and "I10" in html and "từ 01/06/2019" in html
    assert "Amlodipin 5 mg viên" in html  # named by the included Medication
    assert "Metformin 500 mg viên" in html and "Đã ngừng" in html
    assert "Điều trị nội trú" in html and "Khoa Nội tim mạch" in html and "16/11/2026 07:45" in html


def test_chart_in_english_and_french(site):
    en = sign_in(site, "lan", lang="en").get(f"/patients/{AN}").text
    assert "Vital signs" in en and "born 12 Mar 1985" in en and "3.9–6.1 mmol/L" in en and ">High<" in en
    fr = sign_in(site, "lan", lang="fr").get(f"/patients/{AN}").text
    assert "Constantes" in fr and "né(e) le 12/03/1985" in fr and "3,9–6,1 mmol/L" in fr and ">Élevé<" in fr


def test_a_receptionist_sees_the_banner_but_not_the_clinical_record(site):
    r = sign_in(site, "thu").get(f"/patients/{AN}")
    assert r.status_code == 200 and "Nguyễn Văn An" in r.text and CCCD in r.text
    assert "Penicillin" not in r.text and "Glucose" not in r.text and "Dấu hiệu sinh tồn" not in r.text
    assert "Khoa Nội tim mạch" in r.text  # encounters are the reception's work


def test_a_manager_gets_a_clear_refusal_in_their_language(site):
    b = sign_in(site, "minh")
    r = b.get(f"/patients/{AN}")
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
    assert "Bạn không có quyền truy cập trang này" in r.text and "vai trò Quản lý" in r.text
    assert "Nguyễn" not in r.text
    assert b.get("/patients", params={"q": "nguyen"}).status_code == 403
    home = b.get("/")
    assert home.status_code == 200 and 'href="/dashboard"' in home.text  # their work: the dashboard
    assert "Chưa có nội dung cho vai trò của bạn" not in home.text
    assert 'href="/patients"' not in home.text  # a page they may not use is not linked
    en = sign_in(site, "minh", lang="en").get(f"/patients/{AN}")
    assert en.status_code == 403 and "You do not have access to this page" in en.text


def test_home_page_follows_the_role(site):
    nurse = sign_in(site, "hoa").get("/").text
    assert "Xin chào, hoa" in nurse and "Điều dưỡng" in nurse and 'id="patient-search"' in nurse
    assert 'hx-get="/patients"' in nurse and 'aria-live="polite"' in nurse


def test_unknown_pages_are_pages_too(site):
    r = sign_in(site, "lan").get("/nowhere")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert sign_in(site, "lan").get("/fhir/Nowhere").headers["content-type"].startswith("application/fhir+json")


# -- forms, sign-out, headers ---------------------------------------------------------------------------------------
def test_state_changing_requests_need_the_sessions_csrf_token(site):
    b = sign_in(site, "lan")
    token = csrf_of(b.get("/").text)
    assert b.post("/patients", data={"q": "x"}).status_code == 403
    assert b.post("/patients", data={"q": "x", "csrf": "forged"}).status_code == 403
    assert b.post("/patients", content=b"{}", headers={"content-type": "application/json"}).status_code == 403
    refused = _events(site, username="lan", count=1)[0]
    assert refused["outcome"] == "4" and "CSRF" in refused["outcomeDesc"]
    # With the token (form field or the header htmx sends) the request goes through: no such form, 405.
    assert b.post("/patients", data={"q": "x", "csrf": token}).status_code == 405
    assert b.post("/patients", headers={"X-CSRF-Token": token}).status_code == 405
    other = sign_in(site, "hoa")  # another session's token is refused
    assert other.post("/patients", data={"csrf": token}).status_code == 403


def test_sign_out_needs_its_token_and_ends_the_session(site):
    b = sign_in(site, "lan")
    page = b.get("/")
    assert b.post("/logout", data={"csrf": "wrong"}).status_code == 400
    assert b.get("/").status_code == 200  # still signed in
    r = b.post("/logout", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert b.get("/").headers["location"] == "/login"


def test_pages_are_sent_with_strict_headers(site):
    r = sign_in(site, "lan").get(f"/patients/{AN}")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "form-action 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["cache-control"] == "no-store" and r.headers["x-frame-options"] == "DENY"
    assert "form-action" not in browser(site).get("/login").headers["content-security-policy"]  # OAuth redirects on


# -- the audit trail ------------------------------------------------------------------------------------------------------
def test_every_page_request_leaves_an_audit_event(site):
    b = sign_in(site, "lan")
    b.get(f"/patients/{AN}")
    chart = _events(site, username="lan", count=1)[0]
    assert chart["subtype"][0]["code"] == "read" and chart["outcome"] == "0"
    assert chart["agent"][0]["role"][0]["text"] == "physician"
    refs = [e.get("what", {}).get("reference") for e in chart["entity"]]
    assert f"Patient/{AN}" in refs and "Observation/an-glucose" in refs and "AllergyIntolerance/an-allergy" in refs
    assert chart["outcomeDesc"] == f"web page GET /patients/{AN}"
    b.get("/patients", params={"q": CCCD})
    search = _events(site, username="lan", count=1)[0]
    assert search["subtype"][0]["code"] == "search-type"
    assert search["entity"][0]["what"]["reference"] == f"Patient/{AN}"  # one match: the patient of the event
    browser(site).get(f"/patients/{AN}")
    anonymous = _events(site, subtype="read", count=1)[0]
    assert anonymous["outcome"] == "4" and "not signed in" in anonymous["outcomeDesc"]
    sign_in(site, "minh").get(f"/patients/{AN}")
    refused = _events(site, username="minh", count=1)[0]
    assert refused["outcome"] == "4" and refused["agent"][0]["role"][0]["text"] == "manager"
    assert site.state.security.audit.verify().ok


# -- speed ------------------------------------------------------------------------------------------------------------------
def test_the_chart_reads_a_fixed_number_of_queries_whatever_the_record(site):
    repo = site.state.repository
    user = site.state.security.users.get("lan")
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    def queries_for(pid: str) -> int:
        statements.clear()
        event.listen(repo.engine, "before_cursor_execute", count)
        try:
            load_chart(GuardedRepository(repo, session_principal(user)), pid, Formats("vi"))
        finally:
            event.remove(repo.engine, "before_cursor_execute", count)
        return len([s for s in statements if s.lstrip().upper().startswith("SELECT")])

    # A record three times An's (more readings, results, prescriptions of more medications) costs no more queries.
    big = [r for r in an_record() if r["resourceType"] not in ("Patient", "Medication")]
    with repo.transaction() as tx:
        tx.update({"resourceType": "Patient", "id": "big", "name": [{"family": "Phạm"}]}, "big")
        for n in range(3):
            tx.update({"resourceType": "Medication", "id": f"med-{n}", "code": {"text": f"Thuốc {n}"}}, f"med-{n}")
            for r in big:
                copy = orjson.loads(orjson.dumps(r).replace(AN.encode(), b"big").replace(b"amlodipine", f"med-{n}".encode()))
                tx.update(copy, f"{copy['id']}-{n}")
    assert queries_for(AN) == queries_for("big") <= 12  # with the immunizations and documents (chart_sections)
    assert queries_for("binh-tran") <= queries_for(AN)  # no includes to fetch
