"""Routes of the OAuth2 / OpenID Connect authorization server (sante.auth.oauth): sign-in pages, the authorization,
token, introspection and revocation endpoints, the id_token keys and the SMART / OpenID discovery documents.

These paths are public to the bearer-token middleware (sante.api.security.PUBLIC): the login form checks a
password, the token, introspection and revocation endpoints authenticate the client, and /auth/authorize needs
the sign-in session cookie. Failed attempts are limited per client address (10 a minute on the login form, 10 a
minute on the token endpoints, then 429 with Retry-After), on top of the per-account lock-out of UserStore.

Sign-ins, failed sign-ins, sign-outs, token issuance (and refusals) and revocations are written to the audit trail.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import anyio
import orjson
from fastapi import FastAPI, Request
from jinja2 import Environment, select_autoescape
from starlette.responses import RedirectResponse, Response

from sante.api.security import Security
from sante.auth.audit import Event
from sante.auth.clients import ClientStore
from sante.auth.oauth import SanteAuthorizationServer
from sante.auth.secrets import load_or_create
from sante.auth.users import AuthenticationFailed
from sante.auth.web_session import CSRF_COOKIE, SESSION_COOKIE, SESSION_LIFETIME, FailureLimit, LoginSessions, Signer

MAX_FORM_BYTES = 64 * 1024
LOGIN_FAILURES_PER_MINUTE = 10
TOKEN_FAILURES_PER_MINUTE = 10
GENERIC_FAILURE = "Tên đăng nhập hoặc mật khẩu không đúng. / Wrong username or password."
EXPIRED_FORM = "Biểu mẫu đã hết hạn, vui lòng thử lại. / The form has expired, please try again."
TOO_MANY = "Quá nhiều lần thử, vui lòng đợi. / Too many attempts, please wait and try again."
HTML_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # No form-action: the sign-in form redirects on to the client app's redirect URI.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; "
                               "base-uri 'none'",
}
CORS = {"Access-Control-Allow-Origin": "*"}  # no cookies on these endpoints: browser apps may call them

_LOGIN_PAGE = """<!doctype html>
<html lang="vi">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sante — Đăng nhập / Sign in</title>
<style>
body { font-family: system-ui, sans-serif; background: #f4f6f8; margin: 0; }
main { max-width: 22rem; margin: 4rem auto; background: #fff; padding: 2rem; border-radius: .5rem;
       box-shadow: 0 1px 4px rgba(0,0,0,.15); }
h1 { margin-top: 0; font-size: 1.5rem; }
label { display: block; margin: .8rem 0; font-size: .9rem; }
input { display: block; width: 100%; box-sizing: border-box; padding: .5rem; margin-top: .25rem; font-size: 1rem; }
button { width: 100%; padding: .6rem; font-size: 1rem; margin-top: .5rem; }
.error { color: #a00; background: #fee; padding: .5rem; border-radius: .25rem; }
</style>
</head>
<body>
<main>
<h1>Sante</h1>
{% if signed_in %}
<p>Đã đăng nhập: <b>{{ signed_in }}</b><br>Signed in as <b>{{ signed_in }}</b></p>
<form method="post" action="/logout">
<input type="hidden" name="csrf" value="{{ csrf }}">
<button type="submit">Đăng xuất / Sign out</button>
</form>
{% else %}
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
<form method="post" action="/login">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="next" value="{{ next }}">
<label>Tên đăng nhập / Username
<input name="username" value="{{ username }}" autocomplete="username" autocapitalize="none" required autofocus></label>
<label>Mật khẩu / Password
<input type="password" name="password" autocomplete="current-password" required></label>
<label>Mã xác thực (nếu đã bật) / One-time code (if enabled)
<input name="totp" inputmode="numeric" autocomplete="one-time-code" maxlength="8"></label>
<button type="submit">Đăng nhập / Sign in</button>
</form>
{% endif %}
</main>
</body>
</html>
"""

_templates = Environment(autoescape=select_autoescape(default=True, default_for_string=True), trim_blocks=True,
                         lstrip_blocks=True)
_login_template = _templates.from_string(_LOGIN_PAGE)


def public_base(request: Request) -> str:
    """The server's public base URL: SANTE_PUBLIC_URL when set (behind a reverse proxy), else the request's."""
    return (os.environ.get("SANTE_PUBLIC_URL") or str(request.base_url)).rstrip("/")


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _safe_next(value: str | None) -> str:
    """A local path to go back to after signing in; anything else (another site, a scheme) is dropped."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return ""
    if any(ord(ch) < 0x20 or ch == "\\" for ch in value):
        return ""
    return value


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


def register_oauth_routes(app: FastAPI, security: Security, data_dir: Path) -> SanteAuthorizationServer:
    engine = security.users.engine
    server = SanteAuthorizationServer(engine, security.tokens, security.users, ClientStore(engine), data_dir)
    signer = Signer(load_or_create(data_dir, "session"))
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
                   username: str = "", signed_in: str | None = None, extra: dict[str, str] | None = None
                   ) -> Response:
        headers = {**HTML_HEADERS, **(extra or {})}
        if signed_in:
            csrf = signer.session_csrf(request.cookies.get(SESSION_COOKIE, ""))
            html = _login_template.render(signed_in=signed_in, csrf=csrf)
            return Response(html, status_code=status, media_type="text/html; charset=utf-8", headers=headers)
        cookie, csrf = signer.new_csrf()
        html = _login_template.render(error=error, csrf=csrf, next=next_path, username=username[:64])
        response = Response(html, status_code=status, media_type="text/html; charset=utf-8", headers=headers)
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
        next_path = _safe_next(request.query_params.get("next"))
        user, _ = await current_user(request)
        if user is not None:
            if next_path:
                return RedirectResponse(next_path, status_code=303, headers=HTML_HEADERS)
            return login_page(request, signed_in=user.username)
        return login_page(request, next_path=next_path)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        address = _address(request)
        form = _first(await _form(request) or [])
        next_path = _safe_next(form.get("next"))
        username = form.get("username", "").strip()
        wait = login_limit.retry_after(address)
        if wait is not None:
            await audit(Event("login", username=username[:64] or None, address=address, status=429,
                              description="sign-in refused: too many failed attempts from this address"))
            return login_page(request, status=429, error=TOO_MANY, next_path=next_path, username=username,
                              extra={"Retry-After": str(wait)})
        if not signer.check_csrf(request.cookies.get(CSRF_COOKIE), form.get("csrf")):
            login_limit.fail(address)
            await audit(Event("login", username=username[:64] or None, address=address, status=400,
                              description="sign-in refused: missing or wrong CSRF token"))
            return login_page(request, status=400, error=EXPIRED_FORM, next_path=next_path, username=username)
        try:
            user = await anyio.to_thread.run_sync(security.users.authenticate, username, form.get("password", ""),
                                                  form.get("totp", "").strip() or None)
        except AuthenticationFailed as e:
            login_limit.fail(address)
            await audit(Event("login", username=username[:64] or None, address=address, status=401,
                              description=f"sign-in failed: {e.message}"))
            return login_page(request, status=401, error=GENERIC_FAILURE, next_path=next_path, username=username)
        old = request.cookies.get(SESSION_COOKIE)
        if old:
            await anyio.to_thread.run_sync(sessions.end, old)
        cookie = await anyio.to_thread.run_sync(sessions.create, user.username)
        await audit(Event("login", username=user.username, role=user.role, agent=user.fhir_user, address=address,
                          description="signed in (authorization server session)"))
        response = RedirectResponse(next_path or "/login", status_code=303, headers=HTML_HEADERS)
        response.set_cookie(SESSION_COOKIE, cookie, max_age=SESSION_LIFETIME, httponly=True, samesite="lax",
                            secure=secure(request), path="/")
        response.delete_cookie(CSRF_COOKIE, path="/")
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        cookie = request.cookies.get(SESSION_COOKIE)
        form = _first(await _form(request) or [])
        if not cookie:
            return RedirectResponse("/login", status_code=303, headers=HTML_HEADERS)
        if not signer.check("logout", cookie, form.get("csrf", "")):
            return Response("the sign-out form has expired: reload the page", status_code=400,
                            media_type="text/plain; charset=utf-8", headers=HTML_HEADERS)
        user, _ = await current_user(request)
        await anyio.to_thread.run_sync(sessions.end, cookie)
        if user is not None:
            await audit(Event("logout", username=user.username, role=user.role, agent=user.fhir_user,
                              address=_address(request), description="signed out"))
        response = RedirectResponse("/login", status_code=303, headers=HTML_HEADERS)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # -- OAuth2 endpoints ------------------------------------------------------------------------------------
    @app.get("/auth/authorize", include_in_schema=False)
    async def authorize(request: Request) -> Response:
        user, auth_time = await current_user(request)
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        login_url = "/login?" + urlencode({"next": here})
        request.state.oauth_form = []
        response = await anyio.to_thread.run_sync(server.run, public_base(request), server.authorization_response,
                                                  request, user, auth_time, login_url)
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
