"""The peers of bench/sof_speed.py, each run by its own virtual environment's python (never imports sante).

    PEER_PYTHON bench/_sof_peers.py fhir4ds|pathling SPEC.json OUT_DIR

SPEC.json holds {"files": {TYPE: NDJSON path}, "views": {TYPE: ViewDefinition}, "pathling": {TYPE: [[name,
Spark SQL expression], ...]}}. The peer loads the files and runs each view (fhir4ds: the ViewDefinition;
Pathling 5.4, whose library has no FHIRPath query API: its encoder, then the same columns as Spark SQL over the
encoded resources), writes the rows to OUT_DIR/TYPE.jsonl and prints one JSON line of timings:
{"startup_s", "load_s", "views": {TYPE: {"seconds", "rows"}}}. Loading and every query are timed; the start-up
(Spark's, or an empty database) is reported apart.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def run_fhir4ds(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """fhir4ds on an in-memory DuckDB: resources loaded with its bulk loader, then each ViewDefinition."""
    import logging

    logging.disable(logging.WARNING)  # its loaders log every batch
    from fhir4ds.datastore import QuickConnect

    started = time.perf_counter()
    db = QuickConnect.memory()
    startup = time.perf_counter() - started
    started = time.perf_counter()
    for path in spec["files"].values():
        with open(path, encoding="utf-8") as f:
            db.load_resources([json.loads(line) for line in f if line.strip()])  # its documented bulk loader
    load = time.perf_counter() - started
    views = {}
    for rtype, view in spec["views"].items():
        started = time.perf_counter()
        result = db.execute(view)
        rows = _fhir4ds_rows(result)
        views[rtype] = {"seconds": time.perf_counter() - started, "rows": len(rows)}
        _write_rows(out / f"{rtype}.jsonl", rows)
    return {"startup_s": startup, "load_s": load, "views": views}


def _fhir4ds_rows(result: Any) -> list[dict[str, Any]]:
    """A fhir4ds QueryResult (or a list / DataFrame, depending on the version) as a list of dicts."""
    if hasattr(result, "to_dicts"):
        return list(result.to_dicts())
    if hasattr(result, "fetchall") and hasattr(result, "description"):
        names = [d[0] for d in result.description]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]
    if hasattr(result, "to_dict"):
        return list(result.to_dict("records"))
    return list(result)


def run_pathling(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """Pathling 5.4 on a local Spark (2 cores). Its library has no query API (only encoders and terminology
    functions), so each view is its encoder (NDJSON -> typed Spark rows) plus the same columns as Spark SQL."""
    from pathling import PathlingContext
    from pathling.etc import find_jar
    from pyspark.sql import SparkSession

    started = time.perf_counter()
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.jars", find_jar())
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "8g")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    pc = PathlingContext.create(spark)
    startup = time.perf_counter() - started
    views = {}
    for rtype, columns in spec["pathling"].items():
        started = time.perf_counter()
        encoded = pc.encode(spark.read.text(str(spec["files"][rtype])), rtype)
        expressions = sorted({column[1] for column in columns})
        frame = encoded.selectExpr(*[f"{e} AS c{i}" for i, e in enumerate(expressions)])
        rows = [_pathling_row(row, columns, expressions) for row in frame.collect()]
        views[rtype] = {"seconds": time.perf_counter() - started, "rows": len(rows)}
        _write_rows(out / f"{rtype}.jsonl", rows)
    spark.stop()
    return {"startup_s": startup, "load_s": 0.0, "views": views}


def _pathling_row(row: Any, columns: list[list[str]], expressions: list[str]) -> dict[str, Any]:
    """A view row from the selected expressions; [name, expression, field] reads a field of a struct column.

    Pathling 5.4 on Spark 3.3 fails to plan a field of its encoded Quantity (`valueQuantity.value`: "All input
    types must be the same"), so such structs are selected whole and the field is read here."""
    out: dict[str, Any] = {}
    for name, expression, *field in columns:
        value = row[f"c{expressions.index(expression)}"]
        out[name] = (value[field[0]] if value is not None else None) if field else value
    return out


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, default=str) + "\n")


def main() -> int:
    peer, spec_path, out_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    out_dir.mkdir(parents=True, exist_ok=True)
    runner = {"fhir4ds": run_fhir4ds, "pathling": run_pathling}[peer]
    print(json.dumps(runner(spec, out_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
