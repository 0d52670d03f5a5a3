"""parse_view: the normalised form of valid ViewDefinitions, and invalid ones refused with their location."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from sante.analytics import ViewDefinitionError, fhirpath_literal, parse_view
from sante.fhirpath import Date, DateTime, Time, evaluate
from sante.fhirpath.temporal import parse_date, parse_datetime, parse_time


def _view(*selects: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"resource": "Patient", "select": list(selects), **extra}


def _col(name: str, path: str = "id", **extra: Any) -> dict[str, Any]:
    return {"name": name, "path": path, **extra}


def test_normalised_structure_and_column_order() -> None:
    view = parse_view(_view(
        {"column": [_col("a"), _col("b", "gender", type="code")],
         "select": [{"forEach": "name", "column": [_col("c", "family"), _col("g", "given", collection=True)]}],
         "unionAll": [{"column": [_col("e")]}, {"forEachOrNull": "address", "column": [_col("e", "city")]}]},
        {"repeat": ["contact"], "column": [_col("h", "name.family")]},
        where=[{"path": "active"}],
        constant=[{"name": "k", "valueInteger": 3}],
    ))
    assert view.resource == "Patient" and view.where == ("active",) and view.constants == {"k": 3}
    assert view.column_names == ("a", "b", "c", "g", "e", "h")
    first = view.select[0]
    assert [c.name for c in first.columns] == ["a", "b"] and first.columns[1].type == "code"
    assert first.selects[0].for_each == "name" and first.selects[0].columns[1].collection is True
    assert first.union_all[1].for_each_or_null == "address" and first.union_all[0].for_each is None
    assert view.select[1].repeat == ("contact",)
    with pytest.raises(AttributeError):
        view.resource = "Observation"  # type: ignore[misc]


@pytest.mark.parametrize(("view", "location", "message"), [
    ({}, "resource", "required"),
    ({"resource": "patient", "select": [{"column": [_col("id")]}]}, "resource", "required"),
    ({"resource": "Patient"}, "select", "non-empty"),
    (_view({"column": [_col("id"), _col("1bad")]}), "select[0].column[1].name", "not a valid column name"),
    (_view({"column": [_col("id")]}, {"forEach": "name", "column": [_col("id", "family")]}),
     "select[1].column[0].name", "duplicate column name 'id'"),
    (_view({"column": [_col("id", "name.where(")]}), "select[0].column[0].path", "invalid FHIRPath"),
    (_view({"forEach": "name", "forEachOrNull": "name", "column": [_col("f", "family")]}), "select[0]",
     "cannot both"),
    (_view({"forEach": 1, "column": [_col("f")]}), "select[0].forEach", "not a FHIRPath expression"),
    (_view({"unionAll": [{"column": [_col("a"), _col("b")]}, {"column": [_col("b"), _col("a")]}]}),
     "select[0].unionAll[1]", "differ"),
    (_view({"column": [_col("id", "%missing")]}), "select[0].column[0].path", "undefined constant %missing"),
    (_view({"column": [_col("id")]}, constant=[{"name": "x"}]), "constant[0]", "exactly one value"),
    (_view({"column": [_col("id")]}, constant=[{"name": "rowIndex", "valueInteger": 1}]), "constant[0].name",
     "environment variable"),
    (_view({"column": [_col("id")]}, constant=[{"name": "a", "valueString": "x"}, {"name": "a", "valueString": "y"}]),
     "constant[1].name", "duplicate constant"),
    (_view({"column": [_col("id")]}, constant=[{"name": "x", "valueDate": "2020-13-01"}]), "constant[0].valueDate",
     "not a valid Date"),
    (_view({"column": [_col("id")]}, where=[{"path": "name.("}]), "where[0].path", "invalid FHIRPath"),
    (_view({"column": [_col("id", collection="yes")]}), "select[0].column[0].collection", "true or false"),
    (_view({"colum": [_col("id")]}), "select[0].colum", "unknown element"),
    (_view({"select": [{"column": [_col("id")]}], "repeat": []}), "select[0].repeat", "non-empty"),
    (_view({}), "select[0]", "needs column, select or unionAll"),
])
def test_invalid_views_name_the_location(view: dict[str, Any], location: str, message: str) -> None:
    with pytest.raises(ViewDefinitionError) as e:
        parse_view(view)
    assert e.value.location == location
    assert str(e.value).startswith(f"{location}: ") and message in str(e.value)


def test_environment_variables_are_not_constants() -> None:
    view = parse_view(_view({"column": [_col("i", "%rowIndex"), _col("r", "%resource.id"), _col("u", "%ucum")]}))
    assert view.constants == {}


def test_constant_values_by_type() -> None:
    constants = parse_view(_view({"column": [_col("id")]}, constant=[
        {"name": "s", "valueCode": "female"}, {"name": "b", "valueBoolean": False},
        {"name": "d", "valueDecimal": 1.2}, {"name": "n", "valuePositiveInt": 4},
        {"name": "day", "valueDate": "1978-03-12"}, {"name": "at", "valueInstant": "2015-02-07T13:28:17.239+02:00"},
        {"name": "t", "valueTime": "18:12:00"},
    ])).constants
    assert constants["s"] == "female" and constants["b"] is False and constants["n"] == 4
    assert constants["d"] == Decimal("1.2") and isinstance(constants["d"], Decimal)
    assert isinstance(constants["day"], Date) and str(constants["day"]) == "1978-03-12"
    assert isinstance(constants["at"], DateTime) and isinstance(constants["t"], Time)


@pytest.mark.parametrize("value", [
    "it's", "a\\b", True, False, 7, Decimal("1.20"), Decimal("5"),
    parse_date("2020-02"), parse_datetime("2016-11-12"), parse_datetime("2015-02-07T13:28:17.239+02:00"),
    parse_time("18:12"),
])
def test_fhirpath_literal_round_trips(value: Any) -> None:
    literal = fhirpath_literal(value)
    assert evaluate({}, f"{literal} = %v", {"v": value}) == [True]


def test_fhirpath_literal_refuses_other_values() -> None:
    with pytest.raises(TypeError):
        fhirpath_literal(object())
