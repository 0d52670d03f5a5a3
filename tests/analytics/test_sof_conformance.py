"""The official SQL on FHIR v2 suite (134 cases) on every engine, through bench/sof_conformance.py's rules.

A missing engine module fails its cases (never a silent skip): the suite is the contract the engines meet.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "sof_conformance.py"


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("sof_conformance", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("sof_conformance", module)
    spec.loader.exec_module(module)
    return module


sof = _bench()
if not sof.DEFAULT_SUITE.is_dir():
    pytest.skip("../shared (the SQL on FHIR suite) is not present", allow_module_level=True)
CASES = sof.load_cases()


def test_the_suite_is_complete() -> None:
    assert len(CASES) == 134
    assert len({c.file for c in CASES}) == 22


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_memory(case: Any) -> None:
    outcome = sof.run_case(case, "memory")
    assert outcome.passed, outcome.error


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_duckdb(case: Any) -> None:
    outcome = sof.run_case(case, "duckdb")
    assert outcome.passed, outcome.error


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_spark(case: Any, spark: Any) -> None:
    outcome = sof.run_case(case, "spark")
    assert outcome.passed, outcome.error


def test_comparison_rules() -> None:
    """Numbers compare by value, booleans are not numbers, rows are a multiset, columns must match exactly."""
    assert sof.compare_rows([{"a": 5}, {"a": 0.95}], [{"a": 0.950}, {"a": 5.0}]).passed
    assert not sof.compare_rows([{"a": True}], [{"a": 1}]).passed
    assert not sof.compare_rows([{"a": 1}, {"a": 1}], [{"a": 1}]).passed
    assert not sof.compare_rows([{"a": 1, "b": None}], [{"a": 1}]).passed
    assert sof.compare_rows([{"v": ["x", "y"]}], [{"v": ["x", "y"]}]).passed
    assert not sof.compare_rows([{"v": ["y", "x"]}], [{"v": ["x", "y"]}]).passed


def test_report_follows_the_suite_schema(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    assert sof.main(["--engine", "memory", "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert set(data) == {c.file for c in CASES}
    tests = [t for f in data.values() for t in f["tests"]]
    assert len(tests) == 134 and all(t["result"]["passed"] is True for t in tests)
    assert all(set(t) == {"name", "result"} for t in tests)
