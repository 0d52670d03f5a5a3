"""The wards' pages without a browser (sante.web.wards): the bed board, admission and its refusals, bed status,
transfer, progress notes, the medication administration record, discharge with the signed summary and its PDF,
and who may use them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from sante.clinical.service_support import VIETNAM
from tests.web.conftest import csrf_of, sign_in
from tests.web.seed import AN, PASSWORD
from tests.web.ward_pharmacy_seed import (
    CEFTRIAXONE_ORDER,
    HUNG_STAY,
    LAN_STAY,
    NURSE,
    PHARMACIST,
    PHYSICIAN,
    PRN_ORDER,
    STOPPED_ORDER,
    SURGERY_WARD,
    WARD,
    ward_pharmacy_site,
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """The test hospital with its wards (the tests of this module change it: each uses its own beds and patients)."""
    yield from ward_pharmacy_site(tmp_path_factory.mktemp("wards"))


def _post(client, url: str, data: dict, *, page: str) -> object:
    token = csrf_of(client.get(page).text)
    return client.post(url, data={**data, "csrf": token})


def _stays_of(site, patient: str) -> list[dict]:
    with site.state.repository.reader() as tx:
        from sante.store.search import parse_search, run_search

        found = run_search(tx, parse_search("Encounter", [("subject", f"Patient/{patient}"), ("class", "IMP")]))
    return [m.resource for m in found.matches]


# -- the bed board ------------------------------------------------------------------------------------------------
def test_the_bed_board_shows_each_bed_in_words_and_each_ward_s_occupancy(site):
    nurse = sign_in(site, NURSE)
    r = nurse.get("/wards")
    assert r.status_code == 200 and '<html lang="vi">' in r.text
    page = r.text
    for text in ("Sơ đồ giường bệnh", "Khoa Nội – Khu A", "Khoa Ngoại – Khu B", "Phòng 201", "Phạm Văn Hùng",
                 "Trống", "Có người bệnh", "Đang làm vệ sinh", "Tạm đóng"):
        assert text in page, text
    assert re.search(r'<p class="bed-facts">\d+ tuổi · 3 ngày nằm viện</p>', page)  # age, days in hospital
    assert f'href="/wards/stays/{HUNG_STAY}"' in page
    assert 'class="bed bed-occupied"' in page and 'class="bed bed-cleaning"' in page
    # Khoa Nội – Khu A: 6 beds, one closed, two occupied: 2 of 5 in service.
    assert "2/5 giường hoạt động có người bệnh" in page and "Công suất 40%" in page
    assert f'href="/wards/admit?bed={WARD}-201-3"' in page  # a free bed admits
    surgery = nurse.get("/wards", params={"unit": "bvh-ngoai"}).text
    assert "Khoa Ngoại – Khu B" in surgery and "Phạm Văn Hùng" not in surgery
    assert "Phạm Văn Hùng" in nurse.get("/wards", params={"unit": WARD}).text
    assert nurse.get("/wards", params={"unit": "nowhere"}).status_code == 404
    english = sign_in(site, NURSE, lang="en").get("/wards").text
    assert "Bed board" in english and "Being cleaned" in english and "40%" in english


def test_who_may_use_the_wards(site):
    for user in ("thu", "minh", PHARMACIST):  # receptionist, manager, pharmacist
        b = sign_in(site, user, lang="en")
        r = b.get("/wards")
        assert r.status_code == 403 and "You do not have access to this page" in r.text, user
        assert b.get(f"/wards/stays/{HUNG_STAY}").status_code == 403
        assert 'href="/wards"' not in b.get("/").text
    for user in (NURSE, PHYSICIAN, "root"):
        home = sign_in(site, user, lang="en").get("/").text
        assert 'href="/wards"' in home and "The bed board, admissions, medication rounds and discharges" in home


# -- admission ----------------------------------------------------------------------------------------------------
def test_admission_from_the_board_to_a_free_bed(site):
    nurse = sign_in(site, NURSE, lang="en")
    r = nurse.get("/wards/admit", params={"bed": f"{WARD}-202-1"})
    assert r.status_code == 200 and "Find the patient first" in r.text
    found = nurse.get("/wards/admit/patients", params={"q": "tran thi binh", "bed": f"{WARD}-202-1"}).text
    assert f'href="/wards/admit?bed={WARD}-202-1&amp;patient=binh-tran"' in found
    form = nurse.get("/wards/admit", params={"bed": f"{WARD}-202-1", "patient": "binh-tran"})
    assert 'id="banner-name"' in form.text and "Trần Thị Bình" in form.text
    assert f'<option value="{WARD}-202-1" selected>' in form.text  # the bed chosen on the board
    assert f'<option value="{WARD}-201-1"' not in form.text  # occupied beds are not offered
    r = nurse.post("/wards/admit", data={"csrf": csrf_of(form.text), "patient": "binh-tran", "bed": f"{WARD}-202-1",
                                         "department": "bvh-noi", "ward": WARD, "reason": "J18.9",
                                         "admit_source": "outp"})
    assert r.status_code == 303 and r.headers["location"].startswith("/wards/stays/")
    stay = nurse.get(r.headers["location"])
    assert "The patient is admitted." in stay.text and "Giường 1" in stay.text
    assert "J18.9 – Pneumonia, unspecified" in stay.text and "From the outpatient clinics" in stay.text
    board = nurse.get("/wards").text
    assert 'href="/wards/stays/' + r.headers["location"].split("/")[-1].split("?")[0] + '"' in board


def test_the_chart_leads_to_an_admission(site):
    chart = sign_in(site, PHYSICIAN, lang="en").get("/patients/cuc-nguyen").text
    assert '<a class="button-secondary" href="/wards/admit?patient=cuc-nguyen">Admit to a ward</a>' in chart
    assert "/wards/admit" not in sign_in(site, PHARMACIST).get("/patients/cuc-nguyen").text
    form = sign_in(site, NURSE, lang="en").get("/wards/admit", params={"patient": "cuc-nguyen"}).text
    assert "Admit to a bed" in form and 'name="patient" value="cuc-nguyen"' in form


def test_admission_refusals_keep_what_was_typed_and_save_nothing(site):
    nurse = sign_in(site, NURSE, lang="en")
    page = "/wards/admit?patient=cuc-nguyen"
    taken = _post(nurse, "/wards/admit", {"patient": "cuc-nguyen", "bed": f"{WARD}-201-1", "reason": "I10"},
                  page=page)
    assert taken.status_code == 409
    assert "Someone was admitted to this bed a moment ago. Choose another bed." in taken.text
    assert 'value="I10"' in taken.text  # the reason chosen is kept
    cleaning = _post(nurse, "/wards/admit", {"patient": "cuc-nguyen", "bed": f"{WARD}-202-3"}, page=page)
    assert cleaning.status_code == 409 and "This bed is being cleaned." in cleaning.text
    words = _post(nurse, "/wards/admit", {"patient": "cuc-nguyen", "bed": f"{SURGERY_WARD}-301-2",
                                          "reason_q": "viem phoi"}, page=page)
    assert words.status_code == 400 and "This is not an ICD-10 code: choose one from the list." in words.text
    assert 'value="viem phoi"' in words.text
    no_bed = _post(nurse, "/wards/admit", {"patient": "cuc-nguyen", "bed": ""}, page=page)
    assert no_bed.status_code == 404 and "Choose a free bed." in no_bed.text
    assert _stays_of(site, "cuc-nguyen") == []  # nothing half-saved
    # Nguyễn Văn An is in hospital already: a second admission is refused.
    again = _post(nurse, "/wards/admit", {"patient": AN, "bed": f"{SURGERY_WARD}-301-2"}, page="/wards/admit?bed=x")
    assert again.status_code == 409 and "This patient is already admitted." in again.text
    assert len(_stays_of(site, AN)) == 1
    assert "This patient is already admitted." in nurse.get("/wards/admit", params={"patient": AN}).text
    vi = _post(sign_in(site, NURSE), "/wards/admit", {"patient": "cuc-nguyen", "bed": f"{WARD}-201-2"}, page=page)
    assert "Giường này vừa có người bệnh khác nhập vào. Hãy chọn giường khác." in vi.text


def test_the_icd10_box_finds_codes_as_one_types(site):
    nurse = sign_in(site, NURSE)
    found = nurse.get("/wards/icd10", params={"field": "reason", "reason_q": "viem phoi", "part": "results"}).text
    assert "J18.9" in found and "Viêm phổi" in found and 'hx-get="/wards/icd10?field=reason&amp;add=J18.9"' in found
    chosen = nurse.get("/wards/icd10", params={"field": "diagnoses", "diagnoses": "I10", "add": "J18.9"}).text
    assert 'name="diagnoses" value="I10"' in chosen and 'name="diagnoses" value="J18.9"' in chosen
    removed = nurse.get("/wards/icd10", params={"field": "diagnoses", "diagnoses": ["I10", "J18.9"],
                                                "remove": "I10"}).text
    assert 'value="I10"' not in removed and 'value="J18.9"' in removed
    assert nurse.get("/wards/icd10", params={"field": "other"}).status_code == 400
    assert sign_in(site, PHARMACIST).get("/wards/icd10", params={"field": "reason"}).status_code == 403


# -- beds and moves -----------------------------------------------------------------------------------------------
def test_a_nurse_marks_a_bed_cleaned_and_closes_one(site):
    nurse = sign_in(site, NURSE, lang="en")
    bed = f"{SURGERY_WARD}-301-1"
    r = _post(nurse, f"/wards/beds/{bed}/status", {"status": "H", "unit": "bvh-ngoai"}, page="/wards")
    assert r.status_code == 303 and r.headers["location"] == f"/wards?unit=bvh-ngoai&done=bed#bed-{bed}"
    board = nurse.get(r.headers["location"]).text
    assert "status is changed." in board
    assert f'<li class="bed bed-cleaning" id="bed-{bed}">' in board
    _post(nurse, f"/wards/beds/{bed}/status", {"status": "U"}, page="/wards")
    assert f'<li class="bed bed-free" id="bed-{bed}">' in nurse.get("/wards").text
    occupied = _post(nurse, f"/wards/beds/{WARD}-201-1/status", {"status": "C"}, page="/wards")
    assert occupied.status_code == 409 and "Someone lies in this bed: it cannot be closed." in occupied.text
    doctor = sign_in(site, PHYSICIAN)  # physicians do not keep the beds
    assert "bed-actions" not in doctor.get("/wards").text
    assert _post(doctor, f"/wards/beds/{bed}/status", {"status": "C"}, page="/wards").status_code == 403


def test_moving_a_patient_to_another_bed(site):
    nurse = sign_in(site, NURSE, lang="en")
    page = f"/wards/stays/{LAN_STAY}"
    taken = _post(nurse, f"{page}/transfer", {"bed": f"{WARD}-201-1"}, page=page)
    assert taken.status_code == 409 and "Someone was admitted to this bed a moment ago." in taken.text
    r = _post(nurse, f"{page}/transfer", {"bed": f"{SURGERY_WARD}-301-2"}, page=page)
    assert r.status_code == 303 and r.headers["location"] == f"{page}?done=moved#move"
    stay = nurse.get(r.headers["location"]).text
    assert "The patient has moved to the new bed." in stay
    assert "Khoa Nội – Khu A · Phòng 201 · Giường 2" in stay and "Khoa Ngoại – Khu B · Phòng 301 · Giường 2" in stay
    assert stay.count('class="row-current"') == 1
    board = nurse.get("/wards").text
    assert f'<li class="bed bed-free" id="bed-{WARD}-201-2">' in board
    assert f'<li class="bed bed-occupied" id="bed-{SURGERY_WARD}-301-2">' in board


# -- the stay: notes and the medication record --------------------------------------------------------------------
def test_progress_notes(site):
    nurse = sign_in(site, NURSE, lang="en")
    page = f"/wards/stays/{HUNG_STAY}"
    empty = _post(nurse, f"{page}/notes", {"text": "   "}, page=page)
    assert empty.status_code == 400 and "Write the note first." in empty.text
    r = _post(nurse, f"{page}/notes", {"text": "Hết sốt.\nPhổi còn ran ẩm đáy phải."}, page=page)
    assert r.status_code == 303
    stay = nurse.get(r.headers["location"]).text
    assert "The progress note is saved." in stay and "Phổi còn ran ẩm đáy phải." in stay
    assert "ĐD. Vũ Thị Mai" in stay
    unlinked = sign_in(site, "hoa", lang="en")  # a nurse's account that names no Practitioner
    typed = _post(unlinked, f"{page}/notes", {"text": "Ổn định"}, page=page)
    assert typed.status_code == 403
    assert "Only an account linked to a practitioner can write and sign clinical documents." in typed.text
    assert ">Ổn định</textarea>" in typed.text


def test_the_medication_record_of_a_day(site):
    nurse = sign_in(site, NURSE, lang="en")
    yesterday = (datetime.now(VIETNAM) - timedelta(days=1)).date().isoformat()
    page = f"/wards/stays/{HUNG_STAY}?day={yesterday}"
    before = nurse.get(page).text
    assert "Ceftriaxon 1 g, bột pha tiêm" in before and "as needed" in before
    assert f'id="order-{STOPPED_ORDER}"' not in before  # stopped and never given: not on the record
    assert before.count('<span class="dose-time">08:00</span>') == 1
    assert before.count('<span class="dose-time">20:00</span>') == 1
    r = _post(nurse, f"/wards/stays/{HUNG_STAY}/mar", {"request": CEFTRIAXONE_ORDER, "day": yesterday,
                                                        "time": "08:10", "dose": "1", "status": "completed"},
              page=page)
    assert r.status_code == 303 and r.headers["location"] == f"/wards/stays/{HUNG_STAY}?done=dose&day={yesterday}#mar"
    after = nurse.get(r.headers["location"]).text
    assert "The dose is recorded." in after
    assert '<li class="dose dose-given">' in after and "08:10 · 1 lọ · ĐD. Vũ Thị Mai" in after
    not_given = _post(nurse, f"/wards/stays/{HUNG_STAY}/mar", {"request": CEFTRIAXONE_ORDER, "day": yesterday,
                                                                "time": "20:00", "dose": "1", "status": "not-done"},
                      page=page)
    assert not_given.status_code == 400 and "Say why the dose was not given." in not_given.text
    _post(nurse, f"/wards/stays/{HUNG_STAY}/mar", {"request": CEFTRIAXONE_ORDER, "day": yesterday, "time": "20:00",
                                                   "dose": "1", "status": "not-done", "note": "Người bệnh nôn"},
          page=page)
    assert "Not administered" in nurse.get(page).text and "Người bệnh nôn" in nurse.get(page).text
    prn = _post(nurse, f"/wards/stays/{HUNG_STAY}/mar", {"request": PRN_ORDER, "day": yesterday, "time": "02:00",
                                                          "dose": "1,0"}, page=page)
    assert prn.status_code == 303
    bad = _post(nurse, f"/wards/stays/{HUNG_STAY}/mar", {"request": CEFTRIAXONE_ORDER, "day": yesterday,
                                                          "time": "8h", "dose": "1"}, page=page)
    assert bad.status_code == 400 and "Type the time as hh:mm." in bad.text
    zero = _post(nurse, f"/wards/stays/{HUNG_STAY}/mar", {"request": CEFTRIAXONE_ORDER, "day": yesterday,
                                                           "time": "09:00", "dose": "0"}, page=page)
    assert zero.status_code == 400 and "Type the dose as a number greater than zero." in zero.text
    future = (datetime.now(VIETNAM) + timedelta(days=1)).date().isoformat()
    later = _post(nurse, f"/wards/stays/{HUNG_STAY}/mar", {"request": CEFTRIAXONE_ORDER, "day": future,
                                                            "time": "08:00", "dose": "1"}, page=page)
    assert later.status_code == 422 and "A dose cannot be recorded in the future." in later.text
    stopped = _post(nurse, f"/wards/stays/{HUNG_STAY}/mar", {"request": STOPPED_ORDER, "day": yesterday,
                                                              "time": "08:00", "dose": "1"}, page=page)
    assert stopped.status_code == 422
    assert "This order is no longer active (stopped, completed or on hold)" in stopped.text
    assert f'<li class="mar-order" id="order-{CEFTRIAXONE_ORDER}">' in stopped.text  # the record is shown again


# -- discharge ----------------------------------------------------------------------------------------------------
SUMMARY = {"reason": "Sốt cao, ho có đờm 3 ngày", "course": "Ceftriaxon 7 ngày, hết sốt từ ngày thứ 3.",
           "diagnoses": ["J18.9", "I10"], "procedures": "", "medications": "Amoxicilin 500 mg × 2 viên/ngày × 5 ngày",
           "follow_up": "Tái khám sau 1 tuần", "disposition": "home"}


def test_discharge_signs_the_summary_frees_the_bed_and_prints_it(site):
    nurse = sign_in(site, NURSE, lang="en")
    admitted = _post(nurse, "/wards/admit", {"patient": "cuc-nguyen", "bed": f"{SURGERY_WARD}-301-1",
                                             "reason": "I10"}, page="/wards/admit?patient=cuc-nguyen")
    stay_page = admitted.headers["location"].split("?")[0]
    assert "/discharge" not in nurse.get(stay_page).text.split("<main")[1]  # nurses do not discharge
    assert nurse.get(f"{stay_page}/discharge").status_code == 403
    refused = _post(nurse, f"{stay_page}/discharge", SUMMARY, page=stay_page)
    assert refused.status_code == 403

    doctor = sign_in(site, PHYSICIAN, lang="en")
    form = doctor.get(f"{stay_page}/discharge")
    assert form.status_code == 200 and "Nguyễn Thị Cúc" in form.text
    assert ">I10 – Tăng huyết áp vô căn (nguyên phát)</textarea>" in form.text  # the reason, prefilled
    assert 'name="diagnoses" value="I10"' in form.text
    missing = doctor.post(f"{stay_page}/discharge", data={**SUMMARY, "course": "", "csrf": csrf_of(form.text)})
    assert missing.status_code == 422 and "This section is required." in missing.text
    assert "Tái khám sau 1 tuần</textarea>" in missing.text and 'value="J18.9"' in missing.text  # kept as typed
    unlinked = sign_in(site, "lan", lang="en")  # a physician's account that names no Practitioner
    nobody = _post(unlinked, f"{stay_page}/discharge", SUMMARY, page=f"{stay_page}/discharge")
    assert "Only an account linked to a practitioner can write and sign clinical documents." in nobody.text
    site.state.security.users.add("bs.nokey", PASSWORD, "physician", fhir_user="Practitioner/dd-mai")
    no_key = _post(sign_in(site, "bs.nokey", lang="en"), f"{stay_page}/discharge", SUMMARY,
                   page=f"{stay_page}/discharge")  # a practitioner the hospital CA has issued no key to
    assert no_key.status_code == 404 and "Your signing certificate was not found" in no_key.text

    r = doctor.post(f"{stay_page}/discharge", data={**SUMMARY, "csrf": csrf_of(form.text)})
    assert r.status_code == 303 and r.headers["location"] == f"{stay_page}?done=discharged"
    stay = doctor.get(r.headers["location"]).text
    assert "The patient is discharged: the summary is signed and the bed is free." in stay
    assert "Discharged" in stay and "Home (discharged)" in stay and "Signed" in stay
    for text in ("Lý do vào viện", "Sốt cao, ho có đờm 3 ngày", "Chẩn đoán ra viện (ICD-10)", "J18.9"):
        assert text in stay, text
    assert f'href="{stay_page}/discharge-summary.pdf"' in stay
    assert 'action="' + stay_page + '/notes"' not in stay  # the stay is over
    assert f'<li class="bed bed-free" id="bed-{SURGERY_WARD}-301-1">' in nurse.get("/wards").text

    pdf = nurse.get(f"{stay_page}/discharge-summary.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"].startswith("inline;") and pdf.content.startswith(b"%PDF")
    pypdf = pytest.importorskip("pypdf")
    import io

    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf.content)).pages)
    assert "Nguyễn Thị Cúc" in text and "Đã ký số – chữ ký hợp lệ" in text
    again = doctor.post(f"{stay_page}/discharge", data={**SUMMARY, "csrf": csrf_of(form.text)})
    assert again.status_code == 422 and "This stay is over." in again.text
    assert nurse.get(f"/wards/stays/{HUNG_STAY}/discharge-summary.pdf").status_code == 404
