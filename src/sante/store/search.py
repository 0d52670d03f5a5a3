"""FHIR search: parse a query into a SearchRequest, then evaluate it as SQL over the index tables.

Each parameter becomes `resources.id IN (SELECT res_id FROM idx_<kind> WHERE ...)`, so the database drives
selective parameters from their index; repeated parameters AND, comma-separated values OR. Paging is keyset
paging on (sort keys, id): a page cursor names the last row's keys, so concurrent writes never make a page
repeat or skip a resource that was already there (ids never change).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson

from sante.anomaly import incorrect
from sante.fhir.model import r4, search_parameters
from sante.store import index_values as iv
from sante.store.schema import text_search_mode
from sante.store.search_sql import Sql, SqlBuilder, after_cursor, all_of, compartment_sql, for_dialect

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
# Parameters that shape the result rather than filter it.
RESULT_PARAMS = {
    "_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_format", "_pretty",
    "_cursor", "_contained", "_containedType",
}
MAX_COUNT = 1000
DEFAULT_COUNT = 50


@dataclass(frozen=True, slots=True)
class ParamDef:
    code: str
    type: str
    targets: tuple[str, ...]
    components: tuple[tuple[str, str], ...] = ()  # composite: (definition url, expression)


@dataclass(slots=True)
class Criterion:
    """One query parameter occurrence: name[:modifier][.chain]=v1,v2 (values OR-ed)."""

    name: str
    modifier: str | None
    chain: str | None  # the rest after the first '.', e.g. "name" in subject:Patient.name
    values: list[str]


@dataclass(slots=True)
class SearchRequest:
    rtype: str
    criteria: list[Criterion] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (param, descending)
    include: list[tuple[str, str, str | None, bool]] = field(default_factory=list)  # type, param, target, iterate
    revinclude: list[tuple[str, str, str | None, bool]] = field(default_factory=list)
    summary: str | None = None
    elements: list[str] = field(default_factory=list)
    total: str = "none"
    cursor: list[Any] | None = None
    iterate: bool = False  # _include:iterate / _revinclude:iterate given
    compartment: tuple[str, str] | None = None  # (compartment type, id)
    restriction: Sql | None = None  # rows the caller may see (sante.auth.policy.row_filter), alias r


# -------------------------------------------------------------------------------------------------------------
# definitions


def _build_defs() -> dict[str, dict[str, ParamDef]]:
    out: dict[str, dict[str, ParamDef]] = {}
    model = r4()
    for sp in search_parameters():
        comps = tuple((c.get("definition", ""), c.get("expression", "")) for c in sp.get("component", ()))
        d = ParamDef(sp["code"], sp["type"], tuple(sp.get("target", ())), comps)
        for base in sp.get("base", ()):
            types = model.resource_types if base in ("Resource", "DomainResource") else (base,)
            for t in types:
                out.setdefault(t, {}).setdefault(sp["code"], d)
    return out


_DEFS: dict[str, dict[str, ParamDef]] | None = None


def param_defs(rtype: str) -> dict[str, ParamDef]:
    global _DEFS
    if _DEFS is None:
        _DEFS = _build_defs()
    return _DEFS.get(rtype, {})


def _composite_parts(d: ParamDef, rtype: str) -> list[ParamDef]:
    by_url = {sp.get("url"): sp for sp in search_parameters()}
    parts = []
    for url, _expr in d.components:
        sp = by_url.get(url)
        if sp is None:
            return []
        parts.append(param_defs(rtype).get(sp["code"]) or ParamDef(sp["code"], sp["type"], ()))
    return parts


# -------------------------------------------------------------------------------------------------------------
# parsing


def parse_search(
    rtype: str, query: list[tuple[str, str]], *, strict: bool = False, compartment: tuple[str, str] | None = None
) -> SearchRequest:
    """A validated SearchRequest; bad values raise 400 with the parameter as location, unknown ones too if strict."""
    req = SearchRequest(rtype, compartment=compartment)
    defs = param_defs(rtype)
    for raw_name, value in query:
        if raw_name in ("_include:iterate", "_revinclude:iterate"):
            req.iterate = True
            raw_name = raw_name.split(":")[0]
        if raw_name in RESULT_PARAMS:
            _result_param(req, raw_name, value)
            continue
        name, _, chain = raw_name.partition(".")
        name, _, modifier = name.partition(":")
        if name.startswith("_has"):
            req.criteria.append(Criterion(raw_name, None, None, [value]))
            continue
        if name not in defs and name not in ("_id", "_lastUpdated", "_list"):
            if strict:
                raise incorrect(f"unknown search parameter {raw_name!r} for {rtype}", raw_name)
            continue
        values = _split_values(value)
        if not values and modifier != "missing":
            raise incorrect(f"search parameter {raw_name} has no value", raw_name)
        crit = Criterion(name, modifier or None, chain or None, values)
        _check_values(rtype, crit, raw_name)
        req.criteria.append(crit)
    return req


def _split_values(value: str) -> list[str]:
    """Comma-separated values, honouring the escape `\\,`."""
    parts, buf, i = [], "", 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value) and value[i + 1] in ",$|\\":
            buf += value[i + 1]
            i += 2
            continue
        if ch == ",":
            parts.append(buf)
            buf = ""
        else:
            buf += ch
        i += 1
    parts.append(buf)
    return [p for p in parts if p != ""]


def _result_param(req: SearchRequest, name: str, value: str) -> None:
    if name == "_count":
        if not value.isdigit():
            raise incorrect(f"_count must be a non-negative integer, got {value!r}", "_count")
        req.count = min(int(value), MAX_COUNT)
    elif name == "_sort":
        for key in value.split(","):
            key = key.strip()
            if not key:
                continue
            desc = key.startswith("-")
            pname = key.lstrip("-")
            if pname not in param_defs(req.rtype) and pname not in ("_id", "_lastUpdated"):
                raise incorrect(f"cannot sort {req.rtype} by unknown parameter {pname!r}", "_sort")
            req.sort.append((pname, desc))
    elif name in ("_include", "_revinclude"):
        iterate = False
        parts = value.split(":")
        if len(parts) < 2:
            raise incorrect(f"{name} must be Type:param[:TargetType], got {value!r}", name)
        target = parts[2] if len(parts) > 2 else None
        entry = (parts[0], parts[1], target, iterate)
        (req.include if name == "_include" else req.revinclude).append(entry)
    elif name == "_summary":
        if value not in ("true", "false", "text", "data", "count"):
            raise incorrect(f"_summary must be true, false, text, data or count, got {value!r}", "_summary")
        req.summary = None if value == "false" else value
    elif name == "_elements":
        req.elements = [e.strip() for e in value.split(",") if e.strip()]
    elif name == "_total":
        if value not in ("none", "estimate", "accurate"):
            raise incorrect(f"_total must be none, estimate or accurate, got {value!r}", "_total")
        req.total = value
    elif name == "_cursor":
        req.cursor = decode_cursor(value)
        if not isinstance(req.cursor, list):
            raise incorrect("_cursor is not one this server issued", "_cursor")


_DATE_VALUE = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)?(\d{4}(-\d{2}(-\d{2}(T.*)?)?)?)$")
_NUMBER_VALUE = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)?([+-]?\d+(\.\d+)?([eE][+-]?\d+)?)$")


def _check_values(rtype: str, crit: Criterion, location: str) -> None:
    if crit.modifier == "missing":
        if crit.values not in (["true"], ["false"]):
            raise incorrect(f"{location} must be true or false", location)
        return
    if crit.chain:
        return
    ptype = _ptype(rtype, crit.name)
    for v in crit.values:
        if ptype == "date" and (not _DATE_VALUE.match(v) or iv.date_range(_DATE_VALUE.match(v).group(2)) is None):
            raise incorrect(f"{location}: {v!r} is not a FHIR date/dateTime (with optional prefix)", location)
        if ptype == "number" and not _NUMBER_VALUE.match(v):
            raise incorrect(f"{location}: {v!r} is not a number (with optional prefix)", location)
        if ptype == "quantity" and not _NUMBER_VALUE.match(v.split("|", 1)[0]):
            raise incorrect(f"{location}: {v!r} is not a quantity ([prefix]number[|system|code])", location)


def _ptype(rtype: str, name: str) -> str:
    if name in ("_id", "_list"):
        return "id"
    if name == "_lastUpdated":
        return "date"
    return param_defs(rtype)[name].type


# -------------------------------------------------------------------------------------------------------------
# SQL


@dataclass(slots=True)
class SearchResult:
    matches: list[Any]  # StoredResource
    included: list[Any]
    total: int | None
    next_cursor: str | None


# How selective a criterion usually is (lower: fewer matches); the most selective one drives the query.
_SELECTIVITY = {"_id": 0, "_list": 0, "reference": 1, "token": 2, "string": 3, "uri": 3, "quantity": 4, "number": 4,
                "composite": 4, "date": 5, "_lastUpdated": 5}


def _rank(rtype: str, crit: Criterion) -> int:
    if crit.modifier in ("missing", "not"):
        return 6
    if crit.chain:
        return 1  # a chain usually names one target (a patient by name or identifier): few matches
    if crit.name.startswith("_has"):
        return 3
    if crit.name in _SELECTIVITY:
        return _SELECTIVITY[crit.name]
    d = param_defs(rtype).get(crit.name)
    return _SELECTIVITY.get(d.type, 5) if d else 6


def build_query(req: SearchRequest, text_mode: str = "like") -> tuple[Sql, Sql, int]:
    """(the page query, the match condition for counts, the number of sort-key columns); text_mode: how the
    database searches full text (sante.store.schema.text_search_mode)."""
    b = SqlBuilder(req.rtype, param_defs, text_mode=text_mode)
    where = [Sql("r.type = ? AND NOT r.deleted", [req.rtype])]
    driver = min(req.criteria, key=lambda c: _rank(req.rtype, c)) if req.criteria else None
    for crit in req.criteria:
        where.append(b.criterion(crit, drive=crit is driver))
    if req.compartment is not None:
        where.append(compartment_sql("r", req.rtype, *req.compartment))
    if req.restriction is not None:
        where.append(req.restriction)
    cond = all_of(where)
    keys = [(b.sort_key(p, desc), desc) for p, desc in req.sort]
    keys.append((Sql("r.id"), False))
    page_where = [cond]
    if req.cursor is not None:
        page_where.append(after_cursor(keys, req.cursor))
    select_keys = "".join(f", {k.text} AS k{n}" for n, (k, _) in enumerate(keys[:-1]))
    # One NULL order on both backends: NULLs first ascending, last descending (what after_cursor assumes).
    order = ", ".join(f"{k.text} {'DESC NULLS LAST' if desc else 'ASC NULLS FIRST'}" for k, desc in keys)
    params = [v for k, _ in keys[:-1] for v in k.params]
    params += [v for w in page_where for v in w.params]
    params += [v for k, _ in keys for v in k.params]
    text = (f"SELECT r.type, r.id, r.version, r.seq, r.last_updated, r.deleted, r.content{select_keys} "
            f"FROM resources r WHERE {' AND '.join(w.text for w in page_where)} ORDER BY {order} LIMIT ?")
    return Sql(text, [*params, req.count + 1]), cond, len(keys) - 1


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(text: str) -> Any:
    """The values of a cursor made by encode_cursor; a forged or damaged one is a 400."""
    try:
        return orjson.loads(base64.urlsafe_b64decode(text.encode() + b"=="))
    except (ValueError, orjson.JSONDecodeError):
        raise incorrect("_cursor is not one this server issued", "_cursor") from None


def run_search(tx: Any, req: SearchRequest) -> SearchResult:
    """Evaluate a search in a repository transaction (see Repository.reader)."""
    from sante.store.repository import _row

    conn = tx.conn
    dialect = conn.dialect.name
    total = None
    page, cond, nkeys = build_query(req, text_search_mode(conn))
    if req.total == "accurate" or req.summary == "count":
        count_sql = f"SELECT count(*) FROM resources r WHERE {cond.text}"
        total = conn.exec_driver_sql(for_dialect(count_sql, dialect), tuple(cond.params)).scalar_one()
    if req.summary == "count":
        return SearchResult([], [], total, None)
    rows = conn.exec_driver_sql(for_dialect(page.text, dialect), tuple(page.params)).all()
    more = len(rows) > req.count
    rows = rows[: req.count]
    matches = [_row(r) for r in rows]
    cursor = None
    if more and rows:
        last = rows[-1]
        cursor = encode_cursor([*last[7:7 + nkeys], last[1]])
    if total is None and req.total == "estimate" and not more and req.cursor is None:
        total = len(matches)
    included = _includes(conn, req, matches) if (req.include or req.revinclude) and matches else []
    return SearchResult(matches, included, total, cursor)


def matching_ids(tx: Any, rtype: str, query: str, location: str) -> list[str]:
    """Ids of the (at most two) resources a condition such as `identifier=sys|123` matches: for conditional
    create, update, delete and references, where one match is expected and two mean 412."""
    if rtype not in r4().resource_types:
        raise incorrect(f"{rtype!r} is not a resource type", location)
    req = parse_search(rtype, parse_qsl(query, keep_blank_values=True), strict=True)
    if not req.criteria:
        raise incorrect(f"{rtype}?{query}: a condition needs at least one search parameter", location)
    req.count = 2
    return [m.id for m in run_search(tx, req).matches]


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _includes(conn: Any, req: SearchRequest, matches: list[Any]) -> list[Any]:
    """_include / _revinclude (with :iterate, bounded to a few rounds), deduplicated against the matches."""
    dialect = conn.dialect.name
    seen = {(m.type, m.id) for m in matches}
    out: list[Any] = []
    frontier = list(matches)
    for _round in range(4):
        pairs: set[tuple[str, str]] = set()
        for src_type, param, target, _it in req.include:
            ids = [m.id for m in frontier if m.type == src_type]
            if not ids:
                continue
            sql = f"SELECT target_type, target_id FROM idx_reference WHERE res_type = ? AND res_id IN ({_marks(len(ids))})"
            params: list[Any] = [src_type, *ids]
            if param != "*":
                sql, params = sql + " AND param = ?", [*params, param]
            if target:
                sql, params = sql + " AND target_type = ?", [*params, target]
            pairs |= {(a, b) for a, b in conn.exec_driver_sql(for_dialect(sql, dialect), tuple(params)) if a and b}
        for src_type, param, target, _it in req.revinclude:
            by_type: dict[str, list[str]] = {}
            for m in frontier:
                if target is None or m.type == target:  # _revinclude=Type:param:Target narrows the targets
                    by_type.setdefault(m.type, []).append(m.id)
            for mtype, ids in by_type.items():
                sql = (f"SELECT res_type, res_id FROM idx_reference WHERE res_type = ? AND target_type = ? "
                       f"AND target_id IN ({_marks(len(ids))})")
                params = [src_type, mtype, *ids]
                if param != "*":
                    sql, params = sql + " AND param = ?", [*params, param]
                pairs |= set(conn.exec_driver_sql(for_dialect(sql, dialect), tuple(params)))
        found = _fetch(conn, pairs - seen)
        seen |= {(f.type, f.id) for f in found}
        out += found
        if not found or not req.iterate:
            break
        frontier = found
    return out


def _fetch(conn: Any, pairs: set[tuple[str, str]]) -> list[Any]:
    from sante.store.repository import _row

    by_type: dict[str, list[str]] = {}
    for a, b in pairs:
        by_type.setdefault(a, []).append(b)
    out = []
    for rtype, ids in sorted(by_type.items()):
        sql = (f"SELECT type, id, version, seq, last_updated, deleted, content FROM resources "
               f"WHERE type = ? AND id IN ({_marks(len(ids))}) AND NOT deleted ORDER BY id")
        out += [_row(r) for r in conn.exec_driver_sql(for_dialect(sql, conn.dialect.name), (rtype, *ids))]
    return out


__all__ = [
    "SearchRequest", "SearchResult", "decode_cursor", "encode_cursor", "matching_ids", "param_defs", "parse_search",
    "run_search",
]
