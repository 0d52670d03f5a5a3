"""Routes of the security layer: the audit trail as FHIR AuditEvents (read and search, never written through
the API) and the break-the-glass request."""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from sante.anomaly import Anomaly, Category, incorrect
from sante.api.security import Security, audit_of, principal_of
from sante.auth.policy import require
from sante.store import Repository
from sante.store.index_values import date_range

FHIR_JSON = "application/fhir+json; charset=utf-8"
_AUDIT_PARAMS = {"patient", "agent", "altid", "date", "action", "subtype", "_count", "_cursor", "_format", "_pretty",
                 "_total"}


def _bundle(request: Request, rows: list[tuple[int, bytes]], count: int) -> bytes:
    base = str(request.base_url).rstrip("/") + "/fhir"
    links = [{"relation": "self", "url": str(request.url)}]
    if len(rows) == count and rows:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "_cursor"]
        params.append(("_cursor", str(rows[-1][0])))
        from urllib.parse import urlencode

        links.append({"relation": "next", "url": f"{base}/AuditEvent?{urlencode(params)}"})
    head = orjson.dumps({"resourceType": "Bundle", "type": "searchset", "link": links})
    entries = [b'{"fullUrl":' + orjson.dumps(f"{base}/AuditEvent/{seq}") + b',"resource":' + content
               + b',"search":{"mode":"match"}}' for seq, content in rows]
    return head[:-1] + b',"entry":[' + b",".join(entries) + b"]}"


def _small_int(text: str) -> bool:
    """ASCII digits that fit a 64-bit integer (str.isdigit alone takes '²', which int() refuses)."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def _date_bounds(values: list[str]) -> tuple[str | None, str | None]:
    since = until = None
    for v in values:
        prefix, text = (v[:2], v[2:]) if v[:2] in ("ge", "gt", "le", "lt", "eq") else ("eq", v)
        rng = date_range(text.replace(" ", "+"))
        if rng is None:
            raise incorrect(f"date: {v!r} is not a FHIR date", "date")
        if prefix in ("ge", "gt", "eq"):
            since = rng.low if prefix != "gt" else rng.high
        if prefix in ("le", "lt", "eq"):
            until = rng.high if prefix != "lt" else rng.low
    return since, until


def register_security_routes(app: FastAPI, repo: Repository, security: Security) -> None:
    log = security.audit

    @app.get("/fhir/AuditEvent")
    def audit_search(request: Request) -> Response:
        require(principal_of(request), "s", "AuditEvent")
        q = request.query_params
        unknown = sorted(set(q.keys()) - _AUDIT_PARAMS)
        if unknown and "handling=strict" in request.headers.get("prefer", ""):
            raise incorrect(f"unknown AuditEvent search parameter {unknown[0]!r}", unknown[0])
        count = q.get("_count", "50")
        cursor = q.get("_cursor")
        if not _small_int(count) or (cursor is not None and not _small_int(cursor)):
            raise incorrect("_count and _cursor must be whole numbers (as in a next link)", "_count")
        since, until = _date_bounds(q.getlist("date"))
        patient = q.get("patient")
        agent = q.get("agent") or q.get("altid")
        rows = log.search(patient=patient.removeprefix("Patient/") if patient else None, username=agent,
                          since=since, until=until, action=q.get("action"), subtype=q.get("subtype"),
                          before=int(cursor) if cursor else None, count=min(int(count) or 50, 1000))
        return Response(_bundle(request, rows, min(int(count) or 50, 1000)), media_type=FHIR_JSON)

    @app.get("/fhir/AuditEvent/{aid}")
    def audit_read(aid: str, request: Request) -> Response:
        require(principal_of(request), "r", "AuditEvent")
        content = log.read(int(aid)) if _small_int(aid) else None
        if content is None:
            raise Anomaly(Category.NOT_FOUND, f"AuditEvent/{aid} is not known")
        return Response(content, media_type=FHIR_JSON)

    def refuse(request: Request) -> Response:
        raise Anomaly(Category.UNSUPPORTED, "the audit trail is append-only: the server writes it, nobody else")

    for path in ("/fhir/AuditEvent", "/fhir/AuditEvent/{aid}"):
        app.add_api_route(path, refuse, methods=["POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)

    @app.post("/auth/break-glass")
    async def break_glass(request: Request) -> Response:
        principal = principal_of(request)
        try:
            body = orjson.loads(await request.body() or b"{}")
        except orjson.JSONDecodeError as e:
            raise incorrect(f"the body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise incorrect("the body is a JSON object: {\"reason\": ..., \"minutes\": 60}")
        minutes = body.get("minutes", 60)
        if not isinstance(minutes, int):
            raise incorrect("minutes must be a whole number", "minutes")
        patient = body.get("patient")
        grant = security.break_glass.grant(principal.subject, principal.role, str(body.get("reason") or ""),
                                           minutes, patient if isinstance(patient, str) else None)
        event = audit_of(request)
        if event is not None:
            event.subtype, event.break_glass = "break-glass", grant["reason"]
            event.patient = grant["patient"] or event.patient
            event.description = f"emergency access until {grant['expires']}"
        return Response(orjson.dumps({"granted": grant["granted"], "expires": grant["expires"],
                                      "reason": grant["reason"]}), media_type="application/json")
