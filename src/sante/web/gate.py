"""How the security middleware (sante.api.security) lets a browser into the web app's pages: by the sign-in
session cookie (sante.auth.web_session, the same session the OAuth sign-in page creates) instead of a bearer
token, with a CSRF token on every state-changing request, and with pages rather than OperationOutcomes when it
refuses: the sign-in page for a browser that is not signed in, a 403 page for a forged form.

The middleware still writes each page request's AuditEvent before the response starts, as for the API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import anyio
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from sante.anomaly import Anomaly
from sante.auth.principal import Principal
from sante.auth.users import User, UserStore
from sante.auth.web_session import SESSION_COOKIE, LoginSessions, Signer, safe_next, session_principal
from sante.web.render import PAGE_HEADERS, Pages

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
MAX_FORM_BYTES = 1024 * 1024
Receive = Callable[[], Awaitable[dict[str, Any]]]


class PageGate:
    """Sign-in and CSRF for the pages; see the module docstring."""

    def __init__(self, sessions: LoginSessions, users: UserStore, signer: Signer, pages: Pages) -> None:
        self.sessions = sessions
        self.users = users
        self.signer = signer
        self.pages = pages

    def _active_user(self, cookie: str) -> User | None:
        found = self.sessions.lookup(cookie)
        if found is None:
            return None
        try:
            user = self.users.get(found[0])
        except Anomaly:
            return None
        return None if user.disabled else user

    async def principal(self, scope: Any) -> Principal | None:
        """The signed-in user of a live session, None when there is none (or the account was disabled)."""
        cookie = Request(scope).cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        user = await anyio.to_thread.run_sync(self._active_user, cookie)
        return None if user is None else session_principal(user)

    def sign_in(self, scope: Any) -> Response:
        """Send a browser that is not signed in to the sign-in page, to come back here afterwards (htmx requests:
        the whole page goes, through HX-Redirect, to come back to the page the request was made from)."""
        request = Request(scope)
        if request.headers.get("hx-request") == "true":
            current = urlsplit(request.headers.get("hx-current-url", ""))
            back = safe_next(current.path + (f"?{current.query}" if current.query else "")) or "/"
            location = "/login?" + urlencode({"next": back})
            return Response(status_code=401, headers={**PAGE_HEADERS, "HX-Redirect": location})
        here = scope["path"] + (f"?{request.url.query}" if request.url.query else "")
        back = safe_next(here) if scope["method"] in SAFE_METHODS else "/"
        location = "/login" if back in ("", "/") else "/login?" + urlencode({"next": back})
        return RedirectResponse(location, status_code=303, headers=PAGE_HEADERS)

    def csrf_token(self, scope: Any) -> str:
        return self.signer.session_csrf(Request(scope).cookies.get(SESSION_COOKIE, ""))

    async def checked_receive(self, scope: Any, receive: Receive) -> Receive | None:
        """For a state-changing request: the receive channel to hand on (the body replayed when it had to be read
        for its `csrf` field), or None when the CSRF token (X-CSRF-Token header or `csrf` form field) is missing
        or is not this session's."""
        request = Request(scope)
        cookie = request.cookies.get(SESSION_COOKIE, "")
        header = request.headers.get(CSRF_HEADER)
        if header is not None:
            return receive if self.signer.check_session_csrf(cookie, header) else None
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return None
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_FORM_BYTES:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=1000)
        except (UnicodeDecodeError, ValueError):
            return None
        token = next((v for k, v in fields if k == CSRF_FIELD), "")
        if not self.signer.check_session_csrf(cookie, token):
            return None
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    def refused(self, scope: Any, status: int) -> Response:
        """The page that answers a refused request (a missing or forged CSRF token: 403)."""
        return self.pages.error(Request(scope), status)


__all__ = ["CSRF_FIELD", "CSRF_HEADER", "PageGate", "SAFE_METHODS"]
