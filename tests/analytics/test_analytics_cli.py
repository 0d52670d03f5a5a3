"""`sante analytics view`: CSV and Parquet out in view order, sources as files, and one-line errors (exit 2)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from sante.cli import main

RESOURCES = [
    {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1980-05", "active": True,
     "name": [{"family": "Nguyen", "given": ["Thi", "Lan"]}]},
    {"resourceType": "Patient", "id": "p2", "gender": "male", "active": False},
    {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}},
]
VIEW = {"resourceType": "ViewDefinition", "resource": "Patient", "select": [
    {"column": [{"name": "id", "path": "getResourceKey()", "type": "id"},
                {"name": "active", "path": "active", "type": "boolean"},
                {"name": "born", "path": "birthDate", "type": "date"},
                {"name": "n_names", "path": "name.count()", "type": "integer"}]},
    {"forEachOrNull": "name", "column": [{"name": "family", "path": "family", "type": "string"},
                                         {"name": "given", "path": "given", "type": "string", "collection": True}]},
]}


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    view = tmp_path / "view.json"
    view.write_text(json.dumps(VIEW))
    data = tmp_path / "data.ndjson"
    data.write_text("".join(json.dumps(r) + "\n" for r in RESOURCES))
    return view, data


def _run(*args: Any) -> int:
    return main(["analytics", "view", *map(str, args)])


def test_csv_out_in_view_order(files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    view, data = files
    out = tmp_path / "out" / "patients.csv"
    assert _run(view, "--source", data, "--out", out) == 0
    assert "2 rows, 6 columns" in capsys.readouterr().out
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows == [
        ["id", "active", "born", "n_names", "family", "given"],
        ["p1", "true", "1980-05", "1", "Nguyen", '["Thi", "Lan"]'],
        ["p2", "false", "", "0", "", "[]"],  # forEachOrNull over nothing: an empty collection
    ]


def test_parquet_out_with_declared_types(files: tuple[Path, Path], tmp_path: Path) -> None:
    view, data = files
    out = tmp_path / "patients.parquet"
    assert _run(view, "--source", data.parent, "--engine", "memory", "--out", out) == 0
    table = pq.read_table(out)
    assert table.column_names == ["id", "active", "born", "n_names", "family", "given"]
    assert [str(t) for t in table.schema.types] == ["string", "bool", "string", "int64", "string", "list<element: string>"]
    assert table.to_pylist() == [
        {"id": "p1", "active": True, "born": "1980-05", "n_names": 1, "family": "Nguyen", "given": ["Thi", "Lan"]},
        {"id": "p2", "active": False, "born": None, "n_names": 0, "family": None, "given": []},
    ]


@pytest.mark.parametrize(("change", "message"), [
    (lambda v: v.pop("resource"), "sante: resource: required"),
    (lambda v: v["select"][0]["column"][0].update(path="name.where("), "sante: select[0].column[0].path: invalid"),
])
def test_bad_view_is_one_line(files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture,
                              change: Any, message: str) -> None:
    view, data = files
    bad = json.loads(view.read_text())
    change(bad)
    view.write_text(json.dumps(bad))
    assert _run(view, "--source", data, "--out", tmp_path / "x.csv") == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize(("args", "message"), [
    (("missing.json", "--source", "{data}", "--out", "{tmp}/x.csv"), "missing.json: no such file"),
    (("{view}", "--source", "{tmp}/nowhere", "--out", "{tmp}/x.csv"), "nowhere: no such file or directory"),
    (("{view}", "--source", "{data}", "--out", "{tmp}/x.xlsx"), "must end in .csv or .parquet"),
    (("{view}", "--source", "http://127.0.0.1:9/fhir", "--out", "{tmp}/x.csv"), "cannot reach"),
])
def test_other_errors_are_one_line(files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture,
                                   args: tuple[str, ...], message: str) -> None:
    view, data = files
    filled = [a.format(view=view, data=data, tmp=tmp_path) for a in args]
    assert _run(*filled) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_bad_ndjson_line_is_named(files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    view, data = files
    data.write_text(data.read_text() + "{oops\n")
    assert _run(view, "--source", data, "--out", tmp_path / "x.csv") == 2
    assert f"{data}:4: invalid JSON" in capsys.readouterr().err
