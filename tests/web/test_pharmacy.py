"""The pharmacy's pages without a browser (sante.web.pharmacy): the queue of prescriptions, dispensing first
expiry first out and its refusals (short stock, more than prescribed), the stock with its alerts, receipts and
counts, and who may use them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta

import pytest

from tests.web.conftest import csrf_of, sign_in
from tests.web.ward_pharmacy_seed import (
    AMOXICILLIN,
    BINH_RX,
    CUC_RX,
    INPATIENT_PHARMACY,
    NURSE,
    OUTPATIENT_PHARMACY,
    PHARMACIST,
    PHYSICIAN,
    ward_pharmacy_site,
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """The test hospital with its pharmacies (the tests of this module change the stock: each its own lines)."""
    yield from ward_pharmacy_site(tmp_path_factory.mktemp("pharmacy"))


def _post(client, url: str, data: dict, *, page: str):
    return client.post(url, data={**data, "csrf": csrf_of(client.get(page).text)})


def _stock_rows(html: str) -> dict[str, str]:
    """Lot → on hand, from the stock table."""
    rows = re.findall(r'<td class="nowrap">([^<]+)</td>\s*<td class="nowrap">[^\n]*</td>\s*'
                      r'<td class="num nowrap">([^<]+)</td>', html)
    return dict(rows)


def test_who_may_use_the_pharmacy(site):
    for user in (NURSE, "hoa", PHYSICIAN, "minh"):
        b = sign_in(site, user, lang="en")
        for url in ("/pharmacy", "/pharmacy/stock", f"/pharmacy/prescriptions/{CUC_RX}", "/pharmacy/medications"):
            r = b.get(url)
            assert r.status_code == 403 and "You do not have access to this page" in r.text, (user, url)
        refused = _post(b, f"/pharmacy/prescriptions/{CUC_RX}/dispense", {"request": CUC_RX, "quantity": "10"},
                        page="/")
        assert refused.status_code == 403
        assert 'href="/pharmacy"' not in b.get("/").text
    for user in (PHARMACIST, "root"):
        home = sign_in(site, user, lang="en").get("/").text
        assert 'href="/pharmacy"' in home and "Prescriptions to dispense, stock, receipts and counts" in home


def test_the_queue_oldest_first_with_patient_prescriber_drugs_and_quantities(site):
    b = sign_in(site, PHARMACIST)
    r = b.get("/pharmacy")
    assert r.status_code == 200 and "Đơn chờ cấp phát" in r.text and "Nhà thuốc bệnh viện" in r.text
    page = r.text
    assert page.index("Nguyễn Thị Cúc") < page.index("Trần Thị Bình")  # oldest first
    for text in ("BS. Hoàng Nam", "Paracetamol 500 mg, viên nén", "20 viên", "Amoxicilin 500 mg, viên nang",
                 "15 viên", f'href="/pharmacy/prescriptions/{CUC_RX}?pharmacy={OUTPATIENT_PHARMACY}"'):
        assert text in page, text
    assert page.count(f'href="/pharmacy/prescriptions/{BINH_RX[0]}') + page.count(
        f'href="/pharmacy/prescriptions/{BINH_RX[1]}') == 2  # one prescription of two drugs: one row
    assert "Phạm Văn Hùng" not in page  # ward orders go to the inpatient store
    store = b.get("/pharmacy", params={"pharmacy": INPATIENT_PHARMACY}).text
    assert "Phạm Văn Hùng" in store and "y lệnh nội trú" in store and "14 lọ" in store
    assert b.get("/pharmacy", params={"pharmacy": "nowhere"}).status_code == 404


def test_dispensing_takes_the_lot_that_expires_first_and_empties_the_queue(site):
    b = sign_in(site, PHARMACIST, lang="en")
    page = f"/pharmacy/prescriptions/{CUC_RX}?pharmacy={OUTPATIENT_PHARMACY}"
    r = b.get(page)
    assert r.status_code == 200 and 'id="banner-name"' in r.text and "Nguyễn Thị Cúc" in r.text
    assert '<span class="dl-label">Usable stock</span> <strong>300 viên</strong>' in r.text
    lots = re.search(r"<tbody><tr><th scope=\"row\">([^<]+)</th><td>[^<]+</td><td class=\"num\">([^<]+)</td>", r.text)
    assert lots.groups() == ("P-2401", "10 viên")  # expires in 60 days: taken first
    too_much = _post(b, f"/pharmacy/prescriptions/{CUC_RX}/dispense",
                     {"pharmacy": OUTPATIENT_PHARMACY, "request": CUC_RX, "group": CUC_RX, "quantity": "30"}, page=page)
    assert too_much.status_code == 422 and "This is more than the prescription still allows." in too_much.text
    assert 'value="30"' in too_much.text
    words = _post(b, f"/pharmacy/prescriptions/{CUC_RX}/dispense",
                  {"pharmacy": OUTPATIENT_PHARMACY, "request": CUC_RX, "quantity": "mười"}, page=page)
    assert words.status_code == 400 and "Type the quantity as a number greater than zero." in words.text
    done = _post(b, f"/pharmacy/prescriptions/{CUC_RX}/dispense",
                 {"pharmacy": OUTPATIENT_PHARMACY, "request": CUC_RX, "group": CUC_RX, "quantity": "10"}, page=page)
    assert done.status_code == 303
    assert done.headers["location"] == f"/pharmacy?pharmacy={OUTPATIENT_PHARMACY}&done=dispensed"
    queue = b.get(done.headers["location"]).text
    assert "Dispensed: the prescription has left the queue." in queue and "Nguyễn Thị Cúc" not in queue
    assert _stock_rows(b.get("/pharmacy/stock").text)["P-2401"] == "90 viên"
    assert b.get(page).headers["location"] == f"/pharmacy?pharmacy={OUTPATIENT_PHARMACY}&done=nothing"


def test_short_stock_is_refused_and_nothing_is_dispensed(site):
    b = sign_in(site, PHARMACIST, lang="en")
    page = f"/pharmacy/prescriptions/{BINH_RX[0]}?pharmacy={OUTPATIENT_PHARMACY}"
    r = b.get(page)
    assert "Trần Thị Bình" in r.text and "Not enough stock" in r.text  # amoxicillin: 10 on hand, 15 prescribed
    group = {"pharmacy": OUTPATIENT_PHARMACY, "group": list(BINH_RX)}
    short = _post(b, f"/pharmacy/prescriptions/{BINH_RX[0]}/dispense",
                  {**group, "request": BINH_RX[1], "quantity": "15"}, page=page)
    assert short.status_code == 409
    assert "Not enough usable stock for this quantity: nothing was dispensed." in short.text
    assert _stock_rows(b.get("/pharmacy/stock").text)["A-0107"] == "10 viên"
    first = _post(b, f"/pharmacy/prescriptions/{BINH_RX[0]}/dispense",
                  {**group, "request": BINH_RX[0], "quantity": "20"}, page=page)
    assert first.status_code == 303  # the paracetamol is given; the amoxicillin still waits
    left = first.headers["location"]
    assert left == f"/pharmacy/prescriptions/{BINH_RX[1]}?pharmacy={OUTPATIENT_PHARMACY}&done=dispensed-line"
    rest = b.get(left).text
    assert "Dispensed." in rest and "Amoxicilin 500 mg, viên nang" in rest and "Paracetamol 500 mg" not in rest
    assert "Trần Thị Bình" in b.get("/pharmacy").text


def test_the_stock_its_alerts_a_receipt_and_a_count(site):
    b = sign_in(site, PHARMACIST, lang="en")
    r = b.get("/pharmacy/stock")
    assert r.status_code == 200
    low = r.text.split('id="low-title"')[1].split("</section>")[0]
    assert "Amoxicilin 500 mg, viên nang" in low and "alert below 100 viên" in low
    expiring = r.text.split('id="expiring-title"')[1].split("</section>")[0]
    assert "P-2401" in expiring and "in 60 days" in expiring and "P-2402" not in expiring
    assert 'class="row-expiring"' in r.text and "Expires soon" in r.text
    next_year = (date.today() + timedelta(days=400)).isoformat()
    receipt = {"pharmacy": OUTPATIENT_PHARMACY, "quantity": "200", "unit": "viên", "lot": "A-0212",
               "expiry": next_year, "supplier": "Công ty Dược Hậu Giang"}
    unchosen = _post(b, "/pharmacy/stock/receipts", {**receipt, "medication_q": "amoxi"}, page="/pharmacy/stock")
    assert unchosen.status_code == 400 and "Choose the medication from the list." in unchosen.text
    assert 'value="A-0212"' in unchosen.text and 'value="amoxi"' in unchosen.text  # what was typed stays
    expired = _post(b, "/pharmacy/stock/receipts", {**receipt, "medication": AMOXICILLIN, "expiry": "2020-01-31"},
                    page="/pharmacy/stock")
    assert expired.status_code == 422 and "This lot has expired: it cannot be received." in expired.text
    other_unit = _post(b, "/pharmacy/stock/receipts", {**receipt, "medication": AMOXICILLIN, "unit": "hộp"},
                       page="/pharmacy/stock")
    assert other_unit.status_code == 422 and "stocked here in another unit" in other_unit.text
    ok = _post(b, "/pharmacy/stock/receipts", {**receipt, "medication": AMOXICILLIN}, page="/pharmacy/stock")
    assert ok.status_code == 303 and ok.headers["location"] == f"/pharmacy/stock?pharmacy={OUTPATIENT_PHARMACY}&done=received"
    after = b.get(ok.headers["location"]).text
    assert "The receipt is recorded." in after and _stock_rows(after)["A-0212"] == "200 viên"
    assert "Amoxicilin" not in after.split('id="low-title"')[1].split("</section>")[0]  # 200 and more: no alert

    bad = _post(b, "/pharmacy/stock/counts", {"pharmacy": OUTPATIENT_PHARMACY, "line": "eml-paracetamol-500mg-tablet|P-2402",
                                              "counted": "-1"}, page="/pharmacy/stock")
    assert bad.status_code == 400 and "Type the quantity counted as a number, 0 or more." in bad.text
    counted = _post(b, "/pharmacy/stock/counts", {"pharmacy": OUTPATIENT_PHARMACY,
                                                  "line": "eml-paracetamol-500mg-tablet|P-2402", "counted": "195",
                                                  "note": "5 viên vỡ"}, page="/pharmacy/stock")
    assert counted.status_code == 303
    assert _stock_rows(b.get("/pharmacy/stock").text)["P-2402"] == "195 viên"
    vi = sign_in(site, PHARMACIST).get("/pharmacy/stock").text
    assert "Tồn kho hiện có" in vi and "Hết hạn trong 90 ngày tới" in vi and "Nhập kho" in vi


def test_the_medication_box_finds_the_formulary_as_one_types(site):
    b = sign_in(site, PHARMACIST)
    found = b.get("/pharmacy/medications", params={"medication_q": "amoxi", "part": "results"}).text
    assert "Amoxicilin 500 mg, viên nang" in found and f"add={AMOXICILLIN}" in found
    chosen = b.get("/pharmacy/medications", params={"add": AMOXICILLIN}).text
    assert f'name="medication" value="{AMOXICILLIN}"' in chosen and 'name="unit" type="text" value="viên"' in chosen
    vial = b.get("/pharmacy/medications", params={"add": "eml-ceftriaxone-1g-powder-for-injection"}).text
    assert 'value="lọ"' in vial
    none = b.get("/pharmacy/medications", params={"medication_q": "zzzz", "part": "results"}).text
    assert "Không có thuốc nào trong danh mục khớp với “zzzz”." in none


def test_the_inpatient_store_dispenses_ward_orders(site):
    b = sign_in(site, "root", lang="en")  # an administrator may too
    queue = b.get("/pharmacy", params={"pharmacy": INPATIENT_PHARMACY}).text
    key = re.search(r'href="/pharmacy/prescriptions/([^?"]+)\?pharmacy=' + INPATIENT_PHARMACY, queue).group(1)
    page = f"/pharmacy/prescriptions/{key}?pharmacy={INPATIENT_PHARMACY}"
    r = b.get(page)
    assert "Phạm Văn Hùng" in r.text and "C-1120" in r.text
    ids = re.findall(r'name="group" value="([^"]+)"', r.text)
    done = _post(b, f"/pharmacy/prescriptions/{key}/dispense",
                 {"pharmacy": INPATIENT_PHARMACY, "request": "rx-hung-ceftriaxon", "group": ids, "quantity": "14"},
                 page=page)
    assert done.status_code == 303
    store = b.get("/pharmacy", params={"pharmacy": INPATIENT_PHARMACY}).text
    assert "Ceftriaxon" not in store and "Paracetamol 500 mg, viên nén" in store  # the rest still waits


def test_a_pharmacy_sets_its_own_alert_level(site):
    b = sign_in(site, PHARMACIST, lang="en")
    para = "eml-paracetamol-500mg-tablet"
    page = b.get("/pharmacy/stock").text
    levels = page.split('id="levels-title"')[1]
    assert "Paracetamol 500 mg, viên nén" in levels and 'value="100"' in levels and "default" in levels
    bad = _post(b, "/pharmacy/stock/alert-levels", {"pharmacy": OUTPATIENT_PHARMACY, "medication": para,
                                                    "level": "-3"}, page="/pharmacy/stock")
    assert bad.status_code == 400 and "Type the alert level as a number greater than zero" in bad.text
    assert 'value="-3"' in bad.text
    r = _post(b, "/pharmacy/stock/alert-levels", {"pharmacy": OUTPATIENT_PHARMACY, "medication": para,
                                                  "level": "400"}, page="/pharmacy/stock")
    assert r.status_code == 303 and r.headers["location"].endswith("done=level")
    after = b.get(r.headers["location"]).text
    low = after.split('id="low-title"')[1].split("</section>")[0]
    assert "The alert level is saved." in after and "Paracetamol" in low and "alert below 400 viên" in low
    store = b.get("/pharmacy/stock", params={"pharmacy": INPATIENT_PHARMACY}).text  # each pharmacy its own
    assert "alert below 400" not in store
    _post(b, "/pharmacy/stock/alert-levels", {"pharmacy": OUTPATIENT_PHARMACY, "medication": para, "level": ""},
          page="/pharmacy/stock")
    assert "Paracetamol" not in b.get("/pharmacy/stock").text.split('id="low-title"')[1].split("</section>")[0]
