"""Transaction and batch Bundles (FHIR R4 §3.1.0.11): a transaction is all or nothing, a batch entry by entry.

Processing is split in two so a bulk load can use both cores:
- `prepare_bundle` is pure (no database): it checks the Bundle, validates every resource, gives each POSTed
  resource its id, rewrites references to `urn:uuid:` / fullUrl identities and extracts the search-index rows.
  A conditional create (`ifNoneExist`) gets a *predicted* id, derived from its condition, so references to it
  can be rewritten before the database is consulted.
- `commit_transaction` runs inside one database transaction: it resolves conditional creates and conditional
  references (`Patient?identifier=...`) against the database, re-points references whose prediction missed,
  then writes in the specification's order (DELETE, POST, PUT/PATCH, GET), new resources in batched statements.
"""

from __future__ import annotations

import pickle
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from sante.anomaly import Anomaly, Category, Problem, incorrect, outcome_for
from sante.fhir.model import r4
from sante.store.indexer import index_rows
from sante.store.repository import IndexRows, Repository, StoredResource, Transaction, new_id, split_body
from sante.store.search import matching_ids
from sante.store.validation import check_resource

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_PREDICT_NS = uuid.UUID("6f1c6a0e-5a1e-4c3b-9a57-3a1e5a7e0001")


@dataclass(slots=True)
class PreparedEntry:
    index: int
    method: str
    rtype: str
    rid: str | None
    query: str | None = None
    if_none_exist: str | None = None
    if_match: int | None = None
    resource: dict[str, Any] | None = None
    rows: IndexRows | None = None
    same_as: int | None = None  # a repeated conditional create: answered like entry `same_as`
    body: tuple[dict[str, Any], bytes] | None = None  # a POST's resource as split_body parts, on the wire

    def materialize(self) -> None:
        """The resource as a dict again (after crossing processes as bytes), for the rare edits at commit."""
        if self.body is not None:
            meta, body = self.body
            resource = {"resourceType": self.rtype, **({"meta": meta} if meta else {}), **orjson.loads(body)}
            self.resource, self.body = resource, None

    def new_resource(self) -> Any:
        """What create_many takes: the dict, or the (type, meta, body) parts as they came."""
        if self.body is not None:
            return (self.rtype, self.body[0], self.body[1])
        return self.resource or {}


def _wire_rows(rows: IndexRows | None) -> Any:
    if rows is None:
        return None
    return {k: [[float(v) if isinstance(v, Decimal) else v for v in row] for row in r] for k, r in rows.items() if r}


@dataclass(slots=True)
class PreparedBundle:
    type: str
    entries: list[PreparedEntry] = field(default_factory=list)
    conditional_refs: bool = False  # references like Patient?identifier=... wait for the database

    def to_bytes(self) -> bytes:
        """A compact form for passing between processes: new resources travel as their serialised body (made
        once, here), so the committing process never parses them unless a reference must be re-pointed."""
        entries = []
        for e in self.entries:
            body = split_body(e.resource) if e.method == "POST" and e.resource is not None else None
            entries.append((e.index, e.method, e.rtype, e.rid, e.query, e.if_none_exist, e.if_match,
                            None if body else e.resource, _wire_rows(e.rows), e.same_as, body))
        return pickle.dumps((self.type, self.conditional_refs, entries), protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(cls, data: bytes) -> PreparedBundle:
        btype, conditional_refs, entries = pickle.loads(data)
        return cls(btype, [PreparedEntry(*e) for e in entries], conditional_refs)


def _entry_error(i: int, message: str, field_: str = "request") -> Anomaly:
    return incorrect(message, f"Bundle.entry[{i}].{field_}")


def _split_url(url: str) -> tuple[str, str | None, str | None]:
    """'Patient/1' -> (Patient, 1, None); 'Patient?identifier=x' -> (Patient, None, 'identifier=x')."""
    url = url.split("/fhir/", 1)[-1].lstrip("/")
    if "?" in url:
        path, query = url.split("?", 1)
        return path, None, query
    parts = url.split("/")
    return parts[0], parts[1] if len(parts) > 1 else None, None


def _etag_version(value: Any) -> int | None:
    if not isinstance(value, str) or not value:
        return None
    digits = "".join(ch for ch in value if ch.isdigit())
    return int(digits) if digits else None


def rewrite_references(node: Any, resolve: Any) -> bool:
    """Replace (in place) every Reference.reference that `resolve` maps to a new value; True if any changed."""
    changed = False
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference" and isinstance(v, str):
                new = resolve(v)
                if new is not None and new != v:
                    node[k] = new
                    changed = True
            elif isinstance(v, (dict, list)):
                changed |= rewrite_references(v, resolve)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, (dict, list)):
                changed |= rewrite_references(item, resolve)
    return changed


def predicted_id(rtype: str, condition: str) -> str:
    """The id a conditional create gets when it creates: the same condition always predicts the same id."""
    return str(uuid.uuid5(_PREDICT_NS, f"{rtype}?{condition}"))


# -------------------------------------------------------------------------------------------------------------
# prepare (pure)


def _check_entry(i: int, e: Any) -> PreparedEntry:
    if not isinstance(e, dict) or not isinstance(e.get("request"), dict):
        raise _entry_error(i, "every entry needs a request (method and url)")
    req = e["request"]
    method = req.get("method")
    if method not in ORDER:
        raise _entry_error(i, f"unsupported request.method {method!r}", "request.method")
    url = req.get("url")
    if not isinstance(url, str) or not url:
        raise _entry_error(i, "request.url is required", "request.url")
    rtype, rid, query = _split_url(url)
    if rtype not in r4().resource_types:
        raise _entry_error(i, f"{rtype!r} in request.url is not a resource type", "request.url")
    resource = e.get("resource")
    if method in ("POST", "PUT"):
        if not isinstance(resource, dict):
            raise _entry_error(i, f"a {method} entry needs a resource", "resource")
        if resource.get("resourceType") != rtype:
            raise _entry_error(i, f"resourceType {resource.get('resourceType')!r} does not match url {rtype!r}",
                               "resource.resourceType")
    if method == "PUT":
        if rid is None and query is None:
            raise _entry_error(i, "PUT needs Type/id or Type?search", "request.url")
        if rid is not None and resource.get("id") != rid:
            raise _entry_error(i, f"resource id {resource.get('id')!r} does not match url id {rid!r}", "resource.id")
    if method == "PATCH":
        raise Anomaly(Category.UNSUPPORTED, "PATCH inside a Bundle is not supported yet",
                      location=f"Bundle.entry[{i}].request.method")
    if method in ("GET", "HEAD") and rid is None:
        raise _entry_error(i, "only reads (Type/id) are supported as GET entries", "request.url")
    if method == "DELETE" and rid is None and not query:
        raise _entry_error(i, "DELETE needs Type/id or Type?search", "request.url")
    cond = req.get("ifNoneExist") if method == "POST" else None
    if cond is not None and not isinstance(cond, str):
        raise _entry_error(i, "ifNoneExist must be a search string", "request.ifNoneExist")
    return PreparedEntry(i, method, rtype, rid, query, cond or None, _etag_version(req.get("ifMatch")),
                         resource if method in ("POST", "PUT") else None)  # other methods ignore a resource


def _validate_transaction(raw: list[Any], entries: list[PreparedEntry]) -> None:
    """Every entry's resource validated as a transaction entry, and fullUrls unique (bdl-7); all errors at once."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for p in entries:
        full = raw[p.index].get("fullUrl")
        if isinstance(full, str):
            if full in seen:
                problems.append(Problem(f"fullUrl {full!r} is also the fullUrl of entry {seen[full]} (bdl-7)",
                                        f"Bundle.entry[{p.index}].fullUrl", "error", "invariant"))
            seen.setdefault(full, p.index)
        if p.resource is None or p.method not in ("POST", "PUT"):
            continue
        for issue in check_resource(p.resource, in_bundle="transaction"):
            loc = issue.location or p.rtype
            rest = loc[len(p.rtype):] if loc.startswith(p.rtype) else "." + loc
            problems.append(Problem(issue.message, f"Bundle.entry[{p.index}].resource{rest}", "error", issue.code))
    if problems:
        raise Anomaly(Category.UNPROCESSABLE, f"{len(problems)} validation error(s): {problems[0].message}",
                      location=problems[0].location, problems=tuple(problems))


def prepare_bundle(bundle: Any) -> PreparedBundle:
    """Check, validate, assign ids, rewrite local references and extract index rows; no database."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise incorrect("expected a Bundle", "resourceType")
    if bundle.get("type") not in ("transaction", "batch"):
        raise incorrect(f"Bundle.type must be transaction or batch, got {bundle.get('type')!r}", "Bundle.type")
    raw = bundle.get("entry", [])
    if not isinstance(raw, list):
        raise incorrect("Bundle.entry must be an array", "Bundle.entry")
    prepared = PreparedBundle(bundle["type"], [_check_entry(i, e) for i, e in enumerate(raw)])
    if prepared.type == "batch":
        return prepared  # batch entries are independent: each is prepared and committed alone
    _validate_transaction(raw, prepared.entries)
    identity: dict[str, str] = {}
    first_with: dict[tuple[str, str], int] = {}
    for p in prepared.entries:
        full = raw[p.index].get("fullUrl")
        if p.method == "POST":
            if p.if_none_exist:
                key = (p.rtype, p.if_none_exist)
                if key in first_with:
                    p.same_as = first_with[key]
                else:
                    first_with[key] = p.index
                p.rid = predicted_id(p.rtype, p.if_none_exist)
            else:
                p.rid = new_id()
            if isinstance(full, str):
                identity[full] = f"{p.rtype}/{p.rid}"
        elif p.method == "PUT" and p.rid and isinstance(full, str):
            identity[full] = f"{p.rtype}/{p.rid}"

    def resolve(ref: str) -> str | None:
        hit = identity.get(ref)
        if hit is not None:
            return hit
        if "?" in ref and not ref.startswith(("http://", "https://")):
            rtype, query = ref.split("?", 1)
            if (rtype, query) in first_with:  # the condition of a conditional create in this bundle
                return f"{rtype}/{predicted_id(rtype, query)}"
            prepared.conditional_refs = True
        return None

    for p in prepared.entries:
        if p.resource is not None:
            rewrite_references(p.resource, resolve)
            if p.method == "POST" and p.same_as is None:
                p.resource.pop("id", None)  # the server assigns ids on create
            p.rows = index_rows(p.resource)
    return prepared


# -------------------------------------------------------------------------------------------------------------
# commit (one database transaction)


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


def _locate(a: Anomaly, i: int) -> Anomaly:
    """An entry's failure, located in the Bundle."""
    if (a.location or "").startswith("Bundle.entry"):
        return a
    where = f"Bundle.entry[{i}]"
    problems = tuple(
        Problem(p.message, p.location if (p.location or "").startswith("Bundle") else where, p.severity, p.code)
        for p in a.problems
    )
    return Anomaly(a.category, f"entry {i}: {a.message}", location=where, problems=problems)


def _resolve_conditions(tx: Transaction, prepared: PreparedBundle) -> dict[str, str]:
    """Conditional creates and references against the database: a map of references to re-point."""
    remap: dict[str, str] = {}
    for p in prepared.entries:
        if p.method != "POST" or not p.if_none_exist or p.same_as is not None:
            continue
        loc = f"Bundle.entry[{p.index}].request.ifNoneExist"
        found = matching_ids(tx, p.rtype, p.if_none_exist, loc)
        if len(found) > 1:
            raise Anomaly(Category.PRECONDITION_FAILED, f"ifNoneExist matches several {p.rtype}", location=loc)
        predicted = p.rid or ""
        if found:
            p.same_as = -1  # exists already: nothing to write
            p.rid = found[0]
        elif tx.current(p.rtype, predicted) is not None:
            p.rid = new_id()  # the predicted id is taken by a resource that no longer matches
        if p.rid != predicted:
            remap[f"{p.rtype}/{predicted}"] = f"{p.rtype}/{p.rid}"
    return remap


def commit_transaction(tx: Transaction, prepared: PreparedBundle) -> list[dict[str, Any]]:
    """Write a prepared transaction; returns the response entries in request order."""
    remap = _resolve_conditions(tx, prepared)
    if remap or prepared.conditional_refs:
        cache: dict[str, str] = {}

        def resolve(ref: str) -> str | None:
            if ref in remap:
                return remap[ref]
            if "?" in ref and not ref.startswith(("http://", "https://")):
                if ref not in cache:
                    rtype, query = ref.split("?", 1)
                    found = matching_ids(tx, rtype, query, "reference")
                    if len(found) != 1:
                        raise Anomaly(Category.PRECONDITION_FAILED,
                                      f"conditional reference {ref} matches {len(found)} resources (needs one)")
                    cache[ref] = f"{rtype}/{found[0]}"
                return cache[ref]
            return None

        for p in prepared.entries:
            p.materialize()
            if p.resource is not None and rewrite_references(p.resource, resolve):
                p.rows = index_rows(p.resource)

    results: list[dict[str, Any] | None] = [None] * len(prepared.entries)
    by_index = {p.index: p for p in prepared.entries}
    for p in sorted(prepared.entries, key=lambda e: ORDER[e.method]):
        try:
            if p.method == "POST":
                continue  # created together below, in the POST slot of the order
            results[p.index] = _commit_one(tx, p)
        except Anomaly as a:
            raise _locate(a, p.index) from None
    creates = [p for p in prepared.entries if p.method == "POST" and p.same_as is None]
    stored = tx.create_many([(p.new_resource(), p.rid or new_id(), p.rows or {}) for p in creates])
    for p, s in zip(creates, stored):
        results[p.index] = _response(s, "201 Created")
    for p in prepared.entries:
        if p.method == "POST" and p.same_as is not None:
            source = by_index.get(p.same_as)
            if source is not None and results[source.index] is not None and source.same_as is None:
                results[p.index] = {"response": {**results[source.index]["response"], "status": "200 OK"}}
            else:
                results[p.index] = _response(tx.read(p.rtype, p.rid or ""), "200 OK")
    return [r or {"response": {"status": "200 OK"}} for r in results]


def _commit_one(tx: Transaction, p: PreparedEntry) -> dict[str, Any]:
    p.materialize()
    if p.method == "PUT":
        rid = p.rid
        if p.query is not None:
            loc = f"Bundle.entry[{p.index}].request.url"
            found = matching_ids(tx, p.rtype, p.query, loc)
            if len(found) > 1:
                raise Anomaly(Category.PRECONDITION_FAILED, f"conditional update matches several {p.rtype}",
                              location=loc)
            rid = found[0] if found else ((p.resource or {}).get("id") or new_id())
        stored, created = tx.update(p.resource or {}, rid or "", if_match=p.if_match, index=p.rows, checked=True)
        return _response(stored, "201 Created" if created else "200 OK")
    if p.method == "DELETE":
        ids = [p.rid] if p.rid else matching_ids(tx, p.rtype, p.query or "", f"Bundle.entry[{p.index}].request.url")
        if len(ids) > 1:
            raise Anomaly(Category.PRECONDITION_FAILED, f"conditional delete matches several {p.rtype}",
                          location=f"Bundle.entry[{p.index}].request.url")
        deleted = tx.delete(p.rtype, ids[0], if_match=p.if_match) if ids else None
        return _response(deleted, "204 No Content")
    if p.method == "POST":  # a batch entry
        if p.if_none_exist:
            loc = f"Bundle.entry[{p.index}].request.ifNoneExist"
            found = matching_ids(tx, p.rtype, p.if_none_exist, loc)
            if len(found) > 1:
                raise Anomaly(Category.PRECONDITION_FAILED, f"ifNoneExist matches several {p.rtype}", location=loc)
            if found:
                return _response(tx.read(p.rtype, found[0]), "200 OK")
        return _response(tx.create(p.resource or {}), "201 Created")
    return _response(tx.read(p.rtype, p.rid or ""), "200 OK", resource=p.method == "GET")


def process_bundle(repo: Repository, bundle: Any, prepared: PreparedBundle | None = None) -> dict[str, Any]:
    """Run a transaction or batch Bundle; returns the transaction-response / batch-response Bundle."""
    prepared = prepared or prepare_bundle(bundle)
    if prepared.type == "transaction":
        with repo.transaction() as tx:
            entries = commit_transaction(tx, prepared)
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}
    out = []
    for p in prepared.entries:
        try:
            with repo.transaction() as tx:
                out.append(_commit_one(tx, p))
        except Anomaly as a:
            out.append({"response": {"status": str(a.category.status), "outcome": outcome_for(_locate(a, p.index))}})
    return {"resourceType": "Bundle", "type": "batch-response", "entry": out}
