"""Shared inputs of the SQL engine tests: a few real Synthea patients, views that exercise the compiler, and the
same resources written in every input layout the engines read (NDJSON, gzip NDJSON, Parquet, a Bundle file)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sante.analytics import memory, parse_view, sources

SYNTHEA_BUNDLES = (
    "Antonio_Castellanos_6d2eba67-5b4a-403f-a29f-e6da3f1ea963.json.gz",
    "Alberto_Atencio_fc712d1f-5a2e-4407-9c55-a2a2bad623c2.json.gz",
    "Buster_Hoeger_ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423.json.gz",
)
RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"

PATIENT_VIEW: dict[str, Any] = {"resource": "Patient", "select": [
    {"column": [{"name": "id", "path": "getResourceKey()"}, {"name": "gender", "path": "gender"},
                {"name": "birth", "path": "birthDate", "type": "date"},
                {"name": "race", "path": f"extension('{RACE}').extension('ombCategory').value.ofType(Coding).code"
                                        ".first()", "type": "code"},
                {"name": "phones", "path": "telecom.where(system = 'phone').value", "collection": True},
                {"name": "address", "path": "address.first()"}]},
    {"forEach": "name", "column": [{"name": "use", "path": "use"}, {"name": "family", "path": "family"},
                                   {"name": "given", "path": "given.join(' ')", "type": "string"},
                                   {"name": "name_index", "path": "%rowIndex", "type": "integer"}]},
]}
OBSERVATION_VIEW: dict[str, Any] = {"resource": "Observation", "where": [{"path": "status = 'final'"}], "select": [
    {"column": [{"name": "id", "path": "id"}, {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                {"name": "code", "path": "code.coding.where(system = 'http://loinc.org').code.first()"},
                {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
                {"name": "high", "path": "value.ofType(Quantity).value.highBoundary()", "type": "decimal"},
                {"name": "at", "path": "effective.ofType(dateTime)", "type": "dateTime"},
                {"name": "day", "path": "effective.ofType(dateTime).lowBoundary()", "type": "dateTime"}]},
    {"forEachOrNull": "component", "column": [
        {"name": "component", "path": "code.coding.code.first()"},
        {"name": "component_value", "path": "value.ofType(Quantity).value", "type": "decimal"}]},
]}
ENCOUNTER_VIEW: dict[str, Any] = {"resource": "Encounter", "select": [
    {"column": [{"name": "id", "path": "id"}, {"name": "class", "path": "class.code"},
                {"name": "start", "path": "period.start", "type": "dateTime"},
                {"name": "long_stay", "path": "period.end > period.start and hospitalization.exists().not()",
                 "type": "boolean"}]},
    {"unionAll": [{"forEach": "type.coding", "column": [{"name": "coding", "path": "code"}]},
                  {"forEach": "reasonCode.coding", "column": [{"name": "coding", "path": "code"}]}]},
]}
FUNCTIONS_VIEW: dict[str, Any] = {"resource": "Patient", "select": [
    {"column": [{"name": "id", "path": "id"},
                {"name": "sex", "path": "iif(gender = 'male', 'M', 'F')", "type": "string"},
                {"name": "born_2000s", "path": "iif(birthDate >= @2000-01-01, true)", "type": "boolean"},
                {"name": "year", "path": "birthDate.toString().substring(0, 4)", "type": "string"},
                {"name": "month_on", "path": "birthDate.toString().substring(5)", "type": "string"},
                {"name": "past_end", "path": "birthDate.toString().substring(40, 2)", "type": "string"}]},
    {"forEach": "name", "column": [
        {"name": "family", "path": "family.replace('a', 'ä').upper()", "type": "string"},
        {"name": "padded", "path": "(' ' & family & '  ').trim()", "type": "string"},
        {"name": "initial", "path": "iif(given.exists(), given.first().substring(0, 1), '?')", "type": "string"},
        {"name": "tail", "path": "family.substring(1, 100)", "type": "string"}]},
]}
VIEWS = {"patient": PATIENT_VIEW, "observation": OBSERVATION_VIEW, "encounter": ENCOUNTER_VIEW,
         "functions": FUNCTIONS_VIEW}
# what the Synthea patients lack for FUNCTIONS_VIEW: a woman born in the 2000s, a name without given names, a
# missing birth date
FUNCTION_PATIENTS: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "lan", "gender": "female", "birthDate": "2005-03-09",
     "name": [{"family": "Trần Thị Ngân"}, {"family": "b", "given": ["Lan"]}]},
    {"resourceType": "Patient", "id": "x", "name": [{"given": ["An"]}]},
]
FUNCTION_ROWS: list[dict[str, Any]] = [  # FUNCTIONS_VIEW on FUNCTION_PATIENTS, written out by hand
    {"id": "lan", "sex": "F", "born_2000s": True, "year": "2005", "month_on": "03-09", "past_end": None,
     "family": "TRẦN THỊ NGÂN", "padded": "Trần Thị Ngân", "initial": "?", "tail": "rần Thị Ngân"},
    {"id": "lan", "sex": "F", "born_2000s": True, "year": "2005", "month_on": "03-09", "past_end": None,
     "family": "B", "padded": "b", "initial": "L", "tail": None},
    {"id": "x", "sex": "F", "born_2000s": None, "year": None, "month_on": None, "past_end": None,
     "family": None, "padded": "", "initial": "A", "tail": None},
]


def synthea_resources(shared_dir: Path) -> list[dict[str, Any]]:
    """The resources of a few Synthea patients' bundles (practitioners and organisations repeat: kept)."""
    folder = shared_dir / "data" / "synthea-r4"
    return [r for name in SYNTHEA_BUNDLES for r in sources.iter_file(folder / name)]


def write_layouts(resources: list[dict[str, Any]], shared_dir: Path, folder: Path) -> dict[str, Any]:
    """The resources as each input an engine accepts: name -> path (or list of paths)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r) + "\n" for r in resources)
    ndjson = folder / "all.ndjson"
    ndjson.write_text(lines)
    gz = folder / "all.ndjson.gz"
    gz.write_bytes(gzip.compress(lines.encode()))
    table = pa.table({"resourceType": [r["resourceType"] for r in resources],
                      "resource": [json.dumps(r) for r in resources]})
    parquet = folder / "all.parquet"
    pq.write_table(table, parquet)
    bare = folder / "bare.parquet"
    pq.write_table(table.select(["resource"]), bare)
    bundles = folder / "bundles"
    bundles.mkdir(exist_ok=True)
    for name in SYNTHEA_BUNDLES:
        shutil.copy(shared_dir / "data" / "synthea-r4" / name, bundles / name)
    return {"ndjson": str(ndjson), "ndjson.gz": gz, "parquet": [parquet], "parquet without resourceType": bare,
            "bundle directory": bundles}


def reference_rows(view: dict[str, Any], resources: list[dict[str, Any]]) -> list[str]:
    """The memory engine's rows (the reference), as sorted canonical JSON."""
    return canonical(memory.run(parse_view(view), resources))


def canonical(rows: list[dict[str, Any]]) -> list[str]:
    """Rows as sorted JSON texts (no order is promised: sorted, keys too; 5 and 5.0 equal, floats to 12 digits)."""
    return sorted(json.dumps({k: _number(v) for k, v in row.items()}, sort_keys=True) for row in rows)


def _number(value: Any) -> Any:
    if isinstance(value, list):
        return [_number(v) for v in value]
    if isinstance(value, float):
        return round(value, 12) if value != int(value) else int(value)
    return value
