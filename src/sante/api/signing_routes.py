"""Signed records over HTTP: `POST /fhir/{type}/{id}/$sign` and `GET /fhir/Provenance/{id}/$verify-signature`.

`register(app, repo, settings)` adds the routes in front of the app's generic ones, so that
`/fhir/Provenance/1/$verify-signature` is never read as a compartment search. Errors are Anomalies, which
the app answers as OperationOutcome.

Who may sign: a signed-in practitioner (a token whose fhirUser is Practitioner/ID) signs as themselves,
with their key from the data dir's CA folder; the `practitioner` parameter may be left out and, if given,
must be them. A `system` client (an integration, an operator's script) names the practitioner. Both need
read access to the resource and create access to Provenance; nobody else may sign.
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
from sante.auth import ca
from sante.auth.policy import forbidden, require, require_visible_in
from sante.auth.principal import Principal
from sante.clinical import signing
from sante.settings import Settings
from sante.store import Repository

FHIR_JSON = "application/fhir+json; charset=utf-8"
CORRECTION_HEADER = "X-Provenance"


def _respond(request: Request, body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
             ) -> Response:
    option = orjson.OPT_INDENT_2 if request.query_params.get("_pretty") == "true" else 0
    return Response(orjson.dumps(body, option=option), status_code=status, media_type=FHIR_JSON, headers=headers)


async def _requested_practitioner(request: Request) -> str | None:
    """The practitioner from a Parameters body (`practitioner`: valueReference, valueString or valueUri) or
    from the query (`?practitioner=Practitioner/1`), None when neither names one."""
    raw = await request.body()
    if raw.strip():
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise incorrect(f"the body is not valid JSON: {e}") from None
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise incorrect("$sign takes a Parameters resource with a 'practitioner' parameter")
        for p in body.get("parameter") or []:
            if isinstance(p, dict) and p.get("name") == "practitioner":
                value = (p.get("valueReference") or {}).get("reference") or p.get("valueString") or p.get("valueUri")
                if isinstance(value, str):
                    return ca.practitioner_reference(value)
    query = request.query_params.get("practitioner")
    return ca.practitioner_reference(query) if query else None


def signing_practitioner(principal: Principal, requested: str | None) -> str:
    """Who signs: the signed-in practitioner themselves, or the one a system client names."""
    user = principal.fhir_user or ""
    if user.startswith("Practitioner/"):
        if requested is not None and requested != user:
            raise forbidden(f"{user} may sign only as themselves, not as {requested}")
        return user
    if principal.role != "system":
        raise forbidden("only a practitioner (a user whose fhirUser is a Practitioner) can sign")
    if requested is None:
        raise incorrect("$sign needs the signing practitioner: a Parameters body with parameter 'practitioner' "
                        "(valueReference Practitioner/id)", "practitioner")
    return requested


def correction_from_request(request: Request) -> tuple[str | None, str | None]:
    """(reason, agent reference) of a change to a signed version, from the FHIR R4 `X-Provenance` header (a
    Provenance in JSON: `reason[0].text` or a coding's display/code, and `agent[0].who.reference`)."""
    raw = request.headers.get(CORRECTION_HEADER)
    if not raw:
        return None, None
    try:
        prov = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise incorrect(f"{CORRECTION_HEADER} is not JSON: {e}", CORRECTION_HEADER) from None
    if not isinstance(prov, dict) or prov.get("resourceType") != "Provenance":
        raise incorrect(f"{CORRECTION_HEADER} must hold a Provenance resource", CORRECTION_HEADER)
    reason = None
    for r in prov.get("reason") or []:
        if not isinstance(r, dict):
            continue
        coding = next((c for c in r.get("coding", []) if isinstance(c, dict)), {})
        reason = r.get("text") or coding.get("display") or coding.get("code")
        if reason:
            break
    agents = [a for a in prov.get("agent") or [] if isinstance(a, dict)]
    agent = ((agents[0].get("who") or {}).get("reference") if agents else None) or None
    return reason, agent


def register(app: FastAPI, repo: Repository, settings: Settings) -> None:
    ca_dir = ca.default_ca_dir(settings.data_dir)
    first_new = len(app.router.routes)

    def do_sign(principal: Principal, rtype: str, rid: str, practitioner: str) -> dict[str, Any]:
        signing.check_signable(rtype)
        require(principal, "r", rtype)
        require(principal, "c", "Provenance")
        require_visible_in(repo, principal, rtype, rid)
        key, chain = ca.load_signer(ca_dir, practitioner)
        return signing.sign(repo, rtype, rid, practitioner, key, chain)

    def do_verify(principal: Principal, pid: str) -> signing.VerificationReport:
        require(principal, "r", "Provenance")
        require_visible_in(repo, principal, "Provenance", pid)
        return signing.verify(repo, pid, anchor=ca.hospital_ca(ca_dir))

    @app.post("/fhir/{rtype}/{rid}/$sign")
    async def sign_record(rtype: str, rid: str, request: Request) -> Response:
        principal = principal_of(request)
        practitioner = signing_practitioner(principal, await _requested_practitioner(request))
        prov = await anyio.to_thread.run_sync(functools.partial(do_sign, principal, rtype, rid, practitioner))
        event = audit_of(request)
        if event is not None:
            event.entities.append(f"Provenance/{prov['id']}")
            event.description = f"{prov['target'][0]['reference']} signed by {practitioner}"
        base = str(request.base_url).rstrip("/") + "/fhir"
        version = prov["meta"]["versionId"]
        return _respond(request, prov, 201, {"Location": f"{base}/Provenance/{prov['id']}/_history/{version}",
                                             "ETag": f'W/"{version}"'})

    @app.api_route("/fhir/Provenance/{pid}/$verify-signature", methods=["GET", "POST"])
    async def verify_signature(pid: str, request: Request) -> Response:
        report = await anyio.to_thread.run_sync(do_verify, principal_of(request), pid)
        return _respond(request, report.to_parameters())

    # In front of the generic interaction routes (/fhir/{ctype}/{cid}/{rtype} would take $verify-signature).
    new = app.router.routes[first_new:]
    del app.router.routes[first_new:]
    app.router.routes[0:0] = new


__all__ = ["CORRECTION_HEADER", "correction_from_request", "register", "signing_practitioner"]
