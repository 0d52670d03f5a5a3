"""The official FHIRPath R4 suite, through the same runner as bench/fhirpath_conformance.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fhirpath_conformance.py"


def _runner():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("fhirpath_conformance", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_official_suite_passes_at_least_920() -> None:
    runner = _runner()
    if not Path(runner.DEFAULT_SUITE).exists():
        pytest.skip("shared conformance data not present")
    results = runner.run_suite(runner.DEFAULT_SUITE)
    assert len(results) == 935
    failed = [
        f"{r.name}: {r.expression!r} expected {r.expected} got {r.got}" for r in results if not r.passed
    ]
    assert len(results) - len(failed) >= runner.THRESHOLD, "\n".join(failed)
