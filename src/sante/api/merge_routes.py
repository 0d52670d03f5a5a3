"""`POST /fhir/Patient/$merge`: merge a duplicate patient record into the one that stays (sante.clinical.merge).

In (a Parameters resource, as FHIR R5's Patient-merge): `source-patient` (valueReference) or
`source-patient-identifier` (valueIdentifier, repeatable: all must name the same one patient), the same for the
target, `result-patient` (optional: a Patient whose id must be the target's; Sante computes the merged target
itself, so its other content is not used), `preview` (valueBoolean: say what would change, write nothing), and
Sante's `reason` (valueString: recorded on the corrections of signed records; a default says which records were
merged).

Out (200): Parameters with `input` (the request), `outcome` (an OperationOutcome listing what was, or would be,
changed) and `result` (the target Patient after the merge). Who may: a principal that may update Patient and
see both records; the request's audit event names the patients and every record moved.
"""

from __future__ import annotations

import functools
from typing import Any

import anyio
import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from sante.anomaly import incorrect
from sante.api.security import audit_of, principal_of
from sante.auth.guarded import GuardedRepository
from sante.clinical import merge as merging
from sante.clinical.service_support import search_all
from sante.store import Repository

FHIR_JSON = "application/fhir+json; charset=utf-8"


def _parameters(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise incorrect(f"the body is not valid JSON: {e}") from None
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise incorrect("$merge takes a Parameters resource (source-patient, target-patient, preview)")
    return body


def _values(params: dict[str, Any], name: str) -> list[dict[str, Any]]:
    entries = params.get("parameter") or []
    if not isinstance(entries, list):
        raise incorrect("Parameters.parameter must be a list", "parameter")
    return [p for p in entries if isinstance(p, dict) and p.get("name") == name]


def _part(p: dict[str, Any], key: str) -> dict[str, Any]:
    """A parameter's complex value (valueReference, valueIdentifier, resource), {} when absent or malformed."""
    value = p.get(key)
    return value if isinstance(value, dict) else {}


def _patient_named(g: Any, params: dict[str, Any], role: str) -> str:
    """The id of the source or target patient, from its reference or its identifiers."""
    refs = [_part(p, "valueReference").get("reference") for p in _values(params, f"{role}-patient")]
    identifiers = [_part(p, "valueIdentifier") for p in _values(params, f"{role}-patient-identifier")]
    if refs:
        ref = refs[0]
        if not isinstance(ref, str) or not ref.startswith("Patient/") or len(refs) > 1:
            raise incorrect(f"{role}-patient must be one reference Patient/id", f"{role}-patient")
        return ref.removeprefix("Patient/")
    if not identifiers:
        raise incorrect(f"$merge needs {role}-patient (or {role}-patient-identifier)", f"{role}-patient")
    found: set[str] | None = None
    for ident in identifiers:
        value, system = ident.get("value"), ident.get("system")
        if not isinstance(value, str) or not value or not isinstance(system, str | None):
            raise incorrect(f"{role}-patient-identifier needs a value (and a system)", f"{role}-patient-identifier")
        token = f"{system}|{value}" if system else value
        ids = {p["id"] for p in search_all(g, "Patient", [("identifier", token)])[0]}
        found = ids if found is None else found & ids
    if not found or len(found) > 1:
        raise incorrect(f"{role}-patient-identifier must name exactly one patient; it names {len(found or ())}",
                        f"{role}-patient-identifier")
    return found.pop()


def _outcome(result: merging.MergeResult) -> dict[str, Any]:
    verb = "would be" if result.preview else "was"
    issues: list[dict[str, Any]] = [{"severity": "information", "code": "informational",
               "diagnostics": f"Patient/{result.source['id']} {verb} merged into Patient/{result.target['id']}: "
                              f"{len(result.moved)} records re-pointed, {len(result.identifiers_added)} identifiers "
                              "added"}]
    issues += [{"severity": "information", "code": "informational", "diagnostics": f"{ref} {verb} re-pointed",
                "expression": [ref]} for ref in result.moved]
    return {"resourceType": "OperationOutcome", "issue": issues}


def register(app: FastAPI, repo: Repository) -> None:
    first_new = len(app.router.routes)

    def do_merge(guarded: GuardedRepository, params: dict[str, Any]) -> merging.MergeResult:
        with guarded.reader() as g:
            source = _patient_named(g, params, "source")
            target = _patient_named(g, params, "target")
        for p in _values(params, "result-patient"):
            patient = _part(p, "resource")
            if patient.get("resourceType") != "Patient" or patient.get("id") != target:
                raise incorrect("result-patient must be the target Patient (the same id)", "result-patient")
        preview = any(p.get("valueBoolean") is True for p in _values(params, "preview"))
        reasons = [p["valueString"] for p in _values(params, "reason") if isinstance(p.get("valueString"), str)
                   and p["valueString"].strip()]
        reason = reasons[0] if reasons else f"duplicate record Patient/{source} merged into Patient/{target}"
        return merging.merge(guarded, source, target, reason=reason, preview=preview)

    @app.post("/fhir/Patient/$merge")
    async def patient_merge(request: Request) -> Response:
        params = _parameters(await request.body())
        guarded = GuardedRepository(repo, principal_of(request), audit_of(request))
        result = await anyio.to_thread.run_sync(functools.partial(do_merge, guarded, params))
        body = {"resourceType": "Parameters", "parameter": [
            {"name": "input", "resource": params},
            {"name": "outcome", "resource": _outcome(result)},
            {"name": "result", "resource": result.target},
        ]}
        option = orjson.OPT_INDENT_2 if request.query_params.get("_pretty") == "true" else 0
        return Response(orjson.dumps(body, option=option), media_type=FHIR_JSON)

    # In front of the generic interaction routes, as sante.api.signing_routes does.
    new = app.router.routes[first_new:]
    del app.router.routes[first_new:]
    app.router.routes[0:0] = new


__all__ = ["register"]
