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
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    false,
    func,
    literal,
    not_,
    or_,
    select,
)

from sante.anomaly import Anomaly, Category, incorrect
from sante.fhir.model import r4, search_parameters
from sante.store import index_values as iv
from sante.store.schema import INDEX_TABLES, resources

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
        if name not in defs and name not in ("_id", "_lastUpdated"):
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
    if name == "_id":
        return "id"
    if name == "_lastUpdated":
        return "date"
    return param_defs(rtype)[name].type


# -------------------------------------------------------------------------------------------------------------
# SQL


def _now() -> datetime:
    return datetime.now(UTC)


def _prefix(v: str) -> tuple[str, str]:
    if len(v) > 2 and v[:2] in PREFIXES and (v[2].isdigit() or v[2] in "+-"):
        return v[:2], v[2:]
    return "eq", v


def _date_condition(low_col: Any, high_col: Any, value: str, location: str) -> ColumnElement[bool]:
    prefix, text = _prefix(value)
    rng = iv.date_range(text)
    if rng is None:
        raise incorrect(f"{location}: {value!r} is not a valid date", location)
    sl, sh = rng
    lo = func.coalesce(low_col, "0000")
    hi = func.coalesce(high_col, "9999")
    if prefix == "eq":
        return and_(lo >= sl, hi <= sh)
    if prefix == "ne":
        return not_(and_(lo >= sl, hi <= sh))
    if prefix == "gt":
        return hi > sh
    if prefix == "lt":
        return lo < sl
    if prefix == "ge":
        return hi > sl
    if prefix == "le":
        return lo < sh
    if prefix == "sa":
        return lo >= sh
    if prefix == "eb":
        return hi <= sl
    # ap: intersects the value widened by 10% of its distance from now (at least a day).
    anchor = datetime.fromisoformat(sl)
    gap = max(abs(_now() - anchor) * 0.1, timedelta(days=1))
    wl = (anchor - gap).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    wh = (datetime.fromisoformat(sh) + gap).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    return and_(lo < wh, hi > wl)


def _number_condition(col: Any, value: str, location: str) -> ColumnElement[bool]:
    prefix, text = _prefix(value)
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise incorrect(f"{location}: {value!r} is not a number", location) from None
    low, high = iv.precision_range(d)
    f, lo, hi = float(d), float(low), float(high)
    return {
        "eq": and_(col >= lo, col < hi),
        "ne": not_(and_(col >= lo, col < hi)),
        "gt": col > f,
        "lt": col < f,
        "ge": col >= f,
        "le": col <= f,
        "sa": col > f,
        "eb": col < f,
        "ap": and_(col >= f - abs(f) * 0.1, col <= f + abs(f) * 0.1),
    }[prefix]


class _Builder:
    """Turns criteria into SQL conditions on `resources` rows of one type."""

    def __init__(self, rtype: str) -> None:
        self.rtype = rtype
        self.defs = param_defs(rtype)

    def ids_where(self, kind: str, param: str, cond: ColumnElement[bool] | None, rtype: str | None = None) -> Select:
        t = INDEX_TABLES[kind]
        where = [t.c.res_type == (rtype or self.rtype), t.c.param == param]
        if cond is not None:
            where.append(cond)
        return select(t.c.res_id).where(*where)

    def has_row(self, kind: str, param: str, cond: ColumnElement[bool] | None) -> ColumnElement[bool]:
        """A probe for the current row: cheap per candidate through the (res_type, res_id, param) index."""
        t = INDEX_TABLES[kind]
        where = [t.c.res_type == self.rtype, t.c.res_id == resources.c.id, t.c.param == param]
        if cond is not None:
            where.append(cond)
        return select(t.c.res_id).where(*where).exists()

    def matches(self, kind: str, param: str, cond: ColumnElement[bool] | None, drive: bool) -> ColumnElement[bool]:
        """The driving criterion selects ids from its index; the others probe each candidate."""
        if drive:
            return resources.c.id.in_(self.ids_where(kind, param, cond))
        return self.has_row(kind, param, cond)

    def criterion(self, crit: Criterion, drive: bool = True) -> ColumnElement[bool]:
        if crit.name.startswith("_has"):
            return self._has(crit)
        if crit.name == "_id":
            return resources.c.id.in_(crit.values)
        if crit.name == "_lastUpdated":
            return or_(*(_date_condition(resources.c.last_updated, resources.c.last_updated, v, "_lastUpdated")
                         for v in crit.values))
        d = self.defs[crit.name]
        location = crit.name + (f":{crit.modifier}" if crit.modifier else "")
        if crit.modifier == "missing":
            kind = _kind(d)
            present = resources.c.id.in_(self.ids_where(kind, d.code, None))
            return not_(present) if crit.values == ["true"] else present
        if crit.chain:
            return self._chain(d, crit, location)
        if d.type == "token" and crit.modifier == "not":
            inner = Criterion(crit.name, None, None, crit.values)
            return not_(self.criterion(inner))
        if d.type == "composite":
            return self._composite(d, crit, location)
        kind = _kind(d)
        conds = [self.value_condition(d, crit.modifier, v, location) for v in crit.values]
        return self.matches(kind, d.code, or_(*conds), drive)

    def value_condition(self, d: ParamDef, modifier: str | None, value: str, location: str) -> ColumnElement[bool]:
        t = INDEX_TABLES[_kind(d)]
        if d.type == "string":
            folded = iv.fold(value)
            if modifier == "exact":
                return t.c.exact == value
            if modifier == "contains":
                return t.c.folded.like(f"%{_like(folded)}%", escape="\\")
            if modifier not in (None, "text"):
                raise incorrect(f"modifier :{modifier} is not supported on string parameters", location)
            return t.c.folded.like(f"{_like(folded)}%", escape="\\")
        if d.type == "token":
            if modifier == "text":
                return t.c.text.like(f"{_like(iv.fold(value))}%", escape="\\")
            if modifier == "of-type":
                parts = value.split("|")
                if len(parts) != 3:
                    raise incorrect(f"{location}: :of-type takes system|code|value", location)
                return and_(t.c.code == parts[2])
            if modifier not in (None,):
                raise incorrect(f"modifier :{modifier} is not supported on token parameters", location)
            if "|" in value:
                system, code = value.split("|", 1)
                if system == "":
                    return and_(t.c.system.is_(None), t.c.code == code)
                if code == "":
                    return t.c.system == system
                return and_(t.c.code == code, t.c.system == system)
            return t.c.code == value
        if d.type == "reference":
            if modifier == "identifier":
                if "|" in value:
                    system, code = value.split("|", 1)
                    return and_(t.c.ident_value == code, t.c.ident_system == system) if system else \
                        t.c.ident_value == code
                return t.c.ident_value == value
            entry = iv.reference_entries(value)[0] if value else None
            target = modifier if modifier and modifier[:1].isupper() else None
            if modifier and target is None:
                raise incorrect(f"modifier :{modifier} is not supported on reference parameters", location)
            if entry is not None and entry.target_id is not None:
                cond = t.c.target_id == entry.target_id
                if entry.target_type:
                    cond = and_(cond, t.c.target_type == entry.target_type)
                return cond
            if value.startswith(("http://", "https://", "urn:")):
                return t.c.url == value
            cond = t.c.target_id == value
            return and_(cond, t.c.target_type == target) if target else cond
        if d.type == "date":
            return _date_condition(t.c.low, t.c.high, value, location)
        if d.type == "number":
            return _number_condition(t.c.value, value, location)
        if d.type == "quantity":
            parts = value.split("|")
            number = parts[0]
            system = parts[1] if len(parts) > 1 and parts[1] else None
            code = parts[2] if len(parts) > 2 and parts[2] else None
            prefix, text = _prefix(number)
            if code:
                try:
                    cv, cc = iv.canonical_quantity(Decimal(text), system, code)
                except InvalidOperation:
                    raise incorrect(f"{location}: {value!r} is not a quantity", location) from None
                if cc is not None and cv is not None:
                    # Compare in the UCUM base unit, so 1.5 kg finds 1500 g.
                    canon = _number_condition(t.c.canonical_value, prefix + format(cv, "f"), location)
                    return and_(t.c.canonical_code == cc, canon)
                cond = _number_condition(t.c.value, number, location)
                cond = and_(cond, or_(t.c.code == code, t.c.unit == code))
                return and_(cond, t.c.system == system) if system else cond
            return _number_condition(t.c.value, number, location)
        if d.type == "uri":
            if modifier == "below":
                return t.c.value.like(f"{_like(value)}%", escape="\\")
            if modifier == "above":
                return literal(value).like(t.c.value + "%")
            return t.c.value == value
        raise Anomaly(Category.INCORRECT, f"search on {d.type} parameter {d.code} is not supported", location=location)

    def _chain(self, d: ParamDef, crit: Criterion, location: str) -> ColumnElement[bool]:
        if d.type != "reference":
            raise incorrect(f"{location}: only reference parameters can be chained", location)
        targets = [crit.modifier] if crit.modifier else list(d.targets)
        next_name, _, rest = (crit.chain or "").partition(".")
        next_name, _, next_mod = next_name.partition(":")
        t = INDEX_TABLES["reference"]
        options = []
        for target in targets:
            if next_name not in param_defs(target) and next_name not in ("_id", "_lastUpdated"):
                continue
            sub = _Builder(target)
            inner = sub.criterion(Criterion(next_name, next_mod or None, rest or None, crit.values))
            matching = select(resources.c.id).where(resources.c.type == target, resources.c.deleted == false(), inner)
            options.append(and_(t.c.target_type == target, t.c.target_id.in_(matching)))
        if not options:
            raise incorrect(f"{location}: no target type of {d.code} has a parameter {next_name!r}", location)
        return resources.c.id.in_(self.ids_where("reference", d.code, or_(*options)))

    def _has(self, crit: Criterion) -> ColumnElement[bool]:
        # _has:Observation:patient:code=1234-5  (several _has levels may nest)
        parts = crit.name.split(":", 3)
        if len(parts) != 4:
            raise incorrect(f"{crit.name}: _has takes _has:Type:reference:parameter", crit.name)
        _, other, ref_param, rest = parts
        if other not in r4().resource_types or ref_param not in param_defs(other):
            raise incorrect(f"{crit.name}: {other}.{ref_param} is not a search parameter", crit.name)
        sub = _Builder(other)
        if rest.startswith("_has:"):
            inner = sub._has(Criterion(rest, None, None, crit.values))
        else:
            name, _, mod = rest.partition(":")
            if name not in param_defs(other) and name not in ("_id", "_lastUpdated"):
                raise incorrect(f"{crit.name}: {other} has no search parameter {name!r}", crit.name)
            inner = sub.criterion(Criterion(name, mod or None, None, _split_values(crit.values[0])))
        matching = select(resources.c.id).where(resources.c.type == other, resources.c.deleted == false(), inner)
        t = INDEX_TABLES["reference"]
        referenced = select(t.c.target_id).where(
            t.c.res_type == other, t.c.param == ref_param, t.c.target_type == self.rtype, t.c.res_id.in_(matching)
        )
        return resources.c.id.in_(referenced)

    def _composite(self, d: ParamDef, crit: Criterion, location: str) -> ColumnElement[bool]:
        parts = _composite_parts(d, self.rtype)
        if not parts:
            raise incorrect(f"{location}: composite parameter {d.code} is not supported", location)
        conds = []
        for value in crit.values:
            pieces = value.split("$")
            if len(pieces) != len(parts):
                raise incorrect(f"{location}: {value!r} must have {len(parts)} parts separated by $", location)
            # Each component matched on the same resource (not necessarily the same element instance).
            conds.append(and_(*(
                resources.c.id.in_(self.ids_where(_kind(p), p.code, self.value_condition(p, None, v, location)))
                for p, v in zip(parts, pieces)
            )))
        return or_(*conds)


def _kind(d: ParamDef) -> str:
    if d.type not in INDEX_TABLES:
        raise incorrect(f"search on {d.type} parameter {d.code} is not supported", d.code)
    return d.type


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# -------------------------------------------------------------------------------------------------------------
# evaluation


@dataclass(slots=True)
class SearchResult:
    matches: list[Any]  # StoredResource
    included: list[Any]
    total: int | None
    next_cursor: str | None


def _sort_key_column(b: _Builder, pname: str, desc: bool) -> Any:
    if pname == "_id":
        return resources.c.id
    if pname == "_lastUpdated":
        return resources.c.last_updated
    d = b.defs[pname]
    t = INDEX_TABLES[_kind(d)]
    name = {
        "string": "folded", "token": "code", "reference": "target_id", "uri": "value", "number": "value",
        "quantity": "value", "date": "high" if desc else "low",
    }[d.type]
    col = t.c[name]
    agg = func.max(col) if desc else func.min(col)
    return (
        select(agg)
        .where(t.c.res_type == b.rtype, t.c.res_id == resources.c.id, t.c.param == d.code)
        .scalar_subquery()
    )


# How selective a criterion usually is (lower: fewer matches); the most selective one drives the query.
_SELECTIVITY = {"_id": 0, "reference": 1, "token": 2, "string": 3, "uri": 3, "quantity": 4, "number": 4,
                "composite": 4, "date": 5, "_lastUpdated": 5}


def _rank(rtype: str, crit: Criterion) -> int:
    if crit.name.startswith("_has") or crit.modifier in ("missing", "not") or crit.chain:
        return 6 if crit.modifier in ("missing", "not") else 3
    if crit.name in _SELECTIVITY:
        return _SELECTIVITY[crit.name]
    d = param_defs(rtype).get(crit.name)
    return _SELECTIVITY.get(d.type, 5) if d else 6


def build_query(req: SearchRequest) -> tuple[Select, list[Any], ColumnElement[bool]]:
    b = _Builder(req.rtype)
    where: list[ColumnElement[bool]] = [resources.c.type == req.rtype, resources.c.deleted == false()]
    driver = min(req.criteria, key=lambda c: _rank(req.rtype, c)) if req.criteria else None
    for crit in req.criteria:
        where.append(b.criterion(crit, drive=crit is driver))
    if req.compartment is not None:
        where.append(compartment_condition(req.rtype, *req.compartment))
    keys = [(_sort_key_column(b, p, desc), desc) for p, desc in req.sort]
    keys.append((resources.c.id, False))
    cond = and_(*where)
    q = select(resources, *[k for k, _ in keys[:-1]]).where(cond)
    if req.cursor is not None:
        q = q.where(_after_cursor(keys, req.cursor))
    # One NULL order on both backends: NULLs first ascending, last descending (what _after_cursor assumes).
    order = [(k.desc().nulls_last() if desc else k.asc().nulls_first()) for k, desc in keys]
    q = q.order_by(*order).limit(req.count + 1)
    return q, keys, cond


def _after_cursor(keys: list[tuple[Any, bool]], cursor: list[Any]) -> ColumnElement[bool]:
    """Rows strictly after the cursor in (k1, k2, ..., id) order, each key ascending or descending."""
    if len(cursor) != len(keys):
        raise incorrect("_cursor does not belong to this search", "_cursor")
    ors = []
    for i, (col, desc) in enumerate(keys):
        eqs = [_eq_nullable(keys[j][0], cursor[j]) for j in range(i)]
        value = cursor[i]
        if value is None:
            # NULLs sort first ascending (SQLite, and PostgreSQL with NULLS FIRST below): after NULL is NOT NULL.
            step = col.is_not(None) if not desc else false()
        else:
            step = or_(col < value, col.is_(None)) if desc else col > value
        ors.append(and_(*eqs, step))
    return or_(*ors)


def _eq_nullable(col: Any, value: Any) -> ColumnElement[bool]:
    return col.is_(None) if value is None else col == value


def compartment_condition(rtype: str, ctype: str, cid: str) -> ColumnElement[bool]:
    """Resources of rtype in the compartment ctype/cid (via the Patient CompartmentDefinition's parameters)."""
    from sante.fhir.model import patient_compartment

    if ctype != "Patient":
        raise Anomaly(Category.UNSUPPORTED, f"the {ctype} compartment is not supported", location="compartment")
    if rtype == "Patient":
        return resources.c.id == cid
    params = next((r.get("param", []) for r in patient_compartment()["resource"] if r["code"] == rtype), [])
    if not params:
        return false()
    t = INDEX_TABLES["reference"]
    return resources.c.id.in_(
        select(t.c.res_id).where(
            t.c.res_type == rtype, t.c.param.in_(params), t.c.target_type == "Patient", t.c.target_id == cid
        )
    )


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
    total = None
    q, _keys, cond = build_query(req)
    if req.total == "accurate" or req.summary == "count":
        total = conn.execute(select(func.count()).select_from(resources).where(cond)).scalar_one()
    if req.summary == "count":
        return SearchResult([], [], total, None)
    rows = conn.execute(q).all()
    more = len(rows) > req.count
    rows = rows[: req.count]
    matches = [_row(r) for r in rows]
    cursor = None
    if more and rows:
        last = rows[-1]
        extra = list(last[len(resources.columns):])
        cursor = encode_cursor([*extra, last._mapping["id"]])
    if total is None and req.total == "estimate" and not more and req.cursor is None:
        total = len(matches)
    included = _includes(conn, req, matches) if (req.include or req.revinclude) and matches else []
    return SearchResult(matches, included, total, cursor)


def _includes(conn: Any, req: SearchRequest, matches: list[Any]) -> list[Any]:
    from sante.store.repository import _row

    t = INDEX_TABLES["reference"]
    seen = {(m.type, m.id) for m in matches}
    out: list[Any] = []
    frontier = list(matches)
    for _round in range(4):  # :iterate is bounded to a few levels
        found = []
        for src_type, param, target, _it in req.include:
            ids = [m.id for m in frontier if m.type == src_type]
            if not ids:
                continue
            q = select(t.c.target_type, t.c.target_id).where(t.c.res_type == src_type, t.c.res_id.in_(ids))
            if param != "*":
                q = q.where(t.c.param == param)
            if target:
                q = q.where(t.c.target_type == target)
            pairs = {(a, b) for a, b in conn.execute(q) if a and b}
            found += _fetch(conn, pairs - seen, _row)
        for src_type, param, target, _it in req.revinclude:
            by_type: dict[str, list[str]] = {}
            for m in frontier:
                if target is None or m.type == target:  # _revinclude=Type:param:Target narrows the targets
                    by_type.setdefault(m.type, []).append(m.id)
            for mtype, ids in by_type.items():
                q = select(t.c.res_type, t.c.res_id).where(
                    t.c.res_type == src_type, t.c.target_type == mtype, t.c.target_id.in_(ids)
                )
                if param != "*":
                    q = q.where(t.c.param == param)
                pairs = {(a, b) for a, b in conn.execute(q)}
                found += _fetch(conn, pairs - seen, _row)
        for f in found:
            seen.add((f.type, f.id))
        out += found
        if not found or not req.iterate:
            break
        frontier = found
    return out


def _fetch(conn: Any, pairs: set[tuple[str, str]], row: Any) -> list[Any]:
    out = []
    by_type: dict[str, list[str]] = {}
    for a, b in pairs:
        by_type.setdefault(a, []).append(b)
    for rtype, ids in by_type.items():
        q = select(resources).where(resources.c.type == rtype, resources.c.id.in_(ids), resources.c.deleted == false())
        out += [row(r) for r in conn.execute(q)]
    return out


__all__ = ["SearchRequest", "SearchResult", "decode_cursor", "encode_cursor", "param_defs", "parse_search", "run_search"]
