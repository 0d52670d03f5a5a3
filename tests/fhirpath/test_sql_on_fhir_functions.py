"""The SQL on FHIR additions to sante.fhirpath: getResourceKey(), getReferenceKey([type]), and typed compilation
of nested nodes (compile_for_type, result_type) that view engines evaluate forEach/repeat items with."""

from __future__ import annotations

import pytest

from sante.fhirpath import FHIRPathError, compile, compile_for_type, evaluate, result_type

PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "link": [
        {"other": {"reference": "Patient/p1"}},
        {"other": {"reference": "http://example.org/fhir/Patient/p2/_history/3"}},
        {"other": {"reference": "urn:uuid:9f6c"}},
        {"other": {"reference": "#contained"}},
        {"other": {"reference": "urn:uuid:77aa", "type": "RelatedPerson"}},
        {"other": {"display": "no reference"}},
    ],
}


def test_get_resource_key_is_the_id() -> None:
    assert evaluate(PATIENT, "getResourceKey()") == ["p1"]
    assert evaluate({"resourceType": "Patient"}, "getResourceKey()") == []
    assert evaluate(PATIENT, "link.other.getResourceKey()") == []  # references are not resources


def test_get_reference_key_without_type() -> None:
    assert evaluate(PATIENT, "link.other.getReferenceKey()") == ["p1", "p2", "9f6c", "77aa"]
    assert evaluate(PATIENT, "getResourceKey() = link.other.first().getReferenceKey()") == [True]


def test_get_reference_key_with_type() -> None:
    assert evaluate(PATIENT, "link.other.getReferenceKey(Patient)") == ["p1", "p2"]
    assert evaluate(PATIENT, "link.other.getReferenceKey(RelatedPerson)") == ["77aa"]
    assert evaluate(PATIENT, "link.other.getReferenceKey(Observation)") == []


def test_key_functions_check_their_arguments() -> None:
    with pytest.raises(FHIRPathError, match="getResourceKey"):
        compile("getResourceKey(1)")(PATIENT)
    with pytest.raises(FHIRPathError, match="type name"):
        compile("link.other.getReferenceKey('Patient')")(PATIENT)


def test_result_type_follows_the_model() -> None:
    assert result_type("name", "Patient") == "HumanName"
    assert result_type("item", "QuestionnaireResponse") == "QuestionnaireResponse.item"
    assert result_type("answer.item", "QuestionnaireResponse.item") == "QuestionnaireResponse.item"
    assert result_type("name.given", "Patient") == "string"
    assert result_type("value", "Observation") is None  # a choice: several types
    assert result_type("name(", "Patient") is None


def test_compile_for_type_types_nested_objects() -> None:
    answer = {"valueString": "yes"}
    assert compile("value.ofType(string)")(answer) == []  # untyped: the choice's type is unknown
    typed = compile_for_type("value.ofType(string)", "QuestionnaireResponse.item.answer")
    assert typed(answer) == ["yes"]
    assert typed({"valueInteger": 3}) == []
