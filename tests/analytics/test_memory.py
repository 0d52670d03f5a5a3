"""The in-memory engine beyond the suite: errors name the resource and path, values are JSON-typed, nested
nodes are typed by the model (choice elements under forEach), rows stream resource by resource."""

from __future__ import annotations

from typing import Any

import pytest

from sante.analytics import parse_view, run_view
from sante.analytics.memory import ViewRunError, iter_rows

OBSERVATIONS = [
    {"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "Patient/p1"},
     "effectiveDateTime": "2020-02-03T10:00:00+07:00", "code": {"coding": [{"code": "8867-4"}]},
     "valueQuantity": {"value": 72, "unit": "/min"},
     "component": [{"code": {"text": "a"}, "valueQuantity": {"value": 1.5}}, {"code": {"text": "b"},
                                                                               "valueString": "high"}]},
    {"resourceType": "Observation", "id": "o2", "status": "final", "subject": {"reference": "urn:uuid:p2"},
     "effectiveDateTime": "2021", "valueQuantity": {"value": 36.60}},
    {"resourceType": "Patient", "id": "p1"},
]


def _columns(*pairs: tuple[str, str], **types: str) -> list[dict[str, Any]]:
    return [{"name": n, "path": p, **({"type": types[n]} if n in types else {})} for n, p in pairs]


def test_values_are_json_typed() -> None:
    view = {"resource": "Observation", "select": [{"column": _columns(
        ("id", "id"), ("subject", "subject.getReferenceKey()"), ("value", "value.ofType(Quantity).value"),
        ("at", "effective.ofType(dateTime)"), ("code", "code.coding.first().code"), ("n", "component.count()"),
        value="decimal", at="dateTime", n="integer")}]}
    assert run_view(view, OBSERVATIONS) == [
        {"id": "o1", "subject": "p1", "value": 72.0, "at": "2020-02-03T10:00:00+07:00", "code": "8867-4", "n": 2},
        {"id": "o2", "subject": "p2", "value": 36.6, "at": "2021", "code": None, "n": 0},
    ]


def test_choice_elements_inside_for_each_are_typed() -> None:
    view = {"resource": "Observation", "select": [
        {"column": _columns(("id", "id"))},
        {"forEach": "component", "column": _columns(("name", "code.text"), ("q", "value.ofType(Quantity).value"),
                                                    ("s", "value.ofType(string)"))}]}
    assert run_view(view, OBSERVATIONS) == [
        {"id": "o1", "name": "a", "q": 1.5, "s": None}, {"id": "o1", "name": "b", "q": None, "s": "high"}]


def test_several_values_in_a_single_column_is_an_error() -> None:
    view = {"resource": "Observation", "select": [{"column": _columns(("code", "component.code.text"))}]}
    with pytest.raises(ViewRunError, match=r"Observation/o1.*'code'.*2 values"):
        run_view(view, OBSERVATIONS)


def test_a_where_that_is_not_boolean_is_an_error() -> None:
    view = {"resource": "Observation", "where": [{"path": "status"}], "select": [{"column": _columns(("id", "id"))}]}
    with pytest.raises(ViewRunError, match=r"Observation/o1: where path 'status'.*not a single boolean"):
        run_view(view, OBSERVATIONS)


def test_where_filters_and_constants_apply() -> None:
    view = {"resource": "Observation", "constant": [{"name": "limit", "valueDecimal": 50}],
            "where": [{"path": "value.ofType(Quantity).value > %limit"}],
            "select": [{"column": _columns(("id", "id"))}]}
    assert run_view(view, OBSERVATIONS) == [{"id": "o1"}]


def test_evaluation_errors_name_resource_and_path() -> None:
    view = {"resource": "Observation", "select": [{"column": _columns(("x", "(id | status).single()"))}]}
    with pytest.raises(ViewRunError, match=r"Observation/o1: '\(id \| status\).single\(\)' failed"):
        run_view(view, OBSERVATIONS)


def test_rows_stream_one_resource_at_a_time() -> None:
    seen: list[str] = []

    def resources() -> Any:
        for r in OBSERVATIONS:
            seen.append(r["id"])
            yield r

    rows = iter_rows(parse_view({"resource": "Observation", "select": [{"column": _columns(("id", "id"))}]}),
                     resources())
    assert next(rows) == {"id": "o1"} and seen == ["o1"]


def test_unknown_engine_names_the_choices() -> None:
    with pytest.raises(ValueError, match="memory, duckdb, spark"):
        run_view({"resource": "Patient", "select": [{"column": _columns(("id", "id"))}]}, [], engine="sqlite")
