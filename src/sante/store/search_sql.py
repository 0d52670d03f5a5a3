"""SQL text for FHIR search criteria over the index tables (SQLite and PostgreSQL alike).

Built as plain text with `?` placeholders and a parameter list (PostgreSQL gets `%s`): a search is a few
string joins, not a tree of expression objects, so the per-query overhead stays far below the query's own
cost. Every value is a bound parameter; table and column names come only from this module.

The most selective criterion drives (`r.id IN (SELECT res_id FROM idx_* ...)`); the others probe each candidate
through the (res_type, res_id, param) index (`EXISTS (...)`).

`_text` / `_content` match words against idx_text through the database's full-text index (`text_mode`: FTS5
or LIKE on SQLite, tsvector on PostgreSQL); token `:below` / `:above` become an IN list of the codes below or
above the given one in the code system's hierarchy (sante.fhir.model.descendants / ancestors).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from itertools import count
from typing import Any

from sante.anomaly import Anomaly, Category, incorrect
from sante.fhir import model
from sante.fhir.model import patient_compartment, r4
from sante.store import index_values as iv
from sante.store.indexer import words

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
RESOURCE_COLUMNS = "type, id, version, seq, last_updated, deleted, content"
TEXT_PARAMS = ("_text", "_content")


@dataclass(slots=True)
class Sql:
    """A fragment of SQL text and the values of its placeholders, in order."""

    text: str
    params: list[Any] = field(default_factory=list)


def join(sep: str, parts: list[Sql]) -> Sql:
    return Sql(sep.join(p.text for p in parts), [v for p in parts for v in p.params])


def any_of(parts: list[Sql]) -> Sql:
    if len(parts) == 1:
        return parts[0]
    return Sql("(" + join(" OR ", parts).text + ")", [v for p in parts for v in p.params])


def all_of(parts: list[Sql]) -> Sql:
    if len(parts) == 1:
        return parts[0]
    return Sql("(" + join(" AND ", parts).text + ")", [v for p in parts for v in p.params])


def _prefix(v: str) -> tuple[str, str]:
    if len(v) > 2 and v[:2] in PREFIXES and (v[2].isdigit() or v[2] in "+-"):
        return v[:2], v[2:]
    return "eq", v


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def date_condition(low: str, high: str, value: str, location: str) -> Sql:
    """Range semantics of FHIR date search: the resource's [low, high) against the value's range."""
    prefix, text = _prefix(value)
    rng = iv.date_range(text)
    if rng is None:
        raise incorrect(f"{location}: {value!r} is not a valid date", location)
    sl, sh = rng
    lo, hi = f"coalesce({low}, '0000')", f"coalesce({high}, '9999')"
    if prefix == "eq":
        return Sql(f"({lo} >= ? AND {hi} <= ?)", [sl, sh])
    if prefix == "ne":
        return Sql(f"NOT ({lo} >= ? AND {hi} <= ?)", [sl, sh])
    if prefix == "gt":
        return Sql(f"{hi} > ?", [sh])
    if prefix == "lt":
        return Sql(f"{lo} < ?", [sl])
    if prefix == "ge":
        return Sql(f"{hi} > ?", [sl])
    if prefix == "le":
        return Sql(f"{lo} < ?", [sh])
    if prefix == "sa":
        return Sql(f"{lo} >= ?", [sh])
    if prefix == "eb":
        return Sql(f"{hi} <= ?", [sl])
    # ap: intersects the value widened by 10% of its distance from now (at least a day).
    anchor = datetime.fromisoformat(sl or "0001-01-01T00:00:00+00:00")
    gap = max(abs(datetime.now(UTC) - anchor) * 0.1, timedelta(days=1))
    wl = (anchor - gap).isoformat(timespec="microseconds")
    wh = (datetime.fromisoformat(sh or "9999-01-01T00:00:00+00:00") + gap).isoformat(timespec="microseconds")
    return Sql(f"({lo} < ? AND {hi} > ?)", [wh, wl])


def number_condition(col: str, value: str, location: str) -> Sql:
    prefix, text = _prefix(value)
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise incorrect(f"{location}: {value!r} is not a number", location) from None
    low, high = iv.precision_range(d)
    f, lo, hi = float(d), float(low), float(high)
    if prefix == "eq":
        return Sql(f"({col} >= ? AND {col} < ?)", [lo, hi])
    if prefix == "ne":
        return Sql(f"NOT ({col} >= ? AND {col} < ?)", [lo, hi])
    if prefix == "ap":
        return Sql(f"({col} >= ? AND {col} <= ?)", [f - abs(f) * 0.1, f + abs(f) * 0.1])
    op = {"gt": ">", "lt": "<", "ge": ">=", "le": "<=", "sa": ">", "eb": "<"}[prefix]
    return Sql(f"{col} {op} ?", [f])


class SqlBuilder:
    """Conditions on the rows of `resources` aliased `alias`, all of one resource type."""

    def __init__(self, rtype: str, defs: Any, alias: str = "r", counter: Any = None, text_mode: str = "like") -> None:
        self.rtype = rtype
        self.defs = defs  # callable: rtype -> {code: ParamDef}
        self.params = defs(rtype)
        self.alias = alias
        self.counter = counter if counter is not None else count(1)
        self.text_mode = text_mode  # fts5 | like | tsvector: see sante.store.schema.text_search_mode

    def _sub(self, rtype: str) -> SqlBuilder:
        return SqlBuilder(rtype, self.defs, f"r{next(self.counter)}", self.counter, self.text_mode)

    def _index_alias(self) -> str:
        return f"i{next(self.counter)}"

    # -- index look-ups ------------------------------------------------------------------------------------------
    def ids_in(self, kind: str, param: str, cond: Sql | None, i: str) -> Sql:
        """`alias.id IN (ids of this type whose index rows match)`: the driving form."""
        where = f"{i}.res_type = ? AND {i}.param = ?" + (f" AND {cond.text}" if cond else "")
        return Sql(f"{self.alias}.id IN (SELECT {i}.res_id FROM idx_{kind} {i} WHERE {where})",
                   [self.rtype, param, *(cond.params if cond else [])])

    def probe(self, kind: str, param: str, cond: Sql | None, i: str) -> Sql:
        """`EXISTS (an index row of this very resource)`: the probing form."""
        where = f"{i}.res_type = ? AND {i}.res_id = {self.alias}.id AND {i}.param = ?" + (
            f" AND {cond.text}" if cond else "")
        return Sql(f"EXISTS (SELECT 1 FROM idx_{kind} {i} WHERE {where})",
                   [self.rtype, param, *(cond.params if cond else [])])

    def matching(self, kind: str, param: str, values: list[Any], drive: bool, make: Any) -> Sql:
        i = self._index_alias()
        cond = any_of([make(i, v) for v in values]) if values else None
        return self.ids_in(kind, param, cond, i) if drive else self.probe(kind, param, cond, i)

    # -- criteria --------------------------------------------------------------------------------------------------
    def criterion(self, crit: Any, drive: bool = True) -> Sql:
        a = self.alias
        if crit.name.startswith("_has"):
            return self._has(crit)
        if crit.name == "_id":
            return Sql(f"{a}.id IN ({', '.join('?' * len(crit.values))})", list(crit.values))
        if crit.name == "_list":
            # Members of List/ID: its entries' references to this type (the List itself read with a subquery).
            return Sql(f"{a}.id IN (SELECT l.target_id FROM idx_reference l WHERE l.res_type = 'List' AND "
                       f"l.param = 'item' AND l.target_type = ? AND l.res_id IN ({', '.join('?' * len(crit.values))}))",
                       [self.rtype, *crit.values])
        if crit.name == "_lastUpdated":
            return any_of([date_condition(f"{a}.last_updated", f"{a}.last_updated", v, "_lastUpdated")
                           for v in crit.values])
        if crit.name in TEXT_PARAMS:
            return self._full_text(crit, drive)
        d = self.params[crit.name]
        location = crit.name + (f":{crit.modifier}" if crit.modifier else "")
        if crit.modifier == "missing":
            present = self.probe(kind_of(d), d.code, None, self._index_alias())
            return Sql(f"NOT {present.text}", present.params) if crit.values == ["true"] else present
        if crit.chain:
            return self._chain(d, crit, location, drive)
        if d.type == "token" and crit.modifier in ("in", "not-in"):
            members = self.matching("token", d.code, crit.values, crit.modifier == "in" and drive,
                                    lambda i, v: self._in_valueset(v, location, i))
            return Sql(f"NOT {members.text}", members.params) if crit.modifier == "not-in" else members
        if d.type == "token" and crit.modifier == "not":
            inner = self.matching("token", d.code, crit.values, False,
                                  lambda i, v: self.value_condition(d, None, v, location, i))
            return Sql(f"NOT {inner.text}", inner.params)
        if d.type == "composite":
            return self._composite(d, crit, location)
        return self.matching(kind_of(d), d.code, crit.values, drive,
                             lambda i, v: self.value_condition(d, crit.modifier, v, location, i))

    def value_condition(self, d: Any, modifier: str | None, value: str, location: str, i: str) -> Sql:
        if d.type == "string":
            folded = iv.fold(value)
            if modifier == "exact":
                return Sql(f"{i}.exact = ?", [value])
            if modifier == "contains":
                return Sql(f"{i}.folded LIKE ? ESCAPE '\\'", [f"%{_like(folded)}%"])
            if modifier not in (None, "text"):
                raise incorrect(f"modifier :{modifier} is not supported on string parameters", location)
            return Sql(f"{i}.folded LIKE ? ESCAPE '\\'", [f"{_like(folded)}%"])
        if d.type == "token":
            if modifier == "text":
                return Sql(f"{i}.text LIKE ? ESCAPE '\\'", [f"{_like(iv.fold(value))}%"])
            if modifier in ("below", "above"):
                return self._subsumption(value, modifier, location, i)
            if modifier == "of-type":
                parts = value.split("|")
                if len(parts) != 3:
                    raise incorrect(f"{location}: :of-type takes system|code|value", location)
                return Sql(f"{i}.code = ?", [parts[2]])
            if modifier is not None:
                raise incorrect(f"modifier :{modifier} is not supported on token parameters", location)
            if "|" in value:
                system, code = value.split("|", 1)
                if system == "":
                    return Sql(f"({i}.system IS NULL AND {i}.code = ?)", [code])
                if code == "":
                    return Sql(f"{i}.system = ?", [system])
                return Sql(f"({i}.code = ? AND {i}.system = ?)", [code, system])
            return Sql(f"{i}.code = ?", [value])
        if d.type == "reference":
            if modifier == "identifier":
                if "|" in value:
                    system, code = value.split("|", 1)
                    if system:
                        return Sql(f"({i}.ident_value = ? AND {i}.ident_system = ?)", [code, system])
                    return Sql(f"{i}.ident_value = ?", [code])
                return Sql(f"{i}.ident_value = ?", [value])
            target = modifier if modifier and modifier[:1].isupper() else None
            if modifier and target is None:
                raise incorrect(f"modifier :{modifier} is not supported on reference parameters", location)
            entry = iv.reference_entries(value)[0] if value else None
            if entry is not None and entry.target_id is not None:
                if entry.target_type:
                    return Sql(f"({i}.target_id = ? AND {i}.target_type = ?)", [entry.target_id, entry.target_type])
                return Sql(f"{i}.target_id = ?", [entry.target_id])
            if value.startswith(("http://", "https://", "urn:")):
                return Sql(f"{i}.url = ?", [value])
            if target:
                return Sql(f"({i}.target_id = ? AND {i}.target_type = ?)", [value, target])
            return Sql(f"{i}.target_id = ?", [value])
        if d.type == "date":
            return date_condition(f"{i}.low", f"{i}.high", value, location)
        if d.type == "number":
            return number_condition(f"{i}.value", value, location)
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
                    canon = number_condition(f"{i}.canonical_value", prefix + format(cv, "f"), location)
                    return all_of([Sql(f"{i}.canonical_code = ?", [cc]), canon])
                cond = all_of([number_condition(f"{i}.value", number, location),
                               Sql(f"({i}.code = ? OR {i}.unit = ?)", [code, code])])
                return all_of([cond, Sql(f"{i}.system = ?", [system])]) if system else cond
            return number_condition(f"{i}.value", number, location)
        if d.type == "uri":
            if modifier == "below":
                return Sql(f"{i}.value LIKE ? ESCAPE '\\'", [f"{_like(value)}%"])
            if modifier == "above":
                return Sql(f"? LIKE {i}.value || '%'", [value])
            return Sql(f"{i}.value = ?", [value])
        raise Anomaly(Category.INCORRECT, f"search on {d.type} parameter {d.code} is not supported", location=location)

    def _full_text(self, crit: Any, drive: bool) -> Sql:
        """_text / _content: every word of a value starts a word of the text (AND); comma-separated values OR."""
        location = crit.name + (f":{crit.modifier}" if crit.modifier else "")
        i = self._index_alias()
        if crit.modifier == "missing":
            present = self.probe("text", crit.name, None, i)
            return Sql(f"NOT {present.text}", present.params) if crit.values == ["true"] else present
        if crit.modifier is not None:
            raise incorrect(f"modifier :{crit.modifier} is not supported on {crit.name}", location)
        wanted = []
        for value in crit.values:
            found = words(value)
            if not found:
                raise incorrect(f"{location}: {value!r} has no word to search for", location)
            wanted.append(found)
        cond = text_condition(i, wanted, self.text_mode)
        return self.ids_in("text", crit.name, cond, i) if drive else self.probe("text", crit.name, cond, i)

    def _subsumption(self, value: str, modifier: str, location: str, i: str) -> Sql:
        """Token :below (the code and the codes it subsumes) / :above (the code and those subsuming it), from the
        hierarchies of the R4 package's code systems. A system (or a code without system) not known: 400."""
        related = model.descendants if modifier == "below" else model.ancestors
        system, bar, code = value.rpartition("|")
        if not code:
            raise incorrect(f"{location}: :{modifier} needs a code (system|code, |code or code)", location)
        if bar and system:
            codes = related(system, code)
            if codes is None:
                raise incorrect(f"{location}: the hierarchy of code system {system!r} is not known to this server "
                                f"(it knows the FHIR R4 code systems, not external ones such as SNOMED CT or LOINC)",
                                location)
            return Sql(f"({i}.system = ? AND {i}.code IN ({_marks(len(codes))}))", [system, *sorted(codes)])
        systems = model.systems_with_code(code)
        if not systems:
            raise incorrect(f"{location}: code {code!r} is in no code system hierarchy known to this server; give "
                            f"its system (system|code)", location)
        if bar:  # |code: rows without a system, with the code or one related to it in any system defining it
            codes = sorted(frozenset().union(*(related(s, code) or () for s in systems)))
            return Sql(f"({i}.system IS NULL AND {i}.code IN ({_marks(len(codes))}))", codes)
        # A bare code: the code itself in any system (as without the modifier), and the related codes of each
        # system that defines it, in that system or without one (a plain `code` element implies its system).
        parts = [Sql(f"{i}.code = ?", [code])]
        for s in systems:
            others = sorted((related(s, code) or frozenset()) - {code})
            if others:
                parts.append(Sql(f"(({i}.system = ? OR {i}.system IS NULL) AND {i}.code IN ({_marks(len(others))}))",
                                 [s, *others]))
        return any_of(parts)

    def _in_valueset(self, url: str, location: str, i: str) -> Sql:
        """Token rows whose (system, code) is in a value set expanded from the R4 package."""
        expansion = r4().valueset(url)
        if expansion is None:
            raise incorrect(f"{location}: value set {url!r} is not known to this server (or not expandable)", location)
        # A plain `code` element (Patient.gender) is indexed without a system: its binding implies one.
        parts = [Sql(f"(({i}.system = ? OR {i}.system IS NULL) AND {i}.code IN ({', '.join('?' * len(codes))}))",
                     [system, *sorted(codes)])
                 for system, codes in sorted(expansion.items()) if codes]
        return any_of(parts) if parts else Sql("1 = 0")

    def _matching_rows(self, sub: SqlBuilder, inner: Sql) -> Sql:
        a = sub.alias
        return Sql(f"SELECT {a}.id FROM resources {a} WHERE {a}.type = ? AND NOT {a}.deleted AND {inner.text}",
                   [sub.rtype, *inner.params])

    def _chain(self, d: Any, crit: Any, location: str, drive: bool) -> Sql:
        if d.type != "reference":
            raise incorrect(f"{location}: only reference parameters can be chained", location)
        targets = [crit.modifier] if crit.modifier else list(d.targets)
        next_name, _, rest = (crit.chain or "").partition(".")
        next_name, _, next_mod = next_name.partition(":")
        options: list[Any] = []
        for target in targets:
            if next_name not in self.defs(target) and next_name not in ("_id", "_lastUpdated"):
                continue
            sub = self._sub(target)
            inner = sub.criterion(type(crit)(next_name, next_mod or None, rest or None, crit.values))
            options.append((target, self._matching_rows(sub, inner)))
        if not options:
            raise incorrect(f"{location}: no target type of {d.code} has a parameter {next_name!r}", location)
        return self.matching("reference", d.code, options, drive, lambda i, opt: Sql(
            f"({i}.target_type = ? AND {i}.target_id IN ({opt[1].text}))", [opt[0], *opt[1].params]))

    def _has(self, crit: Any) -> Sql:
        # _has:Observation:patient:code=1234-5  (several _has levels may nest)
        parts = crit.name.split(":", 3)
        if len(parts) != 4:
            raise incorrect(f"{crit.name}: _has takes _has:Type:reference:parameter", crit.name)
        _, other, ref_param, rest = parts
        if other not in r4().resource_types or ref_param not in self.defs(other):
            raise incorrect(f"{crit.name}: {other}.{ref_param} is not a search parameter", crit.name)
        sub = self._sub(other)
        if rest.startswith("_has:"):
            inner = sub._has(type(crit)(rest, None, None, crit.values))
        else:
            name, _, mod = rest.partition(":")
            if name not in self.defs(other) and name not in ("_id", "_lastUpdated"):
                raise incorrect(f"{crit.name}: {other} has no search parameter {name!r}", crit.name)
            from sante.store.search import _split_values

            inner = sub.criterion(type(crit)(name, mod or None, None, _split_values(crit.values[0])))
        rows = self._matching_rows(sub, inner)
        i = self._index_alias()
        return Sql(f"{self.alias}.id IN (SELECT {i}.target_id FROM idx_reference {i} WHERE {i}.res_type = ? AND "
                   f"{i}.param = ? AND {i}.target_type = ? AND {i}.res_id IN ({rows.text}))",
                   [other, ref_param, self.rtype, *rows.params])

    def _composite(self, d: Any, crit: Any, location: str) -> Sql:
        from sante.store.search import _composite_parts

        parts = _composite_parts(d, self.rtype)
        if not parts:
            raise incorrect(f"{location}: composite parameter {d.code} is not supported", location)
        options = []
        for value in crit.values:
            pieces = value.split("$")
            if len(pieces) != len(parts):
                raise incorrect(f"{location}: {value!r} must have {len(parts)} parts separated by $", location)
            # Each component matched on the same resource (not necessarily the same element instance).
            options.append(all_of([
                self.matching(kind_of(p), p.code, [v], False,
                              lambda i, v, p=p: self.value_condition(p, None, v, location, i))
                for p, v in zip(parts, pieces)
            ]))
        return any_of(options)

    # -- sorting -------------------------------------------------------------------------------------------------
    def sort_key(self, pname: str, desc: bool) -> Sql:
        a = self.alias
        if pname == "_id":
            return Sql(f"{a}.id")
        if pname == "_lastUpdated":
            return Sql(f"{a}.last_updated")
        d = self.params[pname]
        col = {"string": "folded", "token": "code", "reference": "target_id", "uri": "value", "number": "value",
               "quantity": "value", "date": "high" if desc else "low"}[kind_of(d)]
        i = self._index_alias()
        return Sql(f"(SELECT {'max' if desc else 'min'}({i}.{col}) FROM idx_{kind_of(d)} {i} WHERE {i}.res_type = ? "
                   f"AND {i}.res_id = {a}.id AND {i}.param = ?)", [self.rtype, d.code])


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def text_condition(i: str, wanted: list[list[str]], mode: str) -> Sql:
    """idx_text rows (alias i) whose words match: each inner list's words all start a word of the row (AND), any
    of the lists (OR). The words are already folded by sante.store.indexer.words, so they hold only letters and
    digits: nothing to escape in a MATCH or tsquery expression."""
    if mode == "fts5":
        query = " OR ".join("(" + " AND ".join(f'"{w}" *' for w in ws) + ")" for ws in wanted)
        return Sql(f"{i}.tid IN (SELECT rowid FROM idx_text_fts WHERE idx_text_fts MATCH ?)", [query])
    if mode == "tsvector":
        query = " | ".join("(" + " & ".join(f"'{w}':*" for w in ws) + ")" for ws in wanted)
        return Sql(f"{i}.tsv @@ CAST(? AS tsquery)", [query])
    # Without a full-text index: the words are stored space-separated, so ' ' || words holds ' word' for each.
    return any_of([all_of([Sql(f"(' ' || {i}.words) LIKE ? ESCAPE '\\'", [f"% {_like(w)}%"]) for w in ws])
                   for ws in wanted])


def kind_of(d: Any) -> str:
    if d.type not in ("string", "token", "reference", "date", "number", "quantity", "uri"):
        raise incorrect(f"search on {d.type} parameter {d.code} is not supported", d.code)
    return d.type


def compartment_sql(alias: str, rtype: str, ctype: str, cid: str) -> Sql:
    """Resources of rtype in the compartment ctype/cid (via the Patient CompartmentDefinition's parameters)."""
    if ctype != "Patient":
        raise Anomaly(Category.UNSUPPORTED, f"the {ctype} compartment is not supported", location="compartment")
    if rtype == "Patient":
        return Sql(f"{alias}.id = ?", [cid])
    params = next((r.get("param", []) for r in patient_compartment()["resource"] if r["code"] == rtype), [])
    if not params:
        return Sql("1 = 0")
    return Sql(f"{alias}.id IN (SELECT c.res_id FROM idx_reference c WHERE c.res_type = ? AND c.param IN "
               f"({', '.join('?' * len(params))}) AND c.target_type = 'Patient' AND c.target_id = ?)",
               [rtype, *params, cid])


def after_cursor(keys: list[tuple[Sql, bool]], cursor: list[Any]) -> Sql:
    """Rows strictly after the cursor in (k1, k2, ..., id) order; NULLs first ascending, last descending."""
    if len(cursor) != len(keys):
        raise incorrect("_cursor does not belong to this search", "_cursor")
    ors = []
    for n, (key, desc) in enumerate(keys):
        parts = []
        for j in range(n):
            k = keys[j][0]
            parts.append(Sql(f"{k.text} IS NULL", list(k.params)) if cursor[j] is None
                         else Sql(f"{k.text} = ?", [*k.params, cursor[j]]))
        value = cursor[n]
        if value is None:
            step = Sql("1 = 0") if desc else Sql(f"{key.text} IS NOT NULL", list(key.params))
        elif desc:
            step = Sql(f"({key.text} < ? OR {key.text} IS NULL)", [*key.params, value, *key.params])
        else:
            step = Sql(f"{key.text} > ?", [*key.params, value])
        ors.append(all_of([*parts, step]))
    return any_of(ors)


def for_dialect(sql: str, dialect: str) -> str:
    """`?` placeholders as the driver wants them (psycopg: %s)."""
    return sql if dialect == "sqlite" else sql.replace("%", "%%").replace("?", "%s")
