"""The pharmacy (sante.clinical.pharmacy) on both backends: stock from receipts, dispenses and counts; first
expiry first out; expired lots skipped; never negative stock, even with pharmacists dispensing at once; who may
dispense."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta

import pytest

from sante.anomaly import Anomaly, Category
from sante.auth.guarded import GuardedRepository
from sante.auth.principal import Principal
from sante.auth.scopes import Scopes
from sante.clinical import pharmacy
from sante.clinical.service_support import VIETNAM

ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
NOW = datetime(2026, 6, 1, 9, 0, tzinfo=VIETNAM)
TODAY = NOW.date()


def _pharmacy(lid: str, name: str, kind: str) -> dict:
    return {"resourceType": "Location", "id": lid, "status": "active", "name": name,
            "type": [{"coding": [{"system": ROLE_CODE, "code": kind}]}]}


@pytest.fixture
def hospital(repo):
    with repo.transaction() as tx:
        for r in [
            _pharmacy("kho", "Kho thuốc – Cấp phát nội trú", "INPHARM"),
            _pharmacy("nha-thuoc", "Nhà thuốc bệnh viện", "OUTPHARM"),
            {"resourceType": "Location", "id": "phong-kham", "status": "active", "name": "Phòng khám Nội 1",
             "type": [{"coding": [{"system": ROLE_CODE, "code": "GIM"}]}]},
            {"resourceType": "Medication", "id": "para", "code": {"text": "Paracetamol 500 mg viên nén"}},
            {"resourceType": "Medication", "id": "amox", "code": {"text": "Amoxicilin 500 mg viên nang"}},
            {"resourceType": "Patient", "id": "p1", "name": [{"text": "Nguyễn Văn An"}]},
            {"resourceType": "Patient", "id": "p2", "name": [{"text": "Trần Thị Bình"}]},
            {"resourceType": "Practitioner", "id": "ds1", "name": [{"text": "DS. Đỗ Hà"}]},
            {"resourceType": "Practitioner", "id": "dd1", "name": [{"text": "ĐD. Vũ Lan"}]},
        ]:
            tx.update(r, r["id"])
    return repo


def staff(role: str, practitioner: str | None = None) -> Principal:
    return Principal(subject=f"{role}-user", role=role, scopes=Scopes.parse("user/*.cruds"),
                     fhir_user=f"Practitioner/{practitioner}" if practitioner else None)


def pharmacist(repo) -> GuardedRepository:
    return GuardedRepository(repo, staff("pharmacist", "ds1"))


def store_keeper(repo) -> GuardedRepository:
    # Receipts and counts are SupplyDeliveries, which the pharmacist role may not write yet (see docs/pharmacy.md).
    return GuardedRepository(repo, staff("admin", "ds1"))


def order(repo, quantity: float | None = 20, *, medication: str = "para", patient: str = "p1",
          category: str = "outpatient", status: str = "active", authored: str = "2026-06-01T08:00:00+07:00") -> str:
    body = {"resourceType": "MedicationRequest", "status": status, "intent": "order",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                                      "code": category}]}],
            "medicationReference": {"reference": f"Medication/{medication}", "display": medication},
            "subject": {"reference": f"Patient/{patient}"}, "authoredOn": authored,
            "dosageInstruction": [{"text": "Uống 1 viên/lần, 3 lần/ngày"}]}
    if quantity is not None:
        body["dispenseRequest"] = {"quantity": {"value": quantity, "unit": "viên"}, "numberOfRepeatsAllowed": 0}
    return repo.create(body).id


def on_hand(repo, where: str = "kho", today: date = TODAY) -> dict[tuple[str, str], float]:
    return {(x.medication_id, x.lot): x.on_hand for x in pharmacy.stock(pharmacist(repo), where, today=today)}


def refusal(call) -> Anomaly:
    with pytest.raises(Anomaly) as e:
        call()
    return e.value


def test_stock_from_receipts_dispenses_and_counts(hospital):
    keeper = store_keeper(hospital)
    receipt = pharmacy.receive(keeper, "kho", "para", 100, "A2028", "2028-06-30", "Công ty Dược phẩm Nghệ An",
                               unit="viên", now=NOW)
    assert receipt["resourceType"] == "SupplyDelivery" and receipt["status"] == "completed"
    assert receipt["destination"]["reference"] == "Location/kho"
    assert receipt["suppliedItem"]["itemReference"]["reference"] == "Medication/para"
    assert receipt["suppliedItem"]["quantity"] == {"value": 100, "unit": "viên"}
    assert receipt["supplier"] == {"display": "Công ty Dược phẩm Nghệ An"}
    assert receipt["meta"]["tag"] == [{"system": pharmacy.STOCK_LOCATION_TAG, "code": "kho"}]
    assert receipt["suppliedItem"]["extension"][0] == {"url": pharmacy.BATCH_EXTENSION, "extension": [
        {"url": "lotNumber", "valueString": "A2028"}, {"url": "expirationDate", "valueDateTime": "2028-06-30"}]}
    pharmacy.receive(keeper, "kho", "para", 50, "B2027", date(2027, 1, 31), "Organization/ncc", now=NOW)
    pharmacy.receive(keeper, "kho", "amox", 40, "X1", date(2027, 3, 1), now=NOW)
    pharmacy.receive(keeper, "nha-thuoc", "para", 10, "A2028", date(2028, 6, 30), now=NOW)
    assert on_hand(hospital) == {("para", "A2028"): 100, ("para", "B2027"): 50, ("amox", "X1"): 40}

    handed = pharmacy.dispense(pharmacist(hospital), order(hospital, 30, category="inpatient"), "kho", now=NOW)
    assert [(d["quantity"]["value"], d["extension"][0]["extension"][0]["valueString"]) for d in handed] == [
        (30, "B2027")]  # the lot that expires first
    assert on_hand(hospital)[("para", "B2027")] == 20

    counted = pharmacy.count(keeper, "kho", "para", "A2028", 95, note="5 viên vỡ", now=NOW)
    assert counted["suppliedItem"]["quantity"] == {"value": -5, "unit": "viên"}
    parts = {p["url"]: p for p in counted["extension"][0]["extension"]}
    assert parts["counted"]["valueQuantity"]["value"] == 95 and parts["expected"]["valueQuantity"]["value"] == 100
    assert parts["note"]["valueString"] == "5 viên vỡ"
    pharmacy.count(keeper, "kho", "amox", "X1", 42, now=NOW)
    assert on_hand(hospital) == {("para", "A2028"): 95, ("para", "B2027"): 20, ("amox", "X1"): 42}
    assert on_hand(hospital, "nha-thuoc") == {("para", "A2028"): 10}  # each pharmacy its own stock
    found = pharmacy.count(keeper, "kho", "para", "C9", 3, expiry="2027-12-31", now=NOW)  # a lot found on the shelf
    assert found["suppliedItem"]["quantity"]["value"] == 3 and on_hand(hospital)[("para", "C9")] == 3
    assert refusal(lambda: pharmacy.count(keeper, "kho", "para", "D1", 2, now=NOW)).location == "expiry"
    assert refusal(lambda: pharmacy.count(keeper, "kho", "para", "A2028", -1, now=NOW)).location == "counted"
    pharmacy.count(keeper, "kho", "amox", "X1", 0, now=NOW)  # used up: left out, unless asked for
    assert ("amox", "X1") not in on_hand(hospital)
    used_up = pharmacy.stock(pharmacist(hospital), "kho", today=TODAY, used_up=True)
    assert [(x.lot, x.on_hand) for x in used_up if x.medication_id == "amox"] == [("X1", 0)]


def test_receipts_that_are_refused(hospital):
    keeper = store_keeper(hospital)
    pharmacy.receive(keeper, "kho", "para", 10, "A1", "2027-01-31", unit="viên", now=NOW)
    cases = [
        (lambda: pharmacy.receive(keeper, "kho", "para", 0, "A1", "2027-01-31", now=NOW), "quantity"),
        (lambda: pharmacy.receive(keeper, "kho", "para", "ten", "A1", "2027-01-31", now=NOW), "quantity"),
        (lambda: pharmacy.receive(keeper, "kho", "para", 5, " ", "2027-01-31", now=NOW), "lot"),
        (lambda: pharmacy.receive(keeper, "kho", "para", 5, "A1", "31/01/2027", now=NOW), "expiry"),
        (lambda: pharmacy.receive(keeper, "kho", "para", 5, "A1", "2027-02-28", now=NOW), "expiry"),  # another date
        (lambda: pharmacy.receive(keeper, "kho", "para", 5, "Z", "2026-05-31", now=NOW), "expiry"),  # expired
        (lambda: pharmacy.receive(keeper, "kho", "para", 5, "A1", "2027-01-31", unit="hộp", now=NOW), "unit"),
        (lambda: pharmacy.receive(keeper, "phong-kham", "para", 5, "A1", "2027-01-31", now=NOW), "pharmacy"),
        (lambda: pharmacy.receive(keeper, "kho", "nothing", 5, "A1", "2027-01-31", now=NOW), "medication"),
    ]
    for call, field in cases:
        assert refusal(call).location == field, field
    assert on_hand(hospital) == {("para", "A1"): 10}


def test_dispensing_takes_lots_first_expiry_first_out(hospital):
    keeper = store_keeper(hospital)
    pharmacy.receive(keeper, "kho", "para", 30, "LATE", "2028-01-31", unit="viên", now=NOW)
    pharmacy.receive(keeper, "kho", "para", 12, "SOON", "2026-09-30", unit="viên", now=NOW)
    pharmacy.receive(keeper, "kho", "para", 5, "MID", "2027-03-31", unit="viên", now=NOW)
    rx = order(hospital, 20)
    handed = pharmacy.dispense(pharmacist(hospital), rx, "kho", now=NOW)
    lots = [(d["extension"][0]["extension"][0]["valueString"], d["quantity"]["value"]) for d in handed]
    assert lots == [("SOON", 12), ("MID", 5), ("LATE", 3)]
    d = handed[0]
    assert d["authorizingPrescription"] == [{"reference": f"MedicationRequest/{rx}"}]
    assert d["location"]["reference"] == "Location/kho" and d["subject"] == {"reference": "Patient/p1"}
    assert d["performer"] == [{"actor": {"reference": "Practitioner/ds1"}}] and d["status"] == "completed"
    assert on_hand(hospital) == {("para", "LATE"): 27}
    assert hospital.read("MedicationRequest", rx).resource["status"] == "completed"
    chosen = pharmacy.dispense(pharmacist(hospital), order(hospital, 4), "kho", lot="LATE", now=NOW)
    assert [x["quantity"]["value"] for x in chosen] == [4]


def test_expired_lots_are_skipped_and_reported(hospital):
    keeper = store_keeper(hospital)
    pharmacy.receive(keeper, "kho", "para", 10, "OLD", "2026-06-30", unit="viên", now=NOW)
    pharmacy.receive(keeper, "kho", "para", 10, "NEW", "2027-12-31", unit="viên", now=NOW)
    pharmacy.receive(keeper, "kho", "amox", 3, "AM", "2026-08-15", now=NOW)
    later = NOW + timedelta(days=35)  # OLD expired on 30 June
    expiring = pharmacy.expiring(pharmacist(hospital), "kho", 90, today=TODAY)
    assert [x.lot for x in pharmacy.expiring(pharmacist(hospital), "kho", 60, today=TODAY)] == ["OLD"]
    assert [(x.lot, x.expiry) for x in expiring] == [("OLD", date(2026, 6, 30)), ("AM", date(2026, 8, 15))]
    assert pharmacy.expiring(pharmacist(hospital), "kho", today=TODAY)[0].expired is False
    handed = pharmacy.dispense(pharmacist(hospital), order(hospital, 8), "kho", now=later)
    assert [d["extension"][0]["extension"][0]["valueString"] for d in handed] == ["NEW"]
    short = refusal(lambda: pharmacy.dispense(pharmacist(hospital), order(hospital, 5), "kho", now=later))
    assert (short.category, short.location) == (Category.CONFLICT, "quantity")  # 2 usable; OLD's 10 are expired
    lines = {x.lot: x for x in pharmacy.stock(pharmacist(hospital), "kho", today=later.date())}
    assert lines["OLD"].expired and lines["OLD"].on_hand == 10 and not lines["NEW"].expired
    alerts = pharmacy.low_stock(pharmacist(hospital), "kho", {"para": 5, "Medication/amox": 2, "para-x": 1},
                                today=later.date())
    assert [(a.medication_id, a.on_hand, a.threshold) for a in alerts] == [("para-x", 0, 1), ("para", 2, 5)]
    assert pharmacy.low_stock(pharmacist(hospital), "kho", {"amox": 5}, today=TODAY)[0].on_hand == 3
    assert refusal(lambda: pharmacy.expiring(pharmacist(hospital), "kho", -1)).location == "within_days"


def test_dispensing_refusals(hospital):
    keeper = store_keeper(hospital)
    pharmacy.receive(keeper, "kho", "para", 50, "A", "2027-12-31", unit="viên", now=NOW)
    ph = pharmacist(hospital)
    cases = [
        (lambda: pharmacy.dispense(ph, order(hospital, status="stopped"), "kho", now=NOW),
         Category.UNPROCESSABLE, "medication_request"),
        (lambda: pharmacy.dispense(ph, order(hospital, 10), "kho", 11, now=NOW), Category.UNPROCESSABLE, "quantity"),
        (lambda: pharmacy.dispense(ph, order(hospital, None), "kho", now=NOW), Category.INCORRECT, "quantity"),
        (lambda: pharmacy.dispense(ph, order(hospital, 60), "kho", now=NOW), Category.CONFLICT, "quantity"),
        (lambda: pharmacy.dispense(ph, order(hospital, 5), "kho", lot="B", now=NOW), Category.CONFLICT, "quantity"),
        (lambda: pharmacy.dispense(ph, order(hospital, 5), "phong-kham", now=NOW), Category.UNPROCESSABLE, "pharmacy"),
        (lambda: pharmacy.dispense(ph, "nothing", "kho", now=NOW), Category.NOT_FOUND, "medication_request"),
        (lambda: pharmacy.dispense(ph, order(hospital, 5, medication="amox"), "kho", now=NOW),
         Category.CONFLICT, "quantity"),
    ]
    for call, category, field in cases:
        e = refusal(call)
        assert (e.category, e.location) == (category, field), e
    assert on_hand(hospital) == {("para", "A"): 50}  # nothing half-dispensed


def test_pending_prescriptions_and_completion(hospital):
    keeper = store_keeper(hospital)
    pharmacy.receive(keeper, "kho", "para", 100, "A", "2027-12-31", unit="viên", now=NOW)
    pharmacy.receive(keeper, "nha-thuoc", "para", 100, "A", "2027-12-31", unit="viên", now=NOW)
    ward = order(hospital, 14, category="inpatient", authored="2026-05-31T10:00:00+07:00")
    home = order(hospital, 20, patient="p2", authored="2026-05-30T10:00:00+07:00")
    order(hospital, 5, status="completed")
    ph = pharmacist(hospital)
    pending = pharmacy.pending_prescriptions(ph)
    assert [p.request_id for p in pending] == [home, ward]  # oldest first
    assert (pending[0].patient, pending[0].requested, pending[0].remaining, pending[0].unit) == (
        "Trần Thị Bình", 20, 20, "viên")
    assert [p.request_id for p in pharmacy.pending_prescriptions(ph, "kho")] == [ward]
    assert [p.request_id for p in pharmacy.pending_prescriptions(ph, "nha-thuoc")] == [home]

    pharmacy.dispense(ph, home, "nha-thuoc", 5, now=NOW)
    assert (pharmacy.pending_prescriptions(ph, "nha-thuoc")[0].dispensed,
            pharmacy.pending_prescriptions(ph, "nha-thuoc")[0].remaining) == (5, 15)
    assert hospital.read("MedicationRequest", home).resource["status"] == "active"
    pharmacy.dispense(ph, home, "nha-thuoc", now=NOW)
    assert hospital.read("MedicationRequest", home).resource["status"] == "completed"
    pharmacy.dispense(ph, ward, "kho", now=NOW)
    assert hospital.read("MedicationRequest", ward).resource["status"] == "active"  # the nurses still give it
    assert pharmacy.pending_prescriptions(ph) == []
    done = refusal(lambda: pharmacy.dispense(ph, ward, "kho", now=NOW))
    assert (done.category, done.location) == (Category.UNPROCESSABLE, "quantity")
    assert on_hand(hospital) == {("para", "A"): 86} and on_hand(hospital, "nha-thuoc") == {("para", "A"): 80}


def test_alert_levels_are_set_per_pharmacy(hospital):
    ph = pharmacist(hospital)
    assert pharmacy.alert_levels(ph, "kho", ["para", "amox"]) == {}
    pharmacy.set_alert_level(ph, "kho", "para", 200)
    pharmacy.set_alert_level(ph, "nha-thuoc", "para", 50)
    pharmacy.set_alert_level(ph, "kho", "para", 150)  # replaces the store's own
    assert pharmacy.alert_levels(ph, "kho", ["para", "amox"]) == {"para": 150}
    assert pharmacy.alert_levels(ph, "nha-thuoc", ["para"]) == {"para": 50}
    medication = hospital.read("Medication", "para").resource
    assert [e["url"] for e in medication["extension"]] == [pharmacy.ALERT_LEVEL_EXTENSION] * 2
    pharmacy.set_alert_level(ph, "kho", "para", None)  # back to the default
    assert pharmacy.alert_levels(ph, "kho", ["para"]) == {} and pharmacy.alert_levels(ph, "nha-thuoc", ["para"])
    assert refusal(lambda: pharmacy.set_alert_level(ph, "kho", "para", 0)).location == "level"
    assert refusal(lambda: pharmacy.set_alert_level(ph, "phong-kham", "para", 5)).location == "pharmacy"
    nurse = GuardedRepository(hospital, staff("nurse", "dd1"))
    assert refusal(lambda: pharmacy.set_alert_level(nurse, "kho", "para", 5)).category == Category.FORBIDDEN


def test_the_queue_names_the_prescriber(hospital):
    by_reference = order(hospital, 10, authored="2026-05-30T10:00:00+07:00")
    by_display = order(hospital, 10, patient="p2")
    for rid, requester in ((by_reference, {"reference": "Practitioner/dd1"}),
                           (by_display, {"reference": "Practitioner/x", "display": "BS. Hoàng Minh"})):
        written = hospital.read("MedicationRequest", rid).resource
        hospital.update({**written, "requester": requester}, rid)
    unnamed = order(hospital, 10, patient="p2", authored="2026-06-01T09:00:00+07:00")
    queue = {p.request_id: p.prescriber for p in pharmacy.pending_prescriptions(pharmacist(hospital))}
    assert queue == {by_reference: "ĐD. Vũ Lan", by_display: "BS. Hoàng Minh", unnamed: ""}


def test_pharmacists_dispensing_at_once_never_take_stock_below_zero(hospital):
    pharmacy.receive(store_keeper(hospital), "kho", "para", 10, "A", "2027-12-31", unit="viên", now=NOW)
    orders = [order(hospital, 6, patient=p) for p in ("p1", "p2", "p1", "p2")]
    barrier = threading.Barrier(len(orders))
    outcomes: list[object] = []

    def dispense(rx: str) -> None:
        barrier.wait()
        try:
            outcomes.append(pharmacy.dispense(pharmacist(hospital), rx, "kho", now=NOW))
        except Anomaly as e:
            outcomes.append(e)

    threads = [threading.Thread(target=dispense, args=(rx,)) for rx in orders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [o for o in outcomes if isinstance(o, list)]
    refused = [o for o in outcomes if isinstance(o, Anomaly)]
    assert len(done) == 1 and len(refused) == 3
    assert all((e.category, e.location) == (Category.CONFLICT, "quantity") for e in refused)
    assert on_hand(hospital) == {("para", "A"): 4}


def test_a_nurse_may_not_dispense_a_pharmacist_may(hospital):
    pharmacy.receive(store_keeper(hospital), "kho", "para", 10, "A", "2027-12-31", unit="viên", now=NOW)
    rx = order(hospital, 2)
    nurse = GuardedRepository(hospital, staff("nurse", "dd1"))
    assert refusal(lambda: pharmacy.dispense(nurse, rx, "kho", now=NOW)).category == Category.FORBIDDEN
    assert refusal(lambda: pharmacy.receive(nurse, "kho", "para", 1, "A", "2027-12-31")).category == Category.FORBIDDEN
    assert len(pharmacy.dispense(pharmacist(hospital), rx, "kho", now=NOW)) == 1
    assert on_hand(hospital) == {("para", "A"): 8}
