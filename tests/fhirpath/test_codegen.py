"""Generated code: constant folding, unwrapping, error translation, input-free expressions."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest

from sante.fhirpath import FHIRPathError, compile
from sante.fhirpath.compiler import Compiler
from sante.fhirpath.parser import parse

PATIENT = {"resourceType": "Patient", "gender": "male", "name": [{"given": ["Ana"], "_given": [{"id": "g"}]}]}


def source(expression: str, root: str | None = "Patient") -> str:
    return Compiler(expression, root, False).build(parse(expression)).__doc__ or ""


def unfolded(expression: str) -> Any:
    Compiler.fold_constants = False
    try:
        return compile(expression)
    finally:
        Compiler.fold_constants = True


@pytest.mark.parametrize(
    "expression",
    [
        "1 + 1",
        "'12345'.endsWith('5') = true",
        "(1 | 2 | 2).count()",
        "1.type().name",
        "'2015-02-04'.convertsToDateTime()",
        "@2015-02-04 + 1 day",
        "2 'cm' * 3",
        "1.5.round()",
        "{} & 'b'",
        "(1 | 2).where($this > 1)",
        "iif(true, 'a', 'b')",
    ],
)
def test_folding_gives_the_same_results(expression: str) -> None:
    assert compile(expression)(PATIENT) == unfolded(expression)(PATIENT)


def test_literal_expressions_are_folded() -> None:
    src = source("'12345'.endsWith('5') = true and (1 + 2 = 3)")
    assert "STRF" not in src and "op_" not in src
    assert "op_" not in source("1.type().name = 'Integer'")


@pytest.mark.parametrize(
    "expression", ["now() > @2000-01-01", "today().toString()", "timeOfDay().exists()", "'a'.trace('x')"]
)
def test_non_deterministic_functions_are_not_folded(expression: str) -> None:
    src = source(expression)
    assert any(f in src for f in ("now(", "today(", "time_of_day(", "trace("))


def test_trace_still_logs_each_time(caplog: pytest.LogCaptureFixture) -> None:
    fn = compile("('a' + 'b').trace('x')")
    with caplog.at_level(logging.DEBUG, logger="sante.fhirpath"):
        fn(PATIENT)
        fn(PATIENT)
    assert len([r for r in caplog.records if "trace" in r.getMessage()]) == 2


def test_errors_are_not_folded_away() -> None:
    fn = compile("(1 | 2).single() + 1")
    with pytest.raises(FHIRPathError, match="single"):
        fn(PATIENT)
    with pytest.raises(FHIRPathError):
        compile("'a' + 1")({})
    assert "op_plus" in source("'a' + 1")


def test_folded_results_are_fresh_lists() -> None:
    fn = compile("1 + 1")
    first = fn(PATIENT)
    first.append(99)
    assert fn(PATIENT) == [2]


def test_input_free_expressions_skip_dispatch() -> None:
    fn = compile("1 + 1")
    assert "def _fp" in (fn.__doc__ or "")  # the generated function itself
    assert fn(None) == [2] and fn({"resourceType": "Observation"}) == [2] and fn(PATIENT, {"x": 1}) == [2]
    assert compile("%x + 1")(PATIENT, {"x": 1}) == [2]
    assert compile("Patient.gender")({"resourceType": "Observation"}) == []


def test_unwrapping_only_where_primitives_can_carry_extensions() -> None:
    assert "unwrap_result" in source("Patient.name.given")
    assert "unwrap_result" not in source("Patient.name.given.count()")
    assert "unwrap_result" not in source("Patient.name.given = 'Ana'")
    assert "unwrap_result" in source("+Patient.active")
    assert compile("Patient.name.given")(PATIENT) == ["Ana"]
    assert compile("Patient.name.given.first()")(PATIENT) == ["Ana"]
    assert compile("Patient.name.given | 'x'")(PATIENT) == ["Ana", "x"]


def test_runtime_errors_name_the_expression() -> None:
    with pytest.raises(FHIRPathError, match="evaluating"):
        compile("Patient.name.given.single().length() + (1 | 2).single()")(
            {"resourceType": "Patient", "name": [{"given": ["a"]}]}
        )
    with pytest.raises(FHIRPathError):
        compile("Patient.name.given + 1")(PATIENT)


def test_unused_names_are_not_set_up() -> None:
    src = source("Patient.gender")
    assert "T0 = [R]" not in src and "V = variables" not in src
    assert "T0 = [R]" in source("$this")
    assert "V = variables" in source("Patient.name.exists() and %x = 1")


def test_decimal_folding() -> None:
    assert compile("1.0 + 2.50")(None) == [Decimal("3.50")]
