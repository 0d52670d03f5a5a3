"""The pharmacy (khoa Dược): stock received, stock levels per pharmacy, low-stock and expiry alerts, stock
counts, the prescriptions waiting to be dispensed, and dispensing first-expiry-first-out.

FHIR R4 has no inventory resource; stock is a ledger of R4 resources, and levels are computed from it per
pharmacy × medication × lot (see docs/pharmacy.md):
- a receipt is a SupplyDelivery: status completed, type `medication` (supply-item-type), suppliedItem.itemReference
  the formulary Medication, suppliedItem.quantity what came in (in the dispensing unit: viên, lọ, ống...),
  destination the pharmacy Location, supplier, receiver the pharmacist, occurrenceDateTime;
- a dispense is a MedicationDispense: status completed, medicationReference the Medication, quantity, location the
  pharmacy, authorizingPrescription the MedicationRequest, performer the pharmacist, subject and context as on
  the order; one MedicationDispense per lot taken;
- a stock count is a SupplyDelivery like a receipt whose quantity is the difference found (negative when stock
  was missing), carrying the STOCK_COUNT_EXTENSION (`counted`, `expected`, `note`);
- the lot and its expiry date travel on each of them in the BATCH_EXTENSION (`lotNumber`, `expirationDate`),
  modelled on Medication.batch (R4 has no batch on SupplyDelivery or MedicationDispense);
- each carries the tag STOCK_LOCATION_TAG|<pharmacy Location id> in meta.tag: R4 has no search parameter on
  SupplyDelivery.destination or MedicationDispense.location, and the tag makes one pharmacy's ledger one
  indexed search (`_tag`).
On hand = received + count differences − dispensed (dispenses cancelled, declined or entered in error do not
count). A lot is usable through its expiry date. A pharmacy is a Location typed (v3-RoleCode) PHARM, OUTPHARM
or INPHARM, as the demo hospital's.

Never negative stock: receiving, counting and dispensing first read the pharmacy's Location in their
transaction (on PostgreSQL a write transaction reads FOR UPDATE, so the stock movements of one pharmacy queue;
on SQLite writers are serialised), then compute the stock and write; a dispense larger than the usable stock is
refused (409).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sante.anomaly import Category
from sante.auth.guarded import GuardedRepository, GuardedTransaction
from sante.auth.policy import require
from sante.clinical.service_support import (
    ROLE_CODE,
    aware,
    by_ids,
    codes,
    concept_text,
    decimal,
    fhir_time,
    json_number,
    local_day,
    parse_day,
    peek_at,
    person_name,
    practitioner_of,
    read_at,
    ref,
    ref_id,
    refused,
    search_all,
)

STOCK_LOCATION_TAG = "https://sante.health/fhir/CodeSystem/stock-location"
BATCH_EXTENSION = "https://sante.health/fhir/StructureDefinition/medication-batch"
STOCK_COUNT_EXTENSION = "https://sante.health/fhir/StructureDefinition/stock-count"
ALERT_LEVEL_EXTENSION = "https://sante.health/fhir/StructureDefinition/stock-alert-level"
SUPPLY_ITEM_TYPE = "http://terminology.hl7.org/CodeSystem/supply-item-type"
PHARMACY_TYPES = {"PHARM", "OUTPHARM", "INPHARM"}
NOT_DISPENSED = {"cancelled", "entered-in-error", "declined"}
WARD_CATEGORY = "inpatient"  # orders the inpatient pharmacy supplies; the outpatient one supplies the others


# -- what a page shows --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StockLine:
    medication_id: str
    medication: str
    lot: str
    expiry: date | None
    on_hand: float
    unit: str | None
    expired: bool  # past its expiry date today


@dataclass(frozen=True, slots=True)
class StockAlert:
    medication_id: str
    medication: str
    on_hand: float  # usable: lots not expired
    threshold: float
    unit: str | None


@dataclass(frozen=True, slots=True)
class PendingPrescription:
    request_id: str
    authored_on: str
    patient_id: str | None
    patient: str
    medication_id: str | None
    medication: str
    category: list[str]
    requested: float | None  # None: the order names no quantity
    dispensed: float
    remaining: float | None
    unit: str | None
    encounter_id: str | None
    prescriber: str = ""  # who wrote the order (its requester's name)


# -- the ledger ---------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Lot:
    medication_id: str
    medication: str
    lot: str
    expiry: date | None
    on_hand: Decimal
    unit: str | None

    def usable(self, today: date) -> bool:
        return self.expiry is None or self.expiry >= today


def _tag(pharmacy_id: str) -> dict[str, str]:
    return {"system": STOCK_LOCATION_TAG, "code": pharmacy_id}


def _batch_extension(lot: str, expiry: date | None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"url": "lotNumber", "valueString": lot}]
    if expiry is not None:
        parts.append({"url": "expirationDate", "valueDateTime": expiry.isoformat()})
    return {"url": BATCH_EXTENSION, "extension": parts}


def _batch_of(element: dict[str, Any]) -> tuple[str, date | None]:
    for ext in element.get("extension", []):
        if ext.get("url") == BATCH_EXTENSION:
            parts = {p.get("url"): p for p in ext.get("extension", [])}
            lot = (parts.get("lotNumber") or {}).get("valueString", "")
            raw = (parts.get("expirationDate") or {}).get("valueDateTime")
            try:
                expiry = date.fromisoformat(raw[:10]) if raw else None
            except ValueError:
                expiry = None
            return lot, expiry
    return "", None


def _amount(quantity: Any) -> Decimal:
    value = quantity.get("value") if isinstance(quantity, dict) else None
    return Decimal(str(value)) if isinstance(value, int | float) and not isinstance(value, bool) else Decimal(0)


def _ledger(g: GuardedTransaction, pharmacy_id: str, medication_id: str | None = None) -> dict[tuple[str, str], _Lot]:
    """The lots of a pharmacy (of one medication when given) with what is on hand."""
    tag = f"{STOCK_LOCATION_TAG}|{pharmacy_id}"
    lots: dict[tuple[str, str], _Lot] = {}

    def lot_of(med_ref: Any, lot: str, expiry: date | None, unit: str | None) -> _Lot | None:
        med = ref_id(med_ref, "Medication")
        if med is None or (medication_id is not None and med != medication_id):
            return None
        key = (med, lot)
        if key not in lots:
            lots[key] = _Lot(med, (med_ref or {}).get("display") or med, lot, expiry, Decimal(0), unit)
        line = lots[key]
        if line.expiry is None:
            line.expiry = expiry
        if line.unit is None:
            line.unit = unit
        return line

    deliveries, _ = search_all(g, "SupplyDelivery", [("_tag", tag), ("status", "completed")])
    for d in deliveries:
        item = d.get("suppliedItem") or {}
        lot, expiry = _batch_of(item)
        line = lot_of(item.get("itemReference"), lot, expiry, (item.get("quantity") or {}).get("unit"))
        if line is not None:
            line.on_hand += _amount(item.get("quantity"))
    query = [("_tag", tag)] + ([("medication", f"Medication/{medication_id}")] if medication_id else [])
    dispenses, _ = search_all(g, "MedicationDispense", query)
    for m in dispenses:
        if m.get("status") in NOT_DISPENSED:
            continue
        lot, expiry = _batch_of(m)
        line = lot_of(m.get("medicationReference"), lot, expiry, (m.get("quantity") or {}).get("unit"))
        if line is not None:
            line.on_hand -= _amount(m.get("quantity"))
    return lots


def _fefo(lots: list[_Lot]) -> list[_Lot]:
    """First expiry, first out (lots without an expiry date last)."""
    return sorted(lots, key=lambda x: (x.expiry or date.max, x.lot))


def _line(lot: _Lot, today: date) -> StockLine:
    return StockLine(lot.medication_id, lot.medication, lot.lot, lot.expiry, json_number(lot.on_hand), lot.unit,
                     not lot.usable(today))


def _pharmacy(g: GuardedTransaction, pharmacy_id: str) -> dict[str, Any]:
    location = read_at(g, "Location", pharmacy_id, "pharmacy")
    if not set(codes(location.get("type"), ROLE_CODE)) & PHARMACY_TYPES:
        raise refused(Category.UNPROCESSABLE, f"{location.get('name', location['id'])} is not a pharmacy", "pharmacy")
    return location


def _today(today: date | None) -> date:
    return today if today is not None else local_day(aware(None))


# -- stock --------------------------------------------------------------------------------------------------------
def stock(guarded_repo: GuardedRepository, pharmacy_id: str, *, today: date | None = None,
          used_up: bool = False) -> list[StockLine]:
    """What a pharmacy holds, per medication and lot, by medication then expiry; lots used up (on hand 0) only
    with `used_up` (what the pharmacy has stocked: a medication it has run out of still needs its alert)."""
    day = _today(today)
    with guarded_repo.reader() as g:
        pharmacy = _pharmacy(g, pharmacy_id)
        lots = _ledger(g, pharmacy["id"])
    kept = [lot for lot in lots.values() if used_up or lot.on_hand != 0]
    kept.sort(key=lambda x: (x.medication.casefold(), x.expiry or date.max, x.lot))
    return [_line(lot, day) for lot in kept]


def low_stock(guarded_repo: GuardedRepository, pharmacy_id: str, thresholds: dict[str, float], *,
              today: date | None = None) -> list[StockAlert]:
    """The medications whose usable stock (lots not expired) is below their threshold (Medication id → quantity
    in the dispensing unit), lowest first relative to their threshold."""
    day = _today(today)
    limits = {k.removeprefix("Medication/"): decimal(v, f"thresholds.{k}", positive=True)
              for k, v in thresholds.items()}
    with guarded_repo.reader() as g:
        pharmacy = _pharmacy(g, pharmacy_id)
        lots = _ledger(g, pharmacy["id"])
        names = {}
        missing = [m for m in limits if not any(lot.medication_id == m for lot in lots.values())]
        if missing:
            names = {mid: concept_text(m.get("code")) or mid for mid, m in by_ids(g, "Medication", missing).items()}
    alerts = []
    for med, limit in limits.items():
        mine = [lot for lot in lots.values() if lot.medication_id == med]
        usable = sum((lot.on_hand for lot in mine if lot.usable(day)), Decimal(0))
        if usable < limit:
            name = mine[0].medication if mine else names.get(med, med)
            unit = next((lot.unit for lot in mine if lot.unit), None)
            alerts.append(StockAlert(med, name, json_number(usable), json_number(limit), unit))
    alerts.sort(key=lambda a: (a.on_hand / a.threshold if a.threshold else 0.0, a.medication.casefold()))
    return alerts


def _alert_level_parts(extension: dict[str, Any], pharmacy_id: str) -> dict[str, Any] | None:
    """The parts of an ALERT_LEVEL_EXTENSION about this pharmacy, None for any other extension."""
    if extension.get("url") != ALERT_LEVEL_EXTENSION:
        return None
    parts = {p.get("url"): p for p in extension.get("extension", [])}
    if ref_id((parts.get("location") or {}).get("valueReference"), "Location") != pharmacy_id:
        return None
    return parts


def alert_levels(guarded_repo: GuardedRepository, pharmacy_id: str, medication_ids: list[str]) -> dict[str, float]:
    """The alert levels a pharmacy has set for these medications (set_alert_level), by Medication id; those
    without one are left out (the caller's default applies)."""
    with guarded_repo.reader() as g:
        medications = by_ids(g, "Medication", medication_ids)
    out = {}
    for mid, medication in medications.items():
        for ext in medication.get("extension", []):
            parts = _alert_level_parts(ext, pharmacy_id)
            value = ((parts or {}).get("level") or {}).get("valueDecimal")
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[mid] = value
    return out


def set_alert_level(guarded_repo: GuardedRepository, pharmacy_id: str, medication_id: str, level: float | None
                    ) -> dict[str, Any]:
    """Set the stock level under which a pharmacy is alerted for a medication (None: back to the default): an
    ALERT_LEVEL_EXTENSION (`location` the pharmacy, `level` in the dispensing unit) on the Medication, one per
    pharmacy. Needs the right to write Medications (the pharmacist's)."""
    amount = decimal(level, "level", positive=True, zero_ok=False) if level is not None else None
    with guarded_repo.transaction() as g:
        require(g.principal, "u", "Medication")
        pharmacy = _pharmacy(g, pharmacy_id)
        medication = read_at(g, "Medication", medication_id, "medication")
        kept = [e for e in medication.get("extension", []) if _alert_level_parts(e, pharmacy["id"]) is None]
        if amount is not None:
            kept.append({"url": ALERT_LEVEL_EXTENSION, "extension": [
                {"url": "location", "valueReference": ref("Location", pharmacy["id"], pharmacy.get("name"))},
                {"url": "level", "valueDecimal": json_number(amount)}]})
        if kept:
            medication["extension"] = kept
        else:
            medication.pop("extension", None)
        return g.update(medication).resource or {}


def expiring(guarded_repo: GuardedRepository, pharmacy_id: str, within_days: int = 90, *,
             today: date | None = None) -> list[StockLine]:
    """Lots in stock that expire within `within_days` days (or have expired already), soonest first."""
    if not isinstance(within_days, int) or within_days < 0:
        raise refused(Category.INCORRECT, "within_days is a number of days, 0 or more", "within_days")
    day = _today(today)
    horizon = day + timedelta(days=within_days)
    lines = [x for x in stock(guarded_repo, pharmacy_id, today=day)
             if x.on_hand > 0 and x.expiry is not None and x.expiry <= horizon]
    return sorted(lines, key=lambda x: (x.expiry or date.max, x.medication.casefold(), x.lot))


def _lot_text(lot: Any) -> str:
    if not isinstance(lot, str) or not lot.strip() or len(lot.strip()) > 64:
        raise refused(Category.INCORRECT, "the lot number is 1 to 64 characters", "lot")
    return lot.strip()


def _movement(pharmacy: dict[str, Any], medication: dict[str, Any], quantity: Decimal, unit: str | None, lot: str,
              expiry: date | None, when: datetime, receiver: str | None) -> dict[str, Any]:
    """A SupplyDelivery into the pharmacy's stock (a receipt, or a count's difference)."""
    amount: dict[str, Any] = {"value": json_number(quantity)}
    if unit:
        amount["unit"] = unit
    delivery: dict[str, Any] = {
        "resourceType": "SupplyDelivery", "meta": {"tag": [_tag(pharmacy["id"])]}, "status": "completed",
        "type": {"coding": [{"system": SUPPLY_ITEM_TYPE, "code": "medication", "display": "Medication"}]},
        "suppliedItem": {"extension": [_batch_extension(lot, expiry)], "quantity": amount,
                         "itemReference": ref("Medication", medication["id"], concept_text(medication.get("code")))},
        "occurrenceDateTime": fhir_time(when),
    }
    if receiver:
        delivery["receiver"] = [{"reference": receiver}]
    delivery["destination"] = ref("Location", pharmacy["id"], pharmacy.get("name"))
    return delivery


def _stock_unit(lots: dict[tuple[str, str], _Lot], unit: str | None, field_name: str) -> str | None:
    held = {lot.unit for lot in lots.values() if lot.unit}
    if unit and held and unit not in held:
        raise refused(Category.UNPROCESSABLE, f"this medication is stocked in {', '.join(sorted(held))}, not {unit}",
                      field_name)
    return unit or next(iter(sorted(held)), None)


def receive(guarded_repo: GuardedRepository, pharmacy_id: str, medication_id: str, quantity: float, lot: str,
            expiry: date | str, supplier: str | None = None, *, unit: str | None = None,
            now: datetime | None = None) -> dict[str, Any]:
    """Stock received at a pharmacy: a SupplyDelivery of `quantity` of one lot (refused: a lot already expired,
    422 `expiry`; a known lot with another expiry date, 422 `expiry`). `supplier` is `Organization/id` or a name."""
    amount = decimal(quantity, "quantity", positive=True, zero_ok=False)
    lot = _lot_text(lot)
    expires = parse_day(expiry, "expiry")
    when = aware(now)
    if expires < local_day(when):
        raise refused(Category.UNPROCESSABLE, f"lot {lot} expired on {expires:%d/%m/%Y}", "expiry")
    with guarded_repo.transaction() as g:
        require(g.principal, "c", "SupplyDelivery")
        pharmacy = _pharmacy(g, pharmacy_id)  # read first: the stock movements of a pharmacy queue here
        medication = peek_at(g, "Medication", medication_id, "medication")
        lots = _ledger(g, pharmacy["id"], medication["id"])
        known = lots.get((medication["id"], lot))
        if known is not None and known.expiry is not None and known.expiry != expires:
            raise refused(Category.UNPROCESSABLE, f"lot {lot} expires on {known.expiry:%d/%m/%Y}, not "
                          f"{expires:%d/%m/%Y}", "expiry")
        delivery = _movement(pharmacy, medication, amount, _stock_unit(lots, unit, "unit"), lot, expires, when,
                             practitioner_of(g))
        if supplier:
            org = ref_id({"reference": supplier}, "Organization")
            delivery["supplier"] = {"reference": f"Organization/{org}"} if org else {"display": supplier}
        return g.create(delivery).resource or {}


def count(guarded_repo: GuardedRepository, pharmacy_id: str, medication_id: str, lot: str, counted: float, *,
          expiry: date | str | None = None, note: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """A stock count of one lot: the difference from the book stock is recorded (a SupplyDelivery carrying the
    count), so that stock equals what was counted. A lot never received needs its `expiry`."""
    found = decimal(counted, "counted", positive=True)
    lot = _lot_text(lot)
    when = aware(now)
    with guarded_repo.transaction() as g:
        require(g.principal, "c", "SupplyDelivery")
        pharmacy = _pharmacy(g, pharmacy_id)
        medication = peek_at(g, "Medication", medication_id, "medication")
        lots = _ledger(g, pharmacy["id"], medication["id"])
        known = lots.get((medication["id"], lot))
        book = known.on_hand if known is not None else Decimal(0)
        expires = parse_day(expiry, "expiry") if expiry is not None else known.expiry if known else None
        if expires is None and found > 0:
            raise refused(Category.UNPROCESSABLE, f"lot {lot} was never received here: give its expiry date",
                          "expiry")
        unit = _stock_unit(lots, None, "unit")
        delivery = _movement(pharmacy, medication, found - book, unit, lot, expires, when, practitioner_of(g))
        parts: list[dict[str, Any]] = [
            {"url": "counted", "valueQuantity": {"value": json_number(found), **({"unit": unit} if unit else {})}},
            {"url": "expected", "valueQuantity": {"value": json_number(book), **({"unit": unit} if unit else {})}},
        ]
        if note and note.strip():
            parts.append({"url": "note", "valueString": note.strip()})
        delivery["extension"] = [{"url": STOCK_COUNT_EXTENSION, "extension": parts}]
        return g.create(delivery).resource or {}


# -- prescriptions ------------------------------------------------------------------------------------------------
def _requested(order: dict[str, Any]) -> tuple[Decimal | None, str | None]:
    """The quantity an order allows to dispense in all (its quantity times one plus its repeats) and its unit."""
    request = order.get("dispenseRequest") or {}
    quantity = request.get("quantity")
    if not isinstance(quantity, dict) or not isinstance(quantity.get("value"), int | float):
        return None, None
    repeats = request.get("numberOfRepeatsAllowed") or 0
    return _amount(quantity) * (1 + int(repeats)), quantity.get("unit")


def _dispensed(dispenses: list[dict[str, Any]]) -> Decimal:
    return sum((_amount(d.get("quantity")) for d in dispenses if d.get("status") not in NOT_DISPENSED), Decimal(0))


def _serves(pharmacy: dict[str, Any] | None, order: dict[str, Any]) -> bool:
    """Whether a pharmacy supplies an order: the inpatient pharmacy the ward orders, the outpatient one the rest."""
    if pharmacy is None:
        return True
    kinds = set(codes(pharmacy.get("type"), ROLE_CODE))
    ward_order = WARD_CATEGORY in codes(order.get("category"))
    if "INPHARM" in kinds and "OUTPHARM" not in kinds:
        return ward_order
    if "OUTPHARM" in kinds and "INPHARM" not in kinds:
        return not ward_order
    return True


def pending_prescriptions(guarded_repo: GuardedRepository, pharmacy_id: str | None = None, *, limit: int = 200
                          ) -> list[PendingPrescription]:
    """Active orders not yet dispensed in full, oldest first (those the pharmacy supplies, when given)."""
    out: list[PendingPrescription] = []
    with guarded_repo.reader() as g:
        pharmacy = _pharmacy(g, pharmacy_id) if pharmacy_id else None
        base = [("status", "active"), ("intent", "order"), ("_sort", "authoredon"),
                ("_revinclude", "MedicationDispense:prescription"), ("_include", "MedicationRequest:subject"),
                ("_include", "MedicationRequest:requester"), ("_count", "200")]
        page = base
        while len(out) < limit:
            result = g.search("MedicationRequest", page)
            included = [m.resource for m in result.included if m.resource]
            patients = {p["id"]: p for p in included if p.get("resourceType") == "Patient"}
            prescribers = {f"{p['resourceType']}/{p['id']}": p for p in included
                           if p.get("resourceType") in ("Practitioner", "PractitionerRole")}
            by_order: dict[str, list[dict[str, Any]]] = {}
            for d in included:
                if d.get("resourceType") == "MedicationDispense":
                    for auth in d.get("authorizingPrescription", []):
                        if (rid := ref_id(auth, "MedicationRequest")) is not None:
                            by_order.setdefault(rid, []).append(d)
            for order in (m.resource for m in result.matches):
                if not order or not _serves(pharmacy, order):
                    continue
                requested, unit = _requested(order)
                given = _dispensed(by_order.get(order["id"], []))
                if (requested is not None and given >= requested) or (requested is None and given > 0):
                    continue
                pid = ref_id(order.get("subject"), "Patient")
                out.append(PendingPrescription(
                    order["id"], order.get("authoredOn", ""), pid,
                    person_name(patients.get(pid or "")) or (order.get("subject") or {}).get("display", ""),
                    ref_id(order.get("medicationReference"), "Medication"),
                    (order.get("medicationReference") or {}).get("display")
                    or concept_text(order.get("medicationCodeableConcept")),
                    codes(order.get("category")), json_number(requested) if requested is not None else None,
                    json_number(given), json_number(requested - given) if requested is not None else None, unit,
                    ref_id(order.get("encounter"), "Encounter"),
                    (order.get("requester") or {}).get("display")
                    or person_name(prescribers.get((order.get("requester") or {}).get("reference", "")))))
            if not result.next_cursor:
                break
            page = [*base, ("_cursor", result.next_cursor)]
    return out[:limit]


def dispense(guarded_repo: GuardedRepository, medication_request_id: str, pharmacy_id: str,
             quantity: float | None = None, *, lot: str | None = None, now: datetime | None = None
             ) -> list[dict[str, Any]]:
    """Dispense an active order from a pharmacy's stock, lots first-expiry-first-out (only `lot` when given),
    expired lots skipped: one MedicationDispense per lot taken. `quantity` defaults to what the order still
    allows. Refused: stock short (409, `quantity`: stock never goes negative), more than the order allows (422,
    `quantity`), an order that is not active (422, `medication_request`).

    The order becomes completed once dispensed in full, except a ward order (category inpatient), which stays
    active while the nurses give it (sante.clinical.inpatient.administer); it ends at discharge."""
    when = aware(now)
    day = local_day(when)
    wanted = decimal(quantity, "quantity", positive=True, zero_ok=False) if quantity is not None else None
    with guarded_repo.transaction() as g:
        require(g.principal, "c", "MedicationDispense")
        order = read_at(g, "MedicationRequest", medication_request_id, "medication_request")
        if order.get("status") != "active":
            raise refused(Category.UNPROCESSABLE, f"the order is {order.get('status')}: it cannot be dispensed",
                          "medication_request")
        med_id = ref_id(order.get("medicationReference"), "Medication")
        if med_id is None:
            raise refused(Category.UNPROCESSABLE, "the order names no Medication of the formulary",
                          "medication_request")
        pharmacy = _pharmacy(g, pharmacy_id)
        medication = peek_at(g, "Medication", med_id, "medication_request")
        already, _ = search_all(g, "MedicationDispense", [("prescription", f"MedicationRequest/{order['id']}")])
        requested, order_unit = _requested(order)
        given = _dispensed(already)
        left = requested - given if requested is not None else None
        if wanted is None:
            if left is None:
                raise refused(Category.INCORRECT, "the order names no quantity: say how much to dispense", "quantity")
            wanted = left
        if left is not None and wanted > left:
            raise refused(Category.UNPROCESSABLE, f"the order allows {json_number(left)} more "
                          f"{order_unit or ''}".rstrip(), "quantity")
        if wanted <= 0:
            raise refused(Category.UNPROCESSABLE, "the order has been dispensed in full", "quantity")
        lots = _ledger(g, pharmacy["id"], medication["id"])
        unit = _stock_unit(lots, order_unit, "quantity")
        usable = [x for x in _fefo(list(lots.values())) if x.on_hand > 0 and x.usable(day)
                  and (lot is None or x.lot == lot)]
        available = sum((x.on_hand for x in usable), Decimal(0))
        if available < wanted:
            what = f"lot {lot}" if lot else pharmacy.get("name", "the pharmacy")
            raise refused(Category.CONFLICT, f"only {json_number(available)} {unit or ''} usable in {what}, "
                          f"{json_number(wanted)} asked".replace("  ", " "), "quantity")
        pharmacist = practitioner_of(g)
        created = []
        still = wanted
        for source in usable:
            take = min(still, source.on_hand)
            still -= take
            amount: dict[str, Any] = {"value": json_number(take)}
            if unit:
                amount["unit"] = unit
            handed: dict[str, Any] = {
                "resourceType": "MedicationDispense", "meta": {"tag": [_tag(pharmacy["id"])]},
                "extension": [_batch_extension(source.lot, source.expiry)], "status": "completed",
                "medicationReference": ref("Medication", medication["id"], concept_text(medication.get("code"))),
                "subject": order.get("subject"),
            }
            if order.get("encounter"):
                handed["context"] = order["encounter"]
            if pharmacist:
                handed["performer"] = [{"actor": {"reference": pharmacist}}]
            handed.update({
                "location": ref("Location", pharmacy["id"], pharmacy.get("name")),
                "authorizingPrescription": [ref("MedicationRequest", order["id"])], "quantity": amount,
                "whenPrepared": fhir_time(when), "whenHandedOver": fhir_time(when),
            })
            if order.get("dosageInstruction"):
                handed["dosageInstruction"] = order["dosageInstruction"]
            created.append(g.create(handed).resource or {})
            if still <= 0:
                break
        ward_order = WARD_CATEGORY in codes(order.get("category"))
        if requested is not None and given + wanted >= requested and not ward_order:
            order["status"] = "completed"
            g.update(order, reason="Đã cấp phát đủ (dispensed in full)")
        return created


__all__ = [
    "ALERT_LEVEL_EXTENSION", "BATCH_EXTENSION", "PHARMACY_TYPES", "STOCK_COUNT_EXTENSION", "STOCK_LOCATION_TAG", "PendingPrescription",
    "StockAlert", "StockLine", "count", "dispense", "expiring", "low_stock", "pending_prescriptions", "receive",
    "alert_levels", "set_alert_level", "stock",
]
