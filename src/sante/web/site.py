"""The clinician web app's pages and how they join the FHIR application (sante.api.app.create_app): its routes
go into the same FastAPI app as the API (`/`, `/patients`, ...), its static files under `/static/`, and the
security middleware lets browsers in with the sign-in session (see sante.web.gate).

Every page reaches clinical data through sante.auth.guarded.GuardedRepository with the request's principal and
audit event: the same rules as the API, and the audit event names the patient and the resources shown."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI, Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from sante.anomaly import Anomaly, Category
from sante.auth.ca import default_ca_dir
from sante.auth.guarded import GuardedRepository
from sante.auth.principal import Principal
from sante.auth.secrets import load_or_create
from sante.auth.users import UserStore
from sante.auth.web_session import LoginSessions, Signer, safe_next
from sante.store import Repository
from sante.web.chart import load_chart
from sante.web.chart_forms import chart_forms_router
from sante.web.dashboard import dashboard_router
from sante.web.gate import PageGate
from sante.web.i18n import DEFAULT_TIME_ZONE, LANG_COOKIE, LANGUAGES
from sante.web.launch import launch_router
from sante.web.outpatient import outpatient_router
from sante.web.patients import find_patients
from sante.web.pharmacy import pharmacy_router
from sante.web.population import population_router
from sante.web.render import PAGE_HEADERS, Pages
from sante.web.wards import wards_router

STATIC_DIR = Path(__file__).resolve().parent / "static"
LANG_COOKIE_AGE = 365 * 24 * 3600


def _principal(request: Request) -> Principal:
    """The signed-in user (the security middleware lets no page request through without one)."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise Anomaly(Category.UNAUTHORIZED, "this page needs a signed-in user")
    return principal


def _guarded(repo: Repository, request: Request) -> GuardedRepository:
    return GuardedRepository(repo, _principal(request), getattr(request.state, "audit", None))


async def _in_thread(fn: Any, *args: Any) -> Any:
    """Repository work off the event loop (PostgreSQL answers over the network)."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args))


def page_router(repo: Repository, pages: Pages) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def home(request: Request) -> Response:
        _principal(request)
        return pages.render(request, "home.html", active="home", main_search=True, q="", results=None)

    @router.get("/patients")
    async def patient_search(request: Request) -> Response:
        q = request.query_params.get("q", "")[:200]
        event = getattr(request.state, "audit", None)
        if event is not None:
            event.subtype = "search-type"
        outcome = await _in_thread(find_patients, _guarded(repo, request), q, pages.formats_for(request))
        context = {"q": q, "results": outcome}
        if request.headers.get("hx-request") == "true" and request.headers.get("hx-boosted") != "true":
            return pages.render(request, "patients/_results.html", **context)
        return pages.render(request, "patients/search.html", active="patients", main_search=True, **context)

    @router.get("/patients/{pid}")
    async def patient_chart(request: Request, pid: str) -> Response:
        chart = await _in_thread(load_chart, _guarded(repo, request), pid, pages.formats_for(request))
        return pages.render(request, "patients/chart.html", active="patients", chart=chart)

    @router.get("/lang")
    async def choose_language(request: Request) -> Response:
        """The language switcher (open to all: the sign-in page has it too)."""
        lang = request.query_params.get("to", "")
        back = safe_next(request.query_params.get("next")) or "/"
        response = RedirectResponse(back, status_code=303, headers=PAGE_HEADERS)
        if lang in LANGUAGES:
            response.set_cookie(LANG_COOKIE, lang, max_age=LANG_COOKIE_AGE, httponly=True, samesite="lax",
                                secure=request.url.scheme == "https", path="/")
        return response

    return router


class WebApp:
    """The web app of one server: its page renderer (also used by the sign-in page), the gate the security
    middleware lets browsers in by, and its routes."""

    def __init__(self, repo: Repository, users: UserStore, data_dir: Path, time_zone: str = DEFAULT_TIME_ZONE
                 ) -> None:
        signer = Signer(load_or_create(data_dir, "session"))
        self.pages = Pages(signer, time_zone)
        self.gate = PageGate(LoginSessions(repo.engine, signer), users, signer, self.pages)
        self.router = page_router(repo, self.pages)
        self.router.include_router(launch_router(repo, self.pages, signer, _in_thread))
        self.router.include_router(dashboard_router(repo, self.pages, _in_thread))
        self.router.include_router(population_router(repo, self.pages, _in_thread))
        self.router.include_router(chart_forms_router(repo, self.pages, _in_thread))
        self.router.include_router(outpatient_router(repo, self.pages, _in_thread, default_ca_dir(data_dir)))
        self.router.include_router(wards_router(repo, self.pages, _in_thread, default_ca_dir(data_dir)))
        self.router.include_router(pharmacy_router(repo, self.pages, _in_thread))

    def mount(self, app: FastAPI) -> None:
        """Add the pages and the static files to the application."""
        app.include_router(self.router)
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    def error(self, request: Request, status: int) -> Response:
        return self.pages.error(request, status)


__all__ = ["STATIC_DIR", "WebApp", "page_router"]
