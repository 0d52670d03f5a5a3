"""The R4 validator accepts the official examples and Synthea data, and rejects what the definitions forbid."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from sante.fhir.model import r4
from sante.fhir.validate import Issue, to_operation_outcome, validate, validate_json

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
EXAMPLES = SHARED / "data" / "fhir-examples-r4"
SYNTHEA = SHARED / "data" / "synthea-r4"

# Official R4 examples that HL7 itself ships invalid: file -> the issues (location, why) they really have.
KNOWN_INVALID = {
    # R4 MedicationRequest.dispenseRequest.performer is Reference(Organization); the example points at a
    # Practitioner.
    "core/MedicationRequest-medrx0301.json": {"MedicationRequest.dispenseRequest.performer.reference"},
    # R4 Observation.performer allows Practitioner, PractitionerRole, Organization, CareTeam, Patient and
    # RelatedPerson; the example names an Encounter as performer.
    "core/Observation-clinical-gender.json": {"Observation.performer[0].reference"},
}

# Valid examples that fail only because of a FHIRPath engine gap (sante.fhirpath, not the validator).
ENGINE_GAPS = {
    # que-7 `operator = 'exists' implies (answer is Boolean)` assumes a FHIR boolean is a System.Boolean, but the
    # official FHIRPath R4 suite requires the opposite (testType12: `Patient.active.is(Boolean).not()` is true).
    # Sante follows the suite, so R4's own que-7 rejects this example: a conflict inside the R4 specification.
    "supporting/Questionnaire-bb.json": "R4 que-7 conflicts with FHIRPath suite testType12 (FHIR boolean is not "
    "System.Boolean)",
}


def example_files() -> list[Path]:
    if not EXAMPLES.is_dir():
        return []
    return sorted(p for p in EXAMPLES.glob("*/*.json"))


def load(path: Path) -> dict:
    return orjson.loads(path.read_bytes())


def errors(resource: object) -> list[Issue]:
    return [i for i in validate(resource) if i.severity in ("error", "fatal")]


def needs(path: Path) -> None:
    if not path.is_dir():
        pytest.skip(f"{path} is not available")


# -- real inputs --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", example_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_official_example_validates_clean(path: Path) -> None:
    rel = f"{path.parent.name}/{path.name}"
    issues = validate(load(path))
    if rel in KNOWN_INVALID:
        assert {i.location for i in issues} == KNOWN_INVALID[rel], issues
    else:
        if issues and rel in ENGINE_GAPS:
            pytest.xfail(ENGINE_GAPS[rel])
        assert issues == []


def test_examples_present_or_skipped() -> None:
    needs(EXAMPLES)
    assert len(example_files()) >= 300


def test_known_invalid_examples_are_really_invalid_per_the_definitions() -> None:
    m = r4()
    assert m.children("MedicationRequest.dispenseRequest")["performer"].element.targets == ("Organization",)
    assert "Encounter" not in m.children("Observation")["performer"].element.targets
    needs(EXAMPLES)
    med = load(EXAMPLES / "core" / "MedicationRequest-medrx0301.json")
    assert med["dispenseRequest"]["performer"]["reference"].startswith("Practitioner/")
    obs = load(EXAMPLES / "core" / "Observation-clinical-gender.json")
    assert obs["performer"][0]["reference"].startswith("Encounter/")


def test_synthea_corpus_validates_clean() -> None:
    needs(SYNTHEA)
    files = sorted(SYNTHEA.glob("*.json.gz"))
    assert files
    seen = 0
    for f in files:  # all 120 patients, ~34,000 resources, as whole transaction Bundles
        bundle = orjson.loads(gzip.decompress(f.read_bytes()))
        assert validate(bundle) == [], f.name
        seen += len(bundle["entry"])
    assert seen > 30_000


# -- specific rules -----------------------------------------------------------------------------------------------


def patient(**extra: object) -> dict:
    return {"resourceType": "Patient", "id": "p1", **extra}


def locs(resource: object) -> list[str]:
    return [i.location for i in validate(resource)]


def test_top_level_must_be_a_known_concrete_resource() -> None:
    assert [(i.severity, i.location) for i in validate([])] == [("fatal", "(document)")]
    assert validate({"id": "x"})[0].message == "missing resourceType"
    assert "unknown" in validate({"resourceType": "Patiente"})[0].message
    assert "abstract" in validate({"resourceType": "DomainResource"})[0].message
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Nope"}}],
    }
    assert locs(bundle) == ["Bundle.entry[0].resource.resourceType"]
    odd_contained = {"resourceType": "Patient", "contained": [{"resourceType": "Patient", "id": ["x"]}]}
    assert locs(odd_contained) == ["Patient.contained[0].ofType(Patient).id", "Patient.contained[0]"]
    assert validate({"resourceType": "Patient"}) == []


def test_primitive_formats() -> None:
    cases = {
        "birthDate": ["2023-02-30", "2023-2-01", "2023-02-01T10:00:00Z", 2023],
        "active": ["true", 1],
        "multipleBirthInteger": [1.5, "2", 2**31, True],
        "deceasedDateTime": ["2020-01-01T10:00:00", "2020-01-01T25:00:00Z", "2019-02-29"],
    }
    for key, bad in cases.items():
        for value in bad:
            assert locs(patient(**{key: value})) == [f"Patient.{key}"], (key, value)
    good = {"birthDate": ["2023", "2023-02", "2024-02-29"], "deceasedDateTime": ["2020-01-01T10:00:00+07:00"]}
    for key, values in good.items():
        for value in values:
            assert validate(patient(**{key: value})) == [], (key, value)


def test_instant_requires_timezone_and_decimal_must_be_a_number() -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    assert locs({**obs, "issued": "2020-01-01T10:00:00"}) == ["Observation.issued"]
    assert validate({**obs, "issued": "2020-01-01T10:00:00.123Z"}) == []
    assert locs({**obs, "valueQuantity": {"value": "5"}}) == ["Observation.valueQuantity.value"]
    assert validate({**obs, "valueQuantity": {"value": 5.25}}) == []


def test_code_uri_id_and_string_rules() -> None:
    assert locs(patient(gender="male ")) == ["Patient.gender"]
    assert locs({"resourceType": "Patient", "id": "a b"}) == ["Patient.id"]
    assert locs({"resourceType": "Patient", "id": "x" * 65}) == ["Patient.id"]
    assert locs(patient(implicitRules="http://a b")) == ["Patient.implicitRules"]
    assert locs(patient(name=[{"family": "   "}])) == ["Patient.name[0].family"]
    assert locs(patient(photo=[{"contentType": "image/png", "data": "abc"}])) == ["Patient.photo[0].data"]
    assert validate(patient(photo=[{"contentType": "image/png", "data": "aGVsbG8="}])) == []


def test_primitive_extension_siblings() -> None:
    ext = {"extension": [{"url": "http://x", "valueString": "y"}]}
    assert validate(patient(_birthDate=ext)) == []
    assert validate(patient(name=[{"given": ["A", None], "_given": [None, ext]}])) == []
    assert locs(patient(name=[{"given": ["A", None]}])) == ["Patient.name[0].given[1]"]
    assert locs(patient(name=[{"given": ["A"], "_given": [None, ext]}])) == ["Patient.name[0]._given"]
    assert locs(patient(_birthDate={"id": "a"})) == ["Patient.birthDate"]
    assert locs(patient(_name=ext)) == ["Patient._name"]
    assert locs(patient(_birthDate=[ext])) == ["Patient._birthDate"]
    assert locs(patient(_birthDate={"bogus": 1}, birthDate="2000")) == ["Patient.birthDate.bogus"]
    bad_ext = {"extension": [{"url": "http://x"}]}
    assert locs(patient(birthDate="2000", _birthDate=bad_ext)) == ["Patient.birthDate.extension[0]"]


def test_choice_cardinality_and_json_kinds() -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    two = validate({**obs, "valueString": "a", "valueBoolean": True})
    assert [(i.location, i.code) for i in two] == [("Observation.value", "structure")]
    assert [
        (i.location, i.code) for i in validate({"resourceType": "Observation", "code": {"text": "x"}})
    ] == [("Observation.status", "required")]
    assert locs(patient(name={"family": "x"})) == ["Patient.name"]
    assert locs(patient(maritalStatus=[{"text": "x"}])) == ["Patient.maritalStatus"]
    assert locs(patient(name=[])) == ["Patient.name"]
    assert locs(patient(name=[{}])) == ["Patient.name[0]"]
    assert locs(patient(name=[None])) == ["Patient.name[0]"]
    assert locs(patient(gender=None)) == ["Patient.gender"]


def test_required_bindings() -> None:
    assert [i.code for i in validate(patient(gender="xyz"))] == ["code-invalid"]
    ar = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
    allergy = {"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/p1"}}
    ok = {**allergy, "clinicalStatus": {"coding": [{"system": ar, "code": "active"}]}}
    assert validate(ok) == []
    bad = {**allergy, "clinicalStatus": {"coding": [{"system": ar, "code": "bogus"}]}}
    assert [(i.code, i.location) for i in validate(bad)] == [
        ("code-invalid", "AllergyIntolerance.clinicalStatus.coding")
    ]
    other = {
        **allergy,
        "clinicalStatus": {"coding": [{"system": "http://x", "code": "a"}, {"system": ar, "code": "active"}]},
    }
    assert validate(other) == []
    odd = {**allergy, "clinicalStatus": {"coding": [{"system": [ar], "code": {"x": 1}}]}}
    assert "AllergyIntolerance.clinicalStatus.coding" in locs(odd)  # issues, not a TypeError


def test_references() -> None:
    def obs(ref: str, **extra: object) -> dict:
        return {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": ref},
            **extra,
        }

    for good in [
        "Patient/1",
        "Patient/1/_history/2",
        "http://example.org/fhir/Patient/1",
        "urn:uuid:3c2ad2b1-6b4e-4d5c-8e2a-0b1d2c3e4f5a",
        "urn:oid:1.2.3",
    ]:
        assert validate(obs(good)) == [], good
    for bad in [
        "Patient 1",
        "Patientx/1",
        "Medication/1",
        "urn:uuid:nope",
        "#missing",
        "Patient?identifier=x",
    ]:
        assert locs(obs(bad)) == ["Observation.subject.reference"], bad
    # recursive contexts keep their checks: Identifier.assigner is Reference(Organization) inside a Reference
    nested = {"identifier": {"assigner": {"reference": "Patient/1"}}, "reference": "Patient/2"}
    assert locs(obs("Patient/1", focus=[nested])) == ["Observation.focus[0].identifier.assigner.reference"]
    contained = [{"resourceType": "Patient", "id": "p"}]
    assert validate(obs("#p", contained=contained)) == []
    unreferenced = obs("Patient/1", contained=contained)
    assert [(i.location, i.code) for i in validate(unreferenced)] == [
        ("Observation.contained[0]", "invariant")
    ]


def test_contained_rules() -> None:
    inner = {
        "resourceType": "Patient",
        "id": "p",
        "meta": {"versionId": "1", "security": [{"code": "R"}]},
        "contained": [{"resourceType": "Patient", "id": "q"}],
    }
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "#p"},
        "contained": [inner],
    }
    assert sorted(locs(obs)) == [
        "Observation.contained[0].ofType(Patient).contained",
        "Observation.contained[0].ofType(Patient).meta.security",
        "Observation.contained[0].ofType(Patient).meta.versionId",
    ]
    back = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "contained": [
            {"resourceType": "Patient", "id": "p", "link": [{"other": {"reference": "#"}, "type": "seealso"}]}
        ],
    }
    assert validate(back) == []


def test_bundle_entries_are_validated_with_their_location() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:3c2ad2b1-6b4e-4d5c-8e2a-0b1d2c3e4f5a",
                "resource": patient(),
                "request": {"method": "POST", "url": "Patient"},
            },
            {"resource": patient(gender="xyz"), "request": {"method": "POST", "url": "Patient"}},
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": "Patient?identifier=a|b"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    assert locs(bundle) == ["Bundle.entry[1].resource.ofType(Patient).gender"]


def test_extension_rules() -> None:
    assert locs(patient(extension=[{"url": "http://x"}])) == ["Patient.extension[0]"]
    both = {"url": "http://x", "valueString": "a", "extension": [{"url": "http://y", "valueCode": "b"}]}
    assert locs(patient(extension=[both])) == ["Patient.extension[0]"]
    assert locs(patient(extension=[{"valueString": "a"}])) == ["Patient.extension[0].url"]


def test_validate_json_reports_malformed_json_with_position() -> None:
    issues = validate_json(b'{"resourceType": "Patient",\n "id": }')
    assert [(i.severity, i.location) for i in issues] == [("fatal", "(document)")]
    assert "line 2, column 8" in issues[0].message
    assert validate_json('{"resourceType": "Patient"}') == []
    assert validate_json(b'\xef\xbb\xbf{"resourceType": "Patient"}') == []


def test_operation_outcome() -> None:
    oo = to_operation_outcome(validate(patient(gender="xyz")))
    assert oo["resourceType"] == "OperationOutcome"
    assert oo["issue"][0]["expression"] == ["Patient.gender"]
    assert oo["issue"][0]["severity"] == "error" and oo["issue"][0]["code"] == "code-invalid"
    assert to_operation_outcome([])["issue"][0]["severity"] == "information"
    assert "expression" not in to_operation_outcome(validate_json("{"))["issue"][0]
    assert errors(oo) == []  # the outcome is itself a valid R4 resource


# -- invariants from the definitions (FHIRPath engine) ------------------------------------------------------------


def test_definition_invariants_are_checked() -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    cases = [
        (
            {**obs, "effectivePeriod": {"start": "2020-01-02", "end": "2020-01-01"}},
            "Observation.effectivePeriod",
            "per-1",
        ),
        ({**obs, "valueQuantity": {"value": 1, "code": "mg"}}, "Observation.valueQuantity", "qty-3"),
        ({**obs, "valueString": "x", "dataAbsentReason": {"text": "y"}}, "Observation", "obs-6"),
        (patient(contact=[{"gender": "male"}]), "Patient.contact[0]", "pat-1"),
        (patient(photo=[{"data": "aGVsbG8="}]), "Patient.photo[0]", "att-1"),
    ]
    for resource, location, key in cases:
        issues = validate(resource)
        assert [(i.location, i.code) for i in issues] == [(location, "invariant")], (key, issues)
        assert issues[0].message.endswith(f"({key})")
    assert validate({**obs, "effectivePeriod": {"start": "2020-01-01", "end": "2020-01-02"}}) == []


def test_remembered_valid_values_do_not_hide_errors() -> None:
    coding = {"system": "http://loinc.org", "code": "1234-5"}
    obs = {"resourceType": "Observation", "status": "final", "code": {"coding": [coding]}}
    for _ in range(3):
        assert validate(obs) == []
    assert locs({**obs, "status": "bogus"}) == ["Observation.status"]
    conditional = {"reference": "Patient?identifier=a"}
    entry = {"resource": {**obs, "subject": conditional}, "request": {"method": "POST", "url": "Observation"}}
    assert validate({"resourceType": "Bundle", "type": "transaction", "entry": [entry]}) == []
    assert locs({**obs, "subject": conditional}) == ["Observation.subject.reference"]
    contained = {**obs, "contained": [{"resourceType": "Patient", "id": "p"}], "subject": {"reference": "#p"}}
    assert validate(contained) == []
    assert locs({**obs, "subject": {"reference": "#p"}}) == ["Observation.subject.reference"]


def test_warnings_are_opt_in() -> None:
    bare = patient()
    assert validate(bare) == []
    warned = validate(bare, warnings=True)
    assert [(i.severity, i.location) for i in warned] == [("warning", "Patient")]
    assert "dom-6" in warned[0].message


def test_narrative_xhtml() -> None:
    ns = 'xmlns="http://www.w3.org/1999/xhtml"'

    def text(div: str) -> dict:
        return patient(text={"status": "generated", "div": div})

    assert validate(text(f"<div {ns}><p>Ana &amp; Bo</p></div>")) == []
    assert validate(text(f'<div {ns}><img src="x.png"/></div>')) == []
    assert validate(text(f"<div {ns}>a&nbsp;b</div>")) == []  # HTML entities, as the HL7 validator allows
    for bad in [
        "<div><p>no namespace</p></div>",
        f"<div {ns}><p>unclosed</div>",
        f"<div {ns}><script>alert(1)</script></div>",
        f'<div {ns}><p onclick="x()">x</p></div>',
        f"<div {ns}>   </div>",
        f"<p {ns}>not a div</p>",
        f"<div {ns}>a &bogus; b</div>",
        f'<!DOCTYPE div [<!ENTITY a "b">]><div {ns}>&a;</div>',
        "",
    ]:
        assert locs(text(bad)) == ["Patient.text.div"], bad


def test_engine_failures_never_fail_validation() -> None:
    from sante.fhir import validate as v
    from sante.fhir.model import Constraint

    broken = v._Invariant(Constraint("zz-1", "error", "start.where(", "unparseable"), "Period", ())
    assert v._holds(broken, {"start": "2020"}, v._State(False)) is True
    assert "zz-1@Period" in v.STATS.compile_errors

    def explode(*_: object) -> list:
        raise RuntimeError("boom")

    failing = v._Invariant(Constraint("zz-2", "error", "true", "raises"), "Period", ())
    failing.fn = explode
    assert v._holds(failing, {"start": "2020"}, v._State(False)) is True
    assert v.STATS.runtime_errors["zz-2@Period"] >= 1


def test_resource_type_of_the_wrong_json_type_is_an_issue_with_warnings_too():
    for bad in ({"resourceType": {"x": 1}}, {"resourceType": ["Patient"]}, {"resourceType": 7}):
        issues = validate(bad, warnings=True)
        assert issues and issues[0].severity in ("fatal", "error")
