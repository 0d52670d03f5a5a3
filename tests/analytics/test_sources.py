"""Reading resources for views: NDJSON, .gz, Bundles, single resources, directories, and bad input named by
file and line; and a real Sante server's Bulk Data export as a source."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sante.analytics import run_view
from sante.analytics.sources import ExportError, SourceError, from_server, is_path_source, iter_resources
from tests.support.live_server import live_server

PATIENTS = [{"resourceType": "Patient", "id": f"p{i}", "gender": "female" if i % 2 else "male"} for i in range(4)]


def _ndjson(resources: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in resources)


def _ids(source: Any) -> list[str]:
    return [r["id"] for r in iter_resources(source)]


def test_ndjson_plain_and_gzip(tmp_path: Path) -> None:
    (tmp_path / "a.ndjson").write_text(_ndjson(PATIENTS[:2]) + "\n")  # a blank line is skipped
    (tmp_path / "b.ndjson.gz").write_bytes(gzip.compress(_ndjson(PATIENTS[2:]).encode()))
    assert _ids(tmp_path / "a.ndjson") == ["p0", "p1"]
    assert _ids(str(tmp_path / "b.ndjson.gz")) == ["p2", "p3"]
    assert _ids([tmp_path / "b.ndjson.gz", tmp_path / "a.ndjson"]) == ["p2", "p3", "p0", "p1"]


def test_bundle_single_resource_and_directory(tmp_path: Path) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in PATIENTS[:3]] + [{"request": {}}]}
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "bundle.json.gz").write_bytes(gzip.compress(json.dumps(bundle).encode()))
    (tmp_path / "one.json").write_text(json.dumps(PATIENTS[3]))
    (tmp_path / "notes.txt").write_text("not data")
    assert _ids(tmp_path / "sub" / "bundle.json.gz") == ["p0", "p1", "p2"]
    assert _ids(tmp_path) == ["p3", "p0", "p1", "p2"]  # one.json, then sub/bundle.json.gz: sorted, recursive


def test_real_synthea_bundles(shared_dir: Path) -> None:
    bundle = sorted((shared_dir / "data" / "synthea-r4").glob("*.json.gz"))[0]
    types = {r["resourceType"] for r in iter_resources(bundle)}
    assert {"Patient", "Observation", "Encounter"} <= types


def test_bad_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.ndjson"
    path.write_text(_ndjson(PATIENTS[:2]) + '{"resourceType": "Patient", "id": \n')
    with pytest.raises(SourceError, match=r"bad\.ndjson:3: invalid JSON") as e:
        list(iter_resources(path))
    assert e.value.location == f"{path}:3"


def test_not_a_resource_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "x.ndjson").write_text('{"id": "no type"}\n')
    with pytest.raises(SourceError, match=r"x\.ndjson:1: not a FHIR resource"):
        list(iter_resources(tmp_path / "x.ndjson"))
    (tmp_path / "y.json").write_text("[1, 2")
    with pytest.raises(SourceError, match=r"y\.json:1: invalid JSON"):
        list(iter_resources(tmp_path / "y.json"))
    with pytest.raises(SourceError, match="no such file"):
        list(iter_resources(tmp_path / "missing.ndjson"))
    with pytest.raises(SourceError, match=r"resources\[1\]"):
        list(iter_resources([PATIENTS[0], "text"]))


def test_path_sources_are_told_from_resources(tmp_path: Path) -> None:
    assert is_path_source("a.ndjson") and is_path_source([tmp_path, "b.json"])
    assert not is_path_source(PATIENTS) and not is_path_source([])


# -- a real served Sante app as source ----------------------------------------------------------------------------
@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(FHIR base URL, system token) of a real uvicorn server over a SQLite database holding a few resources."""
    from sante.api import create_app
    from sante.store import open_repository

    repo = open_repository(f"sqlite:///{tmp_path / 'sante.db'}")
    app = create_app(repo, data_dir=tmp_path)
    token = app.state.security.tokens.issue(subject="analytics-test", role="system", scopes="system/*.cruds").token
    for patient in PATIENTS:
        repo.update(dict(patient), patient["id"])
    repo.create({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                 "subject": {"reference": "Patient/p1"}})
    with live_server(app) as url:
        yield f"{url}/fhir", token
    repo.close()


def test_from_server_runs_a_bulk_export(server: tuple[str, str], tmp_path: Path) -> None:
    base, token = server
    files = from_server(base, token, ["Patient"], directory=tmp_path / "export")
    assert [f.name for f in files] == ["Patient-0.ndjson"]
    view = {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"},
                                                          {"name": "gender", "path": "gender"}]}]}
    rows = run_view(view, files)
    assert sorted(rows, key=lambda r: r["id"]) == [{"id": p["id"], "gender": p["gender"]} for p in PATIENTS]
    everything = from_server(base, token, directory=tmp_path / "all")
    assert {r["resourceType"] for r in iter_resources(everything)} >= {"Patient", "Observation"}


def test_from_server_refusals_are_errors(server: tuple[str, str], tmp_path: Path) -> None:
    base, _ = server
    with pytest.raises(ExportError, match="answered 401"):
        from_server(base, "not-a-token", directory=tmp_path)
    with pytest.raises(ExportError, match=r"answered 400.*Nope"):
        from_server(base, server[1], ["Nope"], directory=tmp_path)
    with pytest.raises(ExportError, match="cannot reach"):
        from_server("http://127.0.0.1:9/fhir", "t", directory=tmp_path)


def test_cli_reads_a_server_source(server: tuple[str, str], tmp_path: Path) -> None:
    from sante.cli import main

    base, token = server
    view = tmp_path / "view.json"
    view.write_text(json.dumps({"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]}))
    out = tmp_path / "ids.csv"
    assert main(["analytics", "view", str(view), "--source", base, "--token", token, "--out", str(out)]) == 0
    assert sorted(out.read_text().split()) == sorted(["id", *(p["id"] for p in PATIENTS)])
