"""`sante analytics view`: run a SQL on FHIR ViewDefinition over files or a Sante server, write CSV or Parquet.

    sante analytics view VIEW.json --source PATH_OR_URL [--token T] [--engine memory|duckdb|spark] --out FILE

`--source` is an NDJSON / Bundle / JSON file, a directory of them, or the FHIR base URL of a Sante server (its
Bulk Data `$export` is run for the view's resource type, with `--token`). Columns are written in view order;
in CSV, collection values are JSON arrays and booleans `true`/`false`; Parquet columns get the declared types.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sante.analytics.views import ENGINES

OUTPUT_FORMATS = (".csv", ".parquet")


def add_analytics_commands(sub: Any) -> None:
    """Register `sante analytics view ...` on the top-level sub-parsers."""
    a = sub.add_parser("analytics", help="analytics over FHIR data (SQL on FHIR views)")
    asub = a.add_subparsers(dest="action", required=True)
    v = asub.add_parser("view", help="run a SQL on FHIR ViewDefinition and write its rows (CSV or Parquet)")
    v.add_argument("view", help="the ViewDefinition (JSON file)")
    v.add_argument("--source", required=True, help="NDJSON/Bundle/JSON file, directory, or a Sante FHIR base URL")
    v.add_argument("--token", help="bearer token for a server source (Bulk Data export permission)")
    v.add_argument("--engine", default="memory", choices=list(ENGINES), help="engine (default memory)")
    v.add_argument("--out", required=True, help="output file: .csv or .parquet")
    v.set_defaults(func=cmd_view)


def cmd_view(args: argparse.Namespace) -> int:
    from sante.analytics.viewdef import parse_view
    from sante.analytics.views import run_view
    from sante.cli import CliError

    out = Path(args.out)
    if out.suffix.lower() not in OUTPUT_FORMATS:
        raise CliError(f"--out {out}: the output must end in .csv or .parquet")
    download_dir: Path | None = None
    try:
        view = parse_view(_read_view(Path(args.view)))
        source: Any = args.source
        if _is_url(args.source):
            from sante.analytics.sources import from_server

            download_dir = Path(tempfile.mkdtemp(prefix="sante-export-"))
            source = from_server(args.source, args.token, [view.resource], directory=download_dir)
        rows = run_view(view, source, engine=args.engine)
        write_rows(out, view.column_names, [c.type for c in _columns(view)], rows)
    except (ValueError, OSError, RuntimeError, ImportError) as e:
        raise CliError(_one_line(e)) from None
    finally:
        if download_dir is not None:
            shutil.rmtree(download_dir, ignore_errors=True)
    print(f"{len(rows)} rows, {len(view.column_names)} columns -> {out}")
    return 0


def write_rows(out: Path, names: Sequence[str], types: Sequence[str | None], rows: list[dict[str, Any]]) -> None:
    """Write rows as CSV or Parquet (by the file's suffix), columns in the given order."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".parquet":
        _write_parquet(out, names, types, rows)
    else:
        _write_csv(out, names, rows)


def _write_csv(out: Path, names: Sequence[str], rows: list[dict[str, Any]]) -> None:
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(names)
        for row in rows:
            writer.writerow([_csv_cell(row.get(n)) for n in names])


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


_ARROW_TYPES = {
    "boolean": "bool_", "integer": "int64", "integer64": "int64", "positiveInt": "int64", "unsignedInt": "int64",
    "decimal": "float64",
}  # fmt: skip


def _write_parquet(out: Path, names: Sequence[str], types: Sequence[str | None], rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    arrays = []
    for name, fhir_type in zip(names, types, strict=True):
        values = [row.get(name) for row in rows]
        arrow_type = getattr(pa, _ARROW_TYPES.get(fhir_type or "", "string"))()
        if arrow_type == pa.string():  # text columns keep their JSON text (dates keep their precision)
            values = [_as_text(v) for v in values]
        if any(isinstance(v, list) for v in values):
            arrow_type = pa.list_(arrow_type)
        elif fhir_type is None:
            arrow_type = None  # undeclared: let Arrow infer it from the values
        try:
            arrays.append(pa.array(values, type=arrow_type))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise ValueError(f"column {name!r} ({fhir_type or 'no type'}): values do not fit Parquet: {e}") from e
    pq.write_table(pa.Table.from_arrays(arrays, names=list(names)), out)


def _as_text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        return [_as_text(v) for v in value]
    return _csv_cell(value)


def _columns(view: Any) -> list[Any]:
    """The view's Column objects in output order (unionAll: the first branch's)."""
    found: dict[str, Any] = {}

    def walk(selects: Sequence[Any]) -> None:
        for s in selects:
            for c in s.columns:
                found.setdefault(c.name, c)
            walk(s.selects)
            walk(s.union_all[:1])

    walk(view.select)
    return [found[n] for n in view.column_names]


def _read_view(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
