"""The OpenAPI description served at /fhir/openapi.json.

FastAPI generates it from the route signatures, but the FHIR handlers take the `Request` and read their query
parameters, headers and bodies themselves, so the generated description is thin: path parameters typed as any
string, no query parameters, no request bodies, and a 422 "validation error" that this server never sends (its
errors are OperationOutcomes). `describe(app)` completes it after generation, from the tables below. It only
documents: no handler reads these tables, so the behaviour is the same whatever they say.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from sante.fhir.model import r4

FHIR_JSON = "application/fhir+json"
ID_PATTERN = r"^[A-Za-z0-9\-.]{1,64}$"
COMPARTMENTS = ["Device", "Encounter", "Patient", "Practitioner", "RelatedPerson"]


def _resource(name: str | None = None) -> dict[str, Any]:
    """A FHIR resource as a JSON object (the R4 definitions themselves are far too large to inline here)."""
    rtype: dict[str, Any] = {"type": "string"} if name is None else {"type": "string", "enum": [name]}
    return {"type": "object", "required": ["resourceType"], "properties": {"resourceType": rtype, "id": {
        "type": "string", "pattern": ID_PATTERN}}, "additionalProperties": True}


def _query(name: str, description: str, schema: dict[str, Any] | None = None, required: bool = False
           ) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema or {"type": "string"}}


def _header(name: str, description: str, schema: dict[str, Any] | None = None, required: bool = False
            ) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": required, "description": description,
            "schema": schema or {"type": "string"}}


# Path parameters by name: what the handlers accept.
PATH_PARAMS: dict[str, dict[str, Any]] = {
    "rid": {"type": "string", "pattern": ID_PATTERN},
    "pid": {"type": "string", "pattern": ID_PATTERN},
    "cid": {"type": "string", "pattern": ID_PATTERN},
    "gid": {"type": "string", "pattern": ID_PATTERN},
    "aid": {"type": "string", "pattern": ID_PATTERN},
    "vid": {"type": "string", "pattern": "^[0-9]{1,9}$"},
    "ctype": {"type": "string", "enum": COMPARTMENTS},
}

COUNT = _query("_count", "page size", {"type": "integer", "minimum": 0})
PRETTY = _query("_pretty", "indent the JSON", {"type": "string", "enum": ["true", "false"]})
FORMAT = _query("_format", "only JSON is spoken", {"type": "string", "enum": ["json", "application/fhir+json"]})
SINCE = _query("_since", "only resources changed at or after this instant", {"type": "string", "format": "date-time"})
HISTORY_CURSOR = _query("_cursor", "from a next link", {"type": "string", "pattern": "^[0-9]+$"})
CURSOR = _query("_cursor", "from a next link")
SEARCH = [
    _query("_id", "logical id(s), comma separated"),
    _query("_lastUpdated", "a FHIR date with an optional prefix (ge2024-01-01)"),
    COUNT,
    _query("_sort", "sort keys, comma separated, '-' for descending"),
    _query("_include", "Type:param[:Target]"),
    _query("_revinclude", "Type:param[:Target]"),
    _query("_summary", "", {"type": "string", "enum": ["true", "false", "text", "data", "count"]}),
    _query("_elements", "elements to keep, comma separated"),
    _query("_total", "", {"type": "string", "enum": ["none", "estimate", "accurate"]}),
    CURSOR,
    PRETTY,
    FORMAT,
]
PREFER_WRITE = _header("Prefer", "return=minimal | representation | OperationOutcome", {
    "type": "string", "enum": ["return=minimal", "return=representation", "return=OperationOutcome"]})
PREFER_SEARCH = _header("Prefer", "handling=strict makes unknown search parameters an error", {
    "type": "string", "enum": ["handling=strict", "handling=lenient"]})
PREFER_ASYNC = _header("Prefer", "Bulk Data export runs asynchronously", {"type": "string", "enum": ["respond-async"]},
                       required=True)
IF_MATCH = _header("If-Match", 'the version the change applies to, as an ETag: W/"3"')
EXPORT = [_query("_type", "resource types, comma separated"), SINCE,
          _query("_outputFormat", "", {"type": "string", "enum": ["application/fhir+ndjson"]}), PREFER_ASYNC]
CONDITION = [_query("identifier", "search parameters selecting the one resource (any search parameter works)"),
             _query("_id", "")]

# (method, path) -> extra parameters
PARAMETERS: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("get", "/fhir/{rtype}"): [*SEARCH, PREFER_SEARCH],
    ("post", "/fhir/{rtype}/_search"): [*SEARCH, PREFER_SEARCH],
    ("get", "/fhir/{ctype}/{cid}/{rtype}"): [*SEARCH, PREFER_SEARCH],
    ("post", "/fhir/{rtype}"): [PREFER_WRITE, _header("If-None-Exist", "search parameters: create only if none "
                                                                     "matches (identifier=urn:oid:1|2)")],
    ("put", "/fhir/{rtype}"): [*CONDITION, PREFER_WRITE, IF_MATCH],
    ("delete", "/fhir/{rtype}"): CONDITION,
    ("put", "/fhir/{rtype}/{rid}"): [PREFER_WRITE, IF_MATCH],
    ("patch", "/fhir/{rtype}/{rid}"): [PREFER_WRITE, IF_MATCH],
    ("delete", "/fhir/{rtype}/{rid}"): [IF_MATCH],
    ("get", "/fhir/{rtype}/{rid}"): [PRETTY, FORMAT],
    ("get", "/fhir/{rtype}/{rid}/_history/{vid}"): [PRETTY, FORMAT],
    ("get", "/fhir/_history"): [COUNT, SINCE, HISTORY_CURSOR, PRETTY],
    ("get", "/fhir/{rtype}/_history"): [COUNT, SINCE, HISTORY_CURSOR, PRETTY],
    ("get", "/fhir/{rtype}/{rid}/_history"): [COUNT, SINCE, HISTORY_CURSOR, PRETTY],
    ("get", "/fhir/Patient/{pid}/$everything"): [
        _query("_count", "page size; absent: the whole compartment in one (streamed) response",
               {"type": "integer", "minimum": 0}),
        SINCE, _query("_type", "resource types, comma separated"), CURSOR, PRETTY,
        _query("start", "care date range: not supported (400)", {"type": "string", "format": "date"}),
        _query("end", "care date range: not supported (400)", {"type": "string", "format": "date"}),
    ],
    **{(m, p): EXPORT for m in ("get", "post")
       for p in ("/fhir/$export", "/fhir/Patient/$export", "/fhir/Group/{gid}/$export")},
}

_PATCH = {
    "application/json-patch+json": {"schema": {"type": "array", "items": {
        "type": "object", "required": ["op", "path"], "properties": {
            "op": {"type": "string", "enum": ["add", "remove", "replace", "move", "copy", "test"]},
            "path": {"type": "string"}, "from": {"type": "string"}, "value": {}}}}},
    FHIR_JSON: {"schema": _resource("Parameters")},
}

# (method, path) -> request body
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/fhir"): {FHIR_JSON: {"schema": {**_resource("Bundle"), "required": ["resourceType", "type"],
                                               "properties": {"resourceType": {"type": "string", "enum": ["Bundle"]},
                                                              "type": {"type": "string",
                                                                       "enum": ["transaction", "batch"]},
                                                              "entry": {"type": "array",
                                                                        "items": {"type": "object"}}}}}},
    ("post", "/fhir/{rtype}"): {FHIR_JSON: {"schema": _resource()}},
    ("put", "/fhir/{rtype}"): {FHIR_JSON: {"schema": _resource()}},
    ("put", "/fhir/{rtype}/{rid}"): {FHIR_JSON: {"schema": _resource()}},
    ("patch", "/fhir/{rtype}/{rid}"): _PATCH,
    ("post", "/fhir/{rtype}/_search"): {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "additionalProperties": {"type": "string"}}}},
    ("post", "/fhir/{rtype}/$validate"): {FHIR_JSON: {"schema": _resource()}},
    ("post", "/fhir/{rtype}/{rid}/$validate"): {FHIR_JSON: {"schema": _resource()}},
}

CREATED = {("post", "/fhir/{rtype}"), ("put", "/fhir/{rtype}"), ("put", "/fhir/{rtype}/{rid}")}


def complete(schema: dict[str, Any], public: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """Complete FastAPI's description in place (see the module's docstring); `public` paths need no token."""
    types = sorted(r4().resource_types)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Resource"] = _resource()
    schemas["OperationOutcome"] = _resource("OperationOutcome")
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
    schema["security"] = [{"bearer": []}]
    error = {"description": "an OperationOutcome saying what is wrong and where (400, 401, 403, 404, 405, 409, "
                            "410, 412, 422)",
             "content": {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}}}
    seen_ids: set[str] = set()
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            key = (method, path)
            if op.get("operationId") in seen_ids:  # a route with several methods: one id per operation
                op["operationId"] = f"{op['operationId']}_{method}"
            seen_ids.add(op.get("operationId", ""))
            for p in op.get("parameters", []):
                if p["in"] == "path":
                    if p["name"] == "rtype":
                        p["schema"] = {"type": "string", "enum": types}
                    elif p["name"] in PATH_PARAMS:
                        p["schema"] = dict(PATH_PARAMS[p["name"]])
            op.setdefault("parameters", []).extend(PARAMETERS.get(key, []))
            if key in BODIES:
                op["requestBody"] = {"required": True, "content": BODIES[key]}
            responses = op.setdefault("responses", {})
            if "HTTPValidationError" in str(responses.get("422", "")):
                del responses["422"]
            if path.startswith("/fhir") and "200" in responses and not responses["200"].get("content", {}).get(
                    "application/json", {}).get("schema"):
                responses["200"] = {"description": "a FHIR resource (a Bundle for searches and history)",
                                    "content": {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/Resource"}}}}
            if key in CREATED:
                responses["201"] = {"description": "created", "content": {FHIR_JSON: {
                    "schema": {"$ref": "#/components/schemas/Resource"}}}}
            responses.setdefault("default", error)
            if path in public:
                op["security"] = []
    return schema


def describe(app: FastAPI) -> None:
    """Serve the completed description at the app's openapi_url (built once, on first request)."""
    from sante.api.security import PUBLIC

    @functools.wraps(app.openapi)
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            with warnings.catch_warnings():  # "Duplicate Operation ID": made unique by complete()
                warnings.simplefilter("ignore", UserWarning)
                generated = get_openapi(title=app.title, version=app.version, routes=app.routes,
                                        description="The FHIR R4 REST API of Sante: see docs/api.md. Every error "
                                                    "is an OperationOutcome; JSON only.")
            app.openapi_schema = complete(generated, PUBLIC)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
