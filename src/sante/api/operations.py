"""FHIR operations: $export (Bulk Data, async), $everything, $meta, $validate.

Registered before the generic interaction routes so that `/fhir/Patient/$export` is never read as an id.
`$everything` streams its Bundle, reading the compartment in chunks (see everything_response).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import orjson
from fastapi import FastAPI, Request
from sqlalchemy import false, select
from starlette.responses import FileResponse, Response, StreamingResponse

from sante.anomaly import Anomaly, Category, Problem, incorrect, operation_outcome
from sante.api.security import principal_of
from sante.auth.policy import forbidden, require, require_visible_in, row_filter
from sante.auth.roles import role_policy
from sante.fhir.model import r4
from sante.store import Repository
from sante.store.export import ExportJobs, ExportRequest, _in_compartment, compartment_types
from sante.store.index_values import date_range
from sante.store.schema import resources
from sante.store.search import decode_cursor, encode_cursor


def _respond(request: Request, body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
             ) -> Response:
    from sante.api.app import fhir_response

    return fhir_response(request, body, status, headers)


def _export_request(request: Request, level: str, group_id: str | None) -> ExportRequest:
    if "respond-async" not in request.headers.get("prefer", ""):
        raise incorrect("$export runs asynchronously: send the header Prefer: respond-async", "Prefer")
    q = request.query_params
    fmt = q.get("_outputFormat", "application/fhir+ndjson")
    if fmt not in ("application/fhir+ndjson", "application/ndjson", "ndjson"):
        raise incorrect(f"_outputFormat {fmt!r} is not supported (use application/fhir+ndjson)", "_outputFormat")
    types = tuple(t.strip() for t in q.get("_type", "").split(",") if t.strip())
    for t in types:
        if t not in r4().resource_types:
            raise incorrect(f"_type: {t!r} is not a resource type", "_type")
    since = None
    if q.get("_since"):
        rng = date_range(q["_since"].replace(" ", "+"))
        if rng is None:
            raise incorrect(f"_since must be a FHIR instant, got {q['_since']!r}", "_since")
        since = rng.low
    return ExportRequest(level, types, since, group_id, str(request.url))


def _may(principal: Any, op: str, rtype: str) -> bool:
    try:
        require(principal, op, rtype)
    except Anomaly:
        return False
    return True


def _guard_export(request: Request, types: tuple[str, ...] | None) -> None:
    """Bulk Data export: roles with the export permission, not confined to some patients, able to read every
    type exported (all patient data when no _type is given)."""
    principal = principal_of(request)
    if not role_policy(principal.role).export:
        raise forbidden(f"the role {principal.role} may not export data")
    for rtype in types or ("Patient", "Observation"):
        require(principal, "r", rtype)
        if row_filter(principal, rtype) is not None:
            raise forbidden("an account confined to some patients may not export")


def _own_job(request: Request, jobs: ExportJobs, job: str) -> dict[str, Any] | None:
    """The job's state when the caller started it (or is an administrator); None otherwise, as if absent."""
    state = jobs.status(job)
    principal = principal_of(request)
    if state is None or (state.get("owner") != principal.subject and principal.role != "admin"):
        return None
    return state


def register_operations(app: FastAPI, repo: Repository, data_dir: Path) -> None:
    jobs = ExportJobs(repo, data_dir / "exports")
    inline = repo.dialect == "sqlite"

    async def db(fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Repository work: inline on SQLite, in the thread pool on PostgreSQL (as app.py's db)."""
        if inline:
            return fn(*args, **kwargs)
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    def start(request: Request, level: str, group_id: str | None = None) -> Response:
        req = _export_request(request, level, group_id)
        _guard_export(request, req.types)
        req = dataclasses.replace(req, owner=principal_of(request).subject)
        if level == "group":
            repo.read("Group", group_id or "")  # 404 / 410 before a job starts
        job = jobs.start(req)
        base = str(request.base_url).rstrip("/") + "/fhir"
        return Response(status_code=202, headers={"Content-Location": f"{base}/$export-status/{job}"})

    @app.get("/fhir/$export")
    @app.post("/fhir/$export")  # a route per method: distinct OpenAPI operation ids
    def export_system(request: Request) -> Response:
        return start(request, "system")

    @app.get("/fhir/Patient/$export")
    @app.post("/fhir/Patient/$export")  # a route per method: distinct OpenAPI operation ids
    def export_patients(request: Request) -> Response:
        return start(request, "patient")

    @app.get("/fhir/Group/{gid}/$export")
    @app.post("/fhir/Group/{gid}/$export")  # a route per method: distinct OpenAPI operation ids
    def export_group(gid: str, request: Request) -> Response:
        return start(request, "group", gid)

    @app.get("/fhir/$export-status/{job}")
    def export_status(job: str, request: Request) -> Response:
        _guard_export(request, None)
        state = _own_job(request, jobs, job)
        if state is None:
            raise Anomaly(Category.NOT_FOUND, f"no export job {job}")
        if state["status"] == "in-progress":
            return Response(status_code=202, headers={"X-Progress": state.get("progress", ""), "Retry-After": "1"})
        if state["status"] == "failed":
            return _respond(request, operation_outcome([Problem(f"export failed: {state.get('error')}",
                                                                code="exception")]), 500)
        base = str(request.base_url).rstrip("/") + "/fhir"
        manifest = {
            "transactionTime": state["transactionTime"],
            "request": state["request"],
            "requiresAccessToken": True,
            "output": [{"type": o["type"], "count": o["count"], "url": f"{base}/$export-file/{job}/{o['file']}"}
                       for o in state.get("output", [])],
            "error": [],
        }
        return Response(orjson.dumps(manifest), media_type="application/json")

    @app.delete("/fhir/$export-status/{job}")
    def export_cancel(job: str, request: Request) -> Response:
        _guard_export(request, None)
        if _own_job(request, jobs, job) is None or not jobs.cancel(job):
            raise Anomaly(Category.NOT_FOUND, f"no export job {job}")
        return Response(status_code=202)

    @app.get("/fhir/$export-file/{job}/{name}")
    def export_file(job: str, name: str, request: Request) -> Response:
        _guard_export(request, None)
        f = jobs.file(job, name) if _own_job(request, jobs, job) is not None else None
        if f is None:
            raise Anomaly(Category.NOT_FOUND, f"no export file {name} in job {job}")
        return FileResponse(f, media_type="application/fhir+ndjson")

    @app.get("/fhir/Patient/{pid}/$everything")
    async def everything(pid: str, request: Request) -> Response:
        principal = principal_of(request)
        require(principal, "r", "Patient")
        query = everything_query(request, pid)
        await db(require_visible_in, repo, principal, "Patient", pid)
        readable = tuple(t for t in query.types if _may(principal, "r", t))
        if readable != query.types:  # types the principal may not read are left out, not refused
            start = query.start
            if start != (0, ""):
                current = query.types[start[0]] if start[0] < len(query.types) else None
                start = (readable.index(current), start[1]) if current in readable else (0, "")
            query = dataclasses.replace(query, types=readable, start=start)
        return await everything_response(request, repo, query, db)

    @app.get("/fhir/{rtype}/{rid}/$meta")
    @app.post("/fhir/{rtype}/{rid}/$meta")  # a route per method: distinct OpenAPI operation ids
    def meta(rtype: str, rid: str, request: Request) -> Response:
        principal = principal_of(request)
        require(principal, "r", rtype)
        require_visible_in(repo, principal, rtype, rid)
        stored = repo.read(rtype, rid)
        meta = (stored.resource or {}).get("meta", {})
        return _respond(request, {"resourceType": "Parameters", "parameter": [{"name": "return", "valueMeta": meta}]})

    @app.post("/fhir/{rtype}/$validate")
    async def validate_type(rtype: str, request: Request) -> Response:
        return await _validate(request, rtype)

    @app.post("/fhir/{rtype}/{rid}/$validate")
    async def validate_instance(rtype: str, rid: str, request: Request) -> Response:
        return await _validate(request, rtype)


async def _validate(request: Request, rtype: str) -> Response:
    from sante.fhir.validate import validate

    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as e:
        raise incorrect(f"the body is not valid JSON: {e}") from None
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        body = next((p.get("resource") for p in body.get("parameter", []) if p.get("name") == "resource"), None)
    if not isinstance(body, dict):
        raise incorrect("$validate needs a resource (or Parameters with a 'resource' parameter)")
    if body.get("resourceType") != rtype:
        raise incorrect(f"resourceType {body.get('resourceType')!r} does not match the URL's {rtype!r}",
                        "resourceType")
    issues = validate(body)
    problems = [Problem(i.message, i.location, i.severity, i.code) for i in issues]
    if not problems:
        problems = [Problem("the resource is valid", severity="information", code="informational")]
    return _respond(request, operation_outcome(problems))


# -- Patient/$everything, streamed ----------------------------------------------------------------------------

EVERYTHING_CHUNK = 500  # rows per database query while streaming: the most entries held in memory at once


@dataclass(frozen=True, slots=True)
class EverythingQuery:
    """A parsed $everything request: which resources, from where, how many."""

    pid: str
    types: tuple[str, ...]  # the Patient first, then the compartment's types in name order (or the _type subset)
    since: str | None
    count: int | None  # None: the whole compartment in one response
    start: tuple[int, str]  # (index into types, last id already returned of that type): where this page starts


def everything_query(request: Request, pid: str) -> EverythingQuery:
    """The request's parameters, checked before anything is streamed (a bad one is a 400 OperationOutcome)."""
    from sante.api.app import _since_param

    q = request.query_params
    for name in ("start", "end"):
        if name in q:
            message = f"$everything {name} (care date range) is not supported: filter by _since or _type"
            raise Anomaly(Category.INCORRECT, message, location=name,
                          problems=(Problem(message, name, code="not-supported"),))
    count = None
    if "_count" in q:
        if not (q["_count"].isascii() and q["_count"].isdigit()):
            raise incorrect(f"_count must be a non-negative integer, got {q['_count']!r}", "_count")
        count = max(1, int(q["_count"]))
    types = ["Patient", *sorted(compartment_types())]
    wanted = [t.strip() for value in q.getlist("_type") for t in value.split(",") if t.strip()]
    for t in wanted:
        if t not in r4().resource_types:
            raise incorrect(f"_type: {t!r} is not a resource type", "_type")
    if wanted:  # a type outside the Patient compartment has no resources in it: nothing of it is returned
        types = [t for t in types if t in wanted]
    start = (0, "")
    if q.get("_cursor"):
        cursor = decode_cursor(q["_cursor"])
        if not (isinstance(cursor, list) and len(cursor) == 2 and cursor[0] in types and isinstance(cursor[1], str)):
            raise incorrect("_cursor is not one this server issued (or _type changed since)", "_cursor")
        start = (types.index(cursor[0]), cursor[1])
    return EverythingQuery(pid, tuple(types), _since_param(request), count, start)


def everything_chunk(
    repo: Repository, query: EverythingQuery, position: tuple[int, str], limit: int, *, check_patient: bool = False
) -> tuple[list[tuple[str, str, bytes]], tuple[int, str]]:
    """Up to `limit` (type, id, JSON) of the compartment after `position`, in (type order, id) order, and the
    position after them. One short read transaction: no connection is held once it returns."""
    found: list[tuple[str, str, bytes]] = []
    index, after = position
    with repo.reader() as tx:
        if check_patient:
            tx.read("Patient", query.pid)  # 404 unknown, 410 deleted
        while index < len(query.types) and len(found) < limit:
            rtype, want = query.types[index], limit - len(found)
            stmt = select(resources.c.id, resources.c.content).where(
                resources.c.type == rtype, resources.c.deleted == false(), resources.c.id > after,
                _in_compartment(rtype, [query.pid]))
            if query.since is not None:
                stmt = stmt.where(resources.c.last_updated >= query.since)
            rows = tx.conn.execute(stmt.order_by(resources.c.id).limit(want)).all()
            found += [(rtype, rid, bytes(content)) for rid, content in rows]
            if len(rows) < want:  # this type is done
                index, after = index + 1, ""
            else:
                after = rows[-1][0]
    return found, (index, after)


def _want(query: EverythingQuery, emitted: int) -> int:
    """How many rows the next query asks for: a chunk, or what the page still needs plus one (to know if a next
    page exists)."""
    return EVERYTHING_CHUNK if query.count is None else min(EVERYTHING_CHUNK, query.count - emitted + 1)


async def everything_response(
    request: Request, repo: Repository, query: EverythingQuery, db: Callable[..., Awaitable[Any]]
) -> Response:
    """The page as a streamed searchset Bundle. The first chunk is read before the response starts, so an unknown
    or deleted patient (or a database error) is still an OperationOutcome with its status."""
    from sante.api.app import FHIR_JSON

    want = _want(query, 0)
    rows, position = await db(everything_chunk, repo, query, query.start, want, check_patient=True)
    return StreamingResponse(_everything_body(request, repo, query, db, rows, position, want), media_type=FHIR_JSON)


async def _everything_body(
    request: Request, repo: Repository, query: EverythingQuery, db: Callable[..., Awaitable[Any]],
    rows: list[tuple[str, str, bytes]], position: tuple[int, str], want: int,
) -> AsyncIterator[bytes]:
    base = str(request.base_url).rstrip("/") + "/fhir"
    pretty = request.query_params.get("_pretty") == "true"

    def entry(rtype: str, rid: str, content: bytes) -> bytes:
        if pretty:
            return b"\n" + orjson.dumps({"fullUrl": f"{base}/{rtype}/{rid}", "resource": orjson.loads(content),
                                         "search": {"mode": "match"}}, option=orjson.OPT_INDENT_2)
        # The stored JSON is spliced in as it is: no parse and re-serialise.
        return (b'{"fullUrl":' + orjson.dumps(f"{base}/{rtype}/{rid}") + b',"resource":' + content
                + b',"search":{"mode":"match"}}')

    yield b'{"resourceType":"Bundle","type":"searchset"'
    emitted, last, more = 0, None, False
    while True:
        if query.count is not None and emitted + len(rows) > query.count:
            rows, more = rows[: query.count - emitted], True
        if rows:
            yield (b"," if emitted else b',"entry":[') + b",".join(entry(*r) for r in rows)
            emitted, last = emitted + len(rows), rows[-1]
        if more or len(rows) < want:
            break
        want = _want(query, emitted)
        rows, position = await db(everything_chunk, repo, query, position, want)
    links = [{"relation": "self", "url": str(request.url)}]
    if more and last is not None:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "_cursor"]
        params.append(("_cursor", encode_cursor([last[0], last[1]])))
        links.append({"relation": "next", "url": f"{base}/Patient/{query.pid}/$everything?{urlencode(params)}"})
    tail = b"]" if emitted else b""
    if not more and query.start == (0, ""):  # the whole result is in this response: its total is known for free
        tail += b',"total":' + str(emitted).encode()
    yield tail + b',"link":' + orjson.dumps(links) + b"}"
