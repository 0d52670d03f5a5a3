"""Inpatient care (sante.clinical.inpatient) on both backends: the bed board through admission, transfer and
discharge; one bed for one patient even when nurses admit at once; the medication administration record; the
signed discharge summary and its PDF; the census."""

from __future__ import annotations

import io
import threading
from datetime import date, datetime, timedelta

import pytest

from sante.anomaly import Anomaly, Category
from sante.auth import ca
from sante.auth.guarded import GuardedRepository
from sante.auth.principal import Principal
from sante.auth.scopes import Scopes
from sante.clinical import inpatient, signing
from sante.clinical.service_support import VIETNAM

PHYSICAL = "http://terminology.hl7.org/CodeSystem/location-physical-type"
BED_STATUS = "http://terminology.hl7.org/CodeSystem/v2-0116"
T0 = datetime(2026, 3, 10, 9, 0, tzinfo=VIETNAM)


def _loc(lid: str, name: str, kind: str, part_of: str | None, **more) -> dict:
    loc = {"resourceType": "Location", "id": lid, "status": "active", "name": name, "mode": "instance",
           "physicalType": {"coding": [{"system": PHYSICAL, "code": kind}]},
           "managingOrganization": {"reference": "Organization/bv-noi"}, **more}
    if part_of:
        loc["partOf"] = {"reference": f"Location/{part_of}"}
    return loc


def _bed(lid: str, name: str, room: str, status: str = "U") -> dict:
    return _loc(lid, name, "bd", room, operationalStatus={"system": BED_STATUS, "code": status})


def facility(rooms: int = 2, beds_per_room: int = 2) -> list[dict]:
    """The demo's shape: site → department (wi) → ward (wa) → rooms (ro) → beds (bd); bed 202-2 closed."""
    out = [
        {"resourceType": "Organization", "id": "bv", "name": "Bệnh viện Đa khoa Sante"},
        {"resourceType": "Organization", "id": "bv-noi", "name": "Khoa Nội", "partOf": {"reference": "Organization/bv"}},
        _loc("bv", "Bệnh viện Đa khoa Sante", "si", None),
        _loc("bv-noi", "Khoa Nội", "wi", "bv"),
        _loc("bv-noi-a", "Khoa Nội – Khu A", "wa", "bv-noi"),
        _loc("bv-kham", "Phòng khám Nội 1", "ro", "bv-noi"),
    ]
    for r in range(201, 201 + rooms):
        out.append(_loc(f"bv-noi-a-{r}", f"Phòng {r}", "ro", "bv-noi-a"))
        for b in range(1, beds_per_room + 1):
            out.append(_bed(f"bv-noi-a-{r}-{b}", f"Giường {r}-{b}", f"bv-noi-a-{r}",
                            "C" if (r, b) == (202, 2) else "U"))
    for pid, family, given in (("p1", "Nguyễn", ["Văn", "An"]), ("p2", "Trần", ["Thị", "Bình"]),
                               ("p3", "Lê", ["Văn", "Cường"]), ("p4", "Phạm", ["Thị", "Dung"])):
        out.append({"resourceType": "Patient", "id": pid, "gender": "male", "birthDate": "1960-05-04",
                    "name": [{"text": f"{family} {' '.join(given)}", "family": family, "given": given}],
                    "identifier": [{"type": {"text": "Mã người bệnh"}, "value": f"MRN-{pid}"}],
                    "managingOrganization": {"reference": "Organization/bv"}})
    for prid, family, given, prefix in (("bs1", "Hoàng", "Minh", "BS."), ("dd1", "Vũ", "Lan", "ĐD."),
                                        ("ds1", "Đỗ", "Hà", "DS.")):
        out.append({"resourceType": "Practitioner", "id": prid,
                    "name": [{"family": family, "given": [given], "prefix": [prefix]}]})
    return out


@pytest.fixture
def hospital(repo):
    with repo.transaction() as tx:
        for r in facility():
            tx.update(r, r["id"])
    return repo


def staff(role: str, practitioner: str | None = None) -> Principal:
    return Principal(subject=f"{role}-user", role=role, scopes=Scopes.parse("user/*.cruds"),
                     fhir_user=f"Practitioner/{practitioner}" if practitioner else None)


def nurse(repo) -> GuardedRepository:
    return GuardedRepository(repo, staff("nurse", "dd1"))


def doctor(repo) -> GuardedRepository:
    return GuardedRepository(repo, staff("physician", "bs1"))


def refusal(call) -> Anomaly:
    with pytest.raises(Anomaly) as e:
        call()
    return e.value


def beds(board: list[inpatient.WardBoard]) -> dict[str, inpatient.BedState]:
    return {b.id: b for w in board for b in w.beds}


# -- the bed board ------------------------------------------------------------------------------------------------
def test_the_board_follows_admission_transfer_and_discharge(hospital, tmp_path):
    g = nurse(hospital)
    board = inpatient.bed_board(g)
    assert [w.id for w in board] == ["bv-noi-a"]
    ward = board[0]
    assert (ward.name, ward.department_name, ward.organization) == ("Khoa Nội – Khu A", "Khoa Nội",
                                                                      "Organization/bv-noi")
    assert [r.name for r in ward.rooms] == ["Phòng 201", "Phòng 202"]
    assert (ward.total, ward.free, ward.occupied, ward.closed, ward.occupancy_rate) == (4, 3, 0, 1, 0.0)

    enc = inpatient.admit(g, "p1", "bv-noi-a-201-1", reason_icd10="J18.9", now=T0)
    assert enc["class"]["code"] == "IMP" and enc["status"] == "in-progress"
    assert enc["serviceProvider"] == {"reference": "Organization/bv-noi"}
    assert [(e["location"]["reference"], e["status"], e["physicalType"]["coding"][0]["code"])
            for e in enc["location"]] == [("Location/bv-noi-a", "active", "wa"),
                                          ("Location/bv-noi-a-201", "active", "ro"),
                                          ("Location/bv-noi-a-201-1", "active", "bd")]
    assert enc["reasonCode"][0]["coding"][0]["code"] == "J18.9"
    assert enc["hospitalization"]["admitSource"]["coding"][0]["code"] == "other"
    assert enc["participant"][0]["individual"] == {"reference": "Practitioner/dd1"}
    state = beds(inpatient.bed_board(g))["bv-noi-a-201-1"]
    assert state.status == "occupied" and state.occupant is not None
    assert (state.occupant.patient_id, state.occupant.patient_name, state.occupant.encounter_id,
            state.occupant.since) == ("p1", "Nguyễn Văn An", enc["id"], "2026-03-10T09:00:00+07:00")
    assert (state.occupant.birth_date, state.occupant.admitted) == ("1960-05-04", "2026-03-10T09:00:00+07:00")
    ward = inpatient.bed_board(g, "bv-noi-a")[0]
    assert (ward.occupied, ward.free, ward.occupancy_rate) == (1, 2, pytest.approx(1 / 3))

    moved = inpatient.transfer(g, enc["id"], "bv-noi-a-202-1", now=T0 + timedelta(hours=6))
    entries = [(e["location"]["reference"].split("/")[1], e["status"], e["period"].get("end"))
               for e in moved["location"]]
    assert entries == [("bv-noi-a", "active", None),  # the same ward: still there
                       ("bv-noi-a-201", "completed", "2026-03-10T15:00:00+07:00"),
                       ("bv-noi-a-201-1", "completed", "2026-03-10T15:00:00+07:00"),
                       ("bv-noi-a-202", "active", None), ("bv-noi-a-202-1", "active", None)]
    now = beds(inpatient.bed_board(g, "bv-noi"))
    assert now["bv-noi-a-201-1"].status == "free" and now["bv-noi-a-202-1"].occupant.patient_id == "p1"

    ca_dir = tmp_path / "ca"
    ca.init_ca(ca_dir, "Sante CA")
    ca.issue(ca_dir, "Practitioner/bs1", "BS. Hoàng Minh")
    inpatient.discharge(doctor(hospital), enc["id"], disposition="home", ca_dir=ca_dir,
                        summary_sections={"reason": "Sốt, ho", "course": "Ổn định", "diagnoses": ["J18.9"]},
                        now=T0 + timedelta(days=2))
    after = inpatient.bed_board(g)[0]
    assert (after.occupied, after.free, after.closed) == (0, 3, 1)


def test_the_board_takes_a_few_queries_for_a_whole_hospital(repo, monkeypatch):
    with repo.transaction() as tx:
        for r in facility(rooms=30, beds_per_room=6):
            tx.update(r, r["id"])
    g = nurse(repo)
    for n, pid in enumerate(("p1", "p2", "p3", "p4")):
        inpatient.admit(g, pid, f"bv-noi-a-2{10 + n}-3", now=T0)
    from sante.auth import guarded
    from sante.store import search

    calls = []
    original = search.run_search

    def counting(tx, req):
        calls.append(req.rtype)
        return original(tx, req)

    monkeypatch.setattr(guarded, "run_search", counting)
    monkeypatch.setattr(inpatient, "run_search", counting)
    board = inpatient.bed_board(g)
    assert sum(w.total for w in board) == 180 and sum(w.occupied for w in board) == 4
    assert len(calls) <= 4, calls  # the Locations, the stays in them, who the patients are


def test_what_the_board_shows_of_a_patient_outside_ones_view(hospital):
    inpatient.admit(nurse(hospital), "p1", "bv-noi-a-201-1", now=T0)
    manager = GuardedRepository(hospital, staff("manager"))  # reference data only: no patient data
    state = beds(inpatient.bed_board(manager))["bv-noi-a-201-1"]
    assert state.status == "occupied" and state.occupant.patient_id is None and state.occupant.patient_name is None


# -- admission ----------------------------------------------------------------------------------------------------
def test_admission_refusals(hospital):
    g = nurse(hospital)
    enc = inpatient.admit(g, "p1", "bv-noi-a-201-1", now=T0)
    taken = refusal(lambda: inpatient.admit(g, "p2", "bv-noi-a-201-1", now=T0))
    assert (taken.category, taken.location) == (Category.CONFLICT, "bed")
    closed = refusal(lambda: inpatient.admit(g, "p2", "bv-noi-a-202-2", now=T0))
    assert (closed.category, closed.location) == (Category.CONFLICT, "bed") and "closed" in closed.message
    again = refusal(lambda: inpatient.admit(g, "p1", "bv-noi-a-201-2", now=T0))
    assert (again.category, again.location) == (Category.CONFLICT, "patient") and enc["id"] in again.message
    room = refusal(lambda: inpatient.admit(g, "p2", "bv-noi-a-201", now=T0))
    assert (room.category, room.location) == (Category.UNPROCESSABLE, "bed")
    unknown = refusal(lambda: inpatient.admit(g, "p2", "nowhere", now=T0))
    assert (unknown.category, unknown.location) == (Category.NOT_FOUND, "bed")
    code = refusal(lambda: inpatient.admit(g, "p2", "bv-noi-a-201-2", reason_icd10="pneumonia"))
    assert (code.category, code.location) == (Category.INCORRECT, "reason_icd10")
    busy = refusal(lambda: inpatient.transfer(g, enc["id"], "bv-noi-a-201-1", now=T0))
    assert busy.location == "bed"
    assert inpatient.current_stay(g, "p1")["id"] == enc["id"] and inpatient.current_stay(g, "p2") is None

    bed = hospital.read("Location", "bv-noi-a-201-2").resource
    bed["operationalStatus"] = {"system": BED_STATUS, "code": "H"}
    hospital.update(bed, bed["id"])
    cleaning = refusal(lambda: inpatient.admit(g, "p2", "bv-noi-a-201-2", now=T0))
    assert (cleaning.category, cleaning.location) == (Category.CONFLICT, "bed") and "cleaned" in cleaning.message
    assert beds(inpatient.bed_board(g))["bv-noi-a-201-2"].status == "cleaning"
    pharmacist = GuardedRepository(hospital, staff("pharmacist"))  # beds are the ward's, not the pharmacy's
    assert refusal(lambda: inpatient.set_bed_status(pharmacist, "bv-noi-a-201-2", "U")).category == Category.FORBIDDEN
    inpatient.set_bed_status(g, "bv-noi-a-201-2", "U")  # a nurse marks the bed cleaned
    assert refusal(lambda: inpatient.set_bed_status(g, "bv-noi-a-201-1", "C")).location == "bed"
    inpatient.admit(g, "p2", "bv-noi-a-201-2", now=T0)


def test_admission_from_a_visit(hospital):
    visit = hospital.create({"resourceType": "Encounter", "status": "finished",
                             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                             "subject": {"reference": "Patient/p1"}})
    g = nurse(hospital)
    other = refusal(lambda: inpatient.admit(g, "p2", "bv-noi-a-201-1", from_encounter=visit.id))
    assert other.location == "from_encounter"
    enc = inpatient.admit(g, "p1", "bv-noi-a-201-1", from_encounter=visit.id)
    assert enc["partOf"] == {"reference": f"Encounter/{visit.id}"}
    assert enc["hospitalization"]["admitSource"]["coding"][0]["code"] == "outp"


def test_two_nurses_admitting_into_one_bed_at_once(hospital):
    barrier = threading.Barrier(4)
    outcomes: dict[str, object] = {}

    def admit(pid: str) -> None:
        barrier.wait()
        try:
            outcomes[pid] = inpatient.admit(nurse(hospital), pid, "bv-noi-a-201-1", now=T0)["id"]
        except Anomaly as e:
            outcomes[pid] = e

    threads = [threading.Thread(target=admit, args=(pid,)) for pid in ("p1", "p2", "p3", "p4")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    admitted = [pid for pid, o in outcomes.items() if isinstance(o, str)]
    refused = [o for o in outcomes.values() if isinstance(o, Anomaly)]
    assert len(admitted) == 1 and len(refused) == 3
    assert all((e.category, e.location) == (Category.CONFLICT, "bed") for e in refused)
    occupant = beds(inpatient.bed_board(nurse(hospital)))["bv-noi-a-201-1"].occupant
    assert occupant.patient_id == admitted[0]


# -- the medication administration record ------------------------------------------------------------------------
def _order(repo, encounter_id: str, *, status: str = "active", category: str = "inpatient", timing: dict | None = None,
           as_needed: bool = False, text: str = "Tiêm tĩnh mạch chậm 1 lọ/lần, 2 lần/ngày") -> str:
    dosage = {"text": text, "timing": timing or {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d",
                                                           "boundsDuration": {"value": 7, "code": "d",
                                                                              "system": "http://unitsofmeasure.org"}}},
              "route": {"text": "Tiêm tĩnh mạch"}, "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "lọ"}}]}
    if as_needed:
        dosage["asNeededBoolean"] = True
    return repo.create({
        "resourceType": "MedicationRequest", "status": status, "intent": "order",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                                  "code": category}]}],
        "medicationCodeableConcept": {"text": "Ceftriaxon 1 g"}, "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": f"Encounter/{encounter_id}"}, "authoredOn": "2026-03-10T09:30:00+07:00",
        "requester": {"reference": "Practitioner/bs1"}, "dosageInstruction": [dosage],
    }).id


def test_the_mar_lists_scheduled_and_given_doses(hospital):
    g = nurse(hospital)
    enc = inpatient.admit(g, "p1", "bv-noi-a-201-1", now=T0)
    twice = _order(hospital, enc["id"])
    tid = _order(hospital, enc["id"], timing={"repeat": {"timeOfDay": ["07:00:00", "13:00:00", "19:00:00"]}},
                 text="Uống 1 viên lúc 7 giờ, 13 giờ, 19 giờ")
    prn = _order(hospital, enc["id"], as_needed=True, text="Uống 1 viên khi sốt")
    _order(hospital, enc["id"], category="discharge")  # to take home: not on the ward's record
    _order(hospital, enc["id"], status="stopped")  # stopped and never given
    given = inpatient.administer(g, twice, dose=1, when=datetime(2026, 3, 11, 8, 10, tzinfo=VIETNAM),
                                 note="Không phản ứng")
    assert given["status"] == "completed" and given["performer"] == [{"actor": {"reference": "Practitioner/dd1"}}]
    assert given["context"] == {"reference": f"Encounter/{enc['id']}"}
    assert given["request"] == {"reference": f"MedicationRequest/{twice}"}
    assert given["dosage"]["dose"] == {"value": 1, "unit": "lọ"} and given["note"] == [{"text": "Không phản ứng"}]
    inpatient.administer(g, prn, dose=1, when=datetime(2026, 3, 11, 2, 0, tzinfo=VIETNAM))
    refused_dose = inpatient.administer(g, tid, dose=1, when=datetime(2026, 3, 11, 13, 5, tzinfo=VIETNAM),
                                        status="not-done", note="Người bệnh nôn")
    assert refused_dose["statusReason"] == [{"text": "Người bệnh nôn"}]

    rows = {r.request_id: r for r in inpatient.mar(g, enc["id"], date(2026, 3, 11))}
    assert set(rows) == {twice, tid, prn}
    row = rows[twice]
    assert [d.time.strftime("%H:%M") for d in row.scheduled] == ["08:00", "20:00"]
    assert row.scheduled[0].administration.id == given["id"] and row.scheduled[1].administration is None
    assert (row.medication, row.dose, row.route) == ("Ceftriaxon 1 g", "1 lọ", "Tiêm tĩnh mạch")
    assert [(d.time.strftime("%H:%M"), d.administration.status if d.administration else None)
            for d in rows[tid].scheduled] == [("07:00", None), ("13:00", "not-done"), ("19:00", None)]
    assert rows[tid].scheduled[1].administration.note == "Người bệnh nôn"  # why it was not given
    assert rows[prn].as_needed and rows[prn].scheduled == [] and len(rows[prn].administrations) == 1
    # the first day: only the doses after the order was written (09:30)
    first = {r.request_id: r for r in inpatient.mar(g, enc["id"], "2026-03-10")}
    assert [d.time.strftime("%H:%M") for d in first[twice].scheduled] == ["20:00"]
    # after the 7 days the order was written for: nothing scheduled
    later = {r.request_id: r for r in inpatient.mar(g, enc["id"], date(2026, 3, 18))}
    assert later[twice].scheduled == [] and len(later[tid].scheduled) == 3  # the other has no end


def test_administering_against_an_order_that_is_not_active_is_refused(hospital):
    g = nurse(hospital)
    enc = inpatient.admit(g, "p1", "bv-noi-a-201-1", now=T0)
    for status in ("stopped", "completed", "on-hold"):
        rid = _order(hospital, enc["id"], status=status)
        e = refusal(lambda rid=rid: inpatient.administer(g, rid, dose=1, when=T0 + timedelta(hours=1)))
        assert (e.category, e.location) == (Category.UNPROCESSABLE, "medication_request"), status
    rid = _order(hospital, enc["id"])
    future = refusal(lambda: inpatient.administer(g, rid, dose=1, when=datetime.now(VIETNAM) + timedelta(hours=1)))
    assert (future.category, future.location) == (Category.UNPROCESSABLE, "when")
    assert refusal(lambda: inpatient.administer(g, rid, dose=0, when=T0)).location == "dose"
    assert refusal(lambda: inpatient.administer(g, rid, dose=1, when=T0, status="not-done")).location == "note"
    pharmacist = GuardedRepository(hospital, staff("pharmacist", "ds1"))
    assert refusal(lambda: inpatient.administer(pharmacist, rid, dose=1, when=T0)).category == Category.FORBIDDEN


# -- notes and discharge ------------------------------------------------------------------------------------------
@pytest.fixture
def ca_dir(tmp_path, monkeypatch):
    monkeypatch.delenv(ca.PASSPHRASE_ENV, raising=False)
    d = tmp_path / "ca"
    ca.init_ca(d, "Bệnh viện Đa khoa Sante CA")
    ca.issue(d, "Practitioner/bs1", "BS. Hoàng Minh")
    return d


SECTIONS = {
    "reason": "Sốt cao, ho có đờm, khó thở 3 ngày",
    "course": "Điều trị kháng sinh Ceftriaxon 7 ngày, hết sốt từ ngày thứ 3.",
    "diagnoses": ["J18.9", "I10"],
    "procedures": "Không",
    "medications": ["Amoxicilin 500 mg × 2 viên/ngày × 5 ngày", "Amlodipin 5 mg × 1 viên/ngày"],
    "follow_up": "Tái khám sau 1 tuần tại Phòng khám Hô hấp",
}


def test_a_progress_note(hospital):
    enc = inpatient.admit(nurse(hospital), "p1", "bv-noi-a-201-1", now=T0)
    note = inpatient.progress_note(doctor(hospital), enc["id"], "Hết sốt.\nPhổi còn ran ẩm đáy phải.",
                                   now=T0 + timedelta(days=1))
    assert note["type"]["coding"][0]["code"] == "11506-3" and note["encounter"]["reference"] == f"Encounter/{enc['id']}"
    assert note["author"] == [{"reference": "Practitioner/bs1", "display": "BS. Hoàng Minh"}]
    assert note["title"] == "Diễn biến bệnh ngày 11/03/2026" and "ran ẩm" in note["section"][0]["text"]["div"]
    assert refusal(lambda: inpatient.progress_note(doctor(hospital), enc["id"], "  ")).location == "text"
    other = refusal(lambda: inpatient.progress_note(doctor(hospital), enc["id"], "x", "Practitioner/dd1"))
    assert (other.category, other.location) == (Category.FORBIDDEN, "author")
    nursing = inpatient.progress_note(nurse(hospital), enc["id"], "Ngủ được, ăn uống khá.")  # nurses write notes too
    assert nursing["encounter"]["reference"] == f"Encounter/{enc['id']}"
    pharmacist = GuardedRepository(hospital, staff("pharmacist"))
    assert refusal(lambda: inpatient.progress_note(pharmacist, enc["id"], "x")).category == Category.FORBIDDEN


def test_discharge_signs_the_summary_frees_the_bed_and_prints(hospital, ca_dir):
    pypdf = pytest.importorskip("pypdf")
    enc = inpatient.admit(nurse(hospital), "p1", "bv-noi-a-201-1", now=T0)
    ward_order = _order(hospital, enc["id"])
    as_nurse = refusal(lambda: inpatient.discharge(nurse(hospital), enc["id"], disposition="home",
                                                   summary_sections=SECTIONS, ca_dir=ca_dir))
    assert as_nurse.category == Category.FORBIDDEN
    missing = refusal(lambda: inpatient.discharge(doctor(hospital), enc["id"], disposition="home", ca_dir=ca_dir,
                                                  summary_sections={"reason": "x", "course": "y"}))
    assert (missing.category, missing.location) == (Category.UNPROCESSABLE, "summary_sections.diagnoses")
    assert refusal(lambda: inpatient.discharge(doctor(hospital), enc["id"], disposition="gone", ca_dir=ca_dir,
                                               summary_sections=SECTIONS)).location == "disposition"
    assert refusal(lambda: inpatient.discharge(doctor(hospital), enc["id"], disposition="home", ca_dir=ca_dir,
                                               summary_sections={**SECTIONS, "diagnoses": "pneumonia"})
                   ).location == "summary_sections.diagnoses"

    out = inpatient.discharge(doctor(hospital), enc["id"], disposition="home", summary_sections=SECTIONS,
                              ca_dir=ca_dir, now=T0 + timedelta(days=7, hours=1))
    summary = out.composition
    assert summary["type"]["coding"][0]["code"] == "18842-5" and summary["status"] == "final"
    assert [s["code"]["coding"][0]["code"] for s in summary["section"]] == [
        "29299-5", "8648-8", "11535-2", "47519-4", "10183-2", "18776-5"]
    assert [c["code"]["coding"][0]["code"] for c in out.conditions] == ["J18.9", "I10"]
    assert summary["section"][2]["entry"] == [{"reference": f"Condition/{c['id']}"} for c in out.conditions]
    report = signing.verify(hospital, out.provenance["id"], ca_dir=ca_dir)
    assert report.ok and report.signer == "Practitioner/bs1"
    assert report.target == f"Composition/{summary['id']}/_history/1"

    stay = hospital.read("Encounter", enc["id"]).resource
    assert stay["status"] == "finished" and stay["period"]["end"] == "2026-03-17T10:00:00+07:00"
    assert stay["length"]["value"] == 7
    assert stay["hospitalization"]["dischargeDisposition"]["coding"][0]["code"] == "home"
    assert {e["status"] for e in stay["location"]} == {"completed"}
    assert [d["use"]["coding"][0]["code"] for d in stay["diagnosis"]] == ["DD", "DD"]
    assert beds(inpatient.bed_board(nurse(hospital)))["bv-noi-a-201-1"].status == "free"
    assert hospital.read("MedicationRequest", ward_order).resource["status"] == "completed"  # its 7 days are over
    again = refusal(lambda: inpatient.discharge(doctor(hospital), enc["id"], disposition="home",
                                                summary_sections=SECTIONS, ca_dir=ca_dir))
    assert (again.category, again.location) == (Category.UNPROCESSABLE, "encounter")

    pdf = inpatient.discharge_summary_pdf(nurse(hospital), enc["id"], ca_dir=ca_dir)
    assert pdf.startswith(b"%PDF")
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    text = "\n".join(page.extract_text() for page in reader.pages)
    for title in ("TÓM TẮT BỆNH ÁN RA VIỆN", "Lý do vào viện", "Quá trình điều trị", "Chẩn đoán ra viện",
                  "Thủ thuật, phẫu thuật", "Thuốc khi ra viện", "Hướng điều trị tiếp và hẹn tái khám",
                  "Nguyễn Văn An", "Bệnh viện Đa khoa Sante".upper(), "Khoa Nội", "Giường 201-1",
                  "Số ngày điều trị", "J18.9", "Đã ký số – chữ ký hợp lệ", "BS. Hoàng Minh", "Ra viện về nhà"):
        assert title in text, title
    assert reader.pages[0].mediabox.width == pytest.approx(595.28, abs=0.5)  # A4


def test_a_discharge_that_fails_saves_nothing(hospital, ca_dir, monkeypatch):
    enc = inpatient.admit(nurse(hospital), "p1", "bv-noi-a-201-1", now=T0)

    def broken(*args, **kwargs):
        raise Anomaly(Category.FAULT, "the signing key is unreadable")

    monkeypatch.setattr(signing, "sign", broken)
    assert refusal(lambda: inpatient.discharge(doctor(hospital), enc["id"], disposition="home",
                                               summary_sections=SECTIONS, ca_dir=ca_dir)).category == Category.FAULT
    assert hospital.read("Encounter", enc["id"]).resource["status"] == "in-progress"
    with hospital.reader() as tx:
        from sante.store.search import parse_search, run_search

        for rtype in ("Composition", "Condition"):
            assert run_search(tx, parse_search(rtype, [])).matches == [], rtype
    no_key = refusal(lambda: inpatient.discharge(GuardedRepository(hospital, staff("physician", "dd1")), enc["id"],
                                                 disposition="home", summary_sections=SECTIONS, ca_dir=ca_dir))
    assert (no_key.category, no_key.location) == (Category.NOT_FOUND, "signer")


# -- census -------------------------------------------------------------------------------------------------------
def test_census(hospital, ca_dir):
    g = nurse(hospital)
    a = inpatient.admit(g, "p1", "bv-noi-a-201-1", now=T0)
    inpatient.transfer(g, a["id"], "bv-noi-a-202-1", now=T0 + timedelta(hours=5))
    b = inpatient.admit(g, "p2", "bv-noi-a-201-2", now=T0 + timedelta(days=1))
    inpatient.discharge(doctor(hospital), a["id"], disposition="home", summary_sections=SECTIONS, ca_dir=ca_dir,
                        now=T0 + timedelta(days=2, hours=3))
    inpatient.discharge(doctor(hospital), b["id"], disposition="other-hcf", summary_sections=SECTIONS, ca_dir=ca_dir,
                        now=T0 + timedelta(days=5))
    inpatient.admit(g, "p3", "bv-noi-a-201-1", now=T0 + timedelta(days=2, hours=4))

    first = inpatient.census(g, date(2026, 3, 10))
    assert (first.admissions, first.discharges, first.transfers, first.occupied_beds, first.beds) == (1, 0, 1, 1, 4)
    assert first.average_length_of_stay is None and first.occupancy_rate == 0.25
    second = inpatient.census(g, "2026-03-11")
    assert (second.admissions, second.discharges, second.transfers, second.occupied_beds) == (1, 0, 0, 2)
    third = inpatient.census(g, date(2026, 3, 12))
    assert (third.admissions, third.discharges, third.occupied_beds, third.average_length_of_stay) == (1, 1, 2, 2.0)
    fifth = inpatient.census(g, date(2026, 3, 15))
    assert (fifth.discharges, fifth.occupied_beds, fifth.average_length_of_stay) == (1, 1, 4.0)
    assert refusal(lambda: inpatient.census(GuardedRepository(hospital, staff("manager")), date(2026, 3, 10))
                   ).category == Category.FORBIDDEN
