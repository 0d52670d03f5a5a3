"""The command line: results on stdout, one line on stderr for anything wrong, exit status to match."""

from __future__ import annotations

import orjson
import pytest

from sante.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_reports_each_invalid_resource(capsys, tmp_path):
    (tmp_path / "good.json").write_bytes(orjson.dumps({"resourceType": "Patient", "gender": "female"}))
    (tmp_path / "bad.json").write_bytes(orjson.dumps({"resourceType": "Patient", "gender": "xyz"}))
    code, out, _ = run(capsys, "validate", str(tmp_path))
    assert code == 1
    assert "Patient.gender" in out and "2 resources in 2 files: 1 valid, 1 invalid" in out


@pytest.mark.parametrize("argv,needle", [
    (["validate", "/no/such/file.json"], "no such file"),
    (["fhirpath", "Patient.name.(", "-"], "no such file"),
])
def test_bad_input_is_one_line(capsys, argv, needle):
    code, _, err = run(capsys, *argv)
    assert code == 2 and needle in err and err.count("\n") == 1


def test_fhirpath_syntax_error_is_one_line_with_position(capsys, tmp_path):
    f = tmp_path / "p.json"
    f.write_bytes(orjson.dumps({"resourceType": "Patient", "name": [{"family": "Võ"}]}))
    code, out, _ = run(capsys, "fhirpath", "Patient.name.family", str(f))
    assert code == 0 and out.strip() == "Võ"
    code, _, err = run(capsys, "fhirpath", "Patient.name.where(", str(f))
    assert code == 2 and err.startswith("sante: ") and "column" in err and err.count("\n") == 1


def test_load_then_summary(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SANTE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SANTE_DATABASE_URL", raising=False)
    src = tmp_path / "in"
    src.mkdir()
    (src / "p.json").write_bytes(orjson.dumps({"resourceType": "Patient", "id": "x1"}))
    (src / "q.json").write_bytes(b"{broken")
    code, out, err = run(capsys, "load", str(src))
    assert code == 1
    assert "loaded 1 resources from 2 files; 1 failed" in out
    assert "q.json" in err
