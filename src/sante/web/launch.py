"""Choosing the patient for an app's launch (SMART on FHIR standalone launch with `launch/patient`).

When an app registered in Sante asks a member of staff for `launch/patient`, the authorization endpoint sends the
browser here first: the user finds the patient (among those the authorization rules let them see), picks one,
and goes back to the authorization endpoint carrying a short-lived signed cookie that names the user, the app
and the patient. The app's token then carries that patient in context, and `patient/` scopes confine it to them.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from sante.anomaly import Anomaly
from sante.auth.guarded import GuardedRepository
from sante.auth.web_session import LAUNCH_COOKIE, LAUNCH_PICK_LIFETIME, Signer, safe_next
from sante.store import Repository
from sante.web.patients import find_patients
from sante.web.render import PAGE_HEADERS, Pages

AUTHORIZE = "/auth/authorize?"


def _next(value: str | None) -> str:
    """Only the authorization endpoint may be returned to."""
    path = safe_next(value)
    return path if path.startswith(AUTHORIZE) else ""


def launch_router(repo: Repository, pages: Pages, signer: Signer, run: Any) -> APIRouter:
    """run(fn, *args) runs repository work off the event loop (sante.web.site._in_thread)."""
    router = APIRouter(include_in_schema=False)

    def guarded(request: Request) -> GuardedRepository:
        return GuardedRepository(repo, request.state.principal, getattr(request.state, "audit", None))

    @router.get("/launch/patient")
    async def pick_form(request: Request) -> Response:
        next_path = _next(request.query_params.get("next"))
        client = request.query_params.get("client", "")[:64]
        if not next_path or not client:
            return pages.error(request, 400)
        q = request.query_params.get("q", "")[:200]
        results = await run(find_patients, guarded(request), q, pages.formats_for(request)) if q else None
        return pages.render(request, "launch/pick.html", q=q, results=results, next_path=next_path, client=client,
                            here="/launch/patient?" + urlencode({"next": next_path, "client": client}))

    @router.post("/launch/patient")
    async def pick(request: Request) -> Response:
        body = await request.body()
        form = dict(parse_qsl(body[:16384].decode("utf-8", "replace"), keep_blank_values=True))
        next_path = _next(str(form.get("next", "")))
        client = str(form.get("client", ""))[:64]
        pid = str(form.get("patient", ""))[:64]
        if not next_path or not client or not pid:
            return pages.error(request, 400)
        try:
            await run(guarded(request).read, "Patient", pid)  # 404 unless they may see the patient
        except Anomaly as e:
            return pages.error(request, e.category.status)
        event = getattr(request.state, "audit", None)
        if event is not None:
            event.subtype, event.patient = "operation", pid
            event.description = f"patient {pid} picked for the launch of app {client}"
        principal = request.state.principal
        cookie = signer.launch_pick(principal.subject, client, pid, int(time.time()) + LAUNCH_PICK_LIFETIME)
        response = RedirectResponse(next_path, status_code=303, headers=PAGE_HEADERS)
        response.set_cookie(LAUNCH_COOKIE, cookie, max_age=LAUNCH_PICK_LIFETIME, httponly=True, samesite="lax",
                            secure=request.url.scheme == "https", path="/auth/")
        return response

    return router


__all__ = ["launch_router"]
