"""The pharmacy's pages (khoa Dược), for pharmacists and administrators; each page is about one pharmacy
(`?pharmacy=`: the outpatient pharmacy, the inpatient store...; by default the one the pharmacist works at):

- `/pharmacy` the prescriptions waiting to be dispensed there, oldest first: the patient, the prescriber, each drug
  with the quantity still to dispense;
- `/pharmacy/prescriptions/{id}` one prescription (the orders written together for a patient) with the patient
  banner: each drug with the usable stock and the lots that will be taken, first expiry first out; dispensing it;
- `/pharmacy/stock` what the pharmacy holds per medication and lot, the medications below their alert level and
  the lots expiring within 90 days, a receipt (the medication found in the formulary as one types) and a count.

Everything is read and written by sante.clinical.pharmacy over the signed-in user's GuardedRepository; a refusal
is shown next to the field it is about, in the user's language.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.datastructures import ImmutableMultiDict
from starlette.responses import RedirectResponse, Response

from sante.anomaly import Anomaly, Category
from sante.auth.guarded import GuardedRepository
from sante.clinical import formulary, pharmacy
from sante.clinical.service_support import PHYSICAL_TYPE, ROLE_CODE, by_ids, codes, concept_text
from sante.store import Repository
from sante.web.banner import load_banner
from sante.web.chart import Banner
from sante.web.form_data import blank, form_fields
from sante.web.i18n import N_, Formats
from sante.web.render import PAGE_HEADERS, Area, Pages, register_area

PHARMACY_ROLES = frozenset({"pharmacist", "admin"})
register_area(Area("pharmacy", "/pharmacy", N_("Pharmacy"),
                   N_("Prescriptions to dispense, stock, receipts and counts"), PHARMACY_ROLES, order=30))

KINDS = ("OUTPHARM", "INPHARM", "PHARM")  # the order pharmacies are offered in
AREAS = {"si", "bu", "wi", "lvl"}  # site, building, wing, level: places that hold rooms, not stock
EXPIRY_DAYS = 90
# The alert level of a medication without its own: a few days of a ward's use, by the unit it is counted in.
DEFAULT_ALERT = {"viên": 100, "gói": 30, "miếng": 10}
DEFAULT_ALERT_OTHER = 20  # lọ, ống, chai, tuýp, bình...
# The unit a receipt proposes for a formulary product, by its dose form (the unit prescriptions count in).
RECEIPT_UNITS = {"injection": "ống", "powder-for-injection": "lọ", "infusion": "chai", "oral-solution": "chai",
                 "oral-suspension": "chai", "oral-drops": "lọ", "oral-powder": "gói", "granules": "gói",
                 "cream": "tuýp", "vaginal-cream": "tuýp", "ointment": "tuýp", "gel": "tuýp", "eye-ointment": "tuýp",
                 "eye-drops": "lọ", "ear-drops": "lọ", "nasal-spray": "lọ", "lotion": "lọ", "shampoo": "lọ",
                 "topical-solution": "lọ", "nebuliser-solution": "ống", "inhaler": "bình", "dry-powder-inhaler": "bình",
                 "patch": "miếng", "implant": "que"}
DONE = {
    "dispensed": N_("Dispensed: the prescription has left the queue."),
    "dispensed-line": N_("Dispensed."), "received": N_("The receipt is recorded."),
    "counted": N_("The count is recorded: the stock now says what was counted."),
    "nothing": N_("This prescription has nothing left to dispense."),
    "level": N_("The alert level is saved."),
}
SHORT = N_("Not enough usable stock for this quantity: nothing was dispensed.")
TOO_MUCH = N_("This is more than the prescription still allows.")
QUANTITY = N_("Type the quantity as a number greater than zero.")
COUNTED = N_("Type the quantity counted as a number, 0 or more.")
NOT_ACTIVE = N_("This prescription is no longer active: it cannot be dispensed.")
NOT_IN_FORMULARY = N_("This order names no medication of the formulary: it cannot be dispensed from stock.")
CHOOSE_MEDICATION = N_("Choose the medication from the list.")
LOT = N_("Type the lot number (1 to 64 characters).")
EXPIRY = N_("Type the expiry date as dd/mm/yyyy.")
EXPIRED = N_("This lot has expired: it cannot be received.")
OTHER_EXPIRY = N_("This lot is already in stock with another expiry date.")
OTHER_UNIT = N_("This medication is stocked here in another unit: use the unit of its stock.")
CHOOSE_LOT = N_("Choose the lot that was counted.")
NEW_LOT_EXPIRY = N_("This lot was never received here: give its expiry date.")
LEVEL = N_("Type the alert level as a number greater than zero, or leave it empty for the default.")
CHECK_INPUT = N_("Check what you typed and try again.")
MEDICATION_RESULTS = 12


# -- which pharmacy -----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Pharmacy:
    id: str
    name: str


def _kind(location: dict[str, Any]) -> int:
    found = set(codes(location.get("type"), ROLE_CODE))
    return next((i for i, k in enumerate(KINDS) if k in found), len(KINDS))


def pharmacies(guarded: GuardedRepository) -> tuple[list[Pharmacy], str | None]:
    """The pharmacies of the hospital (outpatient first), and the one the user works at (their PractitionerRole's
    location), if any."""
    principal = guarded.principal
    with guarded.reader() as g:
        found = [m.resource or {} for m in g.search("Location", [("type", ",".join(f"{ROLE_CODE}|{k}" for k in KINDS)),
                                                                 ("status", "active"), ("_count", "50")]).matches]
        home = None
        me = principal.fhir_user or ""
        if me.startswith("Practitioner/"):
            roles = g.search("PractitionerRole", [("practitioner", me), ("_count", "20")]).matches
            places = {(loc.get("reference") or "").removeprefix("Location/")
                      for r in roles for loc in (r.resource or {}).get("location") or []}
            home = next((p["id"] for p in found if p["id"] in places), None)
    # A department typed PHARM (Khoa Dược, a wing) is where the pharmacies are, not a stock of its own.
    found = [p for p in found if not set(codes(p.get("physicalType"), PHYSICAL_TYPE)) & AREAS]
    found.sort(key=lambda p: (_kind(p), str(p.get("name") or "")))
    return [Pharmacy(p["id"], str(p.get("name") or p["id"])) for p in found], home


def choose_pharmacy(guarded: GuardedRepository, wanted: str) -> tuple[Pharmacy, list[Pharmacy]]:
    """The pharmacy asked for, else the user's, else the first (404 when the hospital has none)."""
    found, home = pharmacies(guarded)
    if not found:
        raise Anomaly(Category.NOT_FOUND, "no pharmacy in this hospital", location="pharmacy")
    by_id = {p.id: p for p in found}
    if wanted and wanted not in by_id:
        raise Anomaly(Category.NOT_FOUND, f"no pharmacy {wanted!r}", location="pharmacy")
    return by_id.get(wanted) or by_id.get(home or "") or found[0], found


# -- the queue ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class QueueLine:
    request_id: str
    medication: str
    medication_id: str | None
    remaining: float | None
    unit: str
    remaining_text: str  # "20 viên"
    requested_text: str
    dispensed_text: str


@dataclass(frozen=True, slots=True)
class Prescription:
    key: str  # its first order's id: the prescription's page
    authored: str
    patient_id: str | None
    patient: str
    prescriber: str
    ward: bool  # ward orders (the inpatient store), else a prescription to take home
    lines: list[QueueLine]


def _amount(value: float | None, unit: str | None, fmt: Formats) -> str:
    return f"{fmt.number(value)} {unit or ''}".strip() if value is not None else "—"


def prescriptions_of(pending: list[pharmacy.PendingPrescription], fmt: Formats,
                     names: dict[str, str] | None = None) -> list[Prescription]:
    """The orders waiting, grouped by prescription (a patient's orders written together by one prescriber), in
    the order of their oldest; `names` are the medications' names where an order's reference has none."""
    names = names or {}
    groups: dict[tuple[Any, ...], list[pharmacy.PendingPrescription]] = {}
    for p in pending:
        groups.setdefault((p.patient_id, p.encounter_id, p.authored_on, p.prescriber), []).append(p)
    out = []
    for orders in groups.values():
        first = orders[0]
        lines = [QueueLine(o.request_id, o.medication or names.get(o.medication_id or "") or "—", o.medication_id,
                           o.remaining, o.unit or "",
                           _amount(o.remaining, o.unit, fmt), _amount(o.requested, o.unit, fmt),
                           _amount(o.dispensed, o.unit, fmt)) for o in orders]
        out.append(Prescription(first.request_id, fmt.datetime(first.authored_on), first.patient_id, first.patient,
                                first.prescriber, pharmacy.WARD_CATEGORY in first.category, lines))
    return out


@dataclass(frozen=True, slots=True)
class Queue:
    pharmacy: Pharmacy
    pharmacies: list[Pharmacy]
    prescriptions: list[Prescription]


def medication_names(guarded: GuardedRepository, pending: list[pharmacy.PendingPrescription]) -> dict[str, str]:
    """The names of the medications that orders reference without one (their display)."""
    unnamed = {p.medication_id for p in pending if p.medication_id and not p.medication}
    if not unnamed:
        return {}
    with guarded.reader() as g:
        return {mid: concept_text(m.get("code")) for mid, m in by_ids(g, "Medication", unnamed).items()}


def pending_at(guarded: GuardedRepository, pharmacy_id: str, fmt: Formats) -> list[Prescription]:
    pending = pharmacy.pending_prescriptions(guarded, pharmacy_id)
    return prescriptions_of(pending, fmt, medication_names(guarded, pending))


def load_queue(guarded: GuardedRepository, wanted: str, fmt: Formats) -> Queue:
    here, found = choose_pharmacy(guarded, wanted)
    return Queue(here, found, pending_at(guarded, here.id, fmt))


# -- dispensing ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LotTaken:
    lot: str
    expiry: str
    take: str


@dataclass(frozen=True, slots=True)
class DispenseLine:
    line: QueueLine
    instruction: str
    on_hand: str  # usable stock (lots not expired)
    short: bool  # less usable stock than what is left to dispense
    lots: list[LotTaken]  # what dispensing what is left takes, first expiry first out


@dataclass(frozen=True, slots=True)
class Dispensing:
    pharmacy: Pharmacy
    pharmacies: list[Pharmacy]
    prescription: Prescription
    banner: Banner | None
    lines: list[DispenseLine]


def fefo_plan(lines: list[pharmacy.StockLine], wanted: float | None, today: date
              ) -> tuple[float, list[tuple[pharmacy.StockLine, float]]]:
    """(usable stock, the lots a dispense of `wanted` takes and how much of each): the lots not expired, those that
    expire first first (as sante.clinical.pharmacy.dispense takes them)."""
    usable = sorted((x for x in lines if x.on_hand > 0 and (x.expiry is None or x.expiry >= today)),
                    key=lambda x: (x.expiry or date.max, x.lot))
    total = sum(x.on_hand for x in usable)
    plan, left = [], wanted if wanted is not None else 0.0
    for x in usable:
        if left <= 0:
            break
        take = min(left, x.on_hand)
        plan.append((x, take))
        left -= take
    return total, plan


def find_prescription(prescriptions: list[Prescription], request_ids: set[str]) -> Prescription | None:
    """The prescription that holds one of these orders (what is left of it once some are dispensed in full)."""
    return next((p for p in prescriptions if any(line.request_id in request_ids for line in p.lines)), None)


def load_dispensing(guarded: GuardedRepository, wanted: str, request_ids: set[str], fmt: Formats
                    ) -> Dispensing | None:
    """The prescription of these orders at a pharmacy, with what dispensing it takes; None when nothing is left
    to dispense."""
    here, found = choose_pharmacy(guarded, wanted)
    rx = find_prescription(pending_at(guarded, here.id, fmt), request_ids)
    if rx is None:
        return None
    banner = None
    with guarded.reader() as g:
        if rx.patient_id:
            banner = load_banner(g, rx.patient_id, fmt)
        orders = by_ids(g, "MedicationRequest", [line.request_id for line in rx.lines])
    stock = pharmacy.stock(guarded, here.id)
    today = fmt.today()
    lines = []
    for line in rx.lines:
        mine = [x for x in stock if x.medication_id == line.medication_id]
        total, plan = fefo_plan(mine, line.remaining, today)
        dosage = (orders.get(line.request_id) or {}).get("dosageInstruction") or []
        unit = next((x.unit for x in mine if x.unit), line.unit)
        lines.append(DispenseLine(
            line, "; ".join(str(d.get("text")) for d in dosage if isinstance(d, dict) and d.get("text")),
            _amount(total, unit, fmt), line.remaining is not None and total < line.remaining,
            [LotTaken(x.lot, fmt.date(x.expiry) if x.expiry else "—", _amount(take, x.unit, fmt)) for x, take in plan]))
    return Dispensing(here, found, rx, banner, lines)


# -- stock --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StockRow:
    medication_id: str
    medication: str
    lot: str
    expiry: str
    days_left: int | None
    on_hand: str
    expired: bool
    expiring: bool  # within EXPIRY_DAYS


@dataclass(frozen=True, slots=True)
class Alert:
    medication: str
    on_hand: str
    threshold: str


@dataclass(frozen=True, slots=True)
class AlertLevel:
    medication_id: str
    medication: str
    level: str  # as typed in the form: "100", "2.5"
    unit: str
    own: bool  # set for this pharmacy, else the default of its unit


@dataclass(frozen=True, slots=True)
class Choice:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class MedicationPicker:
    """The receipt's medication, found in the formulary as one types, and the unit it is received in."""

    chosen: Choice | None
    q: str = ""
    results: list[Choice] = field(default_factory=list)
    unit: str = ""
    error: str | None = None
    focus: bool = False


@dataclass(frozen=True, slots=True)
class StockPage:
    pharmacy: Pharmacy
    pharmacies: list[Pharmacy]
    rows: list[StockRow]
    low: list[Alert]
    expiring: list[StockRow]
    lots: list[Choice]  # what a count may be of: "medication id|lot"
    medication: MedicationPicker
    levels: list[AlertLevel]  # every medication the pharmacy has stocked


def default_alert(unit: str | None) -> int:
    """The alert level of a medication counted in `unit` (see DEFAULT_ALERT)."""
    return DEFAULT_ALERT.get(unit or "", DEFAULT_ALERT_OTHER)


def medication_picker(chosen: str, q: str, unit: str, *, search: bool = False, error: str | None = None,
                      focus: bool = False) -> MedicationPicker:
    product = formulary.product(chosen) if chosen else None
    if product is not None and not unit:
        unit = RECEIPT_UNITS.get(product.form, "viên")
    results = [Choice(p.id, p.label) for p in formulary.search(q, MEDICATION_RESULTS)] if search and q.strip() else []
    return MedicationPicker(Choice(product.id, product.label) if product else None, q, results, unit, error, focus)


def load_stock(guarded: GuardedRepository, wanted: str, fmt: Formats, picker: MedicationPicker | None = None
               ) -> StockPage:
    here, found = choose_pharmacy(guarded, wanted)
    today = fmt.today()
    lines = pharmacy.stock(guarded, here.id, today=today, used_up=True)
    units = {x.medication_id: x.unit for x in lines if x.unit}
    names = {x.medication_id: x.medication for x in lines}
    own = pharmacy.alert_levels(guarded, here.id, list(names))
    thresholds = {m: own.get(m, default_alert(units.get(m))) for m in names}
    alerts = pharmacy.low_stock(guarded, here.id, thresholds, today=today)
    horizon = today + timedelta(days=EXPIRY_DAYS)
    rows = []
    for x in lines:
        if x.on_hand == 0:
            continue
        rows.append(StockRow(x.medication_id, x.medication, x.lot, fmt.date(x.expiry) if x.expiry else "—",
                             (x.expiry - today).days if x.expiry else None, _amount(x.on_hand, x.unit, fmt), x.expired,
                             x.expiry is not None and x.expiry <= horizon))
    return StockPage(
        here, found, rows,
        [Alert(a.medication, _amount(a.on_hand, a.unit, fmt), _amount(a.threshold, a.unit, fmt)) for a in alerts],
        sorted((r for r in rows if r.expiring), key=lambda r: (r.days_left if r.days_left is not None else 0)),
        [Choice(f"{r.medication_id}|{r.lot}", f"{r.medication} — {r.lot} ({r.on_hand})") for r in rows],
        picker or medication_picker("", "", ""),
        sorted((AlertLevel(m, names[m], f"{thresholds[m]:g}", units.get(m) or "", m in own) for m in names),
               key=lambda a: a.medication.casefold()))


# -- refusals -----------------------------------------------------------------------------------------------------
def problem(e: Anomaly) -> tuple[str, str] | None:
    """(form field, message id) of a refusal the user can act on in the form; None: a page of its own."""
    where, kind = e.location or "", e.category
    if kind in (Category.FORBIDDEN, Category.FAULT) or where == "pharmacy":
        return None
    if where == "quantity":
        return "quantity", SHORT if kind == Category.CONFLICT else TOO_MUCH if kind == Category.UNPROCESSABLE \
            else QUANTITY
    if where == "medication_request":
        if kind != Category.UNPROCESSABLE:
            return None
        return "quantity", NOT_IN_FORMULARY if "names no Medication" in e.message else NOT_ACTIVE
    if where == "expiry":
        if kind == Category.UNPROCESSABLE:
            return "expiry", NEW_LOT_EXPIRY if "never received" in e.message else \
                EXPIRED if "expired" in e.message else OTHER_EXPIRY
        return "expiry", EXPIRY
    messages = {"medication": CHOOSE_MEDICATION, "lot": LOT, "unit": OTHER_UNIT, "counted": COUNTED,
                "line": CHOOSE_LOT, "level": LEVEL}
    if where in messages:
        return where, messages[where]
    if kind in (Category.INCORRECT, Category.UNPROCESSABLE):
        return "form", CHECK_INPUT
    return None


# -- the pages ----------------------------------------------------------------------------------------------------


def pharmacy_router(repo: Repository, pages: Pages, run: Any) -> APIRouter:
    """run(fn, *args) runs repository work off the event loop (sante.web.site._in_thread)."""
    router = APIRouter(include_in_schema=False)

    def guarded(request: Request) -> GuardedRepository | None:
        """The user's guarded repository; None for a role these pages are not for."""
        principal = request.state.principal
        if principal is None or principal.role not in PHARMACY_ROLES:
            return None
        return GuardedRepository(repo, principal, getattr(request.state, "audit", None))

    def notice(request: Request) -> str | None:
        return DONE.get(request.query_params.get("done", ""))

    def back(path: str, **params: str) -> Response:
        query = urlencode({k: v for k, v in params.items() if v})
        return RedirectResponse(path + (f"?{query}" if query else ""), status_code=303, headers=PAGE_HEADERS)

    @router.get("/pharmacy")
    async def queue(request: Request) -> Response:
        g = guarded(request)
        if g is None:
            return pages.error(request, 403)
        try:
            view = await run(load_queue, g, request.query_params.get("pharmacy", "")[:64],
                             pages.formats_for(request))
        except Anomaly as e:
            return pages.error(request, e.category.status)
        return pages.render(request, "pharmacy/queue.html", active="pharmacy", view=view, tab="queue",
                            notice=notice(request))

    async def dispense_page(request: Request, g: GuardedRepository, wanted: str, request_id: str, *,
                            errors: dict[str, str] | None = None, values: dict[str, str] | None = None,
                            status: int = 200) -> Response:
        view = await run(load_dispensing, g, wanted, {request_id}, pages.formats_for(request))
        if view is None:
            return back("/pharmacy", pharmacy=wanted, done="nothing")
        return pages.render(request, "pharmacy/dispense.html", status=status, active="pharmacy", view=view,
                            tab="queue", notice=notice(request), errors=blank(errors), values=blank(values))

    @router.get("/pharmacy/prescriptions/{request_id}")
    async def prescription(request: Request, request_id: str) -> Response:
        g = guarded(request)
        if g is None:
            return pages.error(request, 403)
        try:
            return await dispense_page(request, g, request.query_params.get("pharmacy", "")[:64], request_id)
        except Anomaly as e:
            return pages.error(request, e.category.status)

    @router.post("/pharmacy/prescriptions/{request_id}/dispense")
    async def dispense(request: Request, request_id: str) -> Response:
        g = guarded(request)
        if g is None:
            return pages.error(request, 403)
        form = await form_fields(request)
        wanted, line = form.get("pharmacy", "")[:64], form.get("request", "")[:64]
        quantity = form.get("quantity", "").strip().replace(",", ".")
        try:
            here, _ = await run(choose_pharmacy, g, wanted)
            await run(lambda: pharmacy.dispense(g, line, here.id, quantity or None))
        except Anomaly as e:
            found = problem(e)
            if found is None:
                return pages.error(request, e.category.status)
            try:
                return await dispense_page(request, g, wanted, request_id, errors={line: found[1]},
                                           values={line: form.get("quantity", "")}, status=e.category.status)
            except Anomaly as again:
                return pages.error(request, again.category.status)
        left = await run(load_dispensing, g, here.id, {request_id, *form.getlist("group")},
                         pages.formats_for(request))
        if left is None:
            return back("/pharmacy", pharmacy=here.id, done="dispensed")
        return back(f"/pharmacy/prescriptions/{left.prescription.key}", pharmacy=here.id, done="dispensed-line")

    async def stock_page(request: Request, g: GuardedRepository, wanted: str, *,
                         errors: dict[str, str] | None = None, values: ImmutableMultiDict | None = None,
                         status: int = 200) -> Response:
        errors = errors or {}
        picker = None
        if values is not None:
            picker = medication_picker(values.get("medication", ""), values.get("medication_q", ""),
                                       values.get("unit", ""), error=errors.get("medication"))
        view = await run(load_stock, g, wanted, pages.formats_for(request), picker)
        return pages.render(request, "pharmacy/stock.html", status=status, active="pharmacy", view=view,
                            tab="stock", notice=notice(request), errors=blank(errors),
                            values=blank(dict(values.items()) if values is not None else None),
                            today=pages.formats_for(request).today())

    @router.get("/pharmacy/stock")
    async def stock(request: Request) -> Response:
        g = guarded(request)
        if g is None:
            return pages.error(request, 403)
        try:
            return await stock_page(request, g, request.query_params.get("pharmacy", "")[:64])
        except Anomaly as e:
            return pages.error(request, e.category.status)

    @router.get("/pharmacy/medications")
    async def medication_search(request: Request) -> Response:
        """The receipt's medication picker, after a key typed (`part=results`: the list only), a medication chosen
        (`add`) or removed (`remove`)."""
        if guarded(request) is None:
            return pages.error(request, 403)
        params = request.query_params
        added = params.get("add", "")
        chosen = added or ("" if params.get("remove") else params.get("medication", ""))
        view = medication_picker(chosen, "" if added else params.get("medication_q", "")[:100],
                                 "" if added else params.get("unit", "")[:20], search=not added,
                                 focus=bool(added or params.get("remove")))
        template = "pharmacy/_medication_results.html" if params.get("part") == "results" \
            else "pharmacy/_medication.html"
        return pages.render(request, template, picker=view, errors=blank(None))

    async def stock_change(request: Request, change: Any, form_name: str, done_key: str) -> Response:
        g = guarded(request)
        if g is None:
            return pages.error(request, 403)
        form = await form_fields(request)
        wanted = form.get("pharmacy", "")[:64]
        try:
            here, _ = await run(choose_pharmacy, g, wanted)
            await run(change, g, here.id, form)
        except Anomaly as e:
            found = problem(e)
            if found is None:
                return pages.error(request, e.category.status)
            field_name = found[0] if found[0] != "form" else form_name
            try:
                return await stock_page(request, g, wanted, errors={field_name: found[1], form_name: "error"},
                                        values=form, status=e.category.status)
            except Anomaly as again:
                return pages.error(request, again.category.status)
        return back("/pharmacy/stock", pharmacy=here.id, done=done_key)

    @router.post("/pharmacy/stock/receipts")
    async def receive(request: Request) -> Response:
        def record(g: GuardedRepository, where: str, form: ImmutableMultiDict) -> Any:
            if not form.get("medication"):
                raise Anomaly(Category.INCORRECT, "no medication chosen", location="medication")
            return pharmacy.receive(g, where, form.get("medication", ""), form.get("quantity", "").replace(",", "."),
                                    form.get("lot", ""), form.get("expiry", ""), form.get("supplier", "").strip()
                                    or None, unit=form.get("unit", "").strip() or None)

        return await stock_change(request, record, "receipt", "received")

    @router.post("/pharmacy/stock/counts")
    async def count(request: Request) -> Response:
        def record(g: GuardedRepository, where: str, form: ImmutableMultiDict) -> Any:
            medication, _, lot = form.get("line", "").partition("|")
            if not medication or not lot:
                raise Anomaly(Category.INCORRECT, "no lot chosen", location="line")
            return pharmacy.count(g, where, medication, lot, form.get("counted", "").replace(",", "."),
                                  note=form.get("note", "").strip() or None)

        return await stock_change(request, record, "count", "counted")

    @router.post("/pharmacy/stock/alert-levels")
    async def alert_level(request: Request) -> Response:
        def record(g: GuardedRepository, where: str, form: ImmutableMultiDict) -> Any:
            level = form.get("level", "").strip().replace(",", ".")
            return pharmacy.set_alert_level(g, where, form.get("medication", ""), level or None)

        return await stock_change(request, record, "levels", "level")

    return router


__all__ = ["PHARMACY_ROLES", "fefo_plan", "load_dispensing", "load_queue", "load_stock", "pharmacy_router"]
