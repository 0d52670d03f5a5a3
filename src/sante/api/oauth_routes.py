"""Routes of the OAuth2 / OpenID Connect authorization server (sante.auth.oauth): sign-in pages, the authorization,
token, introspection and revocation endpoints, the id_token keys and the SMART / OpenID discovery documents.

These paths are public to the bearer-token middleware (sante.api.security.PUBLIC): the login form checks a
password, the token, introspection and revocation endpoints authenticate the client, and /auth/authorize needs
the sign-in session cookie. Failed attempts are limited per client address (10 a minute on the login form, 10 a
minute on the token endpoints, then 429 with Retry-After), on top of the per-account lock-out of UserStore.

Sign-ins, failed sign-ins, sign-outs, token issuance (and refusals) and revocations are written to the audit trail.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import anyio
import orjson
from fastapi import FastAPI, Request
from starlette.responses import RedirectResponse, Response

from sante.api.security import Security
from sante.auth.audit import Event
from sante.auth.clients import ClientStore
from sante.auth.oauth import SanteAuthorizationServer
from sante.auth.secrets import load_or_create
from sante.auth.users import LOCK_MINUTES, MAX_FAILURES, AuthenticationFailed, SecondFactorNeeded
from sante.auth.web_session import (
    CSRF_COOKIE,
    LAUNCH_COOKIE,
    SESSION_COOKIE,
    SESSION_LIFETIME,
    FailureLimit,
    LoginSessions,
    Signer,
    safe_next,
)
from sante.web.render import SIGN_IN_HEADERS, Pages

MAX_FORM_BYTES = 64 * 1024
LOGIN_FAILURES_PER_MINUTE = 10
TOKEN_FAILURES_PER_MINUTE = 10
CORS = {"Access-Control-Allow-Origin": "*"}  # no cookies on these endpoints: browser apps may call them


def public_base(request: Request) -> str:
    """The server's public base URL: SANTE_PUBLIC_URL when set (behind a reverse proxy), else the request's."""
    return (os.environ.get("SANTE_PUBLIC_URL") or str(request.base_url)).rstrip("/")


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _form(request: Request) -> list[tuple[str, str]] | None:
    """The urlencoded form body, None when the body is not one (or too large)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return None
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return None
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        return None


def _first(pairs: list[tuple[str, str]]) -> dict[str, str]:
    return {k: v for k, v in reversed(pairs)}


def register_oauth_routes(app: FastAPI, security: Security, data_dir: Path, pages: Pages | None = None
                          ) -> SanteAuthorizationServer:
    """The OAuth2 routes and the sign-in page (shown by the web app's renderer `pages`, in the browser's language)."""
    engine = security.users.engine
    server = SanteAuthorizationServer(engine, security.tokens, security.users, ClientStore(engine), data_dir)
    signer = Signer(load_or_create(data_dir, "session"))
    pages = pages or Pages(signer)
    sessions = LoginSessions(engine, signer)
    login_limit = FailureLimit(LOGIN_FAILURES_PER_MINUTE, 60.0)
    token_limit = FailureLimit(TOKEN_FAILURES_PER_MINUTE, 60.0)
    app.state.oauth = server
    app.state.oauth_limits = (login_limit, token_limit)

    async def audit(event: Event) -> None:
        await security.event_writer().record(event)

    def secure(request: Request) -> bool:
        return public_base(request).startswith("https://")

    def login_page(request: Request, *, status: int = 200, error: str | None = None, next_path: str = "",
                   username: str = "", signed_in: str | None = None, pending: str | None = None,
                   wait: int | None = None, extra: dict[str, str] | None = None) -> Response:
        """The sign-in page: the form (error: failed, expired, too_many, code), the one-time code step (pending:
        the token of an accepted password), or, signed in, who the user is and the sign-out button."""
        headers = {**SIGN_IN_HEADERS, **(extra or {})}
        context = {"error": error, "next": next_path, "username": username[:64], "pending": pending, "wait": wait,
                   "max_failures": MAX_FAILURES, "lock_minutes": LOCK_MINUTES, "signed_in": signed_in}
        if signed_in:
            csrf = signer.session_csrf(request.cookies.get(SESSION_COOKIE, ""))
            return pages.render(request, "login.html", status=status, headers=headers, csrf=csrf, **context)
        cookie, csrf = signer.new_csrf()
        response = pages.render(request, "login.html", status=status, headers=headers, csrf=csrf, **context)
        response.set_cookie(CSRF_COOKIE, cookie, max_age=3600, httponly=True, samesite="lax", secure=secure(request),
                            path="/")
        return response

    async def current_user(request: Request) -> tuple[Any, int | None]:
        found = await anyio.to_thread.run_sync(sessions.lookup, request.cookies.get(SESSION_COOKIE))
        if found is None:
            return None, None
        user = await anyio.to_thread.run_sync(server.active_user, found[0])
        return user, (found[1] if user is not None else None)

    # -- sign-in ---------------------------------------------------------------------------------------------
    @app.get("/login", include_in_schema=False)
    async def login_form(request: Request) -> Response:
        next_path = safe_next(request.query_params.get("next"))
        user, _ = await current_user(request)
        if user is not None:
            if next_path:
                return RedirectResponse(next_path, status_code=303, headers=SIGN_IN_HEADERS)
            return login_page(request, signed_in=user.username)
        return login_page(request, next_path=next_path)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        address = _address(request)
        form = _first(await _form(request) or [])
        next_path = safe_next(form.get("next"))
        username = form.get("username", "").strip()
        pending = form.get("pending")
        code = form.get("totp", "").strip() or None
        wait = login_limit.retry_after(address)
        if wait is not None:
            await audit(Event("login", username=username[:64] or None, address=address, status=429,
                              description="sign-in refused: too many failed attempts from this address"))
            return login_page(request, status=429, error="too_many", wait=wait, next_path=next_path,
                              username=username, extra={"Retry-After": str(wait)})
        if not signer.check_csrf(request.cookies.get(CSRF_COOKIE), form.get("csrf")):
            login_limit.fail(address)
            await audit(Event("login", username=username[:64] or None, address=address, status=400,
                              description="sign-in refused: missing or wrong CSRF token"))
            return login_page(request, status=400, error="expired", next_path=next_path, username=username)
        try:
            if pending:  # the second step: the password was accepted moments ago, the one-time code comes now
                accepted = signer.accepted_username(pending, time.time())
                if accepted is None:
                    return login_page(request, status=400, error="expired", next_path=next_path)
                username = accepted
                user = await anyio.to_thread.run_sync(security.users.verify_second_factor, username, code or "")
            else:
                user = await anyio.to_thread.run_sync(functools.partial(
                    security.users.authenticate, username, form.get("password", ""), code, ask_second_factor=True))
        except SecondFactorNeeded:
            await audit(Event("login", username=username[:64], address=address, status=401,
                              description="sign-in: password accepted, the one-time code is asked for"))
            return login_page(request, status=401, next_path=next_path, username=username,
                              pending=signer.password_accepted(username, time.time()))
        except AuthenticationFailed as e:
            login_limit.fail(address)
            await audit(Event("login", username=username[:64] or None, address=address, status=401,
                              description=f"sign-in failed: {e.message}"))
            if pending:
                return login_page(request, status=401, error="code", next_path=next_path, username=username,
                                  pending=pending)
            return login_page(request, status=401, error="failed", next_path=next_path, username=username)
        old = request.cookies.get(SESSION_COOKIE)
        if old:
            await anyio.to_thread.run_sync(sessions.end, old)
        cookie = await anyio.to_thread.run_sync(sessions.create, user.username)
        await audit(Event("login", username=user.username, role=user.role, agent=user.fhir_user, address=address,
                          description="signed in (authorization server session)"))
        response = RedirectResponse(next_path or "/", status_code=303, headers=SIGN_IN_HEADERS)
        response.set_cookie(SESSION_COOKIE, cookie, max_age=SESSION_LIFETIME, httponly=True, samesite="lax",
                            secure=secure(request), path="/")
        response.delete_cookie(CSRF_COOKIE, path="/")
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        cookie = request.cookies.get(SESSION_COOKIE)
        form = _first(await _form(request) or [])
        if not cookie:
            return RedirectResponse("/login", status_code=303, headers=SIGN_IN_HEADERS)
        user, _ = await current_user(request)
        if not signer.check_session_csrf(cookie, form.get("csrf", "")):
            if user is None:
                return RedirectResponse("/login", status_code=303, headers=SIGN_IN_HEADERS)
            return login_page(request, status=400, error="expired", signed_in=user.username)
        await anyio.to_thread.run_sync(sessions.end, cookie)
        if user is not None:
            await audit(Event("logout", username=user.username, role=user.role, agent=user.fhir_user,
                              address=_address(request), description="signed out"))
        response = RedirectResponse("/login", status_code=303, headers=SIGN_IN_HEADERS)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # -- OAuth2 endpoints ------------------------------------------------------------------------------------
    @app.get("/auth/authorize", include_in_schema=False)
    async def authorize(request: Request) -> Response:
        user, auth_time = await current_user(request)
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        login_url = "/login?" + urlencode({"next": here})
        request.state.oauth_form = []
        client_id = request.query_params.get("client_id", "")
        picked = None if user is None else sessions.signer.read_launch_pick(
            request.cookies.get(LAUNCH_COOKIE), user.username, client_id, time.time())
        picker_url = "/launch/patient?" + urlencode({"next": here, "client": client_id})
        response = await anyio.to_thread.run_sync(server.run, public_base(request), server.authorization_response,
                                                  request, user, auth_time, login_url, picked, picker_url)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    def too_many(wait: int) -> Response:
        body = {"error": "invalid_request", "error_description": f"too many failed requests: retry in {wait} s"}
        return Response(orjson.dumps(body), status_code=429, media_type="application/json",
                        headers={"Retry-After": str(wait), "Cache-Control": "no-store", **CORS})

    async def endpoint(request: Request, name: str) -> Response:
        address = _address(request)
        wait = token_limit.retry_after(address)
        if wait is not None:
            if name == "token":
                await audit(Event("token", address=address, status=429,
                                  description="token request refused: too many failed requests from this address"))
            return too_many(wait)
        form = await _form(request)
        if form is None:
            token_limit.fail(address)
            body = {"error": "invalid_request",
                    "error_description": "send the parameters as application/x-www-form-urlencoded (at most 64 KiB)"}
            return Response(orjson.dumps(body), status_code=400, media_type="application/json",
                            headers={"Cache-Control": "no-store", **CORS})
        request.state.oauth_form = form
        base = public_base(request)
        if name == "token":
            response = await anyio.to_thread.run_sync(server.run, base, server.create_token_response, request)
        else:
            response = await anyio.to_thread.run_sync(server.run, base, server.create_endpoint_response, name,
                                                      request)
        if response.status_code >= 400:
            token_limit.fail(address)
        if name in ("token", "revocation"):
            await audit(_token_event(request, response, name, address, _first(form)))
        for k, v in CORS.items():
            response.headers[k] = v
        return response

    @app.post("/auth/token", include_in_schema=False)
    async def token(request: Request) -> Response:
        return await endpoint(request, "token")

    @app.post("/auth/introspect", include_in_schema=False)
    async def introspect(request: Request) -> Response:
        return await endpoint(request, "introspection")

    @app.post("/auth/revoke", include_in_schema=False)
    async def revoke(request: Request) -> Response:
        return await endpoint(request, "revocation")

    # -- keys and discovery ------------------------------------------------------------------------------------
    def json_doc(body: dict[str, Any]) -> Response:
        return Response(orjson.dumps(body), media_type="application/json",
                        headers={"Cache-Control": "public, max-age=3600", **CORS})

    @app.get("/auth/jwks", include_in_schema=False)
    async def jwks() -> Response:
        return json_doc(await anyio.to_thread.run_sync(server.jwks))

    @app.get("/.well-known/smart-configuration", include_in_schema=False)
    @app.get("/fhir/.well-known/smart-configuration", include_in_schema=False)
    async def smart_configuration(request: Request) -> Response:
        return json_doc(server.run(public_base(request), server.smart_configuration))

    @app.get("/.well-known/openid-configuration", include_in_schema=False)
    async def openid_configuration(request: Request) -> Response:
        return json_doc(server.run(public_base(request), server.openid_configuration))

    return server


def _token_event(request: Request, response: Response, name: str, address: str, form: dict[str, str]) -> Event:
    """The AuditEvent of a token request (or a revocation): who got which token, or why it was refused."""
    oreq = getattr(request.state, "oauth_request", None)
    client = getattr(oreq, "client", None)
    client_id = client.client_id if client is not None else (form.get("client_id") or None)
    grant_type = form.get("grant_type", "?")
    if name == "revocation":
        ok = response.status_code < 400
        return Event("token", username=client_id, address=address, status=response.status_code,
                     description=f"revocation by client {client_id}" + ("" if ok else f" refused: {_error(response)}"))
    claims = getattr(oreq, "sante_claims", None)
    if response.status_code < 400 and claims:
        return Event("token", username=claims.get("sub"), role=claims.get("role"), agent=claims.get("fhirUser"),
                     address=address, patient=claims.get("patient"), token_id=claims.get("jti"),
                     description=f"{grant_type} token for client {client_id}: {claims.get('scope', '')}")
    return Event("token", username=client_id, address=address, status=response.status_code,
                 description=f"{grant_type} token refused for client {client_id}: {_error(response)}")


def _error(response: Response) -> str:
    try:
        body = orjson.loads(response.body)
    except (orjson.JSONDecodeError, TypeError):
        return str(response.status_code)
    return f"{body.get('error')}: {body.get('error_description') or ''}".strip(": ")


__all__ = ["public_base", "register_oauth_routes"]
