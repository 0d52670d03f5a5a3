"""The outpatient examination (sante.clinical.visit): from check-in to the signed visit record, the rules on who
may do what, and the printed prescription, on both backends."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest

from sante.anomaly import Anomaly, Category
from sante.auth import ca
from sante.clinical import queue as q
from sante.clinical import signing, visit
from sante.clinical.forms import InvalidInput
from sante.clinical.prescription_print import age_text, prescription_pdf
from sante.clinical.registration import RegistrationForm, register
from sante.clinical.service_support import VIETNAM
from tests.support.outpatient import CLINIC, HOSPITAL, NURSE, PHYSICIAN, build_hospital, desk

MORNING = datetime(2026, 11, 23, 7, 30, tzinfo=VIETNAM)
AMLODIPINE = "eml-amlodipine-5mg-tablet"
PARACETAMOL = "eml-paracetamol-500mg-tablet"


def at(minutes: int) -> datetime:
    return MORNING + timedelta(minutes=minutes)


@pytest.fixture(autouse=True)
def _no_passphrase(monkeypatch):
    monkeypatch.delenv(ca.PASSPHRASE_ENV, raising=False)


@pytest.fixture
def ca_dir(tmp_path):
    d = tmp_path / "data" / "ca"
    ca.init_ca(d, "Sante Hospital CA")
    ca.issue(d, f"Practitioner/{PHYSICIAN}", "BS. Trần Minh Đức")
    return d


@pytest.fixture
def hospital(repo):
    build_hospital(repo)
    return repo


@pytest.fixture
def arrived(hospital):
    """(desk, encounter id, patient id): Mr An registered and checked in at Nội 1."""
    d = desk(hospital)
    form = RegistrationForm(family_name="Nguyễn", given_names="Văn An", sex="male", birth_date="12/03/1958",
                            cccd="040058001234", bhyt="HT3404012345678", phone="0912345678",
                            address_line="Số 5, đường Lê Lợi", commune_code="16681")
    pid = register(d.receptionist, form).patient_id
    encounter = q.check_in(d.receptionist, pid, CLINIC, now=at(0), reason="Đau đầu, chóng mặt")
    return d, encounter["id"], pid


def _examine(d, eid: str) -> None:
    """The nurse takes the vital signs; the doctor calls the patient in, writes the note, diagnoses and orders."""
    with d.nurse.transaction() as g:
        observations = visit.record_vitals(g, eid, {"blood-pressure": (162, 98), "heart-rate": 84,
                                                   "body-temperature": 36.8, "body-weight": 64.5,
                                                   "body-height": 162}, when=at(10))
    assert len(observations) == 6  # BMI from weight and height
    assert q.call_next(d.physician, CLINIC, now=at(30)).encounter_id == eid
    with d.physician.transaction() as g:
        visit.record_soap_note(g, eid, subjective="Đau đầu vùng chẩm 1 tuần, chóng mặt khi đứng dậy.",
                               objective="Tỉnh, tiếp xúc tốt. Tim đều.", assessment="Tăng huyết áp độ 2.",
                               plan="Điều trị ngoại trú, hẹn tái khám sau 30 ngày.", when=at(35))
        visit.add_diagnosis(g, eid, "e119", when=at(36))  # a further diagnosis first ...
        visit.add_diagnosis(g, eid, "I10", primary=True, when=at(37))  # ... then the main one
        visit.order_lab(g, eid, "hba1c", when=at(38))
        visit.order_imaging(g, eid, "xray", "ngực thẳng", when=at(38))
        visit.prescribe(g, eid, AMLODIPINE, 1, "viên", "oral", 1, 30, 30, "uống buổi sáng", when=at(40))
        visit.prescribe(g, eid, PARACETAMOL, 1, "viên", "oral", 3, 5, 10, "khi đau đầu", as_needed=True,
                        when=at(40))


def test_a_whole_visit_from_check_in_to_the_signed_record(hospital, arrived, ca_dir):
    d, eid, _ = arrived
    _examine(d, eid)
    enc = hospital.read("Encounter", eid).resource
    assert [(x["rank"], x["condition"]["display"]) for x in enc["diagnosis"]] == [
        (1, "Tăng huyết áp vô căn (nguyên phát)"), (2, "Đái tháo đường typ 2 không có biến chứng")]

    signed = visit.sign_visit(d.physician, eid, ca_dir=ca_dir, now=at(45))
    record = signed.composition
    assert record["status"] == "final" and record["type"]["coding"][0]["code"] == "34108-1"
    assert record["meta"]["versionId"] == "2"  # the doctor's draft, then the final record: one document
    assert record["author"][0]["reference"] == f"Practitioner/{PHYSICIAN}"
    assert record["attester"][0]["mode"] == "legal" and record["custodian"]["reference"] == f"Organization/{HOSPITAL}"
    sections = {s["code"]["coding"][0]["code"]: s for s in record["section"]}
    assert list(sections) == ["61150-9", "61149-1", "51848-0", "18776-5", "10160-0"]
    assert "Đau đầu vùng chẩm" in sections["61150-9"]["text"]["div"]
    assert len(sections["61149-1"]["entry"]) == 6 and "162/98" in sections["61149-1"]["text"]["div"]
    assert "Bệnh chính: I10" in sections["51848-0"]["text"]["div"]
    assert len(sections["18776-5"]["entry"]) == 2 and "Chụp X-quang ngực thẳng" in sections["18776-5"]["text"]["div"]
    assert len(sections["10160-0"]["entry"]) == 2 and "Amlodipin 5 mg" in sections["10160-0"]["text"]["div"]

    report = signing.verify(hospital, signed.provenance["id"], ca_dir=ca_dir)
    assert report.ok, report.problems
    assert report.target == f"Composition/{record['id']}/_history/2" and report.signer == f"Practitioner/{PHYSICIAN}"

    done = hospital.read("Encounter", eid).resource
    assert done["status"] == "finished" and done["period"]["end"] == "2026-11-23T08:15:00+07:00"
    assert [h["status"] for h in done["statusHistory"]] == ["arrived", "triaged", "in-progress"]
    assert done["participant"][0]["individual"]["reference"] == f"Practitioner/{PHYSICIAN}"
    with pytest.raises(Anomaly) as e:  # a closed visit takes no more
        visit.sign_visit(d.physician, eid, ca_dir=ca_dir)
    assert e.value.category is Category.CONFLICT


def test_orders_and_prescriptions(hospital, arrived):
    d, eid, _ = arrived
    _examine(d, eid)
    with d.physician.reader() as g:
        lab, imaging = sorted((r for r in (m.resource for m in g.search("ServiceRequest", {"encounter": eid}).matches)),
                              key=lambda r: r["category"][0]["coding"][0]["code"])
        drugs = [m.resource for m in g.search("MedicationRequest", {"encounter": eid}).matches]
    assert lab["code"]["coding"][0] == {"system": "http://loinc.org", "code": "4548-4",
                                        "display": "Hemoglobin A1c/Hemoglobin.total in Blood"}
    assert lab["category"][0]["coding"][0]["code"] == "108252007" and lab["priority"] == "routine"
    assert imaging["code"]["coding"][0]["code"] == "DX" and imaging["bodySite"] == [{"text": "ngực thẳng"}]
    main = hospital.read("Encounter", eid).resource["diagnosis"][0]["condition"]["reference"]
    assert lab["reasonReference"] == [{"reference": main}]
    rx = next(r for r in drugs if r["medicationReference"]["reference"] == f"Medication/{AMLODIPINE}")
    dosage = rx["dosageInstruction"][0]
    assert dosage["text"] == "Uống 1 viên/lần, 1 lần/ngày, uống buổi sáng; trong 30 ngày"
    assert dosage["timing"]["repeat"] == {"boundsDuration": {"value": 30, "unit": "ngày", "system":
                                                             "http://unitsofmeasure.org", "code": "d"},
                                          "frequency": 1, "period": 1, "periodUnit": "d"}
    assert dosage["route"]["coding"][0] == {"system": "http://snomed.info/sct", "code": "26643006",
                                            "display": "Oral route"}
    assert dosage["doseAndRate"] == [{"doseQuantity": {"value": 1, "unit": "viên"}}]
    assert rx["dispenseRequest"]["quantity"] == {"value": 30, "unit": "viên"}
    assert rx["dispenseRequest"]["validityPeriod"] == {"start": "2026-11-23", "end": "2026-11-28"}
    assert rx["courseOfTherapyType"]["coding"][0]["code"] == "continuous"
    assert rx["requester"]["reference"] == f"Practitioner/{PHYSICIAN}" and rx["reasonReference"] == [{"reference":
                                                                                                     main}]
    prn = next(r for r in drugs if r is not rx)
    assert prn["dosageInstruction"][0]["asNeededBoolean"] is True
    assert "tối đa 3 lần/ngày" in prn["dosageInstruction"][0]["text"]
    assert visit.route_of_administration("inhalation")["coding"][0]["code"] == "447694001"


def test_a_visit_without_a_main_diagnosis_is_not_signed(hospital, arrived, ca_dir):
    d, eid, _ = arrived
    with d.physician.transaction() as g:
        visit.record_soap_note(g, eid, subjective="Ho 3 ngày", when=at(20))
        visit.add_diagnosis(g, eid, "J06.9", when=at(21))  # not the main one
    with pytest.raises(InvalidInput) as e:
        visit.sign_visit(d.physician, eid, ca_dir=ca_dir, now=at(25))
    assert e.value.category is Category.UNPROCESSABLE and e.value.location == "diagnosis"
    assert e.value.field_problems[0].key == "diagnosis.primary.required"
    enc = hospital.read("Encounter", eid).resource
    assert enc["status"] == "arrived"
    with d.physician.reader() as g:
        [note] = [m.resource for m in g.search("Composition", {"encounter": eid}).matches]
    assert note["status"] == "preliminary" and note["meta"]["versionId"] == "1"  # nothing half-done
    with pytest.raises(Anomaly) as e:
        visit.sign_visit(d.nurse, eid, ca_dir=ca_dir, practitioner=f"Practitioner/{PHYSICIAN}")
    assert e.value.category is Category.FORBIDDEN


def test_who_may_prescribe(hospital, arrived):
    d, eid, _ = arrived
    with d.physician.transaction() as g:
        rx = visit.prescribe(g, eid, AMLODIPINE, 1, "viên", "oral", 1, 30, 30)
    assert rx["resourceType"] == "MedicationRequest" and rx["status"] == "active"
    for other in (d.receptionist, d.nurse):
        with pytest.raises(Anomaly) as e, other.transaction() as g:
            visit.prescribe(g, eid, AMLODIPINE, 1, "viên", "oral", 1, 30, 30)
        assert e.value.category is Category.FORBIDDEN
    with pytest.raises(Anomaly) as e, d.nurse.transaction() as g:
        visit.add_diagnosis(g, eid, "I10", primary=True)
    assert e.value.category is Category.FORBIDDEN
    with pytest.raises(InvalidInput) as e, d.physician.transaction() as g:
        visit.prescribe(g, eid, AMLODIPINE, 0, "", "by mouth", 0, 365, -1)
    assert [p.field for p in e.value.field_problems] == ["dose", "unit", "route", "frequency_per_day",
                                                         "duration_days", "quantity"]
    with pytest.raises(Anomaly) as e, d.physician.transaction() as g:
        visit.prescribe(g, eid, "eml-no-such-drug", 1, "viên", "oral", 1, 3, 3)
    assert e.value.category is Category.NOT_FOUND and e.value.location == "medication"


def test_vital_signs_are_checked(hospital, arrived):
    d, eid, _ = arrived
    with pytest.raises(InvalidInput) as e, d.nurse.transaction() as g:
        visit.record_vitals(g, eid, {"body-temperature": 375, "blood-pressure": (80, 120), "mood": 3})
    assert [(p.key, p.field) for p in e.value.field_problems] == [
        ("vitals.implausible", "body-temperature"), ("vitals.blood-pressure.order", "blood-pressure"),
        ("vitals.unknown", "mood")]
    assert hospital.read("Encounter", eid).resource["status"] == "arrived"
    with d.nurse.transaction() as g:
        [bp] = visit.record_vitals(g, eid, {"85354-9": {"systolic": 120, "diastolic": 80}})
    assert [c["valueQuantity"]["value"] for c in bp["component"]] == [120, 80]
    assert bp["encounter"] == {"reference": f"Encounter/{eid}"}
    assert hospital.read("Encounter", eid).resource["status"] == "triaged"
    with pytest.raises(Anomaly) as e, d.receptionist.transaction() as g:
        visit.record_vitals(g, eid, {"heart-rate": 80})
    assert e.value.category is Category.FORBIDDEN


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def test_the_printed_prescription(hospital, arrived):
    d, eid, _ = arrived
    _examine(d, eid)
    with d.physician.reader() as g:
        data = prescription_pdf(g, eid)
    assert data.startswith(b"%PDF-")
    text = _pdf_text(data)
    for expected in ("ĐƠN THUỐC", "BỆNH VIỆN ĐA KHOA SANTE", "NGUYỄN VĂN AN", "Tuổi: 68", "Giới tính: Nam",
                     "HT3404012345678", "I10 – Tăng huyết áp", "1. Amlodipin 5 mg, viên nén", "SL: 30 viên",
                     "Uống 1 viên/lần, 1 lần/ngày, uống buổi sáng; trong 30 ngày", "2. Paracetamol 500 mg, viên nén",
                     "Ngày 23 tháng 11 năm 2026", "BS. Trần Minh Đức", "Phường Thành Vinh"):
        assert expected in text, expected
    with d.physician.reader() as g:
        one = [m.id for m in g.search("MedicationRequest", {"encounter": eid, "medication": f"Medication/{AMLODIPINE}"}
                                      ).matches]
        text = _pdf_text(prescription_pdf(g, medication_request_ids=one))
    assert "Amlodipin" in text and "Paracetamol" not in text
    with pytest.raises(Anomaly) as e, d.receptionist.reader() as g:
        prescription_pdf(g, eid)
    assert e.value.category is Category.FORBIDDEN


def test_children_s_ages_are_in_months():
    today = MORNING.date()
    assert age_text("2025-01-20", today) == "22 tháng tuổi"
    assert age_text("2020-11-24", today) == "71 tháng tuổi"
    assert age_text("2020-11-23", today) == "6 tuổi"
    assert age_text("1958", today) == "68 tuổi"


def test_the_main_diagnosis_can_be_chosen_later_and_only_a_doctor_signs(hospital, arrived, ca_dir):
    d, eid, _ = arrived
    with d.physician.transaction() as g:
        cough = visit.add_diagnosis(g, eid, "J06.9", when=at(21))
        fever = visit.add_diagnosis(g, eid, "R50.9", when=at(22))
    assert visit.primary_diagnosis(hospital.read("Encounter", eid).resource) is None
    with d.physician.transaction() as g:
        visit.set_main_diagnosis(g, eid, fever["id"])
    with d.physician.transaction() as g:
        encounter = visit.set_main_diagnosis(g, eid, f"Condition/{cough['id']}")
    assert [(x["condition"]["reference"], x["rank"]) for x in encounter["diagnosis"]] == [
        (f"Condition/{cough['id']}", 1), (f"Condition/{fever['id']}", 2)]
    with pytest.raises(Anomaly) as e, d.physician.transaction() as g:
        visit.set_main_diagnosis(g, eid, "no-such-condition")
    assert e.value.category is Category.NOT_FOUND and e.value.location == "diagnosis"
    with pytest.raises(Anomaly) as e, d.nurse.transaction() as g:
        visit.set_main_diagnosis(g, eid, fever["id"])
    assert e.value.category is Category.FORBIDDEN
    # A nurse who is a practitioner with a signing key still does not sign the visit record: she does not diagnose.
    ca.issue(ca_dir, f"Practitioner/{NURSE}", "ĐD. Lê Thị Hoa")
    with pytest.raises(Anomaly) as e:
        visit.sign_visit(d.nurse, eid, ca_dir=ca_dir)
    assert e.value.category is Category.FORBIDDEN
    assert hospital.read("Encounter", eid).resource["status"] == "arrived"


def test_the_visit_note_as_written(hospital, arrived):
    d, eid, _ = arrived
    with d.physician.reader() as g:
        assert visit.visit_note(g, eid) is None and visit.note_texts(None)["plan"] == ""
    with d.physician.transaction() as g:
        visit.record_soap_note(g, eid, subjective="Ho 3 ngày,\nsốt nhẹ", plan="Tái khám <1 tuần>", when=at(20))
    with d.physician.reader() as g:
        note = visit.visit_note(g, eid)
    assert note["status"] == "preliminary"
    assert visit.note_texts(note) == {"subjective": "Ho 3 ngày,\nsốt nhẹ", "objective": "", "assessment": "",
                                      "plan": "Tái khám <1 tuần>"}
