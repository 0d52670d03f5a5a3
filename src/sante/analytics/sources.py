"""Where a view's resources come from: NDJSON, Bundle or single-resource JSON files (`.gz` too), directories of
them, or a Sante server's Bulk Data `$export`.

`iter_resources(source)` streams resource dicts one at a time (NDJSON line by line; a JSON file is read whole,
and a Bundle yields its entries' resources). A malformed input raises `SourceError` naming the file and line.
`from_server(base_url, token)` runs an export and returns the downloaded NDJSON files.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, cast

PathSource = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]
Source = PathSource | Iterable[Any]

_NDJSON_SUFFIXES = (".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz")
_JSON_SUFFIXES = (".json", ".json.gz")


class SourceError(ValueError):
    """An unreadable or malformed input; `location` is `file` or `file:line`."""

    def __init__(self, location: str, message: str) -> None:
        self.location = location
        super().__init__(f"{location}: {message}")


def is_path_source(source: object) -> bool:
    """True when `source` names files (a path, or a list/tuple of paths) rather than holding resources."""
    if isinstance(source, (str, os.PathLike)):
        return True
    return isinstance(source, (list, tuple)) and bool(source) and all(
        isinstance(s, (str, os.PathLike)) for s in source
    )


def resource_files(source: PathSource) -> list[Path]:
    """The data files a path source names: files as given, directories expanded (recursively, sorted)."""
    paths = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file() and _is_data_file(f)))
        elif p.is_file():
            files.append(p)
        else:
            raise SourceError(str(p), "no such file or directory")
    return files


def iter_resources(source: Source) -> Iterator[dict[str, Any]]:
    """Every resource of `source`: resource dicts (passed through), or paths to files and directories."""
    if not is_path_source(source):
        for i, resource in enumerate(cast(Iterable[Any], source)):
            if not isinstance(resource, dict):
                raise SourceError(f"resources[{i}]", f"a resource must be a JSON object, not {type(resource).__name__}")
            yield resource
        return
    for f in resource_files(cast(PathSource, source)):
        yield from iter_file(f)


def iter_file(path: Path) -> Iterator[dict[str, Any]]:
    """The resources of one file: NDJSON (`.ndjson`, `.jsonl`) or JSON (a Bundle or one resource), `.gz` or not."""
    name = path.name.lower()
    with _open_text(path) as text:
        if name.endswith(_NDJSON_SUFFIXES):
            yield from _ndjson_resources(text, str(path))
        else:
            yield from _json_resources(text, str(path))


def _open_text(path: Path) -> IO[str]:
    try:
        if path.name.lower().endswith(".gz"):
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
        return open(path, encoding="utf-8")
    except OSError as e:
        raise SourceError(str(path), f"cannot open: {e.strerror or e}") from e


def _is_data_file(path: Path) -> bool:
    return path.name.lower().endswith(_NDJSON_SUFFIXES + _JSON_SUFFIXES)


def _ndjson_resources(text: IO[str], where: str) -> Iterator[dict[str, Any]]:
    try:
        for number, line in enumerate(text, start=1):
            if not line.strip():
                continue
            try:
                resource = json.loads(line)
            except json.JSONDecodeError as e:
                raise SourceError(f"{where}:{number}", f"invalid JSON: {e.msg} (column {e.colno})") from e
            yield _checked_resource(resource, f"{where}:{number}")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise SourceError(where, f"cannot read: {e}") from e


def _json_resources(text: IO[str], where: str) -> Iterator[dict[str, Any]]:
    try:
        document = json.load(text)
    except json.JSONDecodeError as e:
        raise SourceError(f"{where}:{e.lineno}", f"invalid JSON: {e.msg} (column {e.colno})") from e
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise SourceError(where, f"cannot read: {e}") from e
    resource = _checked_resource(document, where)
    if resource["resourceType"] != "Bundle":
        yield resource
        return
    for i, entry in enumerate(resource.get("entry") or []):
        inner = entry.get("resource") if isinstance(entry, dict) else None
        if inner is not None:
            yield _checked_resource(inner, f"{where}: entry[{i}]")


def _checked_resource(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise SourceError(where, "not a FHIR resource (a JSON object with resourceType)")
    return value


# -- a Sante server's Bulk Data export --------------------------------------------------------------------------
class ExportError(RuntimeError):
    """The server refused or failed the Bulk Data export."""


def from_server(
    base_url: str,
    token: str | None,
    types: Iterable[str] | None = None,
    *,
    directory: str | os.PathLike[str] | None = None,
    timeout: float = 600.0,
) -> list[Path]:
    """Run `GET {base_url}/$export` (Prefer: respond-async), poll until done and download every NDJSON file.

    Returns the downloaded files (in `directory`, a new temporary one by default), one per output of the
    manifest, named `TYPE-N.ndjson`; pass them to `run_view` or `iter_resources`.
    """
    base = base_url.rstrip("/")
    query = urllib.parse.urlencode({"_type": ",".join(types)}) if types else ""
    kickoff = f"{base}/$export" + (f"?{query}" if query else "")
    status, headers, body = _request(kickoff, token, {"Prefer": "respond-async", "Accept": "application/fhir+json"})
    location = headers.get("content-location")
    if status != 202 or not location:
        raise ExportError(f"$export kick-off at {kickoff} answered {status}: {_outcome_text(body)}")
    manifest = _poll(location, token, time.monotonic() + timeout)
    out_dir = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="sante-export-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    return [_download(o, i, out_dir, token) for i, o in enumerate(manifest.get("output", []))]


def _poll(location: str, token: str | None, deadline: float) -> dict[str, Any]:
    while True:
        status, headers, body = _request(location, token, {"Accept": "application/json"})
        if status == 200:
            return json.loads(body)
        if status != 202:
            raise ExportError(f"export status {location} answered {status}: {_outcome_text(body)}")
        if time.monotonic() > deadline:
            raise ExportError(f"export at {location} did not finish in time")
        time.sleep(min(float(headers.get("retry-after") or 1), 5.0) / 5)


def _download(output: dict[str, Any], number: int, out_dir: Path, token: str | None) -> Path:
    rtype = str(output.get("type", "Resource"))
    target = out_dir / f"{rtype}-{number}.ndjson"
    status, _, body = _request(str(output["url"]), token, {"Accept": "application/fhir+ndjson"})
    if status != 200:
        raise ExportError(f"export file {output['url']} answered {status}: {_outcome_text(body)}")
    target.write_bytes(body)
    return target


def _request(url: str, token: str | None, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of a GET; HTTP error statuses are returned, unreachable
    servers raise ExportError."""
    if token:
        headers = {**headers, "Authorization": f"Bearer {token}"}
    request = urllib.request.Request(url, headers=headers, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, _lower(response.headers.items()), response.read()
    except urllib.error.HTTPError as e:
        return e.code, _lower(e.headers.items()), e.read()
    except (urllib.error.URLError, OSError) as e:
        raise ExportError(f"cannot reach {url}: {getattr(e, 'reason', e)}") from e


def _lower(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def _outcome_text(body: bytes) -> str:
    """The diagnostics of an OperationOutcome body, or the body's start."""
    try:
        outcome = json.loads(body)
        return "; ".join(str(i.get("diagnostics", "")) for i in outcome.get("issue", [])) or body[:200].decode()
    except (ValueError, AttributeError):
        return body[:200].decode(errors="replace")
