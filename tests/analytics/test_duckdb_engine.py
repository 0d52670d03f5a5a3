"""The DuckDB engine on real data: Synthea patients give the memory engine's rows from every input layout, the
compiler turns navigation into single JSON paths, and bad views or data fail with a located error."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sante.analytics import ViewDefinitionError, duckdb_engine, parse_view
from sante.analytics.memory import ViewRunError
from sante.analytics.sources import SourceError
from sante.analytics.sql_compile import REPEAT_DEPTH, NotCompilable, compile_view
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
def test_synthea_rows_equal_the_memory_engine(name: str, synthea: list[dict[str, Any]]) -> None:
    view = VIEWS[name]
    rows = duckdb_engine.run(parse_view(view), synthea)
    assert rows, "the view selects nothing: the comparison would prove nothing"
    assert canonical(rows) == reference_rows(view, synthea)


def test_iif_substring_replace_and_trim_give_the_rows_written_by_hand() -> None:
    view = parse_view(VIEWS["functions"])
    assert canonical(duckdb_engine.run(view, FUNCTION_PATIENTS)) == canonical(FUNCTION_ROWS)
    assert reference_rows(VIEWS["functions"], FUNCTION_PATIENTS) == canonical(FUNCTION_ROWS)  # the memory engine


def test_every_input_layout_gives_the_same_rows(synthea: list[dict[str, Any]], shared_dir: Path,
                                                 tmp_path: Path) -> None:
    view = parse_view(VIEWS["observation"])
    expected = canonical(duckdb_engine.run(view, synthea))
    for layout, source in write_layouts(synthea, shared_dir, tmp_path).items():
        assert canonical(duckdb_engine.run(view, source)) == expected, layout


def test_rows_keep_view_column_order_and_json_types() -> None:
    patient = {"resourceType": "Patient", "id": "p1", "active": True, "multipleBirthInteger": 2,
               "name": [{"family": "Nguyen", "given": ["Van", "An"]}]}
    view = parse_view({"resource": "Patient", "select": [{"column": [
        {"name": "name", "path": "name.first()"}, {"name": "active", "path": "active"},
        {"name": "births", "path": "multipleBirth.ofType(integer)"},
        {"name": "given", "path": "name.given", "collection": True}, {"name": "id", "path": "id"}]}]})
    [row] = duckdb_engine.run(view, [patient])
    assert list(row) == ["name", "active", "births", "given", "id"]
    assert row == {"name": {"family": "Nguyen", "given": ["Van", "An"]}, "active": True, "births": 2,
                   "given": ["Van", "An"], "id": "p1"}


def test_each_resource_is_parsed_once_and_navigation_is_one_json_path() -> None:
    view = parse_view({"resource": "Patient", "select": [{"column": [
        {"name": "given", "path": "name.given", "collection": True},
        {"name": "family", "path": "name.family.first()"}]}]})
    dialect = duckdb_engine.DuckDBDialect()
    sql = duckdb_engine.query(view, compile_view(view, dialect), dialect, "SELECT r FROM resources")
    assert sql.count("json_extract(r, ") == 1
    assert dialect.top_keys == ["resourceType", "name"]
    assert "json_extract(top_values[2], '$[*].\"given\"[*]')" in sql


@pytest.mark.parametrize(("reference", "key", "patient_key"), [
    ("Patient/p1", "p1", "p1"),
    ("https://fhir.example.org/r4/Patient/p2/_history/3", "p2", "p2"),
    ("urn:uuid:6d2eba67", "6d2eba67", None),
    ("Observation/o1", "o1", None),
    ("#contained", None, None),
    ("not-a-reference", None, None),
])
def test_reference_keys(reference: str, key: str | None, patient_key: str | None) -> None:
    observation = {"resourceType": "Observation", "id": "o", "subject": {"reference": reference}}
    view = parse_view({"resource": "Observation", "select": [{"column": [
        {"name": "key", "path": "subject.getReferenceKey()"},
        {"name": "patient_key", "path": "subject.getReferenceKey(Patient)"}]}]})
    assert duckdb_engine.run(view, [observation]) == [{"key": key, "patient_key": patient_key}]


def test_several_values_in_a_single_column_raise_a_run_error() -> None:
    view = parse_view({"resource": "Patient", "select": [{"column": [{"name": "family", "path": "name.family"}]}]})
    patient = {"resourceType": "Patient", "name": [{"family": "A"}, {"family": "B"}]}
    with pytest.raises(ViewRunError, match="family"):
        duckdb_engine.run(view, [patient])


def test_repeat_deeper_than_the_unrolled_levels_raises_instead_of_losing_rows() -> None:
    levels = [{"linkId": str(level)} for level in range(REPEAT_DEPTH + 1)]
    for parent, child in itertools.pairwise(levels):
        parent["item"] = [child]
    response = {"resourceType": "QuestionnaireResponse", "id": "q", "status": "completed", "item": [levels[0]]}
    view = parse_view({"resource": "QuestionnaireResponse", "select": [
        {"repeat": ["item"], "column": [{"name": "link", "path": "linkId"}]}]})
    with pytest.raises(ViewRunError, match="deeper"):
        duckdb_engine.run(view, [response])
    del levels[-2]["item"]
    rows = duckdb_engine.run(view, [response])
    assert [row["link"] for row in rows] == [str(level) for level in range(REPEAT_DEPTH)]


def test_non_boolean_where_is_rejected_with_its_location() -> None:
    view = parse_view({"resource": "Patient", "where": [{"path": "active"}, {"path": "name.family"}],
                       "select": [{"column": [{"name": "id", "path": "id"}]}]})
    with pytest.raises(ViewDefinitionError) as error:
        duckdb_engine.run(view, [])
    assert error.value.location == "where[1].path"


def test_an_uncompiled_function_names_itself_and_the_path() -> None:
    view = parse_view({"resource": "Patient", "select": [{"column": [
        {"name": "n", "path": "name.select(family)"}]}]})
    with pytest.raises(NotCompilable, match=r"select\(\).*name\.select\(family\)"):
        duckdb_engine.run(view, [])


@pytest.mark.parametrize(("path", "refusal"), [
    ("iif(active, 'yes', 1)", "iif\\(\\) whose results are not of one known type"),
    ("iif(active, name, name)", "iif\\(\\) whose results are not primitive values"),
    ("name.family.first().substring('1')", "substring\\(\\) with a start that is not an integer"),
])
def test_functions_outside_what_sql_can_keep_are_refused_with_their_path(path: str, refusal: str) -> None:
    view = parse_view({"resource": "Patient", "select": [{"column": [{"name": "c", "path": path}]}]})
    with pytest.raises(NotCompilable, match=refusal):
        duckdb_engine.run(view, [])

def test_parquet_without_a_resource_column_is_a_source_error(tmp_path: Path) -> None:
    path = tmp_path / "wrong.parquet"
    pq.write_table(pa.table({"json": ['{"resourceType": "Patient"}']}), path)
    view = parse_view({"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]})
    with pytest.raises(SourceError, match="resource"):
        duckdb_engine.run(view, path)


def test_malformed_ndjson_is_a_source_error_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.ndjson"
    path.write_text('{"resourceType": "Patient", "id": "a"}\n{"resourceType": "Patient",\n')
    view = parse_view({"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]})
    with pytest.raises(SourceError, match="line") as error:
        duckdb_engine.run(view, path)
    assert error.value.location == str(path)


def test_an_empty_directory_gives_no_rows(tmp_path: Path) -> None:
    view = parse_view({"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]})
    assert duckdb_engine.run(view, tmp_path) == []
