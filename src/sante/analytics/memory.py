"""The in-memory SQL on FHIR engine, the reference the SQL engines are checked against.

`run(view, resources)` evaluates a parsed `View` row by row with Sante's FHIRPath engine, following the spec's
row semantics: the selects of a level are cross-joined; `forEach`, `forEachOrNull` and `repeat` iterate (each
with its own `%rowIndex`); `unionAll` concatenates its branches; `where` keeps a resource only when every path
is true. Values come out as JSON-compatible Python values (decimals as float, dates and times as ISO text).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from itertools import product
from typing import Any

from sante.analytics.viewdef import Column, Select, View
from sante.fhirpath import FHIRPathError, PrimNode, Quantity, compile, compile_for_type, result_type
from sante.fhirpath.temporal import Temporal

Evaluator = Callable[..., list[Any]]
Row = dict[str, Any]

_INTEGER_TYPES = frozenset({"integer", "integer64", "positiveInt", "unsignedInt"})


class ViewRunError(ValueError):
    """A view that fails on the data: a non-boolean `where`, several values in a non-collection column, or a
    FHIRPath evaluation error. The message names the resource and the path."""


def run(view: View, resources: Iterable[dict[str, Any]]) -> list[Row]:
    """The rows of `view` over `resources` (resources of other types are skipped)."""
    return list(iter_rows(view, resources))


def iter_rows(view: View, resources: Iterable[dict[str, Any]]) -> Iterator[Row]:
    """The rows of `view`, resource by resource (a generator: large inputs are never held in memory)."""
    runner = _Runner(view)
    for resource in resources:
        if resource.get("resourceType") == view.resource:
            yield from runner.rows_of(resource)


class _Runner:
    """The compiled paths of one view and the row construction over one resource at a time.

    Each path is compiled for the static type of the nodes it runs on (the resource type, then what forEach or
    repeat reaches: `QuestionnaireResponse.item`, `HumanName`), so that choice elements and ofType() work on
    nested nodes as they do on the resource; where the model cannot tell the type, the path runs untyped.
    """

    def __init__(self, view: View) -> None:
        self.view = view
        self.compiled: dict[tuple[str, str | None], Evaluator] = {}
        self.null_rows = {id(s): _null_row(s) for s in _all_selects(view.select)}
        self.item_types: dict[int, str | None] = {}
        for select in view.select:
            self._type_items(select, view.resource)

    def _type_items(self, select: Select, focus: str | None) -> None:
        """Record the static type of the nodes `select` iterates (or of its focus when it does not iterate)."""
        if select.for_each is not None or select.for_each_or_null is not None:
            item_type = _typed(select.for_each or select.for_each_or_null or "", focus)
        elif select.repeat is not None:
            item_type = _repeat_type(select.repeat, focus)
        else:
            item_type = focus
        self.item_types[id(select)] = item_type
        for nested in (*select.selects, *select.union_all):
            self._type_items(nested, item_type)

    def evaluate(self, path: str, focus: str | None, node: Any, variables: dict[str, Any],
                 resource: dict[str, Any]) -> list[Any]:
        fn = self.compiled.get((path, focus))
        try:
            if fn is None:
                fn = self.compiled[(path, focus)] = compile_for_type(path, focus) if focus else compile(path)
            return fn(node, variables)
        except FHIRPathError as e:
            raise ViewRunError(f"{_name(resource)}: {path!r} failed: {e}") from e

    def rows_of(self, resource: dict[str, Any]) -> list[Row]:
        variables: dict[str, Any] = {**self.view.constants, "resource": resource, "rootResource": resource,
                                     "rowIndex": 0}
        for path in self.view.where:
            if not self._where_holds(path, resource, variables):
                return []
        parts = [self.select_rows(s, self.view.resource, resource, 0, variables, resource) for s in self.view.select]
        return _cross_join(parts)

    def _where_holds(self, path: str, resource: dict[str, Any], variables: dict[str, Any]) -> bool:
        result = [_plain(v) for v in self.evaluate(path, self.view.resource, resource, variables, resource)]
        if not result:
            return False
        if len(result) == 1 and isinstance(result[0], bool):
            return result[0]
        raise ViewRunError(f"{_name(resource)}: where path {path!r} gave {result!r}, not a single boolean")

    def select_rows(self, select: Select, focus: str | None, node: Any, row_index: int, variables: dict[str, Any],
                    resource: dict[str, Any]) -> list[Row]:
        """The rows of one select over one context node of type `focus` (iterated when the select says so)."""
        item_type = self.item_types[id(select)]
        contexts = self._contexts(select, focus, node, row_index, variables, resource)
        if contexts is None:  # forEachOrNull over nothing: one row, its columns evaluated on no node
            scope = {**variables, "rowIndex": 0}
            return [{**self.null_rows[id(select)], **self._column_values(select.columns, None, [], scope, resource)}]
        rows: list[Row] = []
        for item, index in contexts:
            scope = {**variables, "rowIndex": index}
            parts = [[self._column_values(select.columns, item_type, item, scope, resource)]]
            parts += [self.select_rows(s, item_type, item, index, scope, resource) for s in select.selects]
            if select.union_all:
                parts.append([row for branch in select.union_all
                              for row in self.select_rows(branch, item_type, item, index, scope, resource)])
            rows.extend(_cross_join(parts))
        return rows

    def _contexts(self, select: Select, focus: str | None, node: Any, row_index: int, variables: dict[str, Any],
                  resource: dict[str, Any]) -> list[tuple[Any, int]] | None:
        """(node, %rowIndex) pairs the select runs on; None for forEachOrNull over nothing (one row of nulls)."""
        if select.for_each is not None:
            return list(_indexed(self.evaluate(select.for_each, focus, node, variables, resource)))
        if select.for_each_or_null is not None:
            items = self.evaluate(select.for_each_or_null, focus, node, variables, resource)
            return list(_indexed(items)) if items else None
        if select.repeat is not None:
            item_type = self.item_types[id(select)]
            return list(_indexed(self._repeat(select.repeat, focus, item_type, node, variables, resource)))
        return [(node, row_index)]

    def _repeat(self, paths: tuple[str, ...], focus: str | None, item_type: str | None, node: Any,
                variables: dict[str, Any], resource: dict[str, Any]) -> Iterator[Any]:
        """Every node reachable through `paths`, depth first (each node, then what the paths reach from it)."""
        for path in paths:
            for child in self.evaluate(path, focus, node, variables, resource):
                yield child
                yield from self._repeat(paths, item_type, item_type, child, variables, resource)

    def _column_values(self, columns: tuple[Column, ...], focus: str | None, node: Any, variables: dict[str, Any],
                       resource: dict[str, Any]) -> Row:
        row: Row = {}
        for column in columns:
            values = self.evaluate(column.path, focus, node, variables, resource)
            if column.collection:
                row[column.name] = [json_value(v, column.type) for v in values]
            elif not values:
                row[column.name] = None
            elif len(values) == 1:
                row[column.name] = json_value(values[0], column.type)
            else:
                raise ViewRunError(
                    f"{_name(resource)}: column {column.name!r} ({column.path!r}) gave {len(values)} values; "
                    "set collection: true or narrow the path"
                )
        return row


def json_value(value: Any, fhir_type: str | None = None) -> Any:
    """A FHIRPath result item as a JSON-compatible value, typed by the column's declared FHIR type."""
    if type(value) is PrimNode:
        value = value.value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, Decimal):
        if fhir_type in _INTEGER_TYPES and value == value.to_integral_value():
            return int(value)
        return float(value)
    if isinstance(value, int):
        return float(value) if fhir_type == "decimal" else value
    if isinstance(value, Temporal | Quantity):
        return str(value)
    return value


def _typed(path: str, focus: str | None) -> str | None:
    """The static type of the nodes `path` reaches from a `focus` node, when it is a complex type the FHIRPath
    engine can navigate (primitives and System types run untyped)."""
    found = result_type(path, focus) if focus else None
    if found is None or not found[:1].isupper() or found.startswith("System."):
        return None
    return found


def _repeat_type(paths: tuple[str, ...], focus: str | None) -> str | None:
    """The one type every node of a repeat has (what the paths reach from the focus and from those nodes)."""
    reached = {_typed(p, focus) for p in paths}
    if len(reached) != 1:
        return None
    item_type = reached.pop()
    return item_type if all(_typed(p, item_type) == item_type for p in paths) else None


def _plain(value: Any) -> Any:
    return value.value if type(value) is PrimNode else value


def _indexed(items: Iterable[Any]) -> Iterator[tuple[Any, int]]:
    return ((item, i) for i, item in enumerate(items))


def _cross_join(parts: list[list[Row]]) -> list[Row]:
    """Every combination of one row from each part, merged (no rows when a part has none)."""
    out = []
    for combo in product(*parts):
        merged: Row = {}
        for row in combo:
            merged.update(row)
        out.append(merged)
    return out


def _null_row(select: Select) -> Row:
    """A row of nulls over every column a select produces (the forEachOrNull row for an empty collection)."""
    row: Row = {c.name: None for c in select.columns}
    for nested in select.selects:
        row.update(_null_row(nested))
    if select.union_all:
        row.update(_null_row(select.union_all[0]))
    return row


def _all_selects(selects: Iterable[Select]) -> Iterator[Select]:
    for s in selects:
        yield s
        yield from _all_selects(s.selects)
        yield from _all_selects(s.union_all)


def _name(resource: dict[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"
