from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

SHARED = Path(__file__).resolve().parents[3] / "shared"
FP_INPUTS = SHARED / "conformance" / "fhirpath" / "json"


def _load(name: str) -> Any:
    path = FP_INPUTS / name
    if not path.exists():
        pytest.skip("shared conformance data not present")
    return json.loads(path.read_text(), parse_float=Decimal)


@pytest.fixture
def patient() -> dict[str, Any]:
    return _load("patient-example.json")


@pytest.fixture
def observation() -> dict[str, Any]:
    return _load("observation-example.json")


@pytest.fixture
def questionnaire() -> dict[str, Any]:
    return _load("questionnaire-example.json")
