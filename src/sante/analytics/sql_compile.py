"""SQL on FHIR views compiled to one SQL query: FHIRPath over resource JSON -> SQL expressions, per dialect.

One compiler implements the semantics; a `Dialect` says how each operation is spelled on an engine (DuckDB over
its JSON type, Spark over VARIANT). Every FHIRPath expression becomes an `Expr`: one SQL expression that is
either a single item (SQL NULL standing for the empty collection) or a SQL list of items. Items are JSON
(navigated from the resource) or native SQL scalars (literals, comparisons, `exists()`...). The FHIR model
(`sante.fhir.model.r4`) tells at compile time which elements are arrays and which keys a choice element has,
so `name.given` compiles to one JSON path (`$.name[*].given[*]` on DuckDB) instead of run-time type checks.

A whole view becomes `SELECT <rows> FROM resources WHERE ...`, where `<rows>` is a list of structs (one per
output row) built with list functions: `forEach` maps the select's body over a list, nested selects are a
cross product, `unionAll` a list concatenation; the engine explodes the list once. `repeat` is unrolled to
`REPEAT_DEPTH` levels (deeper data raises an error instead of silently losing rows).

What does not compile raises `NotCompilable`, naming the expression; the engines report it as an error.
"""

from __future__ import annotations

import gc
import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from sante.analytics.viewdef import Column, Select, View, ViewDefinitionError, fhirpath_literal
from sante.fhir.model import r4
from sante.fhirpath.parser import Node, parse

REPEAT_DEPTH = 12
RESOURCE = "r"  # the SQL column holding each resource (JSON / VARIANT) in the engines' queries
BOUNDARY_PLACES = 8  # the precision of lowBoundary()/highBoundary() on decimals, as in sante.fhirpath
EXACT_DECIMAL = "DECIMAL(38, 18)"

_INTEGER_TYPES = frozenset({"integer", "integer64", "positiveInt", "unsignedInt"})
_TEXT_TYPES = frozenset({
    "string", "code", "id", "uri", "url", "canonical", "oid", "uuid", "markdown", "base64Binary", "xhtml",
    "date", "dateTime", "instant", "time",
})  # fmt: skip
_SYSTEM_TYPES = {"Boolean": "boolean", "Integer": "integer", "Decimal": "decimal", "String": "string",
                 "Date": "date", "DateTime": "dateTime", "Time": "time"}
_EMPTY_IN_EMPTY_OUT = frozenset({
    "where", "first", "last", "single", "ofType", "extension", "getResourceKey", "getReferenceKey", "lowBoundary",
    "highBoundary", "toString", "startsWith", "endsWith", "contains", "upper", "lower", "length",
})  # fmt: skip
_ARITHMETIC = {"+", "-", "*", "/", "div", "mod"}
_COMPARISON = {"=", "!=", "<", ">", "<=", ">=", "~", "!~"}


class NotCompilable(ValueError):
    """A FHIRPath construct this compiler does not translate to SQL; the message names it and the path."""


def sql_kind(fhir_type: str | None) -> str:
    """The SQL value kind of a FHIR type: boolean, integer, decimal, string, or json (complex / unknown)."""
    if fhir_type == "boolean":
        return "boolean"
    if fhir_type in _INTEGER_TYPES:
        return "integer"
    if fhir_type == "decimal":
        return "decimal"
    if fhir_type in _TEXT_TYPES:
        return "string"
    return "json"


@dataclass(frozen=True, slots=True)
class Expr:
    """A compiled FHIRPath expression.

    `sql` is a single item (NULL = empty) unless `many`, then a SQL list. `ftype` is the FHIR type (or model
    context, e.g. "QuestionnaireResponse.item") of the items, None when unknown. `native` items are SQL
    scalars; others are JSON. `path` keeps (root SQL, root-is-list, ((key, is_array), ...)) while the
    expression is a plain navigation, so further steps extend one JSON path. `choices` holds the alternatives
    of a choice element (`value` -> valueQuantity, valueString...) for `ofType()` to pick from.
    """

    sql: str
    many: bool
    ftype: str | None
    native: bool = False
    path: tuple[str, bool, tuple[tuple[str, bool], ...]] | None = None
    choices: tuple[Expr, ...] = ()


EMPTY = Expr("NULL", False, None, native=True)
Rows = tuple[str, list[str]]  # (SQL list of row structs, their field names)


class Dialect:
    """How each operation is spelled in one SQL engine; subclasses fill in the engine's functions."""

    json_item_type = "JSON"

    def __init__(self) -> None:
        self._names = itertools.count()

    def fresh(self) -> str:
        return f"w{next(self._names)}"

    def quote(self, text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def transform(self, items: str, var: str, body: str) -> str:
        raise NotImplementedError

    def transform_indexed(self, items: str, var: str, index: str, body: str) -> str:
        """Map over a list with the 0-based position bound to `index` (an SQL expression usable in `body`)."""
        raise NotImplementedError

    def index_expr(self, index_var: str) -> str:
        raise NotImplementedError

    def filter(self, items: str, var: str, cond: str) -> str:
        raise NotImplementedError

    def let(self, value: str, var: str, body: str) -> str:
        """`body` with `var` bound to `value`, evaluated once (a one-item list mapped and unwrapped)."""
        return self.element(self.transform(self.list_of([value]), var, body), "0")

    def flatten(self, lists: str) -> str:
        return f"flatten({lists})"

    def concat(self, lists: list[str]) -> str:
        raise NotImplementedError

    def size(self, items: str) -> str:
        raise NotImplementedError

    def element(self, items: str, index0: str) -> str:
        raise NotImplementedError

    def list_of(self, items: list[str]) -> str:
        raise NotImplementedError

    def empty_list(self, sql_type: str) -> str:
        raise NotImplementedError

    def sql_type(self, kind: str) -> str:
        raise NotImplementedError

    def json_path(self, root: str, root_many: bool, steps: tuple[tuple[str, bool], ...]) -> str:
        raise NotImplementedError

    def json_path_to(self, root: str, root_many: bool, steps: tuple[tuple[str, bool], ...], kind: str) -> str:
        """A single-valued JSON path as a native value of `kind` (engines read it in one step)."""
        return self.json_to(self.json_path(root, root_many, steps), kind)

    def json_any_key(self, item: str, key: str) -> str:
        """A list of what `key` holds in an item whose type is unknown (array elements, or the one value)."""
        raise NotImplementedError

    def json_to(self, item: str, kind: str) -> str:
        """A JSON item as a native SQL value of `kind` (string, boolean, integer, decimal, json = JSON text)."""
        raise NotImplementedError

    def json_is(self, item: str, kind: str) -> str:
        """A condition: the JSON item holds a value of `kind` (string, boolean, integer, decimal)."""
        raise NotImplementedError

    def cast(self, sql: str, kind: str) -> str:
        return f"CAST({sql} AS {self.sql_type(kind)})"

    def error(self, message: str) -> str:
        raise NotImplementedError

    def string_join(self, items: str, sep: str) -> str:
        raise NotImplementedError

    def struct(self, fields: list[tuple[str, str]]) -> str:
        raise NotImplementedError

    def split_part(self, text: str, sep: str, index: int) -> str:
        raise NotImplementedError

    def decimal_scale(self, item: Expr) -> str:
        """The number of digits after the point of a JSON number item (its precision, for the boundaries)."""
        raise NotImplementedError

    def decimal_literal(self, text: str) -> str:
        return f"CAST({text} AS DOUBLE)"

    def exact_decimal(self, item: str) -> str:
        """A JSON number as an exact DECIMAL (EXACT_DECIMAL)."""
        raise NotImplementedError

    def truncate(self, number: str, places: int) -> str:
        """A decimal cut (toward zero) to `places` digits after the point."""
        raise NotImplementedError

    def position(self, text: str, needle: str) -> str:
        raise NotImplementedError

    def last_day(self, year_month: str) -> str:
        """'YYYY-MM' text -> the 'YYYY-MM-DD' text of the month's last day."""
        raise NotImplementedError

    def integer_division(self, left: str, right: str) -> str:
        raise NotImplementedError

    def string_function(self, name: str) -> str:
        return name

    # -- the boundary functions over ISO text (shared: only plain string functions) -------------------------
    def date_boundary(self, text: str, low: bool) -> str:
        year = f"{text} || '-01-01'" if low else f"{text} || '-12-31'"
        month = f"{text} || '-01'" if low else self.last_day(text)
        return f"(CASE length({text}) WHEN 4 THEN {year} WHEN 7 THEN {month} ELSE {text} END)"

    def time_boundary(self, text: str, low: bool) -> str:
        fill = "0" if low else "9"
        minutes, seconds = (":00", ":00.000") if low else (":59", ":59.999")
        return (f"(CASE length({text}) WHEN 2 THEN {text} || '{minutes}{seconds}' WHEN 5 THEN {text} || "
                f"'{seconds}' WHEN 8 THEN {text} || '.{fill * 3}' ELSE rpad({text}, 12, '{fill}') END)")

    def datetime_boundary(self, text: str, low: bool) -> str:
        t_at = self.position(text, "'T'")
        date = self.date_boundary(f"(CASE WHEN {t_at} > 0 THEN substr({text}, 1, {t_at} - 1) ELSE {text} END)", low)
        rest = f"(CASE WHEN {t_at} > 0 THEN substr({text}, {t_at} + 1) ELSE '' END)"
        zone = f"regexp_extract({rest}, '(Z|[+-][0-9][0-9]:[0-9][0-9])$', 1)"
        time = f"substr({rest}, 1, length({rest}) - length({zone}))"
        no_time, no_zone = ("00:00:00.000", "+14:00") if low else ("23:59:59.999", "-12:00")
        return (f"({date} || 'T' || (CASE WHEN {time} = '' THEN '{no_time}' ELSE {self.time_boundary(time, low)} "
                f"END) || (CASE {zone} WHEN '' THEN '{no_zone}' WHEN '+00:00' THEN 'Z' ELSE {zone} END))")


class Compiler:
    """Compiles the FHIRPath of one view; fresh lambda variable names keep nested lambdas apart."""

    def __init__(self, view: View, dialect: Dialect) -> None:
        self.view = view
        self.d = dialect
        self.model = r4()
        self._names = itertools.count()
        self.resource = Expr(RESOURCE, False, view.resource)
        self.kinds: dict[str, str] = {}

    def fresh(self, prefix: str = "x") -> str:
        return f"{prefix}{next(self._names)}"

    # -- entry points --------------------------------------------------------------------------------------------
    def where_condition(self, path: str, location: str) -> str:
        """The SQL condition of a view's `where` path (true only when the path gives true)."""
        expr = self.expression(path, self.resource, "0")
        if expr.ftype is not None and expr.ftype != "boolean":
            raise ViewDefinitionError(location, f"where path {path!r} gives {expr.ftype}, not a boolean")
        return f"COALESCE({self.boolean(expr)}, false)"

    def expression(self, path: str, this: Expr, row_index: str) -> Expr:
        return _Scope(self, this, row_index).compile(parse(path), path)

    # -- the rows of a view ------------------------------------------------------------------------------------------
    def rows(self) -> str:
        """A SQL list of structs, one per output row of the resource `r` (fields c0.. in view column order)."""
        return self.product([self.select_rows(s, self.resource, "0") for s in self.view.select])[0]

    def field(self, name: str) -> str:
        return f"c{self.view.column_names.index(name)}"

    def select_rows(self, select: Select, ctx: Expr, row_index: str) -> Rows:
        if select.for_each is not None or select.for_each_or_null is not None or select.repeat is not None:
            return self.iterated_rows(select, ctx, row_index)
        return self.body_rows(select, ctx, row_index)

    def iterated_rows(self, select: Select, ctx: Expr, row_index: str) -> Rows:
        if select.repeat is not None:
            items = self.repeat_items(select.repeat, ctx, row_index, REPEAT_DEPTH)
        else:
            items = self.expression(select.for_each or select.for_each_or_null or "", ctx, row_index)
        var, index = self.fresh("it"), self.fresh("i")
        item = Expr(var, False, items.ftype, items.native)
        body, fields = self.body_rows(select, item, self.d.index_expr(index))
        if select.for_each_or_null is None:
            return self.d.flatten(self.d.transform_indexed(self.as_list(items), var, index, body)), fields
        listed = self.fresh("l")
        mapped = self.d.flatten(self.d.transform_indexed(listed, var, index, body))
        null_row = self.d.list_of([self.d.struct(self.null_fields(select))])
        either = f"(CASE WHEN {self.d.size(listed)} = 0 THEN {null_row} ELSE {mapped} END)"
        return self.d.let(self.as_list(items), listed, either), fields

    def body_rows(self, select: Select, ctx: Expr, row_index: str) -> Rows:
        parts: list[Rows] = []
        if select.columns:
            values = [(self.field(c.name), self.column_value(c, ctx, row_index)) for c in select.columns]
            parts.append((self.d.list_of([self.d.struct(values)]), [name for name, _ in values]))
        parts += [self.select_rows(s, ctx, row_index) for s in select.selects]
        if select.union_all:
            branches = [self.select_rows(b, ctx, row_index) for b in select.union_all]
            parts.append((self.d.concat([sql for sql, _ in branches]), branches[0][1]))
        return self.product(parts)

    def product(self, parts: list[Rows]) -> Rows:
        """The cross product of lists of row structs, each result row merging the fields of its parts."""
        result, fields = parts[0]
        for part, part_fields in parts[1:]:
            left, right = self.fresh("a"), self.fresh("b")
            merged = [(f, f"{left}.{f}") for f in fields] + [(f, f"{right}.{f}") for f in part_fields]
            result = self.d.flatten(self.d.transform(result, left,
                                                     self.d.transform(part, right, self.d.struct(merged))))
            fields = fields + part_fields
        return result, fields

    def null_fields(self, select: Select) -> list[tuple[str, str]]:
        """The forEachOrNull row for an empty collection: every column evaluated on nothing (%rowIndex 0)."""
        return [(self.field(c.name), self.column_value(c, EMPTY, "0")) for c in _all_columns(select)]

    # -- columns -----------------------------------------------------------------------------------------------
    def column_value(self, column: Column, ctx: Expr, row_index: str) -> str:
        """The typed SQL value of a column; its kind (declared, else the path's type) is recorded in `kinds`."""
        expr = self.expression(column.path, ctx, row_index)
        kind = self.kinds.setdefault(column.name, _column_kind(column, expr))
        item_kind = kind.removeprefix("list:")
        if column.collection:
            var = self.fresh()
            item = Expr(var, False, expr.ftype, expr.native)
            return self.d.cast(self.d.transform(self.as_list(expr), var, self.native(item, item_kind)), kind)
        single = self.single(expr, f"column {column.name!r} ({column.path!r}) gave several values; "
                                   "set collection: true or narrow the path")
        return self.d.cast(self.native(single, item_kind), kind)

    # -- conversions -----------------------------------------------------------------------------------------------
    def as_list(self, expr: Expr) -> str:
        if expr.many:
            return expr.sql
        if expr.sql == "NULL":
            return self.d.empty_list(self.item_type(expr))
        var = self.fresh()
        return self.d.filter(self.d.list_of([expr.sql]), var, f"{var} IS NOT NULL")

    def item_type(self, expr: Expr) -> str:
        if expr.native and expr is not EMPTY:
            return self.d.sql_type(sql_kind(expr.ftype))
        return self.d.json_item_type

    def single(self, expr: Expr, message: str) -> Expr:
        """The one item of an expression (NULL when empty); an SQL error when it has several."""
        if not expr.many:
            return expr
        items = self.fresh("l")
        checked = f"(CASE WHEN {self.d.size(items)} > 1 THEN {self.d.error(message)} " \
                  f"ELSE {self.d.element(items, '0')} END)"
        return Expr(self.d.let(expr.sql, items, checked), False, expr.ftype, expr.native)

    def native(self, expr: Expr, kind: str) -> str:
        """A single item as a SQL value of `kind` (json: the JSON text)."""
        if expr.native or expr is EMPTY:
            return expr.sql
        if expr.path is not None and not expr.many:
            return self.d.json_path_to(*expr.path, kind)
        return self.d.json_to(expr.sql, kind)

    def boolean(self, expr: Expr) -> str:
        return self.native(self.single(expr, "a boolean expression gave several values"), "boolean")

    # -- repeat --------------------------------------------------------------------------------------------------
    def repeat_items(self, paths: tuple[str, ...], ctx: Expr, row_index: str, depth: int) -> Expr:
        """Every node the paths reach, recursively, in depth-first order (each node, then its descendants);
        unrolled `depth` levels deep, an SQL error where the data nests deeper."""
        children = self.union([self.expression(p, ctx, row_index) for p in paths])
        if depth == 0:
            message = f"repeat {list(paths)!r} nests deeper than {REPEAT_DEPTH} levels"
            empty = self.d.empty_list(self.item_type(children))
            return Expr(f"(CASE WHEN {self.d.size(children.sql)} > 0 THEN {self.d.error(message)} ELSE {empty} END)",
                        True, children.ftype)
        var = self.fresh("n")
        below = self.repeat_items(paths, Expr(var, False, children.ftype, children.native), row_index, depth - 1)
        body = self.d.concat([self.d.list_of([var]), below.sql])
        return Expr(self.d.flatten(self.d.transform(children.sql, var, body)), True, children.ftype)

    def union(self, exprs: list[Expr]) -> Expr:
        """The items of several expressions, one list (FHIRPath `combine`, keeping duplicates)."""
        exprs = [e for e in exprs if e is not EMPTY] or [EMPTY]
        lists = [self.as_list(e) for e in exprs]
        ftypes = {e.ftype for e in exprs}
        natives = {e.native for e in exprs}
        if len(natives) > 1:
            raise NotCompilable("cannot combine JSON elements with computed values in one collection")
        ftype = ftypes.pop() if len(ftypes) == 1 else None
        sql = lists[0] if len(lists) == 1 else self.d.concat(lists)
        return Expr(sql, True, ftype, natives.pop())


def _all_columns(select: Select) -> list[Column]:
    """Every column a select produces (its own, nested selects', the first unionAll branch's)."""
    columns = list(select.columns)
    for nested in select.selects:
        columns += _all_columns(nested)
    if select.union_all:
        columns += _all_columns(select.union_all[0])
    return columns


class _Scope:
    """The compilation of one expression: `$this`, `%rowIndex` and the view's constants."""

    def __init__(self, compiler: Compiler, this: Expr, row_index: str) -> None:
        self.c = compiler
        self.d = compiler.d
        self.this = this
        self.row_index = row_index
        self.path = ""

    def compile(self, node: Node, path: str) -> Expr:
        self.path = path
        return self.node(node, self.this)

    def fail(self, what: str) -> NotCompilable:
        return NotCompilable(f"{what} in {self.path!r} is not compiled to SQL")

    # -- nodes ---------------------------------------------------------------------------------------------------
    def node(self, node: Node, this: Expr) -> Expr:
        kind = node.kind
        if kind == "ident":
            name = node.args[0]
            if name == self.c.view.resource and this is self.c.resource:
                return this
            return self.member(this, name)
        if kind == "member":
            return self.member(self.node(node.args[0], this), node.args[1])
        if kind == "call":
            base = this if node.args[0] is None else self.node(node.args[0], this)
            return self.call(base, node.args[1], node.args[2], this)
        if kind == "index":
            return self.index(self.node(node.args[0], this), self.node(node.args[1], this))
        if kind == "this":
            return this
        if kind == "var":
            return self.variable(node.args[0])
        if kind == "lit":
            return self.literal(node.args[0], node.args[1])
        if kind == "empty":
            return EMPTY
        if kind == "unary":
            operand = self.node(node.args[1], this)
            if node.args[0] == "-":
                return self.arithmetic("*", self.literal(-1, "Integer"), operand)
            return operand
        if kind == "binary":
            return self.binary(node.args[0], self.node(node.args[1], this), self.node(node.args[2], this))
        if kind == "type_op":
            of_type = self.fn_ofType(self.node(node.args[1], this), [Node("ident", node.pos, node.args[2])], this)
            return self.fn_exists(of_type, [], this) if node.args[0] == "is" else of_type
        raise self.fail(f"{kind} ({node!r})")

    def variable(self, name: str) -> Expr:
        if name in ("resource", "rootResource", "context"):
            return self.c.resource
        if name == "rowIndex":
            return Expr(self.row_index, False, "integer", native=True)
        if name not in self.c.view.constants:
            raise ViewDefinitionError("constant", f"undefined constant %{name} in {self.path!r}")
        lit = parse(fhirpath_literal(self.c.view.constants[name]))
        return self.literal(lit.args[0], lit.args[1])

    def literal(self, value: Any, system_type: str) -> Expr:
        ftype = _SYSTEM_TYPES.get(system_type)
        if ftype == "boolean":
            return Expr("true" if value else "false", False, ftype, native=True)
        if ftype == "integer":
            return Expr(f"CAST({int(value)} AS BIGINT)", False, ftype, native=True)
        if ftype == "decimal":
            return Expr(self.d.decimal_literal(str(value)), False, ftype, native=True)
        if ftype is None:
            raise self.fail(f"a {system_type} literal")
        return Expr(self.d.quote(str(value)), False, ftype, native=True)

    # -- navigation ----------------------------------------------------------------------------------------------
    def member(self, base: Expr, name: str) -> Expr:
        if base.native:
            return EMPTY
        base = self.plain(base)
        if base.ftype is None or base.ftype in ("Resource", "DomainResource"):
            return self.dynamic_member(base, name)
        children = self.c.model.children_named(base.ftype, name)
        if not children:
            return EMPTY
        steps = [self.step(base, ch.json_name, ch.is_array, ch.context) for ch in children]
        if len(steps) == 1:
            return steps[0]
        return replace(self.c.union(steps), choices=tuple(steps))

    def step(self, base: Expr, key: str, is_array: bool, context: str) -> Expr:
        if base.path is not None:
            root, root_many, steps = base.path
        else:
            root, root_many, steps = base.sql, base.many, ()
        steps = (*steps, (key, is_array))
        many = root_many or any(arr for _, arr in steps)
        return Expr(self.d.json_path(root, root_many, steps), many, context, path=(root, root_many, steps))

    def dynamic_member(self, base: Expr, name: str) -> Expr:
        var = self.c.fresh()
        if base.many:
            sql = self.d.flatten(self.d.transform(base.sql, var, self.d.json_any_key(var, name)))
        else:
            sql = self.d.json_any_key(base.sql, name)
        return Expr(sql, True, None)

    def index(self, base: Expr, index: Expr) -> Expr:
        if not index.native or index.ftype != "integer":
            raise self.fail("an index that is not an integer")
        return Expr(self.d.element(self.c.as_list(base), index.sql), False, base.ftype, base.native)

    # -- functions -----------------------------------------------------------------------------------------------
    def call(self, base: Expr, name: str, args: list[Node], this: Expr) -> Expr:
        handler = getattr(self, f"fn_{name}", None)
        if handler is None:
            raise self.fail(f"the function {name}()")
        if base is EMPTY and name in _EMPTY_IN_EMPTY_OUT:
            return EMPTY
        return handler(base if name == "ofType" else self.plain(base), args, this)

    def plain(self, expr: Expr) -> Expr:
        """A choice element as the list of whichever of its keys are present (what every step but ofType needs)."""
        return self.c.union(list(expr.choices)) if expr.choices else expr

    def lambda_over(self, base: Expr, arg: Node) -> tuple[str, str]:
        """(variable, boolean SQL) for a criterion evaluated on each item of `base`."""
        var = self.c.fresh()
        item = Expr(var, False, base.ftype, base.native)
        return var, f"COALESCE({self.c.boolean(self.node(arg, item))}, false)"

    def fn_where(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        var, cond = self.lambda_over(base, args[0])
        if base.many:
            return Expr(self.d.filter(base.sql, var, cond), True, base.ftype, base.native)
        items = self.d.filter(self.c.as_list(base), var, cond)
        return Expr(self.d.element(items, "0"), False, base.ftype, base.native)

    def fn_exists(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        if args:
            base = self.fn_where(base, args, this)
        sql = f"({self.d.size(base.sql)} > 0)" if base.many else f"({base.sql} IS NOT NULL)"
        return Expr(sql, False, "boolean", native=True)

    def fn_empty(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        exists = self.fn_exists(base, [], this)
        return replace(exists, sql=f"(NOT {exists.sql})")

    def fn_hasValue(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        return self.fn_exists(base, [], this)

    def fn_single(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        return self.c.single(base, f"single() got several values in {self.path!r}")

    def fn_not(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        return Expr(f"(NOT {self.c.boolean(base)})", False, "boolean", native=True)

    def fn_first(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        if not base.many:
            return base
        return Expr(self.d.element(base.sql, "0"), False, base.ftype, base.native)

    def fn_last(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        if not base.many:
            return base
        return Expr(self.d.element(base.sql, f"{self.d.size(base.sql)} - 1"), False, base.ftype, base.native)

    def fn_count(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        sql = self.d.size(self.c.as_list(base))
        return Expr(f"CAST({sql} AS BIGINT)", False, "integer", native=True)

    def fn_join(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        sep = self.node(args[0], this) if args else Expr("''", False, "string", native=True)
        var = self.c.fresh()
        texts = self.d.transform(self.c.as_list(base), var, self.c.native(Expr(var, False, base.ftype, base.native),
                                                                         "string"))
        return Expr(self.d.string_join(texts, sep.sql), False, "string", native=True)

    def fn_ofType(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        wanted = _type_name(args[0], self.path)
        for choice in base.choices:
            if (choice.ftype or "").lower() == wanted.lower():
                return choice
        if base.choices:
            return EMPTY
        if base.ftype is not None:
            return base if base.ftype.lower() == wanted.lower() else EMPTY
        kind = sql_kind(wanted[0].lower() + wanted[1:])
        if kind == "json":
            return replace(base, ftype=wanted, path=None)
        var = self.c.fresh()
        items = self.d.filter(self.c.as_list(base), var, self.d.json_is(var, kind))
        return Expr(items, True, wanted[0].lower() + wanted[1:])

    def fn_extension(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        url = self.node(args[0], this)
        extensions = self.member(base, "extension")
        var = self.c.fresh()
        url_of = self.d.json_to(self.d.json_path(var, False, (("url", False),)), "string")
        return Expr(self.d.filter(self.c.as_list(extensions), var, f"COALESCE({url_of} = {url.sql}, false)"),
                    True, "Extension")

    def fn_getResourceKey(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        return Expr(self.d.json_to(self.d.json_path(base.sql, False, (("id", False),)), "string"), False, "string",
                    native=True)

    def fn_getReferenceKey(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        """The id each Reference points to (`Type/id`, an absolute URL, `urn:uuid:`), as getResourceKey() gives
        it for the target; with a type, references to other types give nothing."""
        wanted = _type_name(args[0], self.path) if args else None
        if not base.many:
            return Expr(self.reference_key(base, wanted), False, "string", native=True)
        var = self.c.fresh()
        keys = self.d.transform(base.sql, var, self.reference_key(Expr(var, False, base.ftype), wanted))
        kept = self.c.fresh()
        return Expr(self.d.filter(keys, kept, f"{kept} IS NOT NULL"), True, "string", native=True)

    def reference_key(self, reference: Expr, wanted: str | None) -> str:
        ref = self.c.native(self.member(reference, "reference"), "string")
        text = self.c.fresh("ref")
        starts = self.d.string_function("starts_with")
        url = self.d.split_part(text, "/_history/", 1)
        url_type, url_key = self.d.split_part(url, "/", -2), self.d.split_part(url, "/", -1)
        if wanted is None:
            types = ", ".join(self.d.quote(t) for t in sorted(self.c.model.resource_types))
            urn_ok, url_ok = "true", f"{url_type} IN ({types})"
        else:
            stated = self.c.native(self.member(reference, "type"), "string")
            urn_ok, url_ok = f"{stated} = {self.d.quote(wanted)}", f"{url_type} = {self.d.quote(wanted)}"
        key = (f"(CASE WHEN {text} = '' OR {starts}({text}, '#') THEN NULL "
               f"WHEN {starts}({text}, 'urn:uuid:') OR {starts}({text}, 'urn:oid:') THEN "
               f"(CASE WHEN {urn_ok} THEN {self.d.split_part(text, ':', 3)} END) "
               f"WHEN {url_ok} THEN {url_key} END)")
        return self.d.let(ref, text, key)

    def fn_lowBoundary(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        return self.boundary(base, low=True)

    def fn_highBoundary(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        return self.boundary(base, low=False)

    def boundary(self, base: Expr, low: bool) -> Expr:
        single = self.c.single(base, "a boundary function got several values")
        ftype = single.ftype
        if ftype == "decimal":
            return Expr(self.decimal_boundary(single, low), False, "decimal", native=True)
        text = self.c.native(single, "string")
        if ftype == "date":
            return Expr(self.d.date_boundary(text, low), False, "date", native=True)
        if ftype in ("dateTime", "instant"):
            return Expr(self.d.datetime_boundary(text, low), False, "dateTime", native=True)
        if ftype == "time":
            return Expr(self.d.time_boundary(text, low), False, "time", native=True)
        raise self.fail(f"{'low' if low else 'high'}Boundary() of {ftype or 'an untyped value'}")

    def decimal_boundary(self, single: Expr, low: bool) -> str:
        """The boundary of a decimal to 8 places, as Sante's FHIRPath computes it: half a unit of the input's
        last digit away, rounded half-up going out and truncated coming in (mirrored for negatives)."""
        exact = f"CAST({single.sql} AS {EXACT_DECIMAL})" if single.native else self.d.exact_decimal(single.sql)
        half = f"CAST('0.' || repeat('0', {self.d.decimal_scale(single)}) || '5' AS {EXACT_DECIMAL})"
        outward = f"round(abs({exact}) + {half}, {BOUNDARY_PLACES})"
        inward = self.d.truncate(f"(abs({exact}) - {half})", BOUNDARY_PLACES)
        positive, negative = (inward, outward) if low else (outward, inward)
        return f"(CASE WHEN {exact} < 0 THEN -{negative} ELSE {positive} END)"

    def fn_toString(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        single = self.c.single(base, "toString() got several values")
        return Expr(self.c.native(single, "string"), False, "string", native=True)

    def fn_startsWith(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        return self.string_test(base, args, this, "starts_with")

    def fn_contains(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        return self.string_test(base, args, this, "contains")

    def fn_endsWith(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        return self.string_test(base, args, this, "ends_with")

    def fn_upper(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        return self.string_function(base, "upper", "string")

    def fn_lower(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        return self.string_function(base, "lower", "string")

    def fn_length(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        return self.string_function(base, "length", "integer")

    def fn_trim(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        return self.string_function(base, "trim", "string")

    def fn_replace(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        """replace(pattern, substitution): every occurrence of the text `pattern` (not a regular expression)."""
        text = self.c.native(self.c.single(base, "replace() got several values"), "string")
        pattern, substitution = (self.c.native(self.c.single(self.node(a, this), "replace() got several values"),
                                               "string") for a in args[:2])
        return Expr(f"replace({text}, {pattern}, {substitution})", False, "string", native=True)

    def fn_substring(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        """substring(start [, length]), 0-based: empty when start is outside the text, the rest when length runs
        past its end (FHIRPath)."""
        text = self.c.fresh("s")
        start = self.node(args[0], this)
        if not start.native or start.ftype != "integer":
            raise self.fail("substring() with a start that is not an integer")
        length = self.node(args[1], this) if len(args) > 1 else None
        if length is not None and (not length.native or length.ftype != "integer"):
            raise self.fail("substring() with a length that is not an integer")
        part = f"substring({text}, ({start.sql}) + 1" + (f", greatest({length.sql}, 0))" if length else ")")
        body = f"(CASE WHEN ({start.sql}) < 0 OR ({start.sql}) >= length({text}) THEN NULL ELSE {part} END)"
        value = self.c.native(self.c.single(base, "substring() got several values"), "string")
        return Expr(self.d.let(value, text, body), False, "string", native=True)

    def fn_iif(self, base: Expr, args: list[Node], this: Expr) -> Expr:
        """iif(criterion, true-result [, otherwise-result]) on one focus: results of one type, one value each."""
        focus = self.c.single(base, "iif() got several values as its focus")
        criterion = f"COALESCE({self.c.boolean(self.node(args[0], focus))}, false)"
        branches = [self.c.single(self.node(a, focus), "iif() gave several values") for a in args[1:3]]
        types = {b.ftype for b in branches if b is not EMPTY}
        if len(types) > 1 or None in types:
            raise self.fail("iif() whose results are not of one known type")
        ftype = types.pop() if types else None
        kind = sql_kind(ftype) if ftype else "json"
        if kind == "json":
            raise self.fail("iif() whose results are not primitive values")
        yes, no = (self.c.native(b, kind) if b is not EMPTY else "NULL" for b in [*branches, EMPTY][:2])
        return Expr(f"(CASE WHEN {criterion} THEN {yes} ELSE {no} END)", False, ftype, native=True)

    def string_function(self, base: Expr, function: str, ftype: str) -> Expr:
        text = self.c.native(self.c.single(base, f"{function}() got several values"), "string")
        return Expr(f"{function}({text})", False, ftype, native=True)

    def string_test(self, base: Expr, args: list[Node], this: Expr, function: str) -> Expr:
        text = self.c.native(self.c.single(base, f"{function}() got several values"), "string")
        arg = self.c.native(self.c.single(self.node(args[0], this), f"{function}() got several values"), "string")
        return Expr(f"{self.d.string_function(function)}({text}, {arg})", False, "boolean", native=True)

    # -- operators -----------------------------------------------------------------------------------------------
    def binary(self, op: str, left: Expr, right: Expr) -> Expr:
        if op in ("and", "or"):
            return Expr(f"({self.c.boolean(left)} {op.upper()} {self.c.boolean(right)})", False, "boolean",
                        native=True)
        if op == "xor":
            return Expr(f"({self.c.boolean(left)} <> {self.c.boolean(right)})", False, "boolean", native=True)
        if op == "implies":
            return Expr(f"((NOT {self.c.boolean(left)}) OR {self.c.boolean(right)})", False, "boolean",
                        native=True)
        if op in _COMPARISON:
            return self.comparison(op, left, right)
        if op in _ARITHMETIC:
            return self.arithmetic(op, left, right)
        if op == "&":
            texts = [f"COALESCE({self.c.native(self.c.single(e, '& got several values'), 'string')}, '')"
                     for e in (left, right)]
            return Expr(f"({texts[0]} || {texts[1]})", False, "string", native=True)
        if op == "|":
            return self.c.union([left, right])
        raise self.fail(f"the operator {op}")

    def comparison_kind(self, left: Expr, right: Expr) -> str:
        kinds = {sql_kind(e.ftype) for e in (left, right) if e.ftype is not None}
        if kinds <= {"integer", "decimal"} and kinds:
            return "decimal" if "decimal" in kinds else "integer"
        if len(kinds) == 1:
            return kinds.pop()
        if "string" in kinds:
            return "string"
        return "json"

    def comparison(self, op: str, left: Expr, right: Expr) -> Expr:
        kind = self.comparison_kind(left, right)
        sql_op = {"=": "=", "~": "=", "!=": "<>", "!~": "<>"}.get(op, op)
        if kind == "string" and op in ("~", "!~"):
            values = [f"lower({self.c.native(self.c.single(e, 'a comparison got several values'), kind)})"
                      for e in (left, right)]
            return Expr(f"({values[0]} {sql_op} {values[1]})", False, "boolean", native=True)
        if op in ("=", "!=") and (left.many or right.many):
            return self.collection_equality(sql_op, kind, left, right)
        values = [self.c.native(self.c.single(e, "a comparison got several values"), kind) for e in (left, right)]
        return Expr(f"({values[0]} {sql_op} {values[1]})", False, "boolean", native=True)

    def collection_equality(self, sql_op: str, kind: str, left: Expr, right: Expr) -> Expr:
        """`=` / `!=` where a side is a list: empty if either is empty, unequal if the sizes differ."""
        lists = [self.c.as_list(e) for e in (left, right)]
        sizes = [self.d.size(s) for s in lists]
        values = [self.c.native(Expr(self.d.element(s, "0"), False, e.ftype, e.native), kind)
                  for s, e in zip(lists, (left, right), strict=True)]
        unequal = "true" if sql_op == "<>" else "false"
        sql = (f"(CASE WHEN {sizes[0]} = 0 OR {sizes[1]} = 0 THEN NULL WHEN {sizes[0]} <> {sizes[1]} THEN {unequal}"
               f" WHEN {sizes[0]} = 1 THEN {values[0]} {sql_op} {values[1]} ELSE {self.d.error('comparing collections of several items is not compiled')} END)")
        return Expr(sql, False, "boolean", native=True)

    def arithmetic(self, op: str, left: Expr, right: Expr) -> Expr:
        kind = self.comparison_kind(left, right)
        if kind == "string" and op == "+":
            return self.binary("&", left, right)
        if kind not in ("integer", "decimal"):
            raise self.fail(f"{op} on {left.ftype} and {right.ftype}")
        if op == "/":
            kind = "decimal"
        values = [self.d.cast(self.c.native(self.c.single(e, f"{op} got several values"), kind), kind)
                  for e in (left, right)]
        sql_op = {"div": "//", "mod": "%"}.get(op, op)
        if op == "div":
            return Expr(self.d.integer_division(values[0], values[1]), False, "integer", native=True)
        if op == "/":
            return Expr(f"({values[0]} / NULLIF({values[1]}, 0))", False, "decimal", native=True)
        return Expr(f"({values[0]} {sql_op} {values[1]})", False, kind, native=True)


def _type_name(node: Node, path: str) -> str:
    """The type named by a function argument (`Quantity`, `FHIR.string`, `System.String`)."""
    if node.kind == "ident":
        return node.args[0]
    if node.kind == "member" and node.args[0].kind == "ident":
        namespace, name = node.args[0].args[0], node.args[1]
        return _SYSTEM_TYPES.get(name, name) if namespace == "System" else name
    raise NotCompilable(f"{node!r} in {path!r} is not a type name")


def _column_kind(column: Column, expr: Expr) -> str:
    """The SQL kind of a column's values: from its declared type, else its path's; `list:` for a collection."""
    kind = sql_kind(column.type or expr.ftype)
    if kind == "json" and expr.native:
        kind = "string"
    return f"list:{kind}" if column.collection else kind


@dataclass(frozen=True, slots=True)
class CompiledView:
    """A view as SQL: `rows` (a list of row structs of the resource `r`, fields c0.. in column order), the
    where `conditions`, and the SQL kind of each column (json columns hold JSON text)."""

    rows: str
    conditions: list[str]
    kinds: list[str]


def compile_view(view: View, dialect: Dialect) -> CompiledView:
    """Compile a view for one dialect."""
    compiler = Compiler(view, dialect)
    conditions = [compiler.where_condition(p, f"where[{i}].path") for i, p in enumerate(view.where)]
    rows = compiler.rows()
    return CompiledView(rows, conditions, [compiler.kinds[name] for name in view.column_names])


def rows_as_dicts(view: View, compiled: CompiledView, result: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """Result tuples as dicts in view column order; JSON text columns parsed back into JSON values."""
    names = view.column_names
    json_columns = [i for i, kind in enumerate(compiled.kinds) if kind in ("json", "list:json")]
    if not json_columns:
        return [dict(zip(names, row, strict=True)) for row in result]
    out = []
    for row in result:
        values = list(row)
        for i in json_columns:
            values[i] = _parse_json(values[i])
        out.append(dict(zip(names, values, strict=True)))
    return out


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large result becomes Python objects: millions of new tuples
    and dicts would otherwise trigger full collections that find nothing (it cuts conversion time by a third)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parse_json(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return [_parse_json(v) for v in value]
    return json.loads(value)
