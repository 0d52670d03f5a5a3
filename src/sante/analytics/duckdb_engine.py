"""The DuckDB engine: a ViewDefinition compiled to one DuckDB SQL query over resource JSON.

`run(view, resources)` reads the resources where they are and runs the query in an in-process DuckDB:

- NDJSON files (`.ndjson`, `.jsonl`, `.gz` too) are scanned by DuckDB itself (`read_ndjson_objects`), no Python
  per resource;
- Parquet files (`.parquet`) must hold one resource per row in a column named `resource` (the resource's JSON
  text, VARCHAR or JSON); a `resourceType` column, when present, lets DuckDB skip other types without parsing;
- JSON files (a Bundle or one resource) and directories go through `sources`; resource dicts are serialised
  once into an Arrow table of JSON text.

Each resource is a DuckDB JSON value `r`; the compiled view turns it into a list of row structs that the query
unnests. Errors in the data (several values in a non-collection column) raise `ViewRunError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
import orjson

from sante.analytics import sources
from sante.analytics.memory import ViewRunError
from sante.analytics.sql_compile import (
    EXACT_DECIMAL,
    RESOURCE,
    CompiledView,
    Dialect,
    Expr,
    compile_view,
    gc_paused,
    rows_as_dicts,
)
from sante.analytics.viewdef import View

_NDJSON_SUFFIXES = (".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz")
_PARQUET_SUFFIXES = (".parquet",)
_SQL_TYPES = {"string": "VARCHAR", "boolean": "BOOLEAN", "integer": "BIGINT", "decimal": "DOUBLE", "json": "VARCHAR"}
TOP_VALUES = "top_values"  # the list of its top-level values the view reads
_MAX_RESOURCE_BYTES = 1 << 30  # DuckDB's default (16 MB) is below what a resource with attachments can reach
_MALFORMED_FILE = re.compile(r'Malformed JSON in file "([^"]+)"')
_JSON_TYPES = {"string": "'VARCHAR'", "boolean": "'BOOLEAN'", "integer": "'BIGINT', 'UBIGINT'", "decimal": "'DOUBLE'"}


class DuckDBDialect(Dialect):
    """DuckDB spelling: JSON items, 1-based lists, `lambda x: ...` list functions."""

    def quote(self, text: str) -> str:
        return _sql_text(text)

    def transform(self, items: str, var: str, body: str) -> str:
        return f"list_transform({items}, lambda {var}: {body})"

    def transform_indexed(self, items: str, var: str, index: str, body: str) -> str:
        return f"list_transform({items}, lambda {var}, {index}: {body})"

    def index_expr(self, index_var: str) -> str:
        return f"CAST({index_var} - 1 AS BIGINT)"

    def filter(self, items: str, var: str, cond: str) -> str:
        return f"list_filter({items}, lambda {var}: {cond})"

    def concat(self, lists: list[str]) -> str:
        return lists[0] if len(lists) == 1 else f"flatten([{', '.join(lists)}])"

    def size(self, items: str) -> str:
        return f"len({items})"

    def element(self, items: str, index0: str) -> str:
        return f"({items})[({index0}) + 1]"

    def list_of(self, items: list[str]) -> str:
        return f"[{', '.join(items)}]"

    def empty_list(self, sql_type: str) -> str:
        return f"CAST([] AS {sql_type}[])"

    def sql_type(self, kind: str) -> str:
        if kind.startswith("list:"):
            return self.sql_type(kind[5:]) + "[]"
        return _SQL_TYPES[kind]

    def __init__(self) -> None:
        super().__init__()
        self.top_keys: list[str] = ["resourceType"]

    def top_value(self, key: str) -> str:
        """The value of a top-level key of the resource, extracted with all the others in one parse."""
        if key not in self.top_keys:
            self.top_keys.append(key)
        return f"{TOP_VALUES}[{self.top_keys.index(key) + 1}]"

    def relative_path(self, root: str, root_many: bool, steps: tuple[tuple[str, bool], ...]) -> tuple[str, str]:
        """(SQL value, JSON path text) of a navigation; from the resource, it starts at a top-level value."""
        if root == RESOURCE and not root_many:
            (first, first_is_array), rest = steps[0], steps[1:]
            root, steps = self.top_value(first), (("", first_is_array), *rest)
        path = "$" + "".join((f'."{key}"' if key else "") + ("[*]" if is_array else "") for key, is_array in steps)
        return root, path

    def json_path(self, root: str, root_many: bool, steps: tuple[tuple[str, bool], ...]) -> str:
        many = any(is_array for _, is_array in steps)
        root, path = self.relative_path(root, root_many, steps)
        if path == "$":
            return root
        if not root_many:
            extracted = f"json_extract({root}, '{path}')"
            return f"coalesce({extracted}, {self.empty_list('JSON')})" if many else extracted
        var = self.fresh()
        values = f"list_transform({root}, lambda {var}: json_extract({var}, '{path}'))"
        if many:
            return f"flatten({values})"
        kept = self.fresh()
        return f"list_filter({values}, lambda {kept}: {kept} IS NOT NULL)"

    def json_path_to(self, root: str, root_many: bool, steps: tuple[tuple[str, bool], ...], kind: str) -> str:
        if kind != "string" or root_many:
            return super().json_path_to(root, root_many, steps, kind)
        root, path = self.relative_path(root, root_many, steps)
        return f"json_extract_string({root}, '{path}')"

    def json_any_key(self, item: str, key: str) -> str:
        one = f"json_extract({item}, '$.\"{key}\"')"
        return (f"flatten([json_extract({item}, '$.\"{key}\"[*]'), (CASE WHEN json_type({one}) <> 'ARRAY' "
                f"THEN [{one}] ELSE CAST([] AS JSON[]) END)])")

    def json_to(self, item: str, kind: str) -> str:
        if kind == "string":
            return f"json_extract_string({item}, '$')"
        if kind == "json":
            return f"CAST({item} AS VARCHAR)"
        return f"TRY_CAST({item} AS {_SQL_TYPES[kind]})"

    def json_is(self, item: str, kind: str) -> str:
        return f"(json_type({item}) IN ({_JSON_TYPES[kind]}))"

    def error(self, message: str) -> str:
        return f"error({self.quote(message)})"

    def string_join(self, items: str, sep: str) -> str:
        return f"array_to_string({items}, {sep})"

    def struct(self, fields: list[tuple[str, str]]) -> str:
        return "struct_pack(" + ", ".join(f"{name} := {value}" for name, value in fields) + ")"

    def split_part(self, text: str, sep: str, index: int) -> str:
        return f"split_part({text}, {self.quote(sep)}, {index})"

    def decimal_scale(self, item: Expr) -> str:
        text = f"CAST({item.sql} AS VARCHAR)"
        return f"(CASE WHEN contains({text}, '.') THEN length(split_part({text}, '.', 2)) ELSE 0 END)"

    def exact_decimal(self, item: str) -> str:
        return f"TRY_CAST(CAST({item} AS VARCHAR) AS {EXACT_DECIMAL})"

    def truncate(self, number: str, places: int) -> str:
        return f"trunc({number}, {places})"

    def position(self, text: str, needle: str) -> str:
        return f"strpos({text}, {needle})"

    def last_day(self, year_month: str) -> str:
        return f"strftime(last_day(CAST({year_month} || '-01' AS DATE)), '%Y-%m-%d')"

    def integer_division(self, left: str, right: str) -> str:
        return f"({left} // NULLIF({right}, 0))"


def query(view: View, compiled: CompiledView, dialect: DuckDBDialect, source_sql: str) -> str:
    """The SQL of a view over `source_sql`, a relation with one JSON column `r` holding each resource.

    Each resource's JSON text is parsed once for all the top-level keys the view reads (`json_extract` with a
    list of paths); the compiled expressions then navigate those small values.
    """
    where = "".join(f" AND {c}" for c in compiled.conditions)
    paths = ", ".join(f"'$.\"{key}\"'" for key in dialect.top_keys)
    resource_type = dialect.quote(view.resource)
    return (f"SELECT row.* FROM (SELECT unnest({compiled.rows}) AS row FROM "
            f"(SELECT {RESOURCE}, json_extract({RESOURCE}, [{paths}]) AS {TOP_VALUES} FROM ({source_sql})) "
            f"WHERE json_extract_string({TOP_VALUES}[1], '$') = {resource_type}{where})")


def run(view: View, resources: Any, connection: duckdb.DuckDBPyConnection | None = None) -> list[dict[str, Any]]:
    """The rows of `view` over resource dicts, or NDJSON / Parquet / JSON files and directories."""
    dialect = DuckDBDialect()
    compiled = compile_view(view, dialect)
    con = connection or duckdb.connect()
    try:
        source_sql = _register_sources(con, view, resources)
        if source_sql is None:
            return []
        with gc_paused():
            try:
                result = con.execute(query(view, compiled, dialect, source_sql)).fetchall()
            except duckdb.InvalidInputException as e:
                raise _run_error(view, e) from e
            return rows_as_dicts(view, compiled, result)
    finally:
        if connection is None:
            con.close()


def _register_sources(con: duckdb.DuckDBPyConnection, view: View, resources: Any) -> str | None:
    """A SQL relation (one JSON column `r`) over the inputs, registering Arrow tables where needed."""
    if not sources.is_path_source(resources):
        return _register_dicts(con, "resources_dicts", resources)
    files = sources.resource_files(resources)
    ndjson = [str(f) for f in files if f.name.lower().endswith(_NDJSON_SUFFIXES)]
    parquet = [str(f) for f in files if f.name.lower().endswith(_PARQUET_SUFFIXES)]
    other = [f for f in files if str(f) not in ndjson and str(f) not in parquet]
    parts = []
    if ndjson:
        parts.append(f"SELECT json AS {RESOURCE} FROM read_ndjson_objects({_sql_list(ndjson)}, compression = 'auto', "
                     f"maximum_object_size = {_MAX_RESOURCE_BYTES})")
    if parquet:
        parts.append(_parquet_source(con, parquet, view.resource))
    if other:
        dicts = (r for f in other for r in sources.iter_file(Path(f)))
        parts.append(_register_dicts(con, "resources_files", dicts))
    return " UNION ALL ".join(parts) or None


def _register_dicts(con: duckdb.DuckDBPyConnection, name: str, resources: Iterable[dict[str, Any]]) -> str:
    import pyarrow as pa  # type: ignore[import-untyped]  # imported here: file inputs skip its 0.1 s import

    texts = [orjson.dumps(r).decode() for r in sources.iter_resources(resources)]
    con.register(name, pa.table({"resource": pa.array(texts, pa.string())}))
    return f"SELECT CAST(resource AS JSON) AS {RESOURCE} FROM {name}"


def _parquet_source(con: duckdb.DuckDBPyConnection, files: list[str], resource_type: str) -> str:
    scan = f"read_parquet({_sql_list(files)})"
    names = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
    if "resource" not in names:
        raise sources.SourceError(files[0], "a Parquet input needs a `resource` column holding each resource's JSON")
    pushdown = f" WHERE resourceType = {_sql_text(resource_type)}" if "resourceType" in names else ""
    return f"SELECT CAST(resource AS JSON) AS {RESOURCE} FROM {scan}{pushdown}"


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join(map(_sql_text, paths)) + "]"


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _run_error(view: View, error: Exception) -> ValueError:
    """A DuckDB error as Sante's: unreadable input is a SourceError naming the file, the rest a ViewRunError."""
    message = str(error).split("Invalid Input Error: ", 1)[-1].strip()
    malformed = _MALFORMED_FILE.search(message)
    if malformed:
        return sources.SourceError(malformed.group(1), message)
    return ViewRunError(f"{view.resource} view failed: {message}")
