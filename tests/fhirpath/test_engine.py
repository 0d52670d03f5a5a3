"""Behaviour of sante.fhirpath on real resources: navigation, types, errors, resolve(), variables."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sante.fhir.model import search_parameters
from sante.fhirpath import FHIRPathError, PrimNode, compile, evaluate

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "fhir-examples-r4" / "core"


def test_compile_once_evaluate_many(patient: dict) -> None:
    fn = compile("name.where(use = 'official').given")
    assert fn(patient) == ["Peter", "James"]
    assert fn({"resourceType": "Patient", "name": [{"use": "official", "given": ["Ana"]}]}) == ["Ana"]
    assert fn({"resourceType": "Observation"}) == []


def test_type_name_root_only_matches_that_type(patient: dict, observation: dict) -> None:
    assert evaluate(patient, "Patient.gender") == ["male"]
    assert evaluate(observation, "Patient.gender") == []
    assert evaluate(patient, "DomainResource.id") == ["example"]


def test_choice_elements_and_type_operators(observation: dict) -> None:
    assert evaluate(observation, "Observation.value.unit") == ["lbs"]
    assert evaluate(observation, "Observation.value is Quantity") == [True]
    assert evaluate(observation, "Observation.value.as(Period)") == []
    assert [str(v) for v in evaluate(observation, "(Observation.effective as dateTime)")] == ["2016-03-28"]
    with pytest.raises(FHIRPathError, match=r"choice|FHIRPath name"):
        compile("Observation.valueQuantity", base_type="Observation")({"resourceType": "Observation"})


def test_primitive_types_from_the_model(patient: dict) -> None:
    assert evaluate(patient, "Patient.gender is code") == [True]
    assert evaluate(patient, "Patient.gender.as(string)") == []
    assert evaluate(patient, "Patient.active is System.Boolean") == [False]
    assert evaluate(patient, "Patient.active.type().name") == ["boolean"]


def test_decimal_inputs_keep_precision() -> None:
    as_float = {"resourceType": "Observation", "valueQuantity": {"value": 1.10, "unit": "mg"}}
    as_decimal = {"resourceType": "Observation", "valueQuantity": {"value": Decimal("1.10"), "unit": "mg"}}
    assert evaluate(as_float, "Observation.value.value") == [Decimal("1.1")]
    assert str(evaluate(as_decimal, "Observation.value.value")[0]) == "1.10"
    assert evaluate(as_float, "Observation.value.value + 0.2 = 1.3") == [True]


def test_empty_propagation_and_three_valued_logic() -> None:
    patient = {"resourceType": "Patient", "name": [{"given": ["Ana"]}]}
    assert evaluate(patient, "Patient.deceased = true") == []
    assert evaluate(patient, "Patient.deceased.not()") == []
    assert evaluate(patient, "(Patient.deceased = true) or true") == [True]
    assert evaluate(patient, "(Patient.deceased = true) and true") == []
    assert evaluate(patient, "Patient.name.given.first() + {}") == []
    assert evaluate(patient, "{} implies false") == []


def test_primitive_extensions(patient: dict) -> None:
    node = {
        "resourceType": "Patient",
        "name": [{"given": [None, "James"], "_given": [{"extension": [{"url": "u", "valueString": "x"}]}]}],
        "_birthDate": {"extension": [{"url": "b", "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
    }
    assert evaluate(node, "Patient.name.given.select($this.hasValue())") == [False, True]
    assert evaluate(node, "Patient.name.given.extension('u').value") == ["x"]
    assert evaluate(node, "Patient.birthDate.hasValue()") == [False]
    got = evaluate(node, "Patient.birthDate")
    assert len(got) == 1 and isinstance(got[0], PrimNode) and got[0].value is None
    assert evaluate(
        patient,
        "Patient.birthDate.extension('http://hl7.org/fhir/StructureDefinition/"
        "patient-birthTime').value.exists()",
    ) == [True]


def test_resolve_in_bundles_and_contained() -> None:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "urn:uuid:p1",
                "resource": {"resourceType": "Patient", "id": "p1", "gender": "female"},
            },
            {
                "fullUrl": "http://x/fhir/Practitioner/d1",
                "resource": {"resourceType": "Practitioner", "id": "d1"},
            },
            {
                "fullUrl": "urn:uuid:o1",
                "resource": {
                    "resourceType": "Observation",
                    "subject": {"reference": "urn:uuid:p1"},
                    "performer": [{"reference": "Practitioner/d1"}],
                },
            },
        ],
    }
    assert evaluate(bundle, "Bundle.entry.resource.ofType(Observation).subject.resolve().gender") == [
        "female"
    ]
    assert evaluate(bundle, "Bundle.entry.resource.ofType(Observation).performer.resolve().id") == ["d1"]
    contained = {
        "resourceType": "Observation",
        "contained": [{"resourceType": "Patient", "id": "c"}],
        "subject": {"reference": "#c"},
    }
    assert evaluate(contained, "Observation.subject.where(resolve() is Patient).exists()") == [True]
    typed = {"resourceType": "Observation", "subject": {"reference": "Group/7"}}
    assert evaluate(typed, "Observation.subject.where(resolve() is Patient)") == []


def test_variables(patient: dict) -> None:
    fn = compile("Patient.name.given.where($this = %first)")
    assert fn(patient, {"first": "Jim"}) == ["Jim"]
    assert evaluate(patient, "%resource.id = %context.id") == [True]
    assert evaluate(patient, "%`vs-administrative-gender`") == [
        "http://hl7.org/fhir/ValueSet/administrative-gender"
    ]
    with pytest.raises(FHIRPathError, match="undefined variable"):
        fn(patient)


def test_member_of_uses_r4_value_sets(patient: dict) -> None:
    assert evaluate(
        patient, "Patient.gender.memberOf('http://hl7.org/fhir/ValueSet/administrative-gender')"
    ) == [True]


def test_descendants_and_repeat(questionnaire: dict) -> None:
    assert evaluate(questionnaire, "Questionnaire.repeat(item).linkId.count()") == evaluate(
        questionnaire, "Questionnaire.descendants().linkId.count()"
    )


@pytest.mark.parametrize(
    "expr, offset",
    [
        ("Patient.name.given.", 19),
        ("Patient.name.where(given = 'x'", 30),
        ("name.given /* open", 11),
        ("Patient.name.first(1)", 13),
        ("Patient.name.foo()", 13),
        ("1 + 'a", 4),
    ],
)
def test_invalid_expressions_name_the_position(expr: str, offset: int) -> None:
    with pytest.raises(FHIRPathError) as info:
        compile(expr)({"resourceType": "Patient"})
    assert info.value.position == offset
    assert f"offset {offset}" in str(info.value)


def test_error_position_reports_line_and_column() -> None:
    with pytest.raises(FHIRPathError, match="line 2, column 10"):
        compile("name\n  .given.(")


def test_execution_errors(patient: dict) -> None:
    with pytest.raises(FHIRPathError, match="single"):
        evaluate(patient, "Patient.name.single()")
    with pytest.raises(FHIRPathError):
        evaluate(patient, "Patient.name.given.first() < 3")


def test_strict_mode_checks_paths_against_the_model() -> None:
    with pytest.raises(FHIRPathError, match="given1"):
        compile("name.given1", strict=True, base_type="Patient")
    assert compile("name.given1")({"resourceType": "Patient", "name": [{"given": ["a"]}]}) == []
    two_names = {"resourceType": "Patient", "name": [{"family": "a"}, {"family": "b"}]}
    assert compile("Patient.name.as(HumanName).family")(two_names) == ["a", "b"]
    with pytest.raises(FHIRPathError, match="single item"):
        compile("Patient.name.as(HumanName)", strict=True, base_type="Patient")(two_names)


def test_every_search_parameter_runs_on_the_r4_examples() -> None:
    if not EXAMPLES.exists():
        pytest.skip("shared example data not present")
    by_type: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(EXAMPLES.glob("*.json")):
        doc = json.loads(path.read_text())
        if isinstance(doc, dict) and "resourceType" in doc:
            by_type.setdefault(doc["resourceType"], []).append(doc)
    ran = 0
    for sp in search_parameters():
        expr = sp.get("expression")
        if not expr:
            continue
        fn = compile(expr)
        for base in sp["base"]:
            for resource in by_type.get(base, ()):
                fn(resource)
                ran += 1
    assert ran > 1000


def test_r4_resource_invariants_hold_on_the_r4_examples() -> None:
    """Every error-level invariant of a resource (dom-2..dom-6 and the type's own) holds on the official
    examples: they use descendants(), as() on collections, %resource and friends."""
    from sante.fhir.model import r4

    if not EXAMPLES.exists():
        pytest.skip("shared example data not present")
    model = r4()
    checked = 0
    for path in sorted(EXAMPLES.glob("*.json")):
        resource = json.loads(path.read_text())
        if not isinstance(resource, dict) or resource.get("resourceType") not in model.structures:
            continue
        structure = model.structures[resource["resourceType"]]
        for element in structure.elements.values():
            if "." in element.path:
                continue
            for c in element.constraints:
                if c.severity == "error":
                    assert evaluate(resource, c.expression) == [True], (path.name, c.key)
                    checked += 1
    assert checked > 1000
