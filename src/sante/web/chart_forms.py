"""The chart's forms (`/patients/{id}/...`): add an allergy, add or resolve a problem (with ICD-10 search), record
an immunization, add a document (a PDF or an image) and open it.

Each form posts to its own URL and writes through sante.clinical.chart_entries (one transaction, through the
guarded repository: the role's rights and the patients the user may see apply). Success goes back to the chart
at the section (303, or HX-Redirect for htmx); input that is wrong shows the chart again with each message next
to its field and what was typed kept (422; htmx asks for 200 and picks the section). A document is uploaded as
multipart/form-data by htmx, which sends the session's CSRF token in its header (the gate checks form fields of
urlencoded bodies only), so adding a document needs JavaScript; every other form works without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile
from starlette.responses import RedirectResponse, Response

from sante.anomaly import Anomaly, Category
from sante.auth.guarded import GuardedRepository
from sante.clinical import icd10
from sante.clinical.chart_entries import (
    ALLERGENS,
    MAX_DOCUMENT_BYTES,
    AllergyInput,
    DocumentInput,
    ImmunizationInput,
    ProblemInput,
    add_problem,
    attach_document,
    document_file,
    record_allergy,
    record_immunization,
    resolve_problem,
)
from sante.clinical.forms import FieldProblem, InvalidInput
from sante.store import Repository
from sante.store.index_values import fold
from sante.web.chart import load_chart
from sante.web.chart_sections import ALLERGEN_LABELS
from sante.web.i18n import N_, Formats
from sante.web.render import PAGE_HEADERS, Pages, may

MAX_FORM = 64 * 1024
ICD10_RESULTS = 15
MESSAGES = {  # FieldProblem.key -> the message shown next to the field
    "allergy.substance.missing": N_("Name the substance."),
    "allergy.category.unknown": N_("Choose a category from the list."),
    "allergy.criticality.missing": N_("Choose the criticality."),
    "allergy.severity.unknown": N_("Choose a severity from the list."),
    "allergy.reaction.missing": N_("Describe the reaction to give its severity."),
    "problem.code.missing": N_("Choose a diagnosis (ICD-10 code)."),
    "problem.code.invalid": N_("%(value)s is not an ICD-10 code."),
    "immunization.vaccine.missing": N_("Choose the vaccine."),
    "immunization.given.missing": N_("Enter the date."),
    "immunization.dose.invalid": N_("The dose is a number from 1 to 20."),
    "immunization.given.before-birth": N_("The date is before the patient's birth."),
    "document.title.missing": N_("Give the document a title."),
    "document.kind.missing": N_("Choose the kind of document."),
    "document.file.missing": N_("Choose a file."),
    "document.file.large": N_("The file is larger than %(limit)s MB."),
    "document.file.type": N_("Only PDF, JPEG and PNG files can be added."),
}
GENERIC = {"long": N_("At most %(limit)s characters."), "invalid": N_("%(value)s is not a date."),
           "future": N_("The date cannot be in the future.")}
SECTIONS = {"allergy": "allergies", "problem": "problems", "immunization": "immunizations", "document": "documents"}


@dataclass(slots=True)
class FormState:
    """A form sent back: what was typed, and the message of each field that was wrong."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    saved: bool = False  # written: the section says so (htmx swaps the section in place)


def field_message(p: FieldProblem, fmt: Formats) -> str:
    """A problem's message in the user's language (its English text when the key has none)."""
    message = MESSAGES.get(p.key) or GENERIC.get(p.key.rsplit(".", 1)[-1])
    if message is None:
        return p.text
    return fmt.t.gettext(message) % dict(p.params)


def _allergen_key(text: str, fmt: Formats) -> str | None:
    """The catalogue's allergen a name typed in the user's language stands for (its label, in any case)."""
    folded = fold(text)
    return next((k for k, label in ALLERGEN_LABELS.items() if fold(fmt.t.gettext(label)) == folded), None)


def chart_forms_router(repo: Repository, pages: Pages, run: Any) -> APIRouter:
    """run(fn, *args) runs repository work off the event loop (sante.web.site._in_thread)."""
    router = APIRouter(include_in_schema=False)

    def guarded(request: Request) -> GuardedRepository:
        return GuardedRepository(repo, request.state.principal, getattr(request.state, "audit", None))

    async def form_of(request: Request) -> dict[str, str]:
        body = await request.body()
        return dict(parse_qsl(body[:MAX_FORM].decode("utf-8", "replace"), keep_blank_values=True))

    async def done(request: Request, pid: str, form: str) -> Response:
        """Back to the chart at the form's section; for htmx, the chart itself (the form picks its section)."""
        if request.headers.get("hx-request") == "true":
            chart = await run(load_chart, guarded(request), pid, pages.formats_for(request))
            return pages.render(request, "patients/chart.html", active="patients", chart=chart,
                                forms={form: FormState({}, saved=True)})
        return RedirectResponse(f"/patients/{quote(pid)}#{SECTIONS[form]}", status_code=303, headers=PAGE_HEADERS)

    async def attempt(request: Request, pid: str, form: str, values: dict[str, str], write: Any, *args: Any
                      ) -> Response:
        """Write, then back to the chart; or the chart again with the form's problems beside its fields."""
        fmt = pages.formats_for(request)
        try:
            await run(write, guarded(request), pid, *args)
        except InvalidInput as e:
            state = FormState(values)
            for p in e.field_problems:  # the first problem of each field, in the form's order
                state.errors.setdefault(p.field, field_message(p, fmt))
            chart = await run(load_chart, guarded(request), pid, fmt)
            status = 200 if request.headers.get("hx-request") == "true" else 422
            return pages.render(request, "patients/chart.html", status=status, active="patients", chart=chart,
                                forms={form: state})
        except Anomaly as e:
            return pages.error(request, 409 if e.category == Category.PRECONDITION_FAILED else e.category.status)
        return await done(request, pid, form)

    @router.post("/patients/{pid}/allergies")
    async def add_allergy(request: Request, pid: str) -> Response:
        f = await form_of(request)
        fmt = pages.formats_for(request)
        substance = f.get("substance", "")
        key = _allergen_key(substance, fmt)
        if key is not None:  # a catalogue name in the user's language: coded as the catalogue's substance
            substance = ALLERGENS[key].vi if fmt.lang == "vi" else ALLERGENS[key].display
        entry = AllergyInput(substance=substance, criticality=f.get("criticality", ""),
                             category=f.get("category", ""), reaction=f.get("reaction", ""),
                             severity=f.get("severity", ""), note=f.get("note", ""))
        return await attempt(request, pid, "allergy", f, record_allergy, entry)

    @router.post("/patients/{pid}/problems")
    async def add_to_problem_list(request: Request, pid: str) -> Response:
        f = await form_of(request)
        entry = ProblemInput(code=f.get("code", ""), onset=f.get("onset", ""), note=f.get("note", ""))
        return await attempt(request, pid, "problem", f, add_problem, entry)

    @router.post("/patients/{pid}/problems/{cid}/resolve")
    async def resolve(request: Request, pid: str, cid: str) -> Response:
        f = await form_of(request)
        version = f.get("version", "")
        if not version.isdigit():
            return pages.error(request, 400)
        try:
            await run(lambda g: resolve_problem(g, pid, cid, version=int(version)), guarded(request))
        except Anomaly as e:
            return pages.error(request, 409 if e.category == Category.PRECONDITION_FAILED else e.category.status)
        return await done(request, pid, "problem")

    @router.post("/patients/{pid}/immunizations")
    async def add_immunization(request: Request, pid: str) -> Response:
        f = await form_of(request)
        entry = ImmunizationInput(vaccine=f.get("vaccine", ""), given=f.get("given", ""), dose=f.get("dose", ""),
                                  lot=f.get("lot", ""), note=f.get("note", ""))
        return await attempt(request, pid, "immunization", f, record_immunization, entry)

    @router.post("/patients/{pid}/documents")
    async def add_document(request: Request, pid: str) -> Response:
        values: dict[str, str] = {}
        data, filename = b"", ""
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_DOCUMENT_BYTES + MAX_FORM:
            data = b"\0" * (MAX_DOCUMENT_BYTES + 1)  # refused as too large without reading it
        else:
            form = await request.form(max_files=1, max_fields=10)  # a malformed body: 400 (Starlette)
            values = {k: v for k, v in form.items() if isinstance(v, str)}
            upload = form.get("file")
            if isinstance(upload, UploadFile):
                data = await upload.read(MAX_DOCUMENT_BYTES + 1)
                filename = upload.filename or ""
                await upload.close()
        entry = DocumentInput(title=values.get("title", ""), kind=values.get("kind", ""), filename=filename,
                              data=data)
        return await attempt(request, pid, "document", values, attach_document, entry)

    @router.get("/patients/{pid}/documents/{did}")
    async def open_document(request: Request, pid: str, did: str) -> Response:
        try:
            found = await run(document_file, guarded(request), pid, did)
        except Anomaly as e:
            return pages.error(request, e.category.status)
        headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                   "Content-Disposition": f"inline; filename*=UTF-8''{quote(found.filename)}",
                   # an image under the pages' policy; a PDF left to the browser's viewer, never framed elsewhere
                   "Content-Security-Policy": "frame-ancestors 'self'" if found.content_type == "application/pdf"
                   else "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'self'"}
        return Response(found.data, media_type=found.content_type, headers=headers)

    @router.get("/chart/icd10")
    async def icd10_options(request: Request) -> Response:
        """The ICD-10 codes matching what is typed in the problem form, as the options of its datalist."""
        if not may(request.state.principal, "c", "Condition"):
            return pages.error(request, 403)
        q = request.query_params.get("code", "")[:100]
        fmt = pages.formats_for(request)
        found = icd10.search(q, ICD10_RESULTS, lang="vi" if fmt.lang == "vi" else "en") if q.strip() else []
        options = [(e.code, e.title("vi" if fmt.lang == "vi" else "en")) for e in found]
        return pages.render(request, "patients/_icd10_options.html", options=options)

    return router


__all__ = ["FormState", "chart_forms_router", "field_message"]
