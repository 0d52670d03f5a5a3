from __future__ import annotations

from decimal import Decimal

from sante.fhirpath import Quantity, evaluate
from sante.fhirpath.quantity import canonical, compare, equivalent, parse_quantity


def ev(expr: str) -> list:
    return evaluate({}, expr)


def test_ucum_canonical_forms() -> None:
    assert canonical("mg") == (Decimal("0.001"), (("g", 1),))
    assert canonical("mm[Hg]")[1] == (("g", 1), ("m", -1), ("s", -2))
    f, dims = canonical("kg/m2")
    assert f == 1000 and dims == (("g", 1), ("m", -2))
    f, dims = canonical("/min")
    assert abs(f * 60 - 1) < Decimal("1e-20") and dims == (("s", -1),)


def test_comparison_converts_units() -> None:
    assert compare(Quantity(Decimal("4.0000"), "g"), Quantity(Decimal("4000.0"), "mg")) == 0
    assert ev("6 days < 1 week") == [True]
    assert ev("2.0 'cm' * 2.0 'm' = 0.040 'm2'") == [True]
    assert ev("1 'kg' > 999 'g'") == [True]
    assert ev("1 'kg' = 1 'm'") == []  # not comparable


def test_calendar_years_are_not_ucum_years() -> None:
    assert ev("1 year = 1 'a'") == []
    assert ev("1 year = 12 months") == [True]
    assert ev("1 week = 7 'd'") == [True]


def test_equivalence_rounds_to_the_least_precise() -> None:
    assert equivalent(Quantity(Decimal(4), "g"), Quantity(Decimal(4040), "mg"))
    assert not equivalent(Quantity(Decimal(4), "g"), Quantity(Decimal(4600), "mg"))
    assert not equivalent(Quantity(Decimal("4.00"), "g"), Quantity(Decimal("4.04"), "g"))


def test_fhir_quantity_compares_with_literal(observation: dict) -> None:
    assert evaluate(observation, "Observation.value > 80 'kg'") == [True]  # 185 [lb_av] = 83.9 kg
    assert evaluate(observation, "Observation.value < 84 'kg'") == [True]


def test_string_to_quantity() -> None:
    q = parse_quantity("4.5 'mg'")
    assert q is not None and q.value == Decimal("4.5") and q.unit == "mg"
    assert parse_quantity("1 wk") is None  # bare words must be calendar keywords
    assert [str(v) for v in ev("'1 day'.toQuantity()")] == ["1 day"]
