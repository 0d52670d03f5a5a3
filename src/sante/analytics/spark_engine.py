"""The Spark engine: a ViewDefinition compiled to one Spark SQL query over resources parsed into VARIANT.

`run(view, resources, spark=None)` reads NDJSON files (`.gz` too) with Spark's text reader, Parquet files with a
`resource` column of JSON text (the DuckDB engine's layout; a `resourceType` column, when present, is used to
skip other types), and anything else (resource dicts, Bundle / single-resource JSON files) through one
temporary NDJSON file. Each line is parsed once with `parse_json` into a VARIANT `r`; the compiled view builds
a list of row structs per resource with higher-order functions (`transform`, `filter`, `flatten`) and
`inline` explodes it.

The session is the one passed in, else the active one, else a local one this module starts (`local[2]`, UI
off, quiet logging). Errors in the data raise `ViewRunError`.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
_SQL_TYPES = {"string": "STRING", "boolean": "BOOLEAN", "integer": "BIGINT", "decimal": "DOUBLE", "json": "STRING"}
_VARIANT_TYPES = {"string": "STRING", "boolean": "BOOLEAN", "integer": "BIGINT", "decimal": "DOUBLE"}


class SparkDialect(Dialect):
    """Spark spelling: VARIANT items, 0-based arrays, `x -> ...` higher-order functions."""

    json_item_type = "VARIANT"

    def transform(self, items: str, var: str, body: str) -> str:
        return f"transform({items}, {var} -> {body})"

    def transform_indexed(self, items: str, var: str, index: str, body: str) -> str:
        return f"transform({items}, ({var}, {index}) -> {body})"

    def index_expr(self, index_var: str) -> str:
        return f"CAST({index_var} AS BIGINT)"

    def filter(self, items: str, var: str, cond: str) -> str:
        return f"filter({items}, {var} -> {cond})"

    def concat(self, lists: list[str]) -> str:
        return lists[0] if len(lists) == 1 else f"concat({', '.join(lists)})"

    def size(self, items: str) -> str:
        return f"size({items})"

    def element(self, items: str, index0: str) -> str:
        return f"get({items}, {index0})"

    def list_of(self, items: list[str]) -> str:
        return f"array({', '.join(items)})"

    def empty_list(self, sql_type: str) -> str:
        return f"CAST(array() AS ARRAY<{sql_type}>)"

    def sql_type(self, kind: str) -> str:
        if kind.startswith("list:"):
            return f"ARRAY<{self.sql_type(kind[5:])}>"
        return _SQL_TYPES[kind]

    def json_path(self, root: str, root_many: bool, steps: tuple[tuple[str, bool], ...]) -> str:
        if not steps:
            return root
        if root_many:
            var = self.fresh()
            inner = self.json_path(var, False, steps)
            values = f"transform({root}, {var} -> {inner})"
            if any(is_array for _, is_array in steps):
                return f"flatten({values})"
            kept = self.fresh()
            return f"filter({values}, {kept} -> {kept} IS NOT NULL)"
        arrays = [i for i, (_, is_array) in enumerate(steps) if is_array]
        if not arrays:
            return f"variant_get({root}, '{_variant_path(steps)}')"
        first = arrays[0]
        array = (f"coalesce(try_variant_get({root}, '{_variant_path(steps[: first + 1])}', 'ARRAY<VARIANT>'), "
                 f"{self.empty_list('VARIANT')})")
        return self.json_path(array, True, steps[first + 1 :])

    def json_path_to(self, root: str, root_many: bool, steps: tuple[tuple[str, bool], ...], kind: str) -> str:
        if kind == "json" or root_many or any(is_array for _, is_array in steps):
            return super().json_path_to(root, root_many, steps, kind)
        return f"try_variant_get({root}, '{_variant_path(steps)}', '{_VARIANT_TYPES[kind]}')"

    def json_any_key(self, item: str, key: str) -> str:
        one = f"variant_get({item}, '$.{key}')"
        return (f"coalesce(try_variant_get({item}, '$.{key}', 'ARRAY<VARIANT>'), (CASE WHEN {one} IS NULL "
                f"THEN {self.empty_list('VARIANT')} ELSE array({one}) END))")

    def json_to(self, item: str, kind: str) -> str:
        if kind == "json":
            return f"to_json({item})"
        return f"try_variant_get({item}, '$', '{_VARIANT_TYPES[kind]}')"

    def json_is(self, item: str, kind: str) -> str:
        schema = f"schema_of_variant({item})"
        if kind == "decimal":
            return f"({schema} = 'DOUBLE' OR startswith({schema}, 'DECIMAL'))"
        if kind == "integer":
            return f"({schema} = 'BIGINT')"
        return f"({schema} = '{_VARIANT_TYPES[kind]}')"

    def error(self, message: str) -> str:
        return f"raise_error({self.quote(message)})"

    def string_join(self, items: str, sep: str) -> str:
        return f"array_join({items}, {sep})"

    def struct(self, fields: list[tuple[str, str]]) -> str:
        return "named_struct(" + ", ".join(f"'{name}', {value}" for name, value in fields) + ")"

    def split_part(self, text: str, sep: str, index: int) -> str:
        return f"split_part({text}, {self.quote(sep)}, {index})"

    def decimal_scale(self, item: Expr) -> str:
        """VARIANT drops trailing zeros (1.0 is stored as 1), so a number read straight from the resource is
        measured on the raw JSON text; elsewhere the VARIANT's own scale is the best available."""
        if item.path is not None and item.path[0] == RESOURCE and not item.path[1]:
            steps = item.path[2]
            if not any(is_array for _, is_array in steps):
                text = f"get_json_object(raw, '{_variant_path(steps)}')"
                return f"(CASE WHEN contains({text}, '.') THEN length(split_part({text}, '.', 2)) ELSE 0 END)"
        schema = f"schema_of_variant({item.sql})"
        return f"coalesce(CAST(regexp_extract({schema}, 'DECIMAL\\\\([0-9]+,([0-9]+)\\\\)', 1) AS INT), 0)"

    def exact_decimal(self, item: str) -> str:
        return f"try_variant_get({item}, '$', '{EXACT_DECIMAL}')"

    def truncate(self, number: str, places: int) -> str:
        return f"(CASE WHEN {number} >= 0 THEN floor({number}, {places}) ELSE ceil({number}, {places}) END)"

    def position(self, text: str, needle: str) -> str:
        return f"instr({text}, {needle})"

    def last_day(self, year_month: str) -> str:
        return f"date_format(last_day(to_date({year_month} || '-01')), 'yyyy-MM-dd')"

    def integer_division(self, left: str, right: str) -> str:
        return f"({left} div NULLIF({right}, 0))"

    def string_function(self, name: str) -> str:
        return {"starts_with": "startswith", "ends_with": "endswith"}.get(name, name)


def _variant_path(steps: tuple[tuple[str, bool], ...]) -> str:
    return "$" + "".join(f".{key}" for key, _ in steps)


def view_rows(frame: Any, view: View, compiled: CompiledView) -> Any:
    """The DataFrame of a view's rows over `frame`, a DataFrame with one STRING column `value` per resource.

    A cheap text test (`"Patient"` occurs in every Patient) skips most other resources before `parse_json`.
    """
    dialect = SparkDialect()
    conditions = [f"variant_get({RESOURCE}, '$.resourceType', 'STRING') = {dialect.quote(view.resource)}",
                  *compiled.conditions]
    return (frame.where(f"contains(value, {dialect.quote(json.dumps(view.resource))})")
            .selectExpr(f"parse_json(value) AS {RESOURCE}", "value AS raw")
            .selectExpr(f"inline(CASE WHEN {' AND '.join(conditions)} THEN {compiled.rows} END)"))


def session() -> Any:
    """The active SparkSession, or a local one started for this process."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("sante-analytics")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def run(view: View, resources: Any, spark: Any = None) -> list[dict[str, Any]]:
    """The rows of `view` over resource dicts, or NDJSON / Parquet / JSON files and directories."""
    from pyspark.errors import PySparkException

    compiled = compile_view(view, SparkDialect())
    spark = spark or session()
    with _source_frame(spark, view, resources) as frame:
        if frame is None:
            return []
        try:
            with gc_paused(), _without_whole_stage_codegen(spark):
                return rows_as_dicts(view, compiled, view_rows(frame, view, compiled).collect())
        except PySparkException as e:
            raise ViewRunError(f"{view.resource} view failed: {_spark_message(e)}") from e


@contextmanager
def _source_frame(spark: Any, view: View, resources: Any) -> Iterator[Any]:
    """A DataFrame with one STRING column `value` per resource (None when there are no files); temporary files
    live until the query is done."""
    with tempfile.TemporaryDirectory(prefix="sante-spark-") as tmp:
        if not sources.is_path_source(resources):
            yield _text_frame(spark, [_write_ndjson(Path(tmp), resources)])
            return
        files = sources.resource_files(resources)
        ndjson = [str(f) for f in files if f.name.lower().endswith(_NDJSON_SUFFIXES)]
        parquet = [str(f) for f in files if f.name.lower().endswith(_PARQUET_SUFFIXES)]
        other = [f for f in files if str(f) not in ndjson and str(f) not in parquet]
        if other:
            ndjson.append(_write_ndjson(Path(tmp), (r for f in other for r in sources.iter_file(f))))
        frames = []
        if ndjson:
            frames.append(_text_frame(spark, ndjson))
        if parquet:
            frames.append(_parquet_frame(spark, parquet, view.resource))
        yield functools.reduce(lambda left, right: left.unionByName(right), frames) if frames else None


@contextmanager
def _without_whole_stage_codegen(spark: Any) -> Iterator[None]:
    """Whole-stage codegen off for the view's query, then the session's setting back. The compiled views are
    mostly higher-order functions (`transform`, `filter`) that Spark evaluates without generated code anyway;
    generating and compiling Java for the rest costs about 2 s on a fresh session and saves nothing measurable."""
    key = "spark.sql.codegen.wholeStage"
    previous = spark.conf.get(key)
    spark.conf.set(key, "false")
    try:
        yield
    finally:
        spark.conf.set(key, previous)


def _text_frame(spark: Any, paths: list[str]) -> Any:
    return spark.read.text(paths).where("trim(value) <> ''")


def _parquet_frame(spark: Any, paths: list[str], resource_type: str) -> Any:
    frame = spark.read.parquet(*paths)
    if "resource" not in frame.columns:
        raise sources.SourceError(paths[0], "a Parquet input needs a `resource` column holding each resource's JSON")
    if "resourceType" in frame.columns:
        frame = frame.where(frame["resourceType"] == resource_type)
    return frame.selectExpr("CAST(resource AS STRING) AS value")


def _write_ndjson(directory: Path, resources: Iterable[dict[str, Any]]) -> str:
    path = directory / "resources.ndjson"
    with open(path, "wb") as out:
        for resource in sources.iter_resources(resources):
            out.write(orjson.dumps(resource))
            out.write(b"\n")
    return os.fspath(path)


def _spark_message(error: Exception) -> str:
    return str(error).split("\n", 1)[0]
