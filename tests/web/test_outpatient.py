"""The outpatient pages without a browser (starlette's TestClient), on both databases: the registration form's
messages in Vietnamese and English, the duplicate warning and the merge, check-in and the queue's order, triage,
the examination (htmx sections, signing, the printed prescription) and who is refused what."""

from __future__ import annotations

import ast
import html
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import sante.clinical
from sante.api import create_app
from sante.clinical.registration import CONTACT_RELATIONSHIPS
from sante.store import open_repository
from sante.web.outpatient_views import BETTER_MESSAGES, RELATIONSHIPS, SERVICE_MESSAGES
from tests.conftest import _fresh_postgres_url
from tests.web.conftest import csrf_of, sign_in
from tests.web.outpatient_seed import CHILD_CLINIC, CLINIC, seed_outpatient

FORBIDDEN_VI = "Bạn không có quyền truy cập trang này"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """The application over the outpatient test hospital, on each backend (the module's tests share it: each
    registers its own patients)."""
    data_dir: Path = tmp_path_factory.mktemp("outpatient")
    url = f"sqlite:///{data_dir / 'sante.db'}" if request.param == "sqlite" else _fresh_postgres_url(
        request.getfixturevalue("postgres_server"))
    repo = open_repository(url)
    app = create_app(repo, data_dir=data_dir)
    seed_outpatient(repo, app.state.security.users, data_dir)
    yield app
    repo.close()


def messages_of(page: str, field: str) -> list[str]:
    """The messages shown under a form field (the block tied to the input by aria-describedby)."""
    block = re.search(rf'<div class="field-messages" id="{re.escape(field)}-msg">(.*?)</div>', page, re.S)
    return [html.unescape(m) for m in re.findall(r'class="field-message [^"]+">([^<]*)<', block[1])] if block else []


def invalid(page: str, field_id: str) -> bool:
    return bool(re.search(rf'id="{re.escape(field_id)}"[^>]*aria-invalid="true"', page))


GOOD = {"family_name": "NGUYỄN", "given_names": "thị hồng nhung", "sex": "female", "birth_date": "05/06/1990",
        "cccd": "040190001234", "phone": "0912 000 111", "address_line": "Số 5 Lê Lợi", "province": "40",
        "commune_code": "16681"}


def register(b, **fields) -> str:
    """Register a patient through the form; the new patient's id."""
    r = b.post("/outpatient/register", data={"csrf": csrf_of(b.get("/outpatient/register").text), **fields})
    assert r.status_code == 303, r.text
    return r.headers["location"].split("/")[-1] if "duplicates" not in r.headers["location"] else \
        r.headers["location"].split("/")[-2]


def check_in(b, pid: str, clinic: str = CLINIC, priority: str = "routine") -> str:
    form = b.get(f"/outpatient/patients/{pid}/check-in")
    r = b.post(f"/outpatient/patients/{pid}/check-in",
               data={"csrf": csrf_of(form.text), "clinic": clinic, "priority": priority})
    assert r.status_code == 303, r.text
    return r.headers["location"].split("checked_in=")[1]


# -- registration ------------------------------------------------------------------------------------------------
def test_the_registration_form_shows_each_mistake_next_to_its_field(site):
    vi = sign_in(site, "thu")
    page = vi.get("/outpatient/register")
    assert page.status_code == 200 and "Đăng ký người bệnh mới" in page.text
    for label in ("Họ", "Tên đệm và tên", "Ngày sinh", "Số CCCD", "Số thẻ BHYT", "Tỉnh, thành phố", "Xã, phường"):
        assert f">{label}" in page.text, label
    bad = {"csrf": csrf_of(page.text), "family_name": "Trần", "given_names": "", "birth_date": "31/02/1990",
           "cccd": "12345", "bhyt": "XY", "phone": "123", "address_line": "Số 1", "contact_name": "Trần Văn Bố"}
    r = vi.post("/outpatient/register", data=bad)
    assert r.status_code == 422
    assert messages_of(r.text, "f-given_names") == ["Nhập tên đệm và tên"]
    assert messages_of(r.text, "f-sex") == ["Chọn giới tính"]
    assert messages_of(r.text, "f-birth_date") == [
        "Ghi ngày sinh theo dạng dd/mm/yyyy (hoặc mm/yyyy, hoặc chỉ năm), không phải 31/02/1990"]
    assert messages_of(r.text, "f-cccd") == ["Số CCCD có 12 chữ số; số này có 5"]
    assert messages_of(r.text, "f-bhyt") == ["Số thẻ BHYT có 15 ký tự; số này có 2"]
    assert messages_of(r.text, "f-phone")[0].startswith("Số điện thoại là số di động 10 chữ số")
    assert messages_of(r.text, "f-commune_code") == ["Chọn xã/phường của địa chỉ"]
    assert messages_of(r.text, "f-contact_phone") == ["Nhập số điện thoại người liên hệ"]
    assert messages_of(r.text, "f-family_name") == [] and not invalid(r.text, "f-family_name")
    assert invalid(r.text, "f-cccd") and 'value="Trần"' in r.text and 'value="12345"' in r.text  # as typed
    assert "Một số mục cần sửa" in r.text

    en = sign_in(site, "thu", lang="en")
    r = en.post("/outpatient/register", data={**bad, "csrf": csrf_of(en.get("/outpatient/register").text)})
    assert r.status_code == 422
    assert messages_of(r.text, "f-cccd") == ["A CCCD number has 12 digits; this one has 5"]
    assert messages_of(r.text, "f-sex") == ["Choose the sex"]
    assert messages_of(r.text, "f-birth_date") == [
        "Write the birth date as dd/mm/yyyy (or mm/yyyy, or the year alone), not 31/02/1990"]


def test_a_cccd_that_disagrees_warns_once_then_registers(site):
    b = sign_in(site, "thu")
    form = {**GOOD, "family_name": "Lê", "given_names": "Văn Cảnh", "cccd": "040190005555", "sex": "male",
            "phone": "", "birth_date": "1990"}
    r = b.post("/outpatient/register", data={"csrf": csrf_of(b.get("/outpatient/register").text), **form})
    assert r.status_code == 422
    assert messages_of(r.text, "f-cccd") == ["Số CCCD mang giới tính nữ, phiếu ghi nam: kiểm tra lại cả hai"]
    assert 'name="confirm_warnings" value="1"' in r.text and not invalid(r.text, "f-cccd")
    r = b.post("/outpatient/register", data={"csrf": csrf_of(r.text), **form, "confirm_warnings": "1"})
    assert r.status_code == 303 and r.headers["location"].startswith("/patients/")


def test_a_registered_patient_goes_to_the_chart_with_the_check_in_action(site):
    b = sign_in(site, "thu")
    pid = register(b, **GOOD)
    chart = b.get(f"/patients/{pid}")
    assert chart.status_code == 200 and "Nguyễn Thị Hồng Nhung" in chart.text  # names typed in capitals
    assert f'href="/outpatient/patients/{pid}/check-in"' in chart.text
    search = b.get("/patients", params={"q": "nguyen thi hong nhung"})
    assert f'href="/outpatient/patients/{pid}/check-in"' in search.text  # from the search results too


def test_duplicates_are_shown_a_certain_one_cannot_be_registered_again(site):
    b = sign_in(site, "thu")
    first = {**GOOD, "family_name": "Phan", "given_names": "Văn Đức", "sex": "male", "birth_date": "12/03/1958",
             "cccd": "040058001234", "phone": "0987 654 321"}
    pid = register(b, **first)
    csrf = csrf_of(b.get("/outpatient/register").text)

    r = b.post("/outpatient/register", data={"csrf": csrf, **first, "phone": ""})  # the same CCCD: certain
    assert r.status_code == 409
    assert "Người này đã được đăng ký" in r.text and "Cùng một người" in r.text and "cùng số CCCD" in r.text
    assert f'href="/patients/{pid}"' in r.text and 'name="allow_duplicate"' not in r.text
    r = b.post("/outpatient/register", data={"csrf": csrf, **first, "phone": "", "allow_duplicate": "1"})
    assert r.status_code == 409  # not even when asked

    twin = {**first, "cccd": "", "phone": ""}  # the same name and birth date: likely, the user decides
    r = b.post("/outpatient/register", data={"csrf": csrf, **twin})
    assert r.status_code == 409
    assert "Người này có thể đã được đăng ký" in r.text and "Nhiều khả năng cùng một người" in r.text
    assert "cùng họ tên và ngày sinh" in r.text and 'name="allow_duplicate" value="1"' in r.text
    r = b.post("/outpatient/register", data={"csrf": csrf, **twin, "allow_duplicate": "1"})
    assert r.status_code == 303 and r.headers["location"].endswith("/duplicates")  # registered, shown its twin
    twin_id = r.headers["location"].split("/")[-2]
    page = b.get(r.headers["location"])
    assert page.status_code == 200 and f"/outpatient/merge?source={twin_id}&amp;target={pid}" in page.text

    # the merge: preview what moves, then confirm with a reason
    check_in(b, twin_id)
    preview = b.get("/outpatient/merge", params={"source": twin_id, "target": pid})
    assert preview.status_code == 200
    assert "Hồ sơ bị gộp" in preview.text and "Hồ sơ được giữ lại" in preview.text and "Lượt khám" in preview.text
    r = b.post("/outpatient/merge", data={"csrf": csrf, "source": twin_id, "target": pid, "reason": " "})
    assert r.status_code == 422 and "Ghi rõ lý do gộp hai hồ sơ" in r.text
    r = b.post("/outpatient/merge", data={"csrf": csrf, "source": twin_id, "target": pid,
                                          "reason": "Đăng ký trùng: cùng người, quên mang CCCD"})
    assert r.status_code == 303 and r.headers["location"] == f"/patients/{pid}"
    again = b.get("/outpatient/merge", params={"source": twin_id, "target": pid})
    assert "Đã được gộp vào hồ sơ khác" in again.text and 'action="/outpatient/merge"' not in again.text
    r = b.post(f"/outpatient/patients/{twin_id}/check-in", data={"csrf": csrf, "clinic": CHILD_CLINIC})
    assert r.status_code == 409 and "Hồ sơ này đã được gộp vào hồ sơ khác" in r.text


# -- check-in and the queue --------------------------------------------------------------------------------------
def test_the_queue_puts_emergencies_first_and_the_doctor_calls_the_next(site):
    desk = sign_in(site, "thu")
    people = [register(desk, **{**GOOD, "family_name": "Đỗ", "given_names": f"Văn {name}", "sex": "male",
                                "birth_date": f"0{i + 1}/01/19{60 + i}", "cccd": "", "phone": "",
                                "address_line": ""})
              for i, name in enumerate(("Một", "Hai", "Ba"))]
    tickets = [check_in(desk, pid, CHILD_CLINIC, priority) for pid, priority in
               zip(people, ("routine", "urgent", "emergency"))]
    page = desk.get(f"/outpatient/queue/{CHILD_CLINIC}", params={"checked_in": tickets[2]})
    assert page.status_code == 200
    assert re.findall(r'<span class="ticket">(NH-\d+)</span>', page.text) == ["NH-003", "NH-002", "NH-001"]
    assert "Đỗ Văn Ba đã được tiếp nhận" in page.text and 'class="ticket ticket-large">NH-003' in page.text
    assert 'hx-trigger="every 30s"' in page.text and "Gọi người bệnh tiếp theo" not in page.text  # not a doctor
    r = desk.post(f"/outpatient/patients/{people[0]}/check-in",
                  data={"csrf": csrf_of(page.text), "clinic": CHILD_CLINIC})
    assert r.status_code == 409 and "Người bệnh này đã có trong hàng đợi của phòng khám hôm nay" in r.text
    r = desk.post(f"/outpatient/patients/{people[0]}/check-in", data={"csrf": csrf_of(page.text), "clinic": ""})
    assert r.status_code == 422 and messages_of(r.text, "f-clinic") == ["Chọn phòng khám"]

    doctor = sign_in(site, "lan")
    page = doctor.get(f"/outpatient/queue/{CHILD_CLINIC}")
    r = doctor.post(f"/outpatient/queue/{CHILD_CLINIC}/call-next", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 303 and r.headers["location"] == f"/outpatient/visits/{tickets[2]}"
    live = doctor.get(f"/outpatient/queue/{CHILD_CLINIC}/live", headers={"HX-Request": "true"})
    assert live.status_code == 200 and "<html" not in live.text
    assert re.findall(r'<span class="ticket">(NH-\d+)</span>', live.text) == ["NH-002", "NH-001", "NH-003"]
    assert 'id="queue-summary" hx-swap-oob="innerHTML"' in live.text and "2 người đang chờ" in live.text
    assert "Đã được khám" in live.text  # the waiting-time statistics
    clinics = doctor.get("/outpatient")
    assert clinics.status_code == 200 and "Phòng khám Nhi" in clinics.text and "Phòng khám Nội 1" in clinics.text
    stats = dict(re.findall(r"<dt>([^<]+)</dt><dd>(\d+)</dd>", live.text))
    assert (stats["Đã tiếp nhận"], stats["Đang chờ"], stats["Đã được khám"]) == ("3", "2", "1")


# -- triage --------------------------------------------------------------------------------------------------------
def test_vital_signs_are_checked_then_recorded(site):
    desk = sign_in(site, "thu")
    pid = register(desk, **{**GOOD, "given_names": "Thị Sinh Tồn", "cccd": "", "phone": "", "birth_date": "1971"})
    eid = check_in(desk, pid)
    nurse = sign_in(site, "hoa")
    form = nurse.get(f"/outpatient/visits/{eid}/vitals")
    assert form.status_code == 200 and "Mạch" in form.text and "Nhiệt độ" in form.text
    bad = {"csrf": csrf_of(form.text), "heart-rate": "abc", "systolic": "130", "diastolic": "",
           "body-temperature": "375", "spo2": "98"}
    r = nurse.post(f"/outpatient/visits/{eid}/vitals", data=bad)
    assert r.status_code == 422
    assert messages_of(r.text, "v-heart-rate") == ["Nhập một số, ví dụ 37,5"]
    assert messages_of(r.text, "v-blood-pressure") == ["Nhập cả hai trị số: tâm thu và tâm trương"]
    r = nurse.post(f"/outpatient/visits/{eid}/vitals", data={**bad, "heart-rate": "88", "diastolic": "85"})
    assert messages_of(r.text, "v-body-temperature") == ["Nhiệt độ 375 không hợp lý: phải từ 30 đến 45"]
    en = sign_in(site, "hoa", lang="en")
    r = en.post(f"/outpatient/visits/{eid}/vitals", data={**bad, "heart-rate": "88", "diastolic": "140",
                                                             "csrf": csrf_of(en.get("/outpatient").text)})
    assert messages_of(r.text, "v-body-temperature") == ["Temperature 375 cannot be right: it must be from 30 to 45"]
    assert messages_of(r.text, "v-blood-pressure") == ["The diastolic pressure must be below the systolic"]
    r = nurse.post(f"/outpatient/visits/{eid}/vitals", data={
        "csrf": bad["csrf"], "heart-rate": "88", "systolic": "130", "diastolic": "85", "body-temperature": "37,5",
        "body-weight": "52,5", "body-height": "155"})
    assert r.status_code == 303 and r.headers["location"] == f"/outpatient/queue/{CLINIC}?recorded={eid}"
    queue = nurse.get(r.headers["location"])
    assert "Đã lưu dấu hiệu sinh tồn" in queue.text
    chart = nurse.get(f"/patients/{pid}")
    assert 'aria-labelledby="vital-temperature-title' in chart.text and "37,5" in chart.text
    assert 'aria-labelledby="vital-bmi-title' in chart.text  # computed from the weight and the height


# -- the examination -----------------------------------------------------------------------------------------------
def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def test_the_examination_from_note_to_signed_visit_and_printed_prescription(site):
    desk = sign_in(site, "thu")
    pid = register(desk, **{**GOOD, "family_name": "Vũ", "given_names": "Văn Khám", "sex": "male", "cccd": "",
                            "phone": "", "birth_date": "20/10/1950"})
    eid = check_in(desk, pid)
    doctor = sign_in(site, "lan")
    page = doctor.get(f"/outpatient/visits/{eid}")
    assert page.status_code == 200 and "Vũ Văn Khám" in page.text and "Ghi chép của bác sĩ" in page.text
    csrf = csrf_of(page.text)
    hx = {"HX-Request": "true"}

    r = doctor.post(f"/outpatient/visits/{eid}/note", headers=hx,
                    data={"csrf": csrf, "subjective": "Đau đầu 1 tuần", "assessment": "Tăng huyết áp"})
    assert r.status_code == 200 and r.text.lstrip().startswith('<section id="note"') and "Đã lưu nháp lúc" in r.text
    r = doctor.post(f"/outpatient/visits/{eid}/note", headers=hx, data={"csrf": csrf})
    assert "Ghi ít nhất một phần của ghi chép" in r.text

    r = doctor.post(f"/outpatient/visits/{eid}/sign", headers=hx, data={"csrf": csrf})  # no main diagnosis
    assert r.status_code == 200 and r.text.lstrip().startswith('<section id="sign"')
    diagnoses = r.text[r.text.index('<section id="diagnoses"'):]
    assert 'hx-swap-oob="true"' in diagnoses[:200]
    assert messages_of(diagnoses, "icd") == ["Thêm chẩn đoán bệnh chính trước khi ký phiếu khám"]

    icd = doctor.get("/outpatient/icd10", params={"icd_q": "tang huyet ap"})
    assert 'value="I10"' in icd.text and "Tăng huyết áp vô căn" in icd.text
    assert 'value="I10"' in doctor.get("/outpatient/icd10", params={"icd_q": "Tăng huyết áp"}).text
    en_icd = sign_in(site, "lan", lang="en").get("/outpatient/icd10", params={"icd_q": "hypertension"})
    assert 'value="I10"' in en_icd.text and "Essential (primary) hypertension" in en_icd.text
    r = doctor.post(f"/outpatient/visits/{eid}/diagnoses", headers=hx, data={"csrf": csrf, "icd_q": "tang huyet ap"})
    assert messages_of(r.text, "icd") == ["tang huyet ap không phải mã ICD-10"]
    r = doctor.post(f"/outpatient/visits/{eid}/diagnoses", headers=hx, data={"csrf": csrf, "code": "E11.9"})
    r = doctor.post(f"/outpatient/visits/{eid}/diagnoses", headers=hx, data={"csrf": csrf, "code": "I10", "main": "1"})
    assert r.status_code == 200 and "Bệnh chính" in r.text
    assert re.findall(r'<span class="code">([A-Z0-9.]+)</span> <span class="item-main">', r.text) == ["I10", "E11.9"]
    condition = re.search(r'name="condition" value="([^"]+)"', r.text)[1]  # E11.9: "make it the main one"
    r = doctor.post(f"/outpatient/visits/{eid}/diagnoses/main", headers=hx, data={"csrf": csrf,
                                                                                  "condition": condition})
    assert re.findall(r'<span class="code">([A-Z0-9.]+)</span> <span class="item-main">', r.text) == ["E11.9", "I10"]
    doctor.post(f"/outpatient/visits/{eid}/diagnoses/main", data={
        "csrf": csrf, "condition": re.search(r'name="condition" value="([^"]+)"', r.text)[1]})

    r = doctor.post(f"/outpatient/visits/{eid}/orders", headers=hx,
                    data={"csrf": csrf, "kind": "lab", "test": "hba1c", "lab_priority": "routine"})
    assert "HbA1c" in r.text and "Đã thêm chỉ định" in r.text
    r = doctor.post(f"/outpatient/visits/{eid}/orders", headers=hx,
                    data={"csrf": csrf, "kind": "imaging", "modality": "xray", "body_site": ""})
    assert messages_of(r.text, "o-body-site") == ["Ghi rõ vị trí cần chụp"]

    drugs = doctor.get("/outpatient/formulary", params={"drug_q": "amlodipin"})
    assert 'value="eml-amlodipine-5mg-tablet"' in drugs.text and 'data-unit="viên"' in drugs.text
    rx = {"csrf": csrf, "medication": "eml-amlodipine-5mg-tablet", "dose": "1", "unit": "viên", "route": "oral",
          "frequency_per_day": "1", "duration_days": "30", "quantity": "", "instructions": "uống buổi sáng"}
    r = doctor.post(f"/outpatient/visits/{eid}/prescriptions", headers=hx, data={**rx, "dose": "0", "duration_days":
                                                                                 "200"})
    assert messages_of(r.text, "rx-dose") == ["Liều phải là số lớn hơn 0"]
    assert messages_of(r.text, "rx-days") == ["Số ngày điều trị là số nguyên từ 1 đến 90"]
    r = doctor.post(f"/outpatient/visits/{eid}/prescriptions", headers=hx,
                    data={**rx, "medication": "eml-ibuprofen-200mg-tablet"})
    assert messages_of(r.text, "drug") == ["Thuốc này không có trong danh mục thuốc của bệnh viện."]
    r = doctor.post(f"/outpatient/visits/{eid}/prescriptions", headers=hx, data=rx)
    assert "Amlodipin 5 mg, viên nén" in r.text and "30 viên" in r.text  # the quantity computed: 1 × 1 × 30
    assert "Uống 1 viên/lần, 1 lần/ngày, uống buổi sáng; trong 30 ngày" in r.text
    assert 'id="sign" class="card visit-section sign-section" aria-labelledby="sign-title" hx-swap-oob="true"' in r.text

    nurse = sign_in(site, "hoa")
    nurse_page = nurse.get(f"/outpatient/visits/{eid}")
    assert nurse_page.status_code == 200 and "Ký phiếu khám</button>" not in nurse_page.text
    assert nurse.post(f"/outpatient/visits/{eid}/sign", data={"csrf": csrf_of(nurse_page.text)}).status_code == 403
    assert nurse.post(f"/outpatient/visits/{eid}/diagnoses", data={
        "csrf": csrf_of(nurse_page.text), "code": "J06.9"}).status_code == 403

    r = doctor.post(f"/outpatient/visits/{eid}/sign", headers=hx, data={"csrf": csrf})
    assert r.status_code == 200 and r.headers["HX-Redirect"] == f"/outpatient/visits/{eid}"
    signed = doctor.get(f"/outpatient/visits/{eid}")
    assert "Đã ký phiếu khám" in signed.text and "Đã ký bởi BS. Trần Minh Đức" in signed.text
    assert "Lưu nháp" not in signed.text and "Thêm chẩn đoán" not in signed.text  # closed
    r = doctor.post(f"/outpatient/visits/{eid}/note", headers=hx, data={"csrf": csrf, "plan": "Thêm"})
    assert "Lượt khám đã kết thúc" in r.text

    pdf = doctor.get(f"/outpatient/visits/{eid}/prescription.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"].startswith("inline;") and pdf.content.startswith(b"%PDF-")
    text = _pdf_text(pdf.content)
    for expected in ("ĐƠN THUỐC", "VŨ VĂN KHÁM", "1. Amlodipin 5 mg, viên nén", "SL: 30 viên", "BS. Trần Minh Đức"):
        assert expected in text, expected
    assert desk.get(f"/outpatient/visits/{eid}/prescription.pdf").status_code == 403  # a receptionist


def test_signing_without_a_key_says_so(site):
    desk = sign_in(site, "thu")
    pid = register(desk, **{**GOOD, "given_names": "Thị Không Khóa", "cccd": "", "phone": "", "birth_date": "1980"})
    eid = check_in(desk, pid)
    admin = sign_in(site, "root")  # an administrator is no practitioner: it cannot sign
    page = admin.get(f"/outpatient/visits/{eid}")
    admin.post(f"/outpatient/visits/{eid}/diagnoses", data={"csrf": csrf_of(page.text), "code": "I10", "main": "1"})
    r = admin.post(f"/outpatient/visits/{eid}/sign", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 422
    assert messages_of(r.text, "sign") == ["Tài khoản của bạn chưa gắn với hồ sơ nhân viên y tế: liên hệ quản trị viên."]


# -- who is refused what -------------------------------------------------------------------------------------------
def test_roles_without_outpatient_work_are_refused(site):
    pharmacist = sign_in(site, "chi")
    for path in ("/outpatient", "/outpatient/register", f"/outpatient/queue/{CLINIC}"):
        r = pharmacist.get(path)
        assert r.status_code == 403 and FORBIDDEN_VI in r.text, path
    assert "/outpatient" not in pharmacist.get("/").text  # not in the menu either
    nurse = sign_in(site, "hoa")
    assert nurse.get("/outpatient/register").status_code == 403  # nurses do not register
    assert 'href="/outpatient"' in nurse.get("/").text
    desk = sign_in(site, "thu")
    pid = register(desk, **{**GOOD, "given_names": "Thị Quyền", "cccd": "", "phone": "", "birth_date": "1999"})
    eid = check_in(desk, pid)
    assert desk.get(f"/outpatient/visits/{eid}").status_code == 403  # the clinical record
    assert desk.get(f"/outpatient/visits/{eid}/vitals").status_code == 403
    r = desk.post(f"/outpatient/queue/{CLINIC}/call-next", data={"csrf": csrf_of(desk.get("/outpatient").text)})
    assert r.status_code == 403
    assert nurse.get("/outpatient/merge", params={"source": pid, "target": pid}).status_code == 403


# -- the catalogue -------------------------------------------------------------------------------------------------
def test_every_message_of_the_services_is_in_the_catalogue():
    """The templates of the FieldProblems that registration, queue, visit and merge raise are message ids."""
    templates = set()
    for module in ("registration", "queue", "visit", "merge"):
        tree = ast.parse((Path(sante.clinical.__file__).parent / f"{module}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("problem", "refuse"):
                templates.add(node.args[2].value)
    assert templates - set(SERVICE_MESSAGES) == set()
    assert set(BETTER_MESSAGES) <= {"vitals.implausible"}
    assert set(RELATIONSHIPS) == set(CONTACT_RELATIONSHIPS)  # a label for each relationship the service knows
