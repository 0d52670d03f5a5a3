"""The packaged R4 model answers navigation questions from the official definitions."""

from sante.fhir.model import SANTE_SEARCH_PARAMETERS, patient_compartment, r4, search_parameters


def test_resource_types_are_the_r4_set():
    m = r4()
    assert 145 <= len(m.resource_types) <= 147
    assert {"CatalogEntry", "EffectEvidenceSynthesis", "MedicinalProduct"} <= m.resource_types  # R4, not R4B
    assert {"Patient", "Observation", "Bundle", "Parameters"} <= m.resource_types
    assert "DomainResource" not in m.resource_types  # abstract


def test_choice_element_yields_one_child_per_type():
    kids = {c.json_name: c.type for c in r4().children_named("Observation", "value")}
    assert kids["valueQuantity"] == "Quantity"
    assert kids["valuePeriod"] == "Period"
    assert len(kids) == 11


def test_backbone_and_content_reference_contexts():
    m = r4()
    contact_name = m.children("Patient.contact")["name"]
    assert contact_name.type == "HumanName" and not contact_name.is_array
    nested = m.children("Questionnaire.item")["item"]
    assert nested.context == "Questionnaire.item" and nested.is_array


def test_type_ancestry_and_primitives():
    m = r4()
    assert m.ancestors("Age")[:2] == ("Age", "Quantity")
    assert m.is_subtype("Patient", "DomainResource") and m.is_subtype("Patient", "Resource")
    assert m.is_subtype("code", "string")
    assert m.is_primitive("dateTime") and not m.is_primitive("Coding")


def test_required_binding_value_set_is_expanded():
    m = r4()
    gender = m.element("Patient.gender")
    assert gender.binding_strength == "required"
    codes = m.valueset(gender.binding_valueset)
    assert codes == {"http://hl7.org/fhir/administrative-gender": frozenset({"male", "female", "other", "unknown"})}


def test_search_parameters_and_compartment_are_packaged():
    sps = search_parameters()
    # the package's bundle (1,375 R4 parameters plus 3 packaging additions) and Sante's own
    assert len(sps) == 1378 + len(SANTE_SEARCH_PARAMETERS)
    assert any(sp["code"] == "provision-type" and sp["base"] == ["Consent"] for sp in sps)
    assert any(sp["code"] == "family" and "Patient" in sp["base"] for sp in sps)
    assert patient_compartment()["code"] == "Patient"
