"""The `sante` command line: thin wrappers over the library; every failure is one line on stderr."""

from __future__ import annotations

import argparse
import gzip
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def read_json_file(path: Path) -> Any:
    """Parse a JSON file, gzip-compressed when its name ends in .gz."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        return orjson.loads(raw)
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except (orjson.JSONDecodeError, gzip.BadGzipFile, EOFError) as e:
        raise CliError(f"{path}: not valid JSON ({e})") from None


def json_files(paths: list[str]) -> Iterator[Path]:
    """The .json / .json.gz / .ndjson files named, folders searched recursively in name order."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(
                f for f in p.rglob("*") if f.is_file() and f.name.endswith((".json", ".json.gz", ".ndjson"))
            )
        elif p.exists():
            yield p
        else:
            raise CliError(f"{p}: no such file or folder")


def resources_in(path: Path) -> Iterator[tuple[str, Any]]:
    """(location, resource) for each resource in a file: a resource, a Bundle's entries, or NDJSON lines."""
    if path.name.endswith(".ndjson"):
        for n, line in enumerate(path.read_bytes().splitlines(), 1):
            if line.strip():
                try:
                    yield f"{path}:{n}", orjson.loads(line)
                except orjson.JSONDecodeError as e:
                    raise CliError(f"{path}:{n}: not valid JSON ({e})") from None
        return
    doc = read_json_file(path)
    yield str(path), doc


def cmd_validate(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from sante.fhir.validate import validate

    files = list(json_files(args.paths))
    total = invalid = 0
    shown = 0
    with Progress(transient=True) as progress:
        task = progress.add_task("Validating", total=len(files))
        for f in files:
            for where, resource in resources_in(f):
                total += 1
                issues = validate(resource)
                errors = [i for i in issues if i.severity in ("error", "fatal")]
                if errors:
                    invalid += 1
                    for i in errors:
                        if shown < args.max_errors:
                            progress.console.print(f"{where}: {i.location}: {i.message}", markup=False)
                        shown += 1
            progress.advance(task)
    print(f"{total} resources in {len(files)} files: {total - invalid} valid, {invalid} invalid")
    return 1 if invalid else 0


def cmd_fhirpath(args: argparse.Namespace) -> int:
    from sante import fhirpath

    resource = read_json_file(Path(args.file)) if args.file else {}
    try:
        result = fhirpath.evaluate(resource, args.expression)
    except fhirpath.FHIRPathError as e:
        raise CliError(str(e)) from None
    for item in result:
        if isinstance(item, (dict, list)):
            print(orjson.dumps(item, option=orjson.OPT_INDENT_2).decode())
        else:
            print(item)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from sante.settings import Settings
    from sante.store import open_repository

    settings = Settings.from_env()
    open_repository(settings.database_url).close()  # create / migrate once, before the workers start
    print(f"Sante FHIR API on http://{args.host}:{args.port}/fhir (database: {settings.database_url})")
    uvicorn.run("sante.api.factory:app", factory=True, host=args.host, port=args.port, workers=args.workers,
                log_level="warning")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sante.settings import Settings
    from sante.store import open_repository
    from sante.store.loader import fhir_files, load_paths

    paths = [Path(p) for p in args.paths]
    for p in paths:
        if not p.exists():
            raise CliError(f"{p}: no such file or folder")
    settings = Settings.from_env()
    repo = open_repository(settings.database_url)
    total = len(fhir_files(paths))
    columns = (TextColumn("Loading"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[res]} resources"),
               TimeElapsedColumn())
    with Progress(*columns) as progress:
        task = progress.add_task("load", total=total, res=0)
        count = 0

        def advance(_f: Path, written: int, _failed: bool) -> None:
            nonlocal count
            count += written
            progress.update(task, advance=1, res=count)

        summary = load_paths(repo, paths, advance)
    for failure in summary.failures[: args.max_errors]:
        print(failure, file=sys.stderr)
    print(f"loaded {summary.resources} resources from {summary.files} files; {len(summary.failures)} failed")
    return 1 if summary.failures else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sante", description="Sante smart-hospital platform")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="validate FHIR R4 resources (files, Bundles, NDJSON, folders)")
    v.add_argument("paths", nargs="+", help="files or folders (.json, .json.gz, .ndjson)")
    v.add_argument("--max-errors", type=int, default=50, help="errors printed at most (default 50)")
    v.set_defaults(func=cmd_validate)

    f = sub.add_parser("fhirpath", help="evaluate a FHIRPath expression on a resource")
    f.add_argument("expression")
    f.add_argument("file", nargs="?", help="a FHIR JSON resource (.json or .json.gz)")
    f.set_defaults(func=cmd_fhirpath)

    ld = sub.add_parser("load", help="load FHIR files, Bundles, NDJSON or folders into the database")
    ld.add_argument("paths", nargs="+")
    ld.add_argument("--max-errors", type=int, default=50)
    ld.set_defaults(func=cmd_load)

    s = sub.add_parser("serve", help="serve the FHIR API (database from SANTE_DATABASE_URL / SANTE_DATA_DIR)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    s.set_defaults(func=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as e:
        print(f"sante: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
