"""Transaction and batch Bundles (FHIR R4 §3.1.0.11): a transaction is all or nothing, a batch entry by entry.

Transaction processing follows the specification's order (DELETE, POST, PUT/PATCH, GET), gives every POSTed
resource its id first and rewrites references to `urn:uuid:` / fullUrl identities, resolves conditional
references (`Patient?identifier=...`) and conditional creates (`ifNoneExist`), so that repeated shared entries
(Synthea's Organization and Practitioner) are stored once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from sante.anomaly import Anomaly, Category, Problem, incorrect, outcome_for
from sante.fhir.model import r4
from sante.store.repository import Repository, StoredResource, Transaction, new_id
from sante.store.search import parse_search, run_search

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


def _entry_error(i: int, message: str, field: str = "request") -> Anomaly:
    return incorrect(message, f"Bundle.entry[{i}].{field}")


def _check_bundle(bundle: Any) -> list[dict[str, Any]]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise incorrect("expected a Bundle", "resourceType")
    if bundle.get("type") not in ("transaction", "batch"):
        raise incorrect(f"Bundle.type must be transaction or batch, got {bundle.get('type')!r}", "Bundle.type")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise incorrect("Bundle.entry must be an array", "Bundle.entry")
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("request"), dict):
            raise _entry_error(i, "every entry needs a request (method and url)")
        method = e["request"].get("method")
        if method not in ORDER:
            raise _entry_error(i, f"unsupported request.method {method!r}", "request.method")
        if not isinstance(e["request"].get("url"), str) or not e["request"]["url"]:
            raise _entry_error(i, "request.url is required", "request.url")
        if method in ("POST", "PUT") and not isinstance(e.get("resource"), dict):
            raise _entry_error(i, f"a {method} entry needs a resource", "resource")
    return entries


def _split_url(url: str) -> tuple[str, str | None, str | None]:
    """'Patient/1' -> (Patient, 1, None); 'Patient?identifier=x' -> (Patient, None, 'identifier=x')."""
    url = url.split("/fhir/", 1)[-1].lstrip("/")
    if "?" in url:
        path, query = url.split("?", 1)
        return path, None, query
    parts = url.split("/")
    return parts[0], parts[1] if len(parts) > 1 else None, None


def _search_ids(tx: Transaction, rtype: str, query: str) -> list[str]:
    if rtype not in r4().resource_types:
        raise incorrect(f"{rtype!r} is not a resource type", "request.url")
    req = parse_search(rtype, parse_qsl(query, keep_blank_values=True), strict=True)
    req.count = 2
    return [m.id for m in run_search(tx, req).matches]


def rewrite_references(node: Any, resolve: Callable[[str], str | None]) -> None:
    """Replace every Reference.reference (in place) that `resolve` maps to a new value."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference" and isinstance(v, str):
                new = resolve(v)
                if new is not None:
                    node[k] = new
            elif isinstance(v, (dict, list)):
                rewrite_references(v, resolve)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, (dict, list)):
                rewrite_references(item, resolve)


def _response(stored: StoredResource | None, status: str, resource: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"response": {"status": status}}
    if stored is not None:
        out["response"].update(
            location=f"{stored.type}/{stored.id}/_history/{stored.version}",
            etag=stored.etag,
            lastModified=stored.last_updated,
        )
        if resource and not stored.deleted:
            out["resource"] = stored.resource
    return out


def _etag_version(value: str | None) -> int | None:
    if not value:
        return None
    digits = "".join(ch for ch in value if ch.isdigit())
    return int(digits) if digits else None


def _process_entry(tx: Transaction, i: int, entry: dict[str, Any], assigned: dict[int, str]) -> dict[str, Any]:
    req = entry["request"]
    method = req["method"]
    rtype, rid, query = _split_url(req["url"])
    if method == "POST":
        resource = entry["resource"]
        if resource.get("resourceType") != rtype:
            raise _entry_error(i, f"resourceType {resource.get('resourceType')!r} does not match url {rtype!r}")
        if i in assigned and assigned[i].startswith("existing:"):
            return _response(tx.read(rtype, assigned[i].removeprefix("existing:")), "200 OK")
        if req.get("ifNoneExist") and i not in assigned:
            found = _search_ids(tx, rtype, req["ifNoneExist"])
            if len(found) > 1:
                raise Anomaly(Category.PRECONDITION_FAILED, f"ifNoneExist matches several {rtype}",
                              location=f"Bundle.entry[{i}].request.ifNoneExist")
            if found:
                return _response(tx.read(rtype, found[0]), "200 OK")
        return _response(tx.create(resource, assigned.get(i)), "201 Created")
    if method == "PUT":
        resource = entry["resource"]
        if query is not None:
            found = _search_ids(tx, rtype, query)
            if len(found) > 1:
                raise Anomaly(Category.PRECONDITION_FAILED, f"conditional update matches several {rtype}",
                              location=f"Bundle.entry[{i}].request.url")
            rid = found[0] if found else (resource.get("id") or new_id())
        if rid is None:
            raise _entry_error(i, "PUT needs Type/id or Type?search", "request.url")
        if resource.get("id") not in (None, rid):
            raise _entry_error(i, f"resource id {resource.get('id')!r} does not match url id {rid!r}", "resource.id")
        stored, created = tx.update(resource, rid, if_match=_etag_version(req.get("ifMatch")))
        return _response(stored, "201 Created" if created else "200 OK")
    if method == "DELETE":
        ids = [rid] if rid else _search_ids(tx, rtype, query or "")
        if len(ids) > 1:
            raise Anomaly(Category.PRECONDITION_FAILED, f"conditional delete matches several {rtype}",
                          location=f"Bundle.entry[{i}].request.url")
        deleted = tx.delete(rtype, ids[0]) if ids else None
        return _response(deleted, "204 No Content")
    if method == "PATCH":
        raise Anomaly(Category.UNSUPPORTED, "PATCH inside a Bundle is not supported yet",
                      location=f"Bundle.entry[{i}].request.method")
    # GET / HEAD: a read inside the bundle.
    if rid is None:
        raise _entry_error(i, "only reads (Type/id) are supported as GET entries", "request.url")
    return _response(tx.read(rtype, rid), "200 OK", resource=method == "GET")


def _prepare_transaction(tx: Transaction, entries: list[dict[str, Any]]) -> dict[int, str]:
    """Assign ids to POSTs, resolve conditional creates and references; rewrite references in place."""
    identity: dict[str, str] = {}  # fullUrl -> Type/id
    assigned: dict[int, str] = {}
    conditional_seen: dict[tuple[str, str], str] = {}
    for i, e in enumerate(entries):
        req = e["request"]
        rtype, rid, _query = _split_url(req["url"])
        full = e.get("fullUrl")
        if req["method"] == "POST":
            target = None
            cond = req.get("ifNoneExist")
            if cond:
                key = (rtype, cond)
                if key in conditional_seen:
                    target = conditional_seen[key]
                    assigned[i] = "existing:" + target
                else:
                    found = _search_ids(tx, rtype, cond)
                    if len(found) > 1:
                        raise Anomaly(Category.PRECONDITION_FAILED, f"ifNoneExist matches several {rtype}",
                                      location=f"Bundle.entry[{i}].request.ifNoneExist")
                    if found:
                        target = found[0]
                        assigned[i] = "existing:" + target
                    conditional_seen[key] = target or ""
            if target is None:
                target = new_id()
                assigned[i] = target
                if cond:
                    conditional_seen[(rtype, cond)] = target
            if full:
                identity[full] = f"{rtype}/{target}"
        elif req["method"] == "PUT" and rid and full:
            identity[full] = f"{rtype}/{rid}"

    cache: dict[str, str | None] = {}

    def resolve(ref: str) -> str | None:
        if ref in identity:
            return identity[ref]
        if "?" in ref and not ref.startswith(("http://", "https://")):
            if ref not in cache:
                rtype, query = ref.split("?", 1)
                created_here = conditional_seen.get((rtype, query))
                if created_here:  # the same condition as a conditional create in this bundle
                    cache[ref] = f"{rtype}/{created_here}"
                    return cache[ref]
                found = _search_ids(tx, rtype, query)
                if len(found) != 1:
                    raise Anomaly(Category.PRECONDITION_FAILED,
                                  f"conditional reference {ref} matches {len(found)} resources (needs exactly one)")
                cache[ref] = f"{rtype}/{found[0]}"
            return cache[ref]
        return None

    for e in entries:
        if isinstance(e.get("resource"), dict):
            rewrite_references(e["resource"], resolve)
    return assigned


def process_bundle(repo: Repository, bundle: Any) -> dict[str, Any]:
    """Run a transaction or batch Bundle; returns the transaction-response / batch-response Bundle."""
    entries = _check_bundle(bundle)
    if bundle["type"] == "transaction":
        results: list[dict[str, Any] | None] = [None] * len(entries)
        with repo.transaction() as tx:
            assigned = _prepare_transaction(tx, entries)
            for i in sorted(range(len(entries)), key=lambda k: ORDER[entries[k]["request"]["method"]]):
                try:
                    results[i] = _process_entry(tx, i, entries[i], assigned)
                except Anomaly as a:
                    where = a.location if (a.location or "").startswith("Bundle.entry") else f"Bundle.entry[{i}]"
                    raise Anomaly(a.category, f"entry {i}: {a.message}", location=where,
                                  problems=tuple(Problem(p.message, f"Bundle.entry[{i}].resource." + p.location
                                                         if p.location and not p.location.startswith("Bundle")
                                                         else (p.location or where), p.severity, p.code)
                                                 for p in a.problems)) from None
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": results}
    out = []
    for i, e in enumerate(entries):
        try:
            with repo.transaction() as tx:
                out.append(_process_entry(tx, i, e, {}))
        except Anomaly as a:
            out.append({"response": {"status": f"{a.category.status}", "outcome": outcome_for(a)}})
    return {"resourceType": "Bundle", "type": "batch-response", "entry": out}
