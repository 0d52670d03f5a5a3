"""Authentication and the audit trail around every request (a pure ASGI middleware).

Each request must carry `Authorization: Bearer <token>` except the few public paths (the CapabilityStatement,
the discovery documents, the login and token endpoints). The principal is put in `request.state.principal`;
handlers check permissions with `sante.auth.policy` and add what they learn (the patient, the resources
touched) to `request.state.audit`. When the response starts, its AuditEvent is written (group-committed) and
only then is the response sent: no access goes unrecorded.

The web app's pages (every path outside `/fhir`, `/auth/` and `/.well-known/`) are signed in with the sign-in
session cookie instead of a bearer token, and their state-changing requests need the session's CSRF token: the
`pages` gate (sante.web.gate.PageGate) says who the browser is and answers refusals with pages. Their audit
events are written exactly as the API's.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

import orjson

from sante.anomaly import Anomaly, Category, Problem, operation_outcome
from sante.auth.audit import AuditLog, AuditWriter, Event
from sante.auth.break_glass import BreakGlass
from sante.auth.external import ExternalIssuer
from sante.auth.principal import Principal
from sante.auth.secrets import load_or_create
from sante.auth.tokens import TokenService
from sante.auth.users import UserStore
from sante.store import Repository

PUBLIC = {"/fhir/metadata", "/.well-known/smart-configuration", "/.well-known/openid-configuration",
          "/fhir/.well-known/smart-configuration", "/auth/token", "/auth/jwks", "/auth/login", "/login",
          # The OAuth2 endpoints authenticate the client (introspect, revoke) or need the sign-in session cookie
          # (authorize, logout) themselves: see sante.api.oauth_routes.
          "/auth/introspect", "/auth/revoke", "/auth/authorize", "/logout",
          "/lang"}  # the web app's language switcher: sets a cookie, shows nothing
API_PREFIXES = ("/fhir/", "/auth/", "/.well-known/")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_HISTORY_V = re.compile(r"^/fhir/([A-Za-z]+)/([^/]+)/_history/([^/]+)$")


@dataclass
class Security:
    """The security services of one server: tokens, users, the audit log, emergency overrides."""

    tokens: TokenService
    users: UserStore
    audit: AuditLog
    break_glass: BreakGlass
    writer: AuditWriter | None = None

    @classmethod
    def for_repository(cls, repo: Repository, data_dir: Path) -> Security:
        engine = repo.engine
        external = ExternalIssuer.from_env()
        return cls(TokenService(load_or_create(data_dir, "token"), engine, external=external), UserStore(engine),
                   AuditLog(engine, load_or_create(data_dir, "audit")).with_spool(data_dir / "audit-spool"),
                   BreakGlass(engine))

    def event_writer(self) -> AuditWriter:
        if self.writer is None:
            self.writer = AuditWriter(self.audit)
        return self.writer


def classify(method: str, path: str) -> tuple[str, list[str], str | None]:
    """(AuditEvent subtype, entities, patient id) for a request, from its method and path alone."""
    parts = [unquote(p) for p in path.split("/")[2:] if p] if path.startswith("/fhir") else []
    op = next((p for p in parts if p.startswith("$")), None)
    if op == "$export" or (len(parts) > 2 and parts[-2] == "$export-status"):
        subtype = "export"
    elif op:
        subtype = "operation"
    elif not parts:
        subtype = "transaction" if method == "POST" else "search-system"
    elif parts[0] == "_history":
        subtype = "history-system"
    elif len(parts) == 1:
        subtype = {"GET": "search-type", "POST": "create", "PUT": "update", "DELETE": "delete"}.get(method, method)
    elif parts[1] == "_search":
        subtype = "search-type"
    elif parts[1] == "_history":
        subtype = "history-type"
    elif len(parts) == 2:
        subtype = {"GET": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, method)
    elif len(parts) == 3 and parts[2] == "_history":
        subtype = "history-instance"
    elif len(parts) == 4 and parts[2] == "_history":
        subtype = "vread"
    elif len(parts) == 3:
        subtype = "search-compartment"
    else:
        subtype = method.lower()
    entities: list[str] = []
    patient = None
    if len(parts) >= 2 and parts[0][:1].isupper() and not parts[1].startswith(("$", "_")):
        entities.append(f"{parts[0]}/{parts[1]}")
        if parts[0] == "Patient":
            patient = parts[1]
    return subtype, entities, patient


def is_page(path: str) -> bool:
    """Whether a path is the web app's (signed in by session cookie) rather than the API's (bearer token)."""
    return path != "/fhir" and not path.startswith(API_PREFIXES)


class PageGate(Protocol):
    """How browsers get into the web app's pages (implemented by sante.web.gate.PageGate)."""

    async def principal(self, scope: Any) -> Principal | None: ...

    def sign_in(self, scope: Any) -> Any: ...  # the ASGI response sending a browser to the sign-in page

    async def checked_receive(self, scope: Any, receive: Any) -> Any: ...  # None: no valid CSRF token

    def refused(self, scope: Any, status: int) -> Any: ...


def _outcome_response(status: int, message: str, code: str, extra: list[tuple[bytes, bytes]] = ()) -> tuple:
    body = orjson.dumps(operation_outcome([Problem(message, code=code)]))
    headers = [(b"content-type", b"application/fhir+json; charset=utf-8"),
               (b"content-length", str(len(body)).encode()), *extra]
    return ({"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": body})


class SecurityMiddleware:
    def __init__(self, app: Any, security: Security, pages: PageGate | None = None) -> None:
        self.app = app
        self.security = security
        self.pages = pages

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        state = scope.setdefault("state", {})
        client = scope.get("client")
        address = client[0] if client else None
        if path in PUBLIC or path.startswith("/static/"):
            state["principal"] = None
            await self.app(scope, receive, send)
            return
        subtype, entities, patient = classify(scope["method"], path)
        event = Event(subtype, address=address, entities=entities, patient=patient,
                      query=scope.get("query_string", b"").decode("latin-1") or None)
        state["audit"] = event
        writer = self.security.event_writer()
        pages = self.pages if is_page(path) else None
        if pages is not None:
            event.subtype = "read" if scope["method"] in SAFE_METHODS else "operation"
            event.description = f"web page {scope['method']} {path}"
            found = await pages.principal(scope)
            if found is None:
                event.status, event.description = 401, f"web page {path}: not signed in, sent to the sign-in page"
                await writer.record(event)
                await pages.sign_in(scope)(scope, receive, send)
                return
            principal = found
        else:
            token = _bearer(scope)
            try:
                if token is None:
                    raise Anomaly(Category.UNAUTHORIZED,
                                  "this request needs an access token (Authorization: Bearer ...)")
                principal = self.security.tokens.authenticate(token)
            except Anomaly as e:
                event.status, event.description = 401, e.message
                await writer.record(event)
                start, body = _outcome_response(401, e.message, "login",
                                                [(b"www-authenticate", b'Bearer realm="sante"')])
                await send(start)
                await send(body)
                return
        if principal.role not in ("patient", "related_person", "system", "admin"):
            reason = self.security.break_glass.active(principal.subject)
            if reason:
                principal = dataclasses.replace(principal, break_glass=reason)
        state["principal"] = principal
        event.username, event.role, event.token_id = principal.subject, principal.role, principal.token_id
        event.agent, event.break_glass = principal.fhir_user, principal.break_glass
        if principal.patient and principal.role in ("patient", "related_person"):
            event.patient = event.patient or principal.patient
        if pages is not None and scope["method"] not in SAFE_METHODS:
            checked = await pages.checked_receive(scope, receive)
            if checked is None:
                event.status, event.description = 403, f"web page {path}: refused, no valid CSRF token"
                await writer.record(event)
                await pages.refused(scope, 403)(scope, receive, send)
                return
            receive = checked
        failed = False

        async def audited_send(message: Any) -> None:
            nonlocal failed
            if failed:
                return
            if message["type"] == "http.response.start":
                event.status = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == b"location" and event.subtype == "create":
                        loc = value.decode("latin-1").split("/fhir/", 1)[-1].split("/_history/")[0]
                        event.entities.append(loc)
                try:
                    await writer.record(event)
                except Exception:  # no audit, no answer: the caller gets an error instead of the data
                    failed = True
                    start, body = _outcome_response(500, "the audit trail could not be written", "exception")
                    await send(start)
                    await send(body)
                    return
            await send(message)

        await self.app(scope, receive, audited_send)


def _bearer(scope: Any) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            if kind.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def principal_of(request: Any) -> Principal:
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise Anomaly(Category.UNAUTHORIZED, "this request needs an access token")
    return principal


def audit_of(request: Any) -> Event | None:
    return getattr(request.state, "audit", None)


__all__ = ["API_PREFIXES", "PUBLIC", "PageGate", "Security", "SecurityMiddleware", "audit_of", "classify", "is_page",
           "principal_of"]
