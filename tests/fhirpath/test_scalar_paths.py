"""Typed fast paths: operators and functions over values of statically known type become plain Python.

Every case is evaluated three ways, all without constant folding (which would hide the generated code): with the
fast paths, without them (the generic `op_*`/`fn_*` helpers over lists), and with folding as shipped; the results
must be identical, types and Decimal precision included.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sante.fhirpath import FHIRPathError, compile
from sante.fhirpath.compiler import Compiler
from sante.fhirpath.parser import parse

PATIENT = {
    "resourceType": "Patient",
    "gender": "male",
    "birthDate": "1974-12-25",
    "name": [{"use": "official", "given": ["Ana", "Bo"]}, {"use": "nickname", "given": ["Jim"]}],
}


def _run(expression: str, fold: bool, fast: bool) -> Any:
    saved = Compiler.fold_constants, Compiler.scalar_fast_paths
    Compiler.fold_constants, Compiler.scalar_fast_paths = fold, fast
    try:
        return _typed(compile(expression)(PATIENT))
    except FHIRPathError as e:
        return ("error", type(e).__name__)
    finally:
        Compiler.fold_constants, Compiler.scalar_fast_paths = saved


def _typed(result: list[Any]) -> list[tuple[str, str]]:
    return [(type(x).__name__, str(x)) for x in result]


def source(expression: str, fast: bool = True) -> str:
    saved = Compiler.fold_constants, Compiler.scalar_fast_paths
    Compiler.fold_constants, Compiler.scalar_fast_paths = False, fast
    try:
        return Compiler(expression, "Patient", False).build(parse(expression)).__doc__ or ""
    finally:
        Compiler.fold_constants, Compiler.scalar_fast_paths = saved


def _cases() -> Iterator[str]:
    values = [
        "1",
        "2",
        "0",
        "-3",
        "1.0",
        "1.50",
        "2.5",
        "'a'",
        "'A'",
        "' a  B'",
        "true",
        "false",
        "{}",
        "(1/0)",
    ]
    ops = ["=", "!=", "~", "!~", "<", "<=", ">", ">=", "+", "-", "*", "/", "div", "mod", "&"]
    ops += ["and", "or", "xor", "implies"]
    for op in ops:
        for a in values:
            for b in values:
                yield f"{a} {op} {b}"


EDGE = [
    # integer division and modulo: truncation towards zero, the dividend's sign, zero divisors
    "7 div 2",
    "-7 div 2",
    "7 div -2",
    "7.5 div 2",
    "-7.5 div 2",
    "7 mod -2",
    "-7 mod 2",
    "7.5 mod 2",
    "-7.5 mod 2",
    "5 div 0",
    "5 mod 0",
    "5.0 / 0",
    "1 / 3",
    "2 / 2",
    # Decimal precision is kept
    "1.10 + 2",
    "1.5 * 2",
    "0.1 + 0.2 = 0.3",
    "1.0 = 1.00",
    "1.0 ~ 1.04",
    "1.2 ~ 1.24",
    "1 ~ 1.4",
    # strings: = is exact, ~ folds case and whitespace
    "'abc' = 'ABC'",
    "'abc' ~ 'ABC'",
    "'a b' ~ 'a   b'",
    "'a' < 'b'",
    "'B' < 'a'",
    # types that never take a fast path: errors and precision stay the helpers'
    "'a' < 1",
    "1 + 'a'",
    "true + 1",
    "true < false",
    "1 = true",
    "@2012-04-15T15:30:31 = @2012-04-15T15:30:31.1",
    "@2012-04-15 < @2012-04-15T10:00",
    "@2012-04 = @2012-04-15",
    "@T10:30 > @T10:30:00",
    "1 'cm' = 1 'cm'",
    # functions
    "'abc'.length() + 1",
    "'abc'.upper() = 'ABC'",
    "' x '.trim().lower()",
    "'abc'.startsWith('') and 'abc'.endsWith('c')",
    "'abc'.contains('b')",
    "'abc'.replace('b', 'x')",
    "'abc'.replace('', 'x')",
    "'a'.toInteger()",
    "'12'.toInteger() + 1",
    "'1.50'.toDecimal()",
    "true.toInteger()",
    "1.toString()",
    "1.5.toString()",
    "'yes'.toBoolean()",
    "'x'.convertsToInteger()",
    "1.convertsToBoolean()",
    "(-1.5).ceiling()",
    "(-1.5).floor()",
    "(-1.5).truncate()",
    "(-1.5).abs()",
    "(-2).abs()",
    "-(1.50)",
    "+2",
    "true.not()",
    "{}.not()",
    "(1 > 2).not()",
    "1.not()",
    "{}.exists()",
    "(1 | 2).count()",
    "(1 | 2).first()",
    "(1 | 2).last()",
    "(1 | 2).tail()",
    "{}.empty()",
    "(1 | 2).where($this > 1)",
    "(1 | 2 | 3).where($this > 1 and {})",
    "(1 | 2).exists($this = 2)",
    "(1 | 2).all($this < 3)",
    "iif(1 > 2, 'a', 'b')",
    "iif({} and true, 'a', 'b')",
    "iif('x', 'a', 'b')",
    # navigation (values read from data never take a scalar form)
    "Patient.gender = 'male'",
    "Patient.name.given.first() = 'Ana'",
    "Patient.name.where(use = 'nickname').given.count() = 1",
    "Patient.name.exists(use = 'nickname')",
    "Patient.birthDate < @2000-01-01",
    "Patient.name.given.count() > 1 and Patient.gender.exists()",
    "Patient.name.given.length()",
]


@pytest.mark.parametrize("expression", [*_cases(), *EDGE])
def test_fast_paths_match_the_generic_helpers(expression: str) -> None:
    fast = _run(expression, fold=False, fast=True)
    assert fast == _run(expression, fold=False, fast=False)
    assert fast == _run(expression, fold=True, fast=True)


@pytest.mark.parametrize(
    ("expression", "helper"),
    [
        ("1 > 2", "op_gt"),
        ("1 + 1 = 2", "op_"),
        ("1.2 * 1.8 = 2.16", "op_"),
        ("'a' = 'a'", "op_eq"),
        ("(true or {}) = true", "op_"),
        ("'a' ~ 'A'", "op_equiv"),
        ("(-1.1).ceiling() = -1", "fn_ceiling"),
        ("'abc'.length() = 3", "STRF"),
        ("'1'.toInteger() = 1", "convert("),
        ("Patient.name.exists()", "fn_exists"),
        ("Patient.name.count()", "fn_count"),
        ("Patient.name.first()", "fn_first"),
        ("(1 | 2).where(1 < 2)", "truthy"),
    ],
)
def test_typed_operands_take_the_fast_path(expression: str, helper: str) -> None:
    assert helper in source(expression, fast=False)
    assert helper not in source(expression)


@pytest.mark.parametrize(
    "expression",
    [
        "@2012-04-15T15:30:31 = @2012-04-15T15:30:31.1",
        "@2012-04-15 < @2012-04-15T10:00",
        "1 'cm' < 2 'cm'",
        "Patient.gender = 'male'",
        "Patient.birthDate < @2000-01-01",
        "'a' < 1",
    ],
)
def test_dates_quantities_and_data_keep_the_helpers(expression: str) -> None:
    assert "op_" in source(expression)


def test_decimal_results_keep_their_precision() -> None:
    assert _run("1.10 + 2", fold=False, fast=True) == [("Decimal", "3.10")]
    assert _run("7 div 2", fold=False, fast=True) == [("int", "3")]
    assert _run("-7 mod 2", fold=False, fast=True) == [("int", "-1")]
    assert _run("1 = 1.0", fold=False, fast=True) == [("bool", "True")]
    assert _run("5 div 0", fold=False, fast=True) == []
