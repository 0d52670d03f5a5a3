"""The FHIR REST application: routes for the R4 interactions under /fhir, errors as OperationOutcome."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from sante import __version__
from sante.anomaly import Anomaly, Category, incorrect
from sante.api.capability import capability_statement
from sante.anomaly import Problem
from sante.api.outcome import information, operation_outcome, outcome_for
from sante.fhir.model import r4
from sante.store import Repository, StoredResource

FHIR_JSON = "application/fhir+json; charset=utf-8"
ETAG_RE = re.compile(r'^(?:W/)?"?(\d+)"?$')


def fhir_response(
    request: Request, body: dict[str, Any] | None, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A FHIR JSON response honouring _pretty."""
    if body is None:
        return Response(status_code=status, headers=headers)
    option = orjson.OPT_INDENT_2 if request.query_params.get("_pretty") == "true" else 0
    return Response(orjson.dumps(body, option=option), status_code=status, media_type=FHIR_JSON, headers=headers)


def _check_format(request: Request) -> None:
    fmt = request.query_params.get("_format")
    if fmt and fmt not in ("json", "application/json", "application/fhir+json"):
        raise Anomaly(Category.INCORRECT, f"_format={fmt} is not supported: this server speaks FHIR JSON",
                      location="_format")


def _check_type(rtype: str) -> None:
    if rtype not in r4().resource_types:
        raise Anomaly(Category.NOT_FOUND, f"{rtype!r} is not a FHIR R4 resource type", location="type")


async def _body(request: Request, rtype: str) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "application/fhir+json").split(";")[0].strip()
    if ctype not in ("application/fhir+json", "application/json", "text/json"):
        raise Anomaly(Category.INCORRECT, f"Content-Type {ctype} is not supported: send application/fhir+json")
    raw = await request.body()
    try:
        resource = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise incorrect(f"the body is not valid JSON: {e}") from None
    if not isinstance(resource, dict):
        raise incorrect("the body must be a JSON object (a FHIR resource)")
    if resource.get("resourceType") != rtype:
        raise incorrect(
            f"resourceType {resource.get('resourceType')!r} does not match the URL's {rtype!r}", "resourceType"
        )
    return resource


def _if_match(request: Request) -> int | None:
    value = request.headers.get("if-match")
    if value is None:
        return None
    m = ETAG_RE.match(value.strip())
    if not m:
        raise incorrect(f'If-Match must be an ETag such as W/"3", got {value!r}', "If-Match")
    return int(m.group(1))


def _write_response(request: Request, stored: StoredResource, status: int) -> Response:
    base = str(request.base_url).rstrip("/") + "/fhir"
    headers = {
        "ETag": stored.etag,
        "Last-Modified": stored.last_updated,
        "Location": f"{base}/{stored.type}/{stored.id}/_history/{stored.version}",
    }
    prefer = request.headers.get("prefer", "")
    if "return=minimal" in prefer:
        return fhir_response(request, None, status, headers)
    if "return=OperationOutcome" in prefer:
        return fhir_response(request, information(f"{stored.type}/{stored.id} version {stored.version} stored"),
                             status, headers)
    return fhir_response(request, stored.resource, status, headers)


def _read_response(request: Request, stored: StoredResource) -> Response:
    headers = {"ETag": stored.etag, "Last-Modified": stored.last_updated}
    return fhir_response(request, stored.resource, 200, headers)


def _history_bundle(request: Request, rows: list[StoredResource], count: int) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/") + "/fhir"
    entries = []
    for h in rows:
        entry: dict[str, Any] = {"fullUrl": f"{base}/{h.type}/{h.id}"}
        if not h.deleted:
            entry["resource"] = h.resource
        entry["request"] = {"method": h.method, "url": f"{h.type}/{h.id}" if h.method != "POST" else h.type}
        entry["response"] = {"status": "201 Created" if h.version == 1 else ("204" if h.deleted else "200 OK"),
                             "etag": h.etag, "lastModified": h.last_updated}
        entries.append(entry)
    links = [{"relation": "self", "url": str(request.url)}]
    if len(rows) == count and rows:
        params = {k: v for k, v in request.query_params.items() if k != "_cursor"}
        params["_cursor"] = str(rows[-1].seq)
        links.append({"relation": "next", "url": f"{request.url.scheme}://{request.url.netloc}{request.url.path}?"
                                                 f"{urlencode(params)}"})
    return {"resourceType": "Bundle", "type": "history", "link": links, "entry": entries}


def _int_param(request: Request, name: str, default: int, maximum: int) -> int:
    value = request.query_params.get(name)
    if value is None:
        return default
    if not value.isdigit():
        raise incorrect(f"{name} must be a non-negative integer, got {value!r}", name)
    return min(int(value), maximum)


def _since_param(request: Request) -> str | None:
    since = request.query_params.get("_since")
    if since is None:
        return None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?", since):
        raise incorrect(f"_since must be a FHIR instant such as 2024-05-01T00:00:00Z, got {since!r}", "_since")
    from datetime import datetime, timezone

    value = since if "T" in since else since + "T00:00:00Z"
    dt = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _history(request: Request, repo: Repository, rtype: str | None, rid: str | None) -> Response:
    count = _int_param(request, "_count", 50, 1000)
    cursor = request.query_params.get("_cursor")
    if cursor is not None and not cursor.isdigit():
        raise incorrect(f"_cursor must come from a next link, got {cursor!r}", "_cursor")
    rows = repo.history(rtype, rid, since=_since_param(request), count=count,
                        before_seq=int(cursor) if cursor else None)
    if rid is not None and not rows and cursor is None:
        raise Anomaly(Category.NOT_FOUND, f"{rtype}/{rid} is not known")
    return fhir_response(request, _history_bundle(request, rows, count))


def create_app(repository: Repository) -> FastAPI:
    """The FHIR API over a repository."""
    app = FastAPI(title="Sante FHIR R4 API", version=__version__, docs_url="/fhir/docs", openapi_url="/fhir/openapi.json")
    app.state.repository = repository
    repo = repository

    @app.exception_handler(Anomaly)
    async def _anomaly(request: Request, exc: Anomaly) -> Response:
        return fhir_response(request, outcome_for(exc), exc.category.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = "not-found" if exc.status_code == 404 else "not-supported" if exc.status_code == 405 else "processing"
        return fhir_response(request, operation_outcome([Problem(str(exc.detail), code=code)]), exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        problems = [Problem(e.get("msg", "invalid request"), ".".join(map(str, e.get("loc", ()))), code="invalid")
                    for e in exc.errors()]
        return fhir_response(request, operation_outcome(problems), 400)

    @app.exception_handler(Exception)
    async def _fault(request: Request, exc: Exception) -> Response:
        # A bug must still answer as FHIR, without leaking internals.
        return fhir_response(request, operation_outcome([Problem("internal error", code="exception")]), 500)

    @app.middleware("http")
    async def _format(request: Request, call_next: Any) -> Response:
        try:
            _check_format(request)
        except Anomaly as e:
            return fhir_response(request, outcome_for(e), e.category.status)
        return await call_next(request)

    @app.get("/fhir/metadata")
    async def metadata(request: Request) -> Response:
        return fhir_response(request, capability_statement(str(request.base_url).rstrip("/") + "/fhir"))

    @app.get("/fhir/_history")
    def system_history(request: Request) -> Response:
        return _history(request, repo, None, None)

    @app.post("/fhir/{rtype}")
    async def create(rtype: str, request: Request) -> Response:
        _check_type(rtype)
        resource = await _body(request, rtype)
        resource.pop("id", None)  # the server assigns the id on create
        stored = repo.create(resource)
        return _write_response(request, stored, 201)

    @app.get("/fhir/{rtype}/_history")
    def type_history(rtype: str, request: Request) -> Response:
        _check_type(rtype)
        return _history(request, repo, rtype, None)

    @app.get("/fhir/{rtype}/{rid}")
    def read(rtype: str, rid: str, request: Request) -> Response:
        _check_type(rtype)
        return _read_response(request, repo.read(rtype, rid))

    @app.put("/fhir/{rtype}/{rid}")
    async def update(rtype: str, rid: str, request: Request) -> Response:
        _check_type(rtype)
        resource = await _body(request, rtype)
        if resource.get("id") != rid:
            raise incorrect(f"the resource's id {resource.get('id')!r} does not match the URL's {rid!r}", "id")
        stored, created = repo.update(resource, rid, if_match=_if_match(request))
        return _write_response(request, stored, 201 if created else 200)

    @app.delete("/fhir/{rtype}/{rid}")
    def delete(rtype: str, rid: str, request: Request) -> Response:
        _check_type(rtype)
        deleted = repo.delete(rtype, rid, if_match=_if_match(request))
        message = f"{rtype}/{rid} deleted" if deleted else f"{rtype}/{rid} was already absent"
        headers = {"ETag": deleted.etag} if deleted else None
        return fhir_response(request, information(message), 200, headers)

    @app.get("/fhir/{rtype}/{rid}/_history")
    def instance_history(rtype: str, rid: str, request: Request) -> Response:
        _check_type(rtype)
        return _history(request, repo, rtype, rid)

    @app.get("/fhir/{rtype}/{rid}/_history/{vid}")
    def vread(rtype: str, rid: str, vid: str, request: Request) -> Response:
        _check_type(rtype)
        if not vid.isdigit():
            raise incorrect(f"version id must be a number, got {vid!r}", "vid")
        return _read_response(request, repo.vread(rtype, rid, int(vid)))

    return app
