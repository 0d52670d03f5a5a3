"""compile_many(): one function per resource type for many expressions, equal to compile() one by one."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sante.fhir.model import r4, search_parameters
from sante.fhirpath import FHIRPathError, compile, compile_many
from sante.fhirpath.compiler import Compiler
from sante.fhirpath.parser import parse

SYNTHEA = Path(__file__).resolve().parents[3] / "shared" / "data" / "synthea-r4"


def _outcome(fn: Any, resource: Any) -> Any:
    try:
        return fn(resource)
    except FHIRPathError as e:
        return ("error", str(e))


def _slot(value: Any) -> Any:
    return ("error", str(value)) if isinstance(value, Exception) else value


@pytest.fixture(scope="module")
def synthea_sample() -> list[dict[str, Any]]:
    files = sorted(SYNTHEA.glob("*.json.gz"))
    if not files:
        pytest.skip("shared Synthea data not present")
    out: list[dict[str, Any]] = []
    for f in files[:: max(1, len(files) // 3)][:3]:
        bundle = json.loads(gzip.decompress(f.read_bytes()))
        by_type: dict[str, int] = {}
        for e in bundle.get("entry", ()):
            r = e.get("resource")
            if r is None or by_type.get(r["resourceType"], 0) >= 8:
                continue
            by_type[r["resourceType"]] = by_type.get(r["resourceType"], 0) + 1
            out.append(r)
    return out


def test_compile_many_equals_compile_on_every_search_parameter(synthea_sample: list[dict[str, Any]]) -> None:
    model = r4()
    params = [p for p in search_parameters() if p.get("expression")]
    checked = 0
    for rtype in sorted({r["resourceType"] for r in synthea_sample}):
        ancestors = set(model.ancestors(rtype))
        exprs = [p["expression"] for p in params if ancestors.intersection(p.get("base", ()))]
        many = compile_many(exprs)
        singles = [compile(e) for e in exprs]
        for resource in (r for r in synthea_sample if r["resourceType"] == rtype):
            got = [_slot(v) for v in many(resource)]
            want = [_outcome(fn, resource) for fn in singles]
            assert got == want, rtype
            checked += len(exprs)
    assert checked > 1000


def test_all_r4_search_parameters_on_their_base_types() -> None:
    """Every search-parameter expression compiles for every type it names, alone and together."""
    by_type: dict[str, list[str]] = {}
    for p in search_parameters():
        if p.get("expression"):
            for base in p.get("base", ()):
                by_type.setdefault(base, []).append(p["expression"])
    for rtype, exprs in by_type.items():
        resource = {"resourceType": rtype, "id": "x", "meta": {"lastUpdated": "2020-01-01T00:00:00Z"}}
        got = [_slot(v) for v in compile_many(exprs)(resource)]
        assert got == [_outcome(compile(e), resource) for e in exprs], rtype


def test_errors_are_isolated_per_expression() -> None:
    fn = compile_many(["Patient.name.given", "Patient.name.given.single()", "Patient.gender", "1 / 0"])
    patient = {"resourceType": "Patient", "gender": "male", "name": [{"given": ["Ana", "Bo"]}]}
    given, single, gender, div = fn(patient)
    assert given == ["Ana", "Bo"]
    assert isinstance(single, FHIRPathError) and "single" in str(single)
    assert gender == ["male"]
    assert div == []
    with pytest.raises(FHIRPathError):
        compile("Patient.name.given.single()")(patient)


def test_choice_key_error_stays_in_its_slot() -> None:
    fn = compile_many(["Observation.valueQuantity", "Observation.status"])
    bad, status = fn({"resourceType": "Observation", "status": "final"})
    assert isinstance(bad, FHIRPathError)
    assert status == ["final"]


def test_shared_navigation_is_computed_once_and_failures_fall_back() -> None:
    exprs = ["Observation.subject", "Observation.subject.reference", "Observation.effective"]
    fn = compile_many(exprs)
    obs = {"resourceType": "Observation", "subject": {"reference": "Patient/1"}, "effectiveDateTime": "2020"}
    assert fn(obs) == [compile(e)(obs) for e in exprs]
    impl = Compiler("", "Observation", False).build_many(exprs, [parse(e) for e in exprs], lambda r, v=None: [])
    assert impl.__doc__.count("R.get('subject')") == 1  # hoisted: one read for both expressions
    # A malformed date fails inside the shared part: the slow path still isolates it.
    broken = dict(obs, effectiveDateTime="not a date")
    got = [_slot(v) for v in fn(broken)]
    assert got == [_outcome(compile(e), broken) for e in exprs]


def test_variables_and_other_types() -> None:
    fn = compile_many(["%x + 1", "name.given", "Patient.gender", "1 + 1"])
    assert fn({"resourceType": "Patient", "gender": "female"}, {"x": 2}) == [[3], [], ["female"], [2]]
    assert fn({"resourceType": "Observation"}, {"x": 1}) == [[2], [], [], [2]]
    assert fn({"name": [{"given": ["A"]}]}, {"x": Decimal("0.5")}) == [[Decimal("1.5")], ["A"], [], [2]]
    with pytest.raises(FHIRPathError):
        compile_many(["Patient.name.", "1"])
