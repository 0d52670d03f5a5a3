"""The outpatient pages (khoa Khám bệnh), what receptionists, nurses and physicians use all day (docs/outpatient.md):

- registration `/outpatient/register` (receptionist, physician): the new-patient form, its mistakes next to their
  fields, the possible duplicates (open one, or register anyway when the match is not certain); the merge of two
  records of one person `/outpatient/merge`;
- check-in `/outpatient/patients/{id}/check-in` and the queues: the clinics of the day `/outpatient`, one clinic's
  queue `/outpatient/queue/{clinic}` (refreshed every 30 s, "call next" for the doctor);
- triage `/outpatient/visits/{encounter}/vitals` (nurse): the vital signs;
- the examination `/outpatient/visits/{encounter}` (physician): the note, diagnoses (ICD-10), orders,
  prescriptions from the formulary, signing the visit, the printed prescription (PDF).

Every page works through the services of sante.clinical with the request's guarded repository; this module only
reads forms, calls them and shows their answers (sante.web.outpatient_views shapes what the templates show).
Forms work without scripts; htmx adds search-as-you-type, the queue's refresh and in-place updates of the
examination page's sections.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from sante.anomaly import Anomaly, Category
from sante.auth.guarded import GuardedRepository, GuardedTransaction
from sante.auth.policy import forbidden, require
from sante.clinical import admin_units, registration
from sante.clinical import queue as queue_service
from sante.clinical import visit as visit_service
from sante.clinical.forms import InvalidInput
from sante.clinical.merge import merge
from sante.clinical.prescription_print import prescription_pdf
from sante.store import Repository
from sante.web import outpatient_views as views
from sante.web.i18n import N_, Formats
from sante.web.outpatient_views import Errors, add_error, field_errors, has_errors
from sante.web.render import PAGE_HEADERS, Area, Pages, may, register_area

AREA_ROLES = frozenset({"receptionist", "nurse", "physician", "admin"})
register_area(Area(
    key="outpatient", href="/outpatient", label=N_("Outpatient clinics"),
    description=N_("Register and check in patients, follow the clinics' queues, take vital signs, examine."),
    roles=AREA_ROLES, order=10))

MAX_FORM = 64 * 1024
VITAL_FIELDS = ("heart-rate", "systolic", "diastolic", "body-temperature", "respiratory-rate", "spo2", "body-weight",
                "body-height")
NOTE_FIELDS = ("subjective", "objective", "assessment", "plan")
RX_FIELDS = ("medication", "dose", "unit", "route", "frequency_per_day", "duration_days", "quantity", "instructions")
# Messages for refusals that are not a field's (an Anomaly without FieldProblems), by where they happened.
VISIT_CLOSED = N_("This visit is closed: it was signed, or the patient left.")
ALREADY_WAITING = N_("This patient is already in this clinic's queue today.")
MERGED_RECORD = N_("This record was merged into another one: check in the record that stays.")
NOT_IN_FORMULARY = N_("This medicine is not in the hospital's formulary.")
NO_SIGNING_KEY = N_("You have no signing key yet: ask the administrator to issue one (sante ca issue).")
NOT_A_PRACTITIONER = N_("Your account is not linked to a practitioner: ask the administrator.")
CHOOSE_CLINIC = N_("Choose the clinic")
CHOOSE_DIAGNOSIS = N_("Choose a diagnosis in the list, or type its ICD-10 code")
CHOOSE_MEDICINE = N_("Choose the medicine in the list")
BOTH_PRESSURES = N_("Enter both pressures, systolic and diastolic")
CHECK_WARNINGS = N_("Check the warnings next to the fields, then register again.")


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true" and request.headers.get("hx-boosted") != "true"


async def _form(request: Request) -> dict[str, str]:
    """The fields of an urlencoded form (the last value of a repeated field)."""
    body = await request.body()
    return dict(parse_qsl(body[:MAX_FORM].decode("utf-8", "replace"), keep_blank_values=True))


def _see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303, headers=PAGE_HEADERS)


def _in_transaction(guarded: GuardedRepository, work: Callable[[GuardedTransaction], Any]) -> Any:
    with guarded.transaction() as g:
        return work(g)


def _check_role(request: Request, *checks: tuple[str, str]) -> None:
    """403 for a user outside the outpatient area, or whose role may not do one of `checks` (op, type)."""
    principal = request.state.principal
    if principal.role not in AREA_ROLES:
        raise forbidden(f"role {principal.role} has no outpatient pages")
    for op, rtype in checks:
        require(principal, op, rtype)


def outpatient_router(repo: Repository, pages: Pages, run: Any, ca_dir: Path) -> APIRouter:
    """run(fn, *args) runs repository work off the event loop (sante.web.site._in_thread); the physicians'
    signing keys are in the hospital CA at ca_dir."""
    router = APIRouter(include_in_schema=False)

    def guarded(request: Request) -> GuardedRepository:
        return GuardedRepository(repo, request.state.principal, getattr(request.state, "audit", None))

    def fmt_of(request: Request) -> Formats:
        return pages.formats_for(request)

    def text(request: Request, message: str) -> str:
        return fmt_of(request).t.gettext(message)

    # -- the clinics of the day ---------------------------------------------------------------------------------
    @router.get("/outpatient")
    async def clinics(request: Request) -> Response:
        _check_role(request)
        found = await run(lambda: queue_service.clinics(guarded(request)))
        return pages.render(request, "outpatient/clinics.html", active="outpatient", main_search=True, clinics=found,
                            may_register=may(request.state.principal, "c", "Patient"), q="", results=None)

    # -- registration -------------------------------------------------------------------------------------------
    def registration_page(request: Request, fields: Mapping[str, str], errors: Errors, *, status: int = 200,
                          candidates: list[views.CandidateView] | None = None, certain: bool = False) -> Response:
        return pages.render(
            request, "outpatient/register.html", status=status, active="outpatient", form=fields, errors=errors,
            provinces=[(p.code, p.name) for p in admin_units.provinces()],
            relationships=[(code, text(request, label)) for code, label in views.RELATIONSHIPS.items()],
            communes=views.commune_choices(fields.get("commune_q", ""), fields.get("province", ""),
                                           fields.get("commune_code", "")),
            candidates=candidates, certain=certain,
            warnings_seen=any(m.warning for ms in errors.values() for m in ms) or fields.get("confirm_warnings") == "1")

    @router.get("/outpatient/register")
    async def registration_form(request: Request) -> Response:
        _check_role(request, ("c", "Patient"))
        return registration_page(request, {}, {})

    @router.post("/outpatient/register")
    async def register(request: Request) -> Response:
        _check_role(request, ("c", "Patient"))
        fields = await _form(request)
        fmt = fmt_of(request)
        form = views.registration_form(fields)
        errors = field_errors(registration.validate(form), fmt)
        if has_errors(errors):
            return registration_page(request, fields, errors, status=422)
        if errors and fields.get("confirm_warnings") != "1":
            add_error(errors, "_form", text(request, CHECK_WARNINGS), warning=True)
            return registration_page(request, fields, errors, status=422)
        try:
            done = await run(lambda: registration.register(guarded(request), form,
                                                           allow_duplicate=fields.get("allow_duplicate") == "1"))
        except registration.DuplicatePatient as e:
            certain = any(c.level == "certain" for c in e.candidates)
            return registration_page(request, fields, errors, status=409, certain=certain,
                                     candidates=views.candidate_views(e.candidates, fmt))
        except InvalidInput as e:
            return registration_page(request, fields, field_errors(e.field_problems, fmt), status=422)
        if done.possible_duplicates:
            return _see_other(f"/outpatient/patients/{done.patient_id}/duplicates")
        return _see_other(f"/patients/{done.patient_id}")

    @router.get("/outpatient/communes")
    async def communes(request: Request) -> Response:
        _check_role(request)
        params = request.query_params
        found = views.commune_choices(params.get("commune_q", "")[:100], params.get("province", "")[:2],
                                      params.get("commune_code", "")[:5])
        return pages.render(request, "outpatient/_communes.html", communes=found,
                            form={"commune_code": params.get("commune_code", ""),
                                  "commune_q": params.get("commune_q", "")})

    # -- duplicates and merging ---------------------------------------------------------------------------------
    @router.get("/outpatient/patients/{pid}/duplicates")
    async def duplicates(request: Request, pid: str) -> Response:
        _check_role(request)
        banner, _, candidates = await run(views.duplicates_of, guarded(request), pid, fmt_of(request))
        return pages.render(request, "outpatient/duplicates.html", active="outpatient", banner=banner,
                            candidates=candidates, may_merge=may(request.state.principal, "u", "Patient"))

    async def merge_page(request: Request, source: str, target: str, reason: str, errors: Errors,
                         status: int = 200) -> Response:
        fmt = fmt_of(request)
        sides = await run(views.read_merge_sides, guarded(request), source, target, fmt)
        preview = None
        try:
            preview = await run(lambda: merge(guarded(request), source, target, reason="preview", preview=True))
        except InvalidInput as e:
            errors = {**errors, **field_errors(e.field_problems, fmt, {"target-patient": "_form",
                                                                       "source-patient": "_form"})}
        moved = [(text(request, views.RECORD_TYPES.get(t, t)) if t in views.RECORD_TYPES else t, n)
                 for t, n in views.moved_counts(preview.moved if preview else [])]
        added = [i.get("value", "") for i in (preview.identifiers_added if preview else [])]
        return pages.render(request, "outpatient/merge.html", status=status, active="outpatient", source=sides[0],
                            target=sides[1], moved=moved, added=added, can_merge=preview is not None,
                            reason=reason, errors=errors)

    @router.get("/outpatient/merge")
    async def merge_preview(request: Request) -> Response:
        _check_role(request, ("u", "Patient"))
        source, target = request.query_params.get("source", "")[:64], request.query_params.get("target", "")[:64]
        if not source or not target:
            return pages.error(request, 400)
        return await merge_page(request, source, target, "", {})

    @router.post("/outpatient/merge")
    async def merge_records(request: Request) -> Response:
        _check_role(request, ("u", "Patient"))
        fields = await _form(request)
        source, target, reason = fields.get("source", "")[:64], fields.get("target", "")[:64], fields.get("reason", "")
        if not source or not target:
            return pages.error(request, 400)
        try:
            await run(lambda: merge(guarded(request), source, target, reason=reason))
        except InvalidInput as e:
            errors = field_errors(e.field_problems, fmt_of(request),
                                  {"target-patient": "_form", "source-patient": "_form"})
            return await merge_page(request, source, target, reason, errors, 422)
        return _see_other(f"/patients/{target}")

    # -- check-in and the queue -----------------------------------------------------------------------------------
    async def check_in_page(request: Request, pid: str, fields: Mapping[str, str], errors: Errors,
                            status: int = 200) -> Response:
        banner, patient = await run(views.read_banner, guarded(request), pid, fmt_of(request))
        found = await run(lambda: queue_service.clinics(guarded(request)))
        age = views.age_in_years(patient.get("birthDate"), fmt_of(request).today())
        suggested = "urgent" if age is not None and (age < 6 or age >= 80) else "routine"
        return pages.render(request, "outpatient/check_in.html", status=status, active="outpatient", banner=banner,
                            clinics=found, form=fields, errors=errors, priorities=views.PRIORITIES,
                            priority_help=views.PRIORITY_HELP, suggested=suggested)

    @router.get("/outpatient/patients/{pid}/check-in")
    async def check_in_form(request: Request, pid: str) -> Response:
        _check_role(request, ("c", "Encounter"))
        return await check_in_page(request, pid, {"clinic": request.query_params.get("clinic", "")}, {})

    @router.post("/outpatient/patients/{pid}/check-in")
    async def check_in(request: Request, pid: str) -> Response:
        _check_role(request, ("c", "Encounter"))
        fields = await _form(request)
        clinic, priority = fields.get("clinic", ""), fields.get("priority", "routine")
        errors: Errors = {}
        if not clinic:
            add_error(errors, "clinic", text(request, CHOOSE_CLINIC))
            return await check_in_page(request, pid, fields, errors, 422)
        try:
            encounter = await run(lambda: queue_service.check_in(
                guarded(request), pid, clinic, priority=priority, reason=fields.get("reason", "").strip() or None))
        except InvalidInput as e:
            return await check_in_page(request, pid, fields, field_errors(e.field_problems, fmt_of(request)), 422)
        except Anomaly as e:
            if e.category is Category.NOT_FOUND and e.location == "clinic":
                add_error(errors, "clinic", text(request, CHOOSE_CLINIC))
            elif e.category is Category.CONFLICT:
                _, patient = await run(views.read_banner, guarded(request), pid, fmt_of(request))
                add_error(errors, "_form", text(request, MERGED_RECORD if patient.get("active") is False
                                                else ALREADY_WAITING))
            else:
                raise
            return await check_in_page(request, pid, fields, errors, 409 if e.category is Category.CONFLICT else 422)
        return _see_other(f"/outpatient/queue/{clinic}?" + urlencode({"checked_in": encounter["id"]}))

    async def queue_context(request: Request, clinic: str) -> dict[str, Any]:
        view = await run(views.load_queue, guarded(request), clinic, fmt_of(request))
        principal = request.state.principal
        return {"queue": view, "may_call": views.may_examine(principal),
                "may_take_vitals": may(principal, "c", "Observation") and may(principal, "s", "Observation")}

    @router.get("/outpatient/queue/{clinic}")
    async def clinic_queue(request: Request, clinic: str) -> Response:
        _check_role(request)
        context = await queue_context(request, clinic)
        params = request.query_params
        highlight = params.get("checked_in") or params.get("recorded") or ""
        notice = next((r for r in context["queue"].rows if r.encounter_id == highlight), None)
        return pages.render(request, "outpatient/queue.html", active="outpatient", notice=notice,
                            notice_kind="checked_in" if params.get("checked_in") else "recorded",
                            nobody=params.get("called") == "none", **context)

    @router.get("/outpatient/queue/{clinic}/live")
    async def clinic_queue_live(request: Request, clinic: str) -> Response:
        _check_role(request)
        return pages.render(request, "outpatient/_queue_live.html", live=True, **await queue_context(request, clinic))

    @router.post("/outpatient/queue/{clinic}/call-next")
    async def call_next(request: Request, clinic: str) -> Response:
        _check_role(request, ("u", "Encounter"))
        if not views.may_examine(request.state.principal):
            raise forbidden("only a doctor calls the next patient in")
        called = await run(lambda: queue_service.call_next(guarded(request), clinic))
        if called is None:
            return _see_other(f"/outpatient/queue/{clinic}?called=none")
        return _see_other(f"/outpatient/visits/{called.encounter_id}")

    # -- triage ---------------------------------------------------------------------------------------------------
    async def triage_page(request: Request, eid: str, fields: Mapping[str, str], errors: Errors,
                          status: int = 200) -> Response:
        visit = await run(views.load_visit, guarded(request), eid, fmt_of(request))
        return pages.render(request, "outpatient/triage.html", status=status, active="outpatient", v=visit,
                            banner=visit.banner, form=fields, errors=errors, ranges=visit_service.PLAUSIBLE)

    @router.get("/outpatient/visits/{eid}/vitals")
    async def triage_form(request: Request, eid: str) -> Response:
        _check_role(request, ("c", "Observation"))
        return await triage_page(request, eid, {}, {})

    @router.post("/outpatient/visits/{eid}/vitals")
    async def record_vitals(request: Request, eid: str) -> Response:
        _check_role(request, ("c", "Observation"))
        fields = await _form(request)
        fmt = fmt_of(request)
        errors: Errors = {}
        values: dict[str, Any] = {}
        for key in VITAL_FIELDS:
            number = views.number_field(fields, key, errors, fmt)
            if number is not None and key not in ("systolic", "diastolic"):
                values[key] = number
        systolic, diastolic = (views.parse_number(fields.get(k, "")) if k not in errors else None
                               for k in ("systolic", "diastolic"))
        if (systolic is None) != (diastolic is None) and "systolic" not in errors and "diastolic" not in errors:
            add_error(errors, "blood-pressure", text(request, BOTH_PRESSURES))
        elif systolic is not None and diastolic is not None:
            values["blood-pressure"] = (systolic, diastolic)
        clinic = ""
        if not errors:
            try:
                visit = await run(_in_transaction, guarded(request), lambda g: (
                    visit_service.record_vitals(g, eid, values), queue_service.read_visit(g, eid))[1])
                place: dict[str, Any] = next(iter(visit.get("location", [])), {})
                clinic = str((place.get("location") or {}).get("reference", ""))
            except InvalidInput as e:
                errors = field_errors(e.field_problems, fmt, {"vitals": "_form"})
            except Anomaly as e:
                if e.category is not Category.CONFLICT:
                    raise
                add_error(errors, "_form", text(request, VISIT_CLOSED))
        if errors:
            return await triage_page(request, eid, fields, errors, 422)
        return _see_other(f"/outpatient/queue/{clinic.removeprefix('Location/')}?" + urlencode({"recorded": eid}))

    # -- the examination -----------------------------------------------------------------------------------------
    def visit_context(request: Request, visit: views.VisitView, fields: Mapping[str, str], errors: Errors,
                      notice: dict[str, str]) -> dict[str, Any]:
        fmt = fmt_of(request)
        return {"v": visit, "banner": visit.banner, "form": fields, "errors": errors, "notice": notice,
                "lab_tests": views.lab_tests(fmt.lang), "modalities": views.MODALITIES,
                "order_priorities": views.ORDER_PRIORITIES, "routes": views.ROUTES, "units": views.UNITS,
                "icd10": views.icd10_choices(fields.get("icd_q", ""), fmt.lang) if fields.get("icd_q") else [],
                "drugs": views.formulary_choices(guarded(request), fields["drug_q"]) if fields.get("drug_q") else []}

    async def visit_answer(request: Request, eid: str, sections: list[str], fields: Mapping[str, str],
                           errors: Errors, notice: dict[str, str] | None = None) -> Response:
        """After an action on the examination page: for htmx, the sections it changed (the first in place, the
        others out of band); else the page again (422 with the errors), or back to it."""
        if not _is_htmx(request) and not errors:
            return _see_other(f"/outpatient/visits/{eid}#{sections[0]}")
        visit = await run(views.load_visit, guarded(request), eid, fmt_of(request))
        context = visit_context(request, visit, fields if errors else {}, errors, notice or {})
        if _is_htmx(request):
            return pages.render(request, "outpatient/_visit_update.html", sections=sections, **context)
        return pages.render(request, "outpatient/visit.html", status=422, active="outpatient", **context)

    def refusal(request: Request, e: Anomaly, section: str, rename: Mapping[str, str]) -> Errors:
        """The errors to show for a refused action on a visit (a FieldProblem at its field, a closed visit or an
        unknown medicine at the section); other refusals are pages (403, 404)."""
        fmt = fmt_of(request)
        if isinstance(e, InvalidInput):
            return field_errors(e.field_problems, fmt, {"encounter": section, "author": section,
                                                        "prescriber": section, "requester": section,
                                                        "recorder": section, **rename})
        if e.category is Category.CONFLICT or (e.category is Category.NOT_FOUND and e.location == "medication"):
            return {section if e.category is Category.CONFLICT else "medication": [
                views.Message(text(request, VISIT_CLOSED if e.category is Category.CONFLICT else NOT_IN_FORMULARY))]}
        raise e

    async def visit_action(request: Request, eid: str, sections: list[str], work: Callable[[GuardedTransaction], Any],
                           fields: Mapping[str, str], errors: Errors | None = None,
                           notice: dict[str, str] | None = None, rename: Mapping[str, str] | None = None
                           ) -> Response:
        _check_role(request)
        errors = dict(errors or {})
        if not errors:
            try:
                await run(_in_transaction, guarded(request), work)
            except Anomaly as e:
                errors = refusal(request, e, sections[0], rename or {})
        return await visit_answer(request, eid, sections, fields, errors, None if errors else notice)

    @router.get("/outpatient/visits/{eid}")
    async def visit_page(request: Request, eid: str) -> Response:
        _check_role(request, ("s", "Observation"), ("s", "Condition"))
        visit = await run(views.load_visit, guarded(request), eid, fmt_of(request))
        return pages.render(request, "outpatient/visit.html", active="outpatient",
                            **visit_context(request, visit, {}, {}, {}))

    @router.post("/outpatient/visits/{eid}/call-in")
    async def call_in(request: Request, eid: str) -> Response:
        _check_role(request, ("u", "Encounter"))
        if not views.may_examine(request.state.principal):
            raise forbidden("only a doctor calls a patient in")
        try:
            await run(lambda: queue_service.set_status(guarded(request), eid, "in-progress"))
        except Anomaly as e:
            if e.category is not Category.CONFLICT:
                raise
        return _see_other(f"/outpatient/visits/{eid}")

    @router.post("/outpatient/visits/{eid}/note")
    async def save_note(request: Request, eid: str) -> Response:
        fields = await _form(request)
        s, o, a, p = (fields.get(k, "") for k in NOTE_FIELDS)
        return await visit_action(request, eid, ["note"], lambda g: visit_service.record_soap_note(
            g, eid, subjective=s, objective=o, assessment=a, plan=p), fields, notice={"note": "saved"})

    @router.post("/outpatient/visits/{eid}/diagnoses")
    async def add_diagnosis(request: Request, eid: str) -> Response:
        fields = await _form(request)
        code = fields.get("code") or fields.get("icd_q", "").strip()
        errors: Errors = {}
        if not code:
            add_error(errors, "diagnosis", text(request, CHOOSE_DIAGNOSIS))
        main = fields.get("main") == "1"
        return await visit_action(request, eid, ["diagnoses", "sign"],
                                  lambda g: visit_service.add_diagnosis(g, eid, code, primary=main), fields, errors)

    @router.post("/outpatient/visits/{eid}/diagnoses/main")
    async def choose_main_diagnosis(request: Request, eid: str) -> Response:
        fields = await _form(request)
        condition = fields.get("condition", "")
        return await visit_action(request, eid, ["diagnoses", "sign"],
                                  lambda g: visit_service.set_main_diagnosis(g, eid, condition), {})

    @router.post("/outpatient/visits/{eid}/orders")
    async def order(request: Request, eid: str) -> Response:
        fields = await _form(request)
        if fields.get("kind") == "imaging":
            modality, site = fields.get("modality", ""), fields.get("body_site", "")
            priority = fields.get("imaging_priority", "routine")
            return await visit_action(request, eid, ["orders"], lambda g: visit_service.order_imaging(
                g, eid, modality, site, priority=priority), fields, notice={"orders": "imaging"},
                rename={"priority": "imaging_priority"})
        test, priority = fields.get("test", ""), fields.get("lab_priority", "routine")
        return await visit_action(request, eid, ["orders"], lambda g: visit_service.order_lab(
            g, eid, test, priority=priority), fields, notice={"orders": "lab"}, rename={"priority": "lab_priority"})

    @router.post("/outpatient/visits/{eid}/prescriptions")
    async def prescribe(request: Request, eid: str) -> Response:
        fields = await _form(request)
        fmt = fmt_of(request)
        errors: Errors = {}
        medication = fields.get("medication", "")
        if not medication:
            add_error(errors, "medication", text(request, CHOOSE_MEDICINE))
        dose, per_day, days, quantity = (views.number_field(fields, k, errors, fmt, example)
                                         for k, example in (("dose", 1), ("frequency_per_day", 2),
                                                            ("duration_days", 5), ("quantity", 10)))
        if quantity is None and "quantity" not in errors:
            quantity = views.default_quantity(dose, per_day, days)

        def work(g: GuardedTransaction) -> Any:
            return visit_service.prescribe(g, eid, medication, dose, fields.get("unit", ""),  # type: ignore[arg-type]
                                           fields.get("route", ""), per_day, days,  # type: ignore[arg-type]
                                           quantity, fields.get("instructions", ""))  # type: ignore[arg-type]

        return await visit_action(request, eid, ["prescriptions", "sign"], work, fields, errors)

    @router.post("/outpatient/visits/{eid}/sign")
    async def sign(request: Request, eid: str) -> Response:
        principal = request.state.principal
        _check_role(request, ("c", "Composition"))
        if not views.may_examine(principal):
            raise forbidden("only a doctor signs the visit record")
        errors: Errors = {}
        try:
            await run(lambda: visit_service.sign_visit(guarded(request), eid, ca_dir=ca_dir))
        except InvalidInput as e:
            errors = field_errors(e.field_problems, fmt_of(request), {"practitioner": "sign"})
        except Anomaly as e:
            if e.category is Category.NOT_FOUND and e.location is None:  # the signer's key (sante.auth.ca)
                add_error(errors, "sign", text(request, NO_SIGNING_KEY))
            elif e.category is Category.FORBIDDEN and not (principal.fhir_user or "").startswith("Practitioner/"):
                add_error(errors, "sign", text(request, NOT_A_PRACTITIONER))
            elif e.category is Category.CONFLICT:
                add_error(errors, "sign", text(request, VISIT_CLOSED))
            else:
                raise
        if errors and "diagnosis" in errors:
            errors.setdefault("sign", []).extend(errors["diagnosis"])
        if not errors and _is_htmx(request):  # signed: the whole page changes
            return Response(status_code=200, headers={**PAGE_HEADERS, "HX-Redirect": f"/outpatient/visits/{eid}"})
        return await visit_answer(request, eid, ["sign", "diagnoses"], {}, errors)

    @router.get("/outpatient/visits/{eid}/prescription.pdf")
    async def prescription(request: Request, eid: str) -> Response:
        _check_role(request, ("r", "MedicationRequest"))

        def render() -> bytes:
            with guarded(request).reader() as g:
                return prescription_pdf(g, eid)

        data = await run(render)
        headers = {k: v for k, v in PAGE_HEADERS.items() if k not in ("Content-Security-Policy", "Vary")}
        headers["Content-Disposition"] = f'inline; filename="don-thuoc-{eid}.pdf"'
        return Response(data, media_type="application/pdf", headers=headers)

    # -- searches as you type -------------------------------------------------------------------------------------
    @router.get("/outpatient/icd10")
    async def icd10_search(request: Request) -> Response:
        _check_role(request)
        q = request.query_params.get("icd_q", "")[:100]
        return pages.render(request, "outpatient/_icd10.html", icd10=views.icd10_choices(q, fmt_of(request).lang),
                            form={"icd_q": q})

    @router.get("/outpatient/formulary")
    async def formulary_search(request: Request) -> Response:
        _check_role(request)
        q = request.query_params.get("drug_q", "")[:100]
        found = await run(views.formulary_choices, guarded(request), q)
        return pages.render(request, "outpatient/_drugs.html", drugs=found, form={"drug_q": q})

    return router


__all__ = ["AREA_ROLES", "outpatient_router"]
