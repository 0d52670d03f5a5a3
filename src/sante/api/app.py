"""The FHIR REST application: routes for the R4 interactions under /fhir, errors as OperationOutcome."""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import anyio
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from sante import __version__
from sante.analytics.alert_schedule import AlertScheduler
from sante.anomaly import Anomaly, Category, Problem, incorrect
from sante.api.capability import capability_statement
from sante.api.merge_routes import register as register_merge
from sante.api.oauth_routes import register_oauth_routes
from sante.api.openapi import describe
from sante.api.operations import register_operations
from sante.api.outcome import information, operation_outcome, outcome_for
from sante.api.security import Security, SecurityMiddleware, audit_of, is_page, principal_of
from sante.api.security_routes import register_security_routes
from sante.api.signing_routes import correction_from_request
from sante.api.signing_routes import register as register_signing
from sante.auth.guarded import (
    SignedChange,
    check_written_visible,
    guarded_update,
    record_read,
    record_search,
    search_visible,
)
from sante.auth.policy import forbidden, require, require_visible, require_visible_in, row_filter
from sante.auth.principal import Principal
from sante.fhir.model import r4
from sante.fhir.patch import PatchError, apply_fhirpath_patch
from sante.fhir.subset import subset
from sante.settings import Settings
from sante.store import Repository, StoredResource
from sante.store.bundles import process_bundle
from sante.store.index_values import date_range
from sante.store.repository import new_id
from sante.store.search import matching_ids, parse_search
from sante.web import WebApp

FHIR_JSON = "application/fhir+json; charset=utf-8"
ETAG_RE = re.compile(r'^(?:W/)?"?(\d+)"?$')

log = logging.getLogger(__name__)


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


class FormatCheck:
    """Pure ASGI middleware: refuse a _format this server does not speak, before any work is done."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and b"_format=" in scope.get("query_string", b""):
            request = Request(scope)
            try:
                _check_format(request)
            except Anomaly as e:
                await fhir_response(request, outcome_for(e), e.category.status)(scope, receive, send)
                return
        await self.app(scope, receive, send)


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
    if request.query_params.get("_pretty") != "true" and stored.content is not None:
        # The stored JSON is already the response body: no parse and re-serialise.
        return Response(stored.content, status_code=200, media_type=FHIR_JSON, headers=headers)
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
    if not (value.isascii() and value.isdigit()):  # str.isdigit alone takes '²', which int() refuses
        raise incorrect(f"{name} must be a non-negative integer, got {value!r}", name)
    return min(int(value), maximum)


def _since_param(request: Request) -> str | None:
    since = request.query_params.get("_since")
    if since is None:
        return None
    rng = date_range(since.replace(" ", "+"))  # an unescaped '+' in the zone arrives as a space
    if rng is None or rng.low is None:
        raise incorrect(f"_since must be a FHIR instant such as 2024-05-01T00:00:00Z, got {since!r}", "_since")
    return rng.low


def _history(request: Request, repo: Repository, rtype: str | None, rid: str | None) -> Response:
    count = _int_param(request, "_count", 50, 1000)
    cursor = request.query_params.get("_cursor")
    if cursor is not None and not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):  # fits int64
        raise incorrect(f"_cursor must come from a next link, got {cursor!r}", "_cursor")
    rows = repo.history(rtype, rid, since=_since_param(request), count=count,
                        before_seq=int(cursor) if cursor else None)
    if rid is not None and not rows and cursor is None:
        raise Anomaly(Category.NOT_FOUND, f"{rtype}/{rid} is not known")
    return fhir_response(request, _history_bundle(request, rows, count))


def _search_query(request: Request, form: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    return [*request.query_params.multi_items(), *(form or [])]


def _search_response(
    request: Request, repo: Repository, rtype: str, query: list[tuple[str, str]],
    compartment: tuple[str, str] | None = None,
) -> Response:
    strict = "handling=strict" in request.headers.get("prefer", "")
    req = parse_search(rtype, query, strict=strict, compartment=compartment)
    principal = principal_of(request)
    with repo.reader() as tx:
        result = search_visible(tx, principal, req)
    record_search(audit_of(request), rtype, query, compartment, result.matches)
    base = str(request.base_url).rstrip("/") + "/fhir"
    self_url = str(request.url)
    links = [{"relation": "self", "url": self_url}]
    if result.next_cursor:
        params = [(k, v) for k, v in query if k != "_cursor"] + [("_cursor", result.next_cursor)]
        path = request.url.path.removesuffix("/_search")
        links.append({"relation": "next", "url": f"{request.url.scheme}://{request.url.netloc}{path}?"
                                                 f"{urlencode(params)}"})
    head: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if result.total is not None:
        head["total"] = result.total
    head["link"] = links
    reshaped = req.summary is not None or req.elements or request.query_params.get("_pretty") == "true"
    if reshaped:
        entries = [
            {"fullUrl": f"{base}/{m.type}/{m.id}", "resource": subset(m.resource, req.summary, req.elements),
             "search": {"mode": "match"}}
            for m in result.matches
        ] + [
            {"fullUrl": f"{base}/{m.type}/{m.id}", "resource": m.resource, "search": {"mode": "include"}}
            for m in result.included
        ]
        return fhir_response(request, {**head, "entry": entries})
    # The stored JSON of each resource is spliced into the Bundle as it is: no parse and re-serialise.
    parts = [
        b'{"fullUrl":' + orjson.dumps(f"{base}/{m.type}/{m.id}") + b',"resource":' + (m.content or b"null")
        + (b',"search":{"mode":"match"}}' if mode == "match" else b',"search":{"mode":"include"}}')
        for mode, ms in (("match", result.matches), ("include", result.included))
        for m in ms
    ]
    body = orjson.dumps(head)[:-1] + b',"entry":[' + b",".join(parts) + b"]}"
    return Response(body, media_type=FHIR_JSON)


def _visible_read(repo: Repository, principal: Principal, rtype: str, rid: str, version: int | None
                  ) -> StoredResource:
    with repo.reader() as tx:
        require_visible(tx.conn, principal, rtype, rid)
        return tx.read(rtype, rid) if version is None else tx.vread(rtype, rid, version)


def _guarded_update(tx: Any, request: Request, principal: Principal, resource: dict[str, Any], rid: str,
                    if_match: int | None, *, existing: bool) -> tuple[StoredResource, bool]:
    """guarded_update with the reason for changing a signed version from the request's X-Provenance header."""
    reason, agent = correction_from_request(request)
    return guarded_update(tx, principal, resource, rid, if_match, existing=existing, reason=reason, agent=agent)


def _guard(request: Request, op: str, rtype: str) -> Principal:
    principal = principal_of(request)
    require(principal, op, rtype)
    return principal


_BUNDLE_OPS = {"GET": "r", "HEAD": "r", "POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}


def _guard_bundle(principal: Principal, bundle: Any) -> None:
    """Every entry of a batch or transaction must be allowed; principals confined to some patients may not send
    bundles that touch patient data (each entry's visibility would have to be proved inside the bundle)."""
    if not isinstance(bundle, dict) or not isinstance(bundle.get("entry"), list):
        return  # not a Bundle with entries: process_bundle answers 400
    for n, entry in enumerate(bundle["entry"]):
        req = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(req, dict) or not isinstance(req.get("url"), str):
            continue
        path = req["url"].split("?", 1)[0].strip("/")
        rtype = path.split("/", 1)[0]
        if rtype not in r4().resource_types:
            continue
        op = _BUNDLE_OPS.get(str(req.get("method", "")).upper(), "r")
        if op == "r" and ("?" in req["url"] or "/" not in path):
            op = "s"
        try:
            require(principal, op, rtype)
        except Anomaly as e:
            raise Anomaly(e.category, f"entry {n}: {e.message}", location=f"Bundle.entry[{n}]") from None
        if row_filter(principal, rtype) is not None:
            raise forbidden(f"entry {n}: this account may not send bundles touching {rtype} (patient data)")


def apply_json_patch(resource: dict[str, Any], operations: Any) -> dict[str, Any]:
    """RFC 6902 JSON Patch; a bad patch is a 422 naming the failing operation."""
    import jsonpatch

    if not isinstance(operations, list):
        raise incorrect("a JSON Patch is an array of operations")
    try:
        return jsonpatch.apply_patch(resource, operations)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as e:
        raise Anomaly(Category.UNPROCESSABLE, f"the patch cannot be applied: {e}") from None


def create_app(repository: Repository, data_dir: Path | None = None, security: Security | None = None) -> FastAPI:
    """The FHIR API over a repository, at /fhir, and the clinician web app (sante.web) at /; exports and server
    secrets live under data_dir (default: the configured one). Every API request but the public few needs a
    bearer token, every page the sign-in session (see sante.api.security)."""
    settings = Settings.from_env()
    data_dir = data_dir or settings.data_dir
    alerts = AlertScheduler(repository, data_dir, time_zone=settings.time_zone, interval=settings.alert_interval)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """While a server runs the app: the weekly outbreak detection (sante.analytics.alert_schedule)."""
        alerts.start()
        try:
            yield
        finally:
            alerts.stop()

    app = FastAPI(title="Sante FHIR R4 API", version=__version__, docs_url="/fhir/docs", openapi_url="/fhir/openapi.json",
                  lifespan=lifespan)
    app.state.alert_schedule = alerts
    security = security or Security.for_repository(repository, data_dir)
    app.state.repository = repository
    app.state.security = security
    app.add_middleware(FormatCheck)
    web = WebApp(repository, security.users, data_dir, settings.time_zone)
    app.add_middleware(SecurityMiddleware, security=security, pages=web.gate)
    repo = repository

    @app.exception_handler(Anomaly)
    async def _anomaly(request: Request, exc: Anomaly) -> Response:
        if is_page(request.url.path):  # the web app's pages answer with a page, the API with an OperationOutcome
            return web.error(request, exc.category.status)
        return fhir_response(request, outcome_for(exc), exc.category.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if is_page(request.url.path):
            return web.error(request, exc.status_code)
        code = "not-found" if exc.status_code == 404 else "not-supported" if exc.status_code == 405 else "processing"
        return fhir_response(request, operation_outcome([Problem(str(exc.detail), code=code)]), exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        if is_page(request.url.path):
            return web.error(request, 400)
        problems = [Problem(e.get("msg", "invalid request"), ".".join(map(str, e.get("loc", ()))), code="invalid")
                    for e in exc.errors()]
        return fhir_response(request, operation_outcome(problems), 400)

    @app.exception_handler(Exception)
    async def _fault(request: Request, exc: Exception) -> Response:
        # A bug must still answer as FHIR (or as a page), without leaking internals; the log has the cause.
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        if is_page(request.url.path):
            return web.error(request, 500)
        return fhir_response(request, operation_outcome([Problem("internal error", code="exception")]), 500)

    register_operations(app, repo, data_dir)
    describe(app)  # the OpenAPI description, completed with what the handlers read themselves
    register_security_routes(app, repo, security)
    register_oauth_routes(app, security, data_dir, web.pages)
    register_signing(app, repo, Settings(data_dir=data_dir, database_url=repo.url))
    register_merge(app, repo)
    web.mount(app)
    inline = repo.dialect == "sqlite"

    async def db(fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run repository work: inline on SQLite (local, sub-millisecond: cheaper than a thread hop), in the
        thread pool on PostgreSQL (a network round trip must not block the event loop)."""
        if inline:
            return fn(*args, **kwargs)
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    capability_bytes: dict[str, bytes] = {}

    @app.get("/fhir/metadata")
    async def metadata(request: Request) -> Response:
        base = str(request.base_url).rstrip("/") + "/fhir"
        if request.query_params.get("_pretty") == "true":
            return fhir_response(request, capability_statement(base))
        body = capability_bytes.get(base)
        if body is None:  # the statement only changes with the code: serialise it once per base URL
            body = capability_bytes[base] = orjson.dumps(capability_statement(base))
        return Response(body, media_type=FHIR_JSON)

    @app.post("/fhir")
    async def transaction(request: Request) -> Response:
        try:
            bundle = orjson.loads(await request.body())
        except orjson.JSONDecodeError as e:
            raise incorrect(f"the body is not valid JSON: {e}") from None
        _guard_bundle(principal_of(request), bundle)
        return fhir_response(request, await db(process_bundle, repo, bundle))

    @app.get("/fhir/_history")
    async def system_history(request: Request) -> Response:
        if principal_of(request).role not in ("admin", "system"):
            raise forbidden("the history of the whole server is open to administrators and system clients only")
        return await db(_history, request, repo, None, None)

    @app.get("/fhir/{rtype}")
    async def search(rtype: str, request: Request) -> Response:
        _check_type(rtype)
        _guard(request, "s", rtype)
        return await db(_search_response, request, repo, rtype, _search_query(request))

    @app.post("/fhir/{rtype}/_search")
    async def search_post(rtype: str, request: Request) -> Response:
        _check_type(rtype)
        _guard(request, "s", rtype)
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        if ctype != "application/x-www-form-urlencoded":
            raise incorrect("POST _search takes application/x-www-form-urlencoded parameters")
        items = parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
        return await db(_search_response, request, repo, rtype, _search_query(request, items))

    @app.post("/fhir/{rtype}")
    async def create(rtype: str, request: Request) -> Response:
        _check_type(rtype)
        resource = await _body(request, rtype)
        resource.pop("id", None)  # the server assigns the id on create
        condition = request.headers.get("if-none-exist")
        principal = _guard(request, "c", rtype)

        def write() -> tuple[StoredResource, int]:
            with repo.transaction() as tx:
                if condition:
                    found = matching_ids(tx, rtype, condition, "If-None-Exist")
                    if len(found) > 1:
                        raise Anomaly(Category.PRECONDITION_FAILED, f"If-None-Exist matches {len(found)} {rtype}",
                                      location="If-None-Exist")
                    if found:
                        check_written_visible(tx.conn, principal, rtype, found[0])
                        return tx.read(rtype, found[0]), 200
                stored = tx.create(resource)
                check_written_visible(tx.conn, principal, rtype, stored.id)
                return stored, 201

        stored, status = await db(write)
        return _write_response(request, stored, status)

    @app.put("/fhir/{rtype}")
    async def conditional_update(rtype: str, request: Request) -> Response:
        _check_type(rtype)
        resource = await _body(request, rtype)
        query = str(request.url.query)
        if not query:
            raise incorrect("PUT on a type needs search parameters (conditional update)")
        if_match = _if_match(request)
        principal = _guard(request, "u", rtype)

        def write() -> tuple[StoredResource, bool]:
            with repo.transaction() as tx:
                found = matching_ids(tx, rtype, query, "url")
                if len(found) > 1:
                    raise Anomaly(Category.PRECONDITION_FAILED, f"conditional update matches {len(found)} {rtype}")
                if found and resource.get("id") not in (None, found[0]):
                    raise incorrect(f"the resource's id {resource['id']!r} is not the matching {found[0]!r}", "id")
                rid = found[0] if found else (resource.get("id") or new_id())
                return _guarded_update(tx, request, principal, resource, rid, if_match, existing=bool(found))

        stored, created = await db(write)
        return _write_response(request, stored, 201 if created else 200)

    @app.delete("/fhir/{rtype}")
    async def conditional_delete(rtype: str, request: Request) -> Response:
        _check_type(rtype)
        query = str(request.url.query)
        if not query:
            raise incorrect("DELETE on a type needs search parameters (conditional delete)")
        principal = _guard(request, "d", rtype)

        def write() -> tuple[list[str], StoredResource | None]:
            with repo.transaction() as tx:
                found = matching_ids(tx, rtype, query, "url")
                if len(found) > 1:
                    raise Anomaly(Category.PRECONDITION_FAILED, f"conditional delete matches {len(found)} {rtype}")
                if not found:
                    return found, None
                require_visible(tx.conn, principal, rtype, found[0])
                signed = SignedChange(tx, principal, rtype, found[0], *correction_from_request(request))
                deleted = tx.delete(rtype, found[0])
                signed.done(deleted)
                return found, deleted

        found, deleted = await db(write)
        return fhir_response(request, information(f"{len(found)} {rtype} deleted"), 200,
                             {"ETag": deleted.etag} if deleted else None)

    @app.patch("/fhir/{rtype}/{rid}")
    async def patch(rtype: str, rid: str, request: Request) -> Response:
        _check_type(rtype)
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        if ctype not in ("application/json-patch+json", "application/fhir+json", "application/json"):
            raise Anomaly(Category.INCORRECT, f"PATCH takes application/json-patch+json (JSON Patch) or "
                          f"application/fhir+json (FHIRPath Patch Parameters), not {ctype or 'nothing'}")
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as e:
            raise incorrect(f"the body is not valid JSON: {e}") from None
        if_match = _if_match(request)
        principal = _guard(request, "u", rtype)

        def write() -> StoredResource:
            with repo.transaction() as tx:
                require_visible(tx.conn, principal, rtype, rid)
                current = tx.read(rtype, rid)
                signed = SignedChange(tx, principal, rtype, rid, *correction_from_request(request))
                if ctype == "application/json-patch+json":
                    patched = apply_json_patch(current.resource or {}, body)
                else:
                    try:
                        patched = apply_fhirpath_patch(current.resource or {}, body)
                    except PatchError as e:
                        raise Anomaly(Category.UNPROCESSABLE, str(e), location=e.location) from None
                if patched.get("resourceType") != rtype or patched.get("id") != rid:
                    raise Anomaly(Category.UNPROCESSABLE, "a patch may not change resourceType or id")
                stored, _ = tx.update(patched, rid, if_match=if_match if if_match is not None else current.version)
                signed.done(stored)
                return stored

        return _write_response(request, await db(write), 200)

    @app.get("/fhir/{rtype}/_history")
    async def type_history(rtype: str, request: Request) -> Response:
        _check_type(rtype)
        principal = _guard(request, "r", rtype)
        if row_filter(principal, rtype) is not None:
            raise forbidden(f"the history of all {rtype} is not open to an account confined to some patients")
        return await db(_history, request, repo, rtype, None)

    @app.get("/fhir/{rtype}/{rid}")
    async def read(rtype: str, rid: str, request: Request) -> Response:
        _check_type(rtype)
        principal = _guard(request, "r", rtype)
        stored = await db(_visible_read, repo, principal, rtype, rid, None)
        record_read(audit_of(request), stored)
        return _read_response(request, stored)

    @app.put("/fhir/{rtype}/{rid}")
    async def update(rtype: str, rid: str, request: Request) -> Response:
        _check_type(rtype)
        resource = await _body(request, rtype)
        if resource.get("id") != rid:
            raise incorrect(f"the resource's id {resource.get('id')!r} does not match the URL's {rid!r}", "id")
        principal = _guard(request, "u", rtype)
        if_match = _if_match(request)

        def write() -> tuple[StoredResource, bool]:
            with repo.transaction() as tx:
                existing = tx.current(rtype, rid) is not None
                return _guarded_update(tx, request, principal, resource, rid, if_match, existing=existing)

        stored, created = await db(write)
        return _write_response(request, stored, 201 if created else 200)

    @app.delete("/fhir/{rtype}/{rid}")
    async def delete(rtype: str, rid: str, request: Request) -> Response:
        _check_type(rtype)
        principal = _guard(request, "d", rtype)
        if_match = _if_match(request)

        def write() -> StoredResource | None:
            with repo.transaction() as tx:
                require_visible(tx.conn, principal, rtype, rid)
                signed = SignedChange(tx, principal, rtype, rid, *correction_from_request(request))
                deleted = tx.delete(rtype, rid, if_match)
                signed.done(deleted)
                return deleted

        deleted = await db(write)
        message = f"{rtype}/{rid} deleted" if deleted else f"{rtype}/{rid} was already absent"
        headers = {"ETag": deleted.etag} if deleted else None
        return fhir_response(request, information(message), 200, headers)

    @app.get("/fhir/{rtype}/{rid}/_history")
    async def instance_history(rtype: str, rid: str, request: Request) -> Response:
        _check_type(rtype)
        principal = _guard(request, "r", rtype)
        await db(require_visible_in, repo, principal, rtype, rid)
        return await db(_history, request, repo, rtype, rid)

    @app.get("/fhir/{ctype}/{cid}/{rtype}")
    async def compartment_search(ctype: str, cid: str, rtype: str, request: Request) -> Response:
        _check_type(ctype)
        _check_type(rtype)
        principal = _guard(request, "s", rtype)
        await db(require_visible_in, repo, principal, ctype, cid)
        return await db(_search_response, request, repo, rtype, _search_query(request), compartment=(ctype, cid))

    @app.get("/fhir/{rtype}/{rid}/_history/{vid}")
    async def vread(rtype: str, rid: str, vid: str, request: Request) -> Response:
        _check_type(rtype)
        if not (vid.isascii() and vid.isdigit()):
            raise incorrect(f"version id must be a number, got {vid!r}", "vid")
        if len(vid) > 9:  # beyond the version column's range: no such version (not a database error)
            raise Anomaly(Category.NOT_FOUND, f"{rtype}/{rid} has no version {vid}")
        principal = _guard(request, "r", rtype)
        stored = await db(_visible_read, repo, principal, rtype, rid, int(vid))
        record_read(audit_of(request), stored)
        return _read_response(request, stored)

    return app
