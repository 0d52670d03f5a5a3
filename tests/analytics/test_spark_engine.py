"""The Spark engine on real data: Synthea patients give the memory engine's rows, from dicts and from every file
layout, and data errors surface as ViewRunError. One local session serves all tests (conftest `spark`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sante.analytics import parse_view, spark_engine
from sante.analytics.memory import ViewRunError
from tests.analytics.engine_cases import (
    FUNCTION_PATIENTS,
    FUNCTION_ROWS,
    VIEWS,
    canonical,
    reference_rows,
    synthea_resources,
    write_layouts,
)


@pytest.fixture(scope="module")
def synthea(shared_dir: Path) -> list[dict[str, Any]]:
    return synthea_resources(shared_dir)


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_synthea_rows_equal_the_memory_engine(name: str, synthea: list[dict[str, Any]], spark: Any) -> None:
    view = VIEWS[name]
    rows = spark_engine.run(parse_view(view), synthea, spark=spark)
    assert rows, "the view selects nothing: the comparison would prove nothing"
    assert canonical(rows) == reference_rows(view, synthea)


def test_iif_substring_replace_and_trim_give_the_rows_written_by_hand(spark: Any) -> None:
    view = parse_view(VIEWS["functions"])
    assert canonical(spark_engine.run(view, FUNCTION_PATIENTS, spark=spark)) == canonical(FUNCTION_ROWS)
    assert reference_rows(VIEWS["functions"], FUNCTION_PATIENTS) == canonical(FUNCTION_ROWS)  # the memory engine


def test_every_input_layout_gives_the_same_rows(synthea: list[dict[str, Any]], shared_dir: Path, tmp_path: Path,
                                                 spark: Any) -> None:
    view = parse_view(VIEWS["patient"])
    expected = reference_rows(VIEWS["patient"], synthea)
    for layout, source in write_layouts(synthea, shared_dir, tmp_path).items():
        assert canonical(spark_engine.run(view, source, spark=spark)) == expected, layout


def test_decimal_precision_comes_from_the_json_text(spark: Any) -> None:
    observation = {"resourceType": "Observation", "id": "o", "valueQuantity": {"value": 1.10}, "component": [
        {"valueQuantity": {"value": 2.5}}]}
    view = parse_view({"resource": "Observation", "select": [
        {"column": [{"name": "low", "path": "value.ofType(Quantity).value.lowBoundary()", "type": "decimal"}]},
        {"forEach": "component", "column": [
            {"name": "high", "path": "value.ofType(Quantity).value.highBoundary()", "type": "decimal"}]}]})
    assert spark_engine.run(view, [observation], spark=spark) == [{"low": 1.05, "high": 2.55}]


def test_several_values_in_a_single_column_raise_a_run_error(spark: Any) -> None:
    view = parse_view({"resource": "Patient", "select": [{"column": [{"name": "family", "path": "name.family"}]}]})
    patient = {"resourceType": "Patient", "name": [{"family": "A"}, {"family": "B"}]}
    with pytest.raises(ViewRunError, match="family"):
        spark_engine.run(view, [patient], spark=spark)


def test_an_empty_directory_gives_no_rows(tmp_path: Path, spark: Any) -> None:
    view = parse_view({"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]})
    assert spark_engine.run(view, tmp_path, spark=spark) == []
