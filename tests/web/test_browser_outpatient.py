"""The outpatient day in a real browser (Debian's Chromium, headless, driven by Playwright; the live server and the
browser of tests/web/conftest.py): a receptionist registers a patient and checks them in, a nurse takes the vital
signs, a physician examines, signs and prints the prescription — in Vietnamese and in English. Screenshots go to
test-artifacts/screenshots/outpatient-*.png."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from sante.api import create_app
from sante.auth.guarded import GuardedRepository
from sante.clinical import queue as queue_service
from sante.clinical.registration import RegistrationForm, register
from sante.clinical.service_support import aware, day_bounds, local_day
from sante.store import open_repository
from tests.support.outpatient import RECEPTIONIST, staff
from tests.web.outpatient_seed import CLINIC, PASSWORD, seed_outpatient

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """The outpatient test hospital, with a few patients already in the queue of Phòng khám Nội 1."""
    data_dir: Path = tmp_path_factory.mktemp("outpatient-browser")
    repo = open_repository(f"sqlite:///{data_dir / 'sante.db'}")
    app = create_app(repo, data_dir=data_dir)
    seed_outpatient(repo, app.state.security.users, data_dir)
    desk = GuardedRepository(repo, staff("receptionist", RECEPTIONIST))
    now = aware(None)
    start = max(now - timedelta(minutes=80), day_bounds(local_day(now))[0])  # earlier today: real waiting times

    def at(minutes: int) -> datetime:
        return min(start + timedelta(minutes=minutes), now)

    visits = []
    for n, (family, given, sex, born) in enumerate((
            ("Trần", "Văn Bình", "male", "1948"), ("Lê", "Thị Cúc", "female", "1987"),
            ("Phạm", "Minh Khôi", "male", "2019"), ("Ngô", "Thị Lan", "female", "1962"))):
        pid = register(desk, RegistrationForm(family_name=family, given_names=given, sex=sex, birth_date=born)
                       ).patient_id
        visits.append(queue_service.check_in(desk, pid, CLINIC, now=at(8 * n))["id"])
    queue_service.set_status(desk, visits[1], "in-progress", now=at(20))
    queue_service.set_status(desk, visits[1], "finished", now=at(35))
    queue_service.set_status(desk, visits[0], "in-progress", now=at(40))
    yield app
    repo.close()


@dataclass(frozen=True)
class Words:
    """What the pages say in one language (labels are found the way a person reads them)."""

    locale: str
    username: str
    password: str
    sign_in: str
    register: str
    family: str
    given: str
    birth: str
    cccd: str
    cccd_error: str
    duplicate: str
    check_in: str
    check_in_button: str
    urgent: str
    vital_signs: str
    record_vitals: str
    temperature_error: str
    open_chart: str
    call_next: str
    save_draft: str
    draft_saved: str
    sign: str
    no_main_diagnosis: str
    add_diagnosis: str
    main_diagnosis: str
    order_test: str
    add_drug: str
    signed: str
    print_prescription: str


VI = Words("vi-VN", "Tên đăng nhập", "Mật khẩu", "Đăng nhập", "Đăng ký", "Họ *", "Tên đệm và tên *", "Ngày sinh *",
           "Số CCCD", "Số CCCD có 12 chữ số; số này có 5", "Người này có thể đã được đăng ký", "Tiếp nhận",
           "Tiếp nhận và cấp số thứ tự", "Ưu tiên", "Dấu hiệu sinh tồn", "Lưu dấu hiệu sinh tồn",
           "Nhiệt độ 375 không hợp lý: phải từ 30 đến 45", "Mở hồ sơ bệnh án", "Gọi người bệnh tiếp theo",
           "Lưu nháp", "Đã lưu nháp", "Ký phiếu khám", "Thêm chẩn đoán bệnh chính trước khi ký phiếu khám",
           "Thêm chẩn đoán", "Bệnh chính", "Chỉ định xét nghiệm", "Thêm vào đơn thuốc", "Đã ký phiếu khám",
           "In đơn thuốc")
EN = Words("en-US", "Username", "Password", "Sign in", "Register", "Family name *", "Middle and given names *",
           "Date of birth *", "CCCD number", "A CCCD number has 12 digits; this one has 5",
           "This person may be registered already", "Check in", "Check in and print the ticket", "Urgent",
           "Vital signs", "Record the vital signs", "Temperature 375 cannot be right: it must be from 30 to 45",
           "Open the chart", "Call the next patient", "Save as draft", "Draft saved", "Sign the visit",
           "Add the main diagnosis (bệnh chính) before signing the visit", "Add the diagnosis", "Main diagnosis",
           "Order the test", "Add to the prescription", "Visit signed", "Print the prescription")


@dataclass(frozen=True)
class Person:
    family: str
    given: str
    sex: str  # the radio's label
    birth: str
    cccd: str
    phone: str
    folded: str  # the name typed without accents
    decimal: str  # 37.5 as typed in the language


PEOPLE = {"vi": Person("Hoàng", "Thị Ánh Tuyết", "Nữ", "05/06/1990", "040190007777", "0912 777 888",
                       "hoang thi anh tuyet", "37,5"),
          "en": Person("Đặng", "Văn Hùng", "Male", "14/02/1975", "040075008888", "0913 888 999", "dang van hung",
                       "37.5")}


def _context(chromium, words: Words, *, width: int = 1280, height: int = 900):
    context = chromium.new_context(locale=words.locale, viewport={"width": width, "height": height})
    context.set_default_timeout(10_000)
    return context


def _shot(page, name: str, *, full_page: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"outpatient-{name}.png"), full_page=full_page)


def _sign_in(page, base: str, username: str, words: Words) -> None:
    if "/login" not in page.url:
        page.goto(f"{base}/login")
    page.get_by_label(words.username).fill(username)
    page.get_by_label(words.password).fill(PASSWORD)
    page.get_by_role("button", name=words.sign_in).click()


def _settled(page) -> None:
    """Wait for htmx to finish a swap: new content takes its behaviour once settled (a person is slower)."""
    expect(page.locator(".htmx-added, .htmx-settling, .htmx-swapping, .htmx-request")).to_have_count(0)


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    return "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_a_whole_outpatient_visit(server, chromium, lang):
    w, p = (VI if lang == "vi" else EN), PEOPLE[lang]
    name = f"{p.family} {p.given}"

    # -- the receptionist registers the patient (a mistake first), finds them, checks them in ----------------------
    desk = _context(chromium, w)
    page = desk.new_page()
    page.goto(f"{server}/outpatient/register")
    _sign_in(page, server, "thu", w)
    expect(page).to_have_url(f"{server}/outpatient/register")
    page.get_by_label(w.family).fill(p.family)
    page.get_by_label(w.birth).fill("31/02/1990")
    page.get_by_label(w.cccd).fill("12345")
    page.get_by_role("button", name=w.register, exact=True).click()
    expect(page.locator("#f-cccd-msg")).to_have_text(w.cccd_error)
    expect(page.locator("#f-cccd")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-family_name")).to_have_value(p.family)  # what was typed stays
    _shot(page, f"register-errors-{lang}")
    page.get_by_label(w.given).fill(p.given)
    page.get_by_label(p.sex, exact=True).check()
    page.get_by_label(w.birth).fill(p.birth)
    page.get_by_label(w.cccd).fill(p.cccd)
    page.locator("#f-phone").fill(p.phone)
    page.locator("#f-address_line").fill("Số 12 Lê Lợi")
    page.locator("#province").select_option("40")
    page.locator("#commune_q").fill("thanh vinh")
    page.get_by_label(re.compile("Phường Thành Vinh")).check()
    page.get_by_role("button", name=w.register, exact=True).click()
    expect(page).to_have_url(re.compile(r"/patients/[\w-]+$"))
    pid = page.url.rsplit("/", 1)[1]
    expect(page.locator(".banner h1")).to_have_text(name)

    # the same name and birth date again, without papers: a likely duplicate, shown with its reason
    page.goto(f"{server}/outpatient/register")
    page.get_by_label(w.family).fill(p.family)
    page.get_by_label(w.given).fill(p.given)
    page.get_by_label(p.sex, exact=True).check()
    page.get_by_label(w.birth).fill(p.birth)
    page.get_by_role("button", name=w.register, exact=True).click()
    warning = page.locator(".duplicate-warning")
    expect(warning.get_by_role("heading")).to_have_text(w.duplicate)
    expect(warning.locator(".candidate-name")).to_have_text(name)
    expect(warning.locator(f'a[href="/patients/{pid}"]').first).to_be_visible()
    _shot(page, f"duplicate-{lang}")

    # found with and without accents, checked in from the search results
    page.locator("#patient-search").fill(p.folded)
    page.locator("#patient-search").press("Enter")
    expect(page.locator("#search-results .patient-name")).to_have_text([name])
    page.locator("#patient-search").fill(name)
    expect(page.locator("#search-results .patient-name")).to_have_text([name])
    page.locator("#search-results").get_by_role("link", name=f"{w.check_in} {name}").click()
    expect(page).to_have_url(f"{server}/outpatient/patients/{pid}/check-in")
    page.get_by_label(re.compile("Phòng khám Nội 1")).check()
    page.get_by_label(w.urgent).check()
    page.get_by_role("button", name=w.check_in_button).click()
    expect(page).to_have_url(re.compile(f"/outpatient/queue/{CLINIC}"))
    ticket = page.locator(".ticket-large").inner_text()
    assert re.fullmatch(r"N1-\d{3}", ticket)
    row = page.locator("tr.queue-row", has_text=ticket)
    expect(row).to_contain_text(name)
    first_waiting = page.locator("tr.queue-arrived, tr.queue-triaged").first
    expect(first_waiting).to_contain_text(ticket)  # urgent: before the routine patients who came earlier
    _shot(page, f"queue-{lang}")
    desk.close()

    # -- the nurse takes the vital signs (a typing mistake first) --------------------------------------------------
    ward = _context(chromium, w)
    page = ward.new_page()
    page.goto(f"{server}/outpatient/queue/{CLINIC}")
    _sign_in(page, server, "hoa", w)
    page.get_by_role("link", name=f"{w.vital_signs} {ticket}").click()
    expect(page.locator(".banner h1")).to_have_text(name)
    for field, value in (("#v-heart-rate", "84"), ("#v-systolic", "150"), ("#v-diastolic", "95"),
                         ("#v-body-temperature", "375"), ("#v-respiratory-rate", "18"), ("#v-spo2", "97"),
                         ("#v-body-weight", "58"), ("#v-body-height", "156")):
        page.locator(field).fill(value)
    page.get_by_role("button", name=w.record_vitals).click()
    expect(page.locator("#v-body-temperature-msg")).to_have_text(w.temperature_error)
    _shot(page, f"triage-{lang}")
    page.locator("#v-body-temperature").fill(p.decimal)
    page.get_by_role("button", name=w.record_vitals).click()
    expect(page).to_have_url(re.compile(f"/outpatient/queue/{CLINIC}\\?recorded="))
    page.locator(".message-ok").get_by_role("link", name=w.open_chart).click()
    expect(page).to_have_url(f"{server}/patients/{pid}")
    temperature = page.locator('svg.chart[aria-labelledby^="vital-temperature-title"]')
    expect(temperature).to_be_visible()
    expect(page.locator(".vital-card", has=temperature).locator(".vital-value")).to_have_text(p.decimal)
    ward.close()

    # -- the physician calls the patient in, examines, signs and prints -------------------------------------------
    clinic = _context(chromium, w)
    page = clinic.new_page()
    page.goto(f"{server}/outpatient/queue/{CLINIC}")
    _sign_in(page, server, "lan", w)
    page.get_by_role("button", name=w.call_next).click()
    expect(page).to_have_url(re.compile(r"/outpatient/visits/[\w-]+$"))
    expect(page.locator(".banner h1")).to_have_text(name)
    expect(page.locator(".visit-facts .ticket")).to_have_text(ticket)
    eid = page.url.rsplit("/", 1)[1]

    page.locator("#n-subjective").fill("Đau đầu vùng chẩm 1 tuần, chóng mặt khi đứng dậy.")
    page.locator("#n-objective").fill("Tỉnh, tiếp xúc tốt. Tim đều, phổi không ran.")
    page.locator("#n-assessment").fill("Tăng huyết áp độ 1.")
    page.locator("#n-plan").fill("Điều trị ngoại trú, tái khám sau 30 ngày.")
    page.locator("#note").get_by_role("button", name=w.save_draft).click()
    expect(page.locator("#note .status")).to_contain_text(w.draft_saved)

    page.locator("#sign").get_by_role("button", name=w.sign).click()  # no main diagnosis yet: refused
    expect(page.locator("#diagnoses .field-error")).to_have_text(w.no_main_diagnosis)
    _settled(page)

    page.locator("#icd").fill("tăng huyết áp")  # ICD-10 by Vietnamese words
    page.locator('#icd10-results input[value="I10"]').check()
    expect(page.locator('#diagnoses input[name="main"]')).to_be_checked()
    page.locator("#diagnoses").get_by_role("button", name=w.add_diagnosis).click()
    expect(page.locator("#diagnoses .diagnoses li")).to_have_count(1)
    expect(page.locator("#diagnoses .diagnoses li")).to_contain_text("I10")
    expect(page.locator("#diagnoses .tag-main")).to_have_text(w.main_diagnosis)
    expect(page.locator("#sign .checklist .done").first).to_contain_text("I10")  # updated out of band
    _settled(page)

    page.locator("#o-test").select_option("hba1c")
    page.locator("#orders").get_by_role("button", name=w.order_test).click()
    expect(page.locator("#orders .items")).to_contain_text("HbA1c" if lang == "vi" else "Hemoglobin A1c")
    _settled(page)

    page.locator("#drug").fill("amlo")
    page.locator('#drug-results input[value="eml-amlodipine-5mg-tablet"]').check()
    page.locator("#rx-dose").fill("1")
    page.locator("#rx-frequency").fill("1")
    page.locator("#rx-days").fill("30")
    expect(page.locator("#rx-quantity")).to_have_value("30")  # computed, still editable
    page.locator("#rx-instructions").fill("uống buổi sáng")
    page.locator("#prescriptions").get_by_role("button", name=w.add_drug).click()
    expect(page.locator("#prescriptions .rx-list li")).to_contain_text("Amlodipin 5 mg")
    expect(page.locator("#prescriptions .rx-list li")).to_contain_text("30 viên")
    _settled(page)
    _shot(page, f"visit-{lang}")

    page.locator("#sign").get_by_role("button", name=w.sign).click()
    expect(page.locator("#sign-title")).to_have_text(w.signed)
    expect(page.locator("#sign .signed-line")).to_contain_text("BS. Trần Minh Đức")
    expect(page.locator("#note textarea")).to_have_count(0)  # closed
    _shot(page, f"signed-{lang}")

    href = page.get_by_role("link", name=w.print_prescription).get_attribute("href")
    assert href == f"/outpatient/visits/{eid}/prescription.pdf"
    pdf = clinic.request.get(f"{server}{href}")
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"].startswith("inline")
    text = _pdf_text(pdf.body())
    for expected in ("ĐƠN THUỐC", name.upper(), "I10", "Amlodipin 5 mg", "SL: 30 viên",
                     "Uống 1 viên/lần, 1 lần/ngày, uống buổi sáng; trong 30 ngày", "BS. Trần Minh Đức"):
        assert expected in text, expected
    clinic.close()


def test_who_may_not_is_refused(server, chromium):
    context = _context(chromium, VI)
    page = context.new_page()
    response = page.goto(f"{server}/outpatient/register")
    _sign_in(page, server, "chi", VI)  # a pharmacist
    expect(page.get_by_role("heading", level=1)).to_have_text("Bạn không có quyền truy cập trang này")
    response = page.goto(f"{server}/outpatient/register")
    assert response is not None and response.status == 403
    context.close()

    context = _context(chromium, VI)
    page = context.new_page()
    page.goto(f"{server}/outpatient/queue/{CLINIC}")
    _sign_in(page, server, "hoa", VI)  # a nurse: may open a visit, may not sign it
    expect(page.get_by_role("button", name=VI.call_next)).to_have_count(0)
    eid = page.locator("tr.queue-row a[href$='/vitals']").first.get_attribute("href").split("/")[3]
    page.goto(f"{server}/outpatient/visits/{eid}")
    expect(page.locator("#sign").get_by_role("button", name=VI.sign)).to_have_count(0)
    token = page.locator('form.signout input[name="csrf"]').get_attribute("value")
    refused = context.request.post(f"{server}/outpatient/visits/{eid}/sign", form={"csrf": token})
    assert refused.status == 403 and "Bạn không có quyền truy cập trang này" in refused.text()
    context.close()


def test_the_pages_fit_a_tablet(server, chromium):
    context = _context(chromium, VI, width=768, height=1024)
    page = context.new_page()
    page.goto(f"{server}/outpatient")
    _sign_in(page, server, "lan", VI)
    expect(page.locator(".clinic-card")).to_have_count(2)
    assert page.evaluate("document.documentElement.scrollWidth") <= 768
    _shot(page, "clinics-tablet-vi")
    page.goto(f"{server}/outpatient/register")
    expect(page.get_by_role("heading", level=1)).to_have_text("Đăng ký người bệnh mới")
    assert page.evaluate("document.documentElement.scrollWidth") <= 768
    page.goto(f"{server}/outpatient/queue/{CLINIC}")
    assert page.evaluate("document.documentElement.scrollWidth") <= 768
    _shot(page, "queue-tablet-vi")
    page.locator("tr.queue-row a[href^='/outpatient/visits/']").first.click()
    expect(page.locator(".banner")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 768
    _shot(page, "visit-tablet-vi")
    context.close()
