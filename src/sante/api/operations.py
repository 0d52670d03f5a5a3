"""FHIR operations: $export (Bulk Data, async), $everything, $meta, $validate.

Registered before the generic interaction routes so that `/fhir/Patient/$export` is never read as an id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import FastAPI, Request
from sqlalchemy import false, select
from starlette.responses import FileResponse, Response

from sante.anomaly import Anomaly, Category, Problem, incorrect, operation_outcome
from sante.fhir.model import r4
from sante.store import Repository
from sante.store.export import ExportJobs, ExportRequest, _in_compartment, compartment_types
from sante.store.index_values import date_range
from sante.store.repository import _row
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


def register_operations(app: FastAPI, repo: Repository, data_dir: Path) -> None:
    jobs = ExportJobs(repo, data_dir / "exports")

    def start(request: Request, level: str, group_id: str | None = None) -> Response:
        req = _export_request(request, level, group_id)
        if level == "group":
            repo.read("Group", group_id or "")  # 404 / 410 before a job starts
        job = jobs.start(req)
        base = str(request.base_url).rstrip("/") + "/fhir"
        return Response(status_code=202, headers={"Content-Location": f"{base}/$export-status/{job}"})

    @app.api_route("/fhir/$export", methods=["GET", "POST"])
    def export_system(request: Request) -> Response:
        return start(request, "system")

    @app.api_route("/fhir/Patient/$export", methods=["GET", "POST"])
    def export_patients(request: Request) -> Response:
        return start(request, "patient")

    @app.api_route("/fhir/Group/{gid}/$export", methods=["GET", "POST"])
    def export_group(gid: str, request: Request) -> Response:
        return start(request, "group", gid)

    @app.get("/fhir/$export-status/{job}")
    def export_status(job: str, request: Request) -> Response:
        state = jobs.status(job)
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
    def export_cancel(job: str) -> Response:
        if not jobs.cancel(job):
            raise Anomaly(Category.NOT_FOUND, f"no export job {job}")
        return Response(status_code=202)

    @app.get("/fhir/$export-file/{job}/{name}")
    def export_file(job: str, name: str) -> Response:
        f = jobs.file(job, name)
        if f is None:
            raise Anomaly(Category.NOT_FOUND, f"no export file {name} in job {job}")
        return FileResponse(f, media_type="application/fhir+ndjson")

    @app.get("/fhir/Patient/{pid}/$everything")
    def everything(pid: str, request: Request) -> Response:
        return _respond(request, _everything_page(request, repo, pid))

    @app.api_route("/fhir/{rtype}/{rid}/$meta", methods=["GET", "POST"])
    def meta(rtype: str, rid: str, request: Request) -> Response:
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


def _everything_page(request: Request, repo: Repository, pid: str) -> dict[str, Any]:
    """One page of the patient's compartment: the Patient, then each compartment type in id order."""
    repo.read("Patient", pid)
    q = request.query_params
    count = int(q["_count"]) if q.get("_count", "").isdigit() else 100
    count = max(1, min(count, 1000))
    types = ["Patient", *sorted(compartment_types())]
    wanted = [t.strip() for t in q.get("_type", "").split(",") if t.strip()]
    if wanted:
        types = [t for t in types if t in wanted]
    cursor = decode_cursor(q["_cursor"]) if q.get("_cursor") else [types[0] if types else "", ""]
    if not (isinstance(cursor, list) and len(cursor) == 2 and cursor[0] in [*types, ""]):
        raise incorrect("_cursor is not one this server issued", "_cursor")
    found = []
    with repo.reader() as tx:
        for rtype in types[types.index(cursor[0]):] if cursor[0] else types:
            after = cursor[1] if rtype == cursor[0] else ""
            rows = tx.conn.execute(
                select(resources)
                .where(resources.c.type == rtype, resources.c.deleted == false(), resources.c.id > after,
                       _in_compartment(rtype, [pid]))
                .order_by(resources.c.id)
                .limit(count - len(found) + 1)
            ).all()
            found += [_row(r) for r in rows]
            if len(found) > count:
                break
    more = len(found) > count
    found = found[:count]
    base = str(request.base_url).rstrip("/") + "/fhir"
    links = [{"relation": "self", "url": str(request.url)}]
    if more:
        params = [(k, v) for k, v in q.multi_items() if k != "_cursor"]
        params.append(("_cursor", encode_cursor([found[-1].type, found[-1].id])))
        links.append({"relation": "next", "url": f"{base}/Patient/{pid}/$everything?{urlencode(params)}"})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": [{"fullUrl": f"{base}/{m.type}/{m.id}", "resource": m.resource, "search": {"mode": "match"}}
                  for m in found],
    }
