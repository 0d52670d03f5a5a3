"""Vital signs and laboratory tests: LOINC table, interpretation, and valid FHIR Observations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from sante.clinical import loinc
from sante.fhir.validate import validate

PATIENT = "Patient/p1"
WHEN = datetime(2025, 3, 1, 8, 30, tzinfo=timezone(timedelta(hours=7)))


def test_table_codes_are_real_loinc_codes():
    terms = loinc.terms()
    assert len(terms) >= 50
    assert len({t.code for t in terms}) == len(terms) and len({t.key for t in terms}) == len(terms)
    for t in terms:
        assert loinc.is_valid_loinc(t.code), t.code
        assert t.display and t.vi and t.fr, t.code
        if t.kind != "panel" and t.code not in ("5794-3", "5799-2", "5802-4", "5770-3"):
            assert t.unit, t.code
    assert not loinc.is_valid_loinc("8867-5") and not loinc.is_valid_loinc("8867") and not loinc.is_valid_loinc("x-4")


def test_required_codes_and_panels():
    for code in ("8867-4", "8480-6", "8462-4", "85354-9", "8310-5", "9279-1", "59408-5", "2708-6", "29463-7",
                 "8302-2", "39156-5", "58410-2", "718-7", "4548-4", "2823-3", "2951-2", "1988-5", "3016-3"):  # fmt: skip
        assert loinc.term(code).code == code
    assert [t.key for t in loinc.panel_members("58410-2")][:5] == ["wbc", "rbc", "hemoglobin", "hematocrit", "mcv"]
    assert {t.code for t in loinc.panel_members("blood-pressure")} == {"8480-6", "8462-4"}
    assert {t.key for t in loinc.panel_members("lipid-panel")} == {"cholesterol-total", "ldl", "hdl", "triglycerides"}
    assert "potassium" in {t.key for t in loinc.panel_members("basic-metabolic-panel")}
    assert len(loinc.panel_members("urinalysis")) == 10
    with pytest.raises(KeyError):
        loinc.term("1234-5")


def test_search_labels_in_any_language():
    assert [t.code for t in loinc.search("huyet sac to")] == ["718-7", "785-6", "786-4"]  # Hb, MCH, MCHC
    assert "718-7" in {t.code for t in loinc.search("hémoglobine")}
    assert {t.code for t in loinc.search("nhiệt độ")} == {"8310-5"}


@pytest.mark.parametrize(
    ("code", "value", "sex", "expected"),
    [
        ("hemoglobin", 140, "male", "N"),
        ("hemoglobin", 125, "male", "L"),
        ("hemoglobin", 125, "female", "N"),
        ("hemoglobin", 125, None, "N"),  # within the span of both sexes' ranges
        ("hemoglobin", 65, None, "LL"),
        ("potassium", 5.4, None, "H"),
        ("potassium", 6.5, None, "HH"),
        ("potassium", 2.5, None, "LL"),
        ("sodium", 135, None, "N"),  # limits are inclusive
        ("glucose-fasting", 7.2, None, "H"),
        ("hba1c", 6.8, None, "H"),
        ("hdl", 1.1, "male", "N"),
        ("hdl", 1.1, "female", "L"),
        ("platelets", 15, None, "LL"),
        ("creatinine", 120, "female", "H"),
        ("body-weight", 60, None, ""),  # nothing to judge by
        ("urine-protein", "negative", None, "N"),
        ("urine-protein", "Âm tính", None, "N"),
        ("urine-protein", "2+", None, "A"),
        ("urine-nitrite", "dương tính", None, "A"),
        ("urine-ph", "6.5", None, "N"),
        ("spo2", 88, None, "LL"),
        ("body-temperature", 38.5, None, "H"),
    ],
)
def test_interpret(code, value, sex, expected):
    assert loinc.interpret(code, value, sex) == expected


def test_vital_sign_observation_follows_the_profile():
    obs = loinc.vital_observation("heart-rate", 72, PATIENT, "Encounter/e1", when=WHEN)
    assert validate(obs) == []
    assert obs["meta"]["profile"] == ["http://hl7.org/fhir/StructureDefinition/heartrate"]
    assert obs["category"][0]["coding"][0]["code"] == "vital-signs"
    assert obs["code"]["coding"][0] == {"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}
    assert obs["valueQuantity"] == {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    assert obs["effectiveDateTime"] == "2025-03-01T08:30:00+07:00"
    assert obs["encounter"] == {"reference": "Encounter/e1"}
    assert obs["interpretation"][0]["coding"][0]["code"] == "N"


def test_blood_pressure_is_one_observation_with_two_components():
    obs = loinc.vital_observation("blood-pressure", (150, 85), PATIENT, when="2025-03-01")
    assert validate(obs) == []
    assert obs["code"]["coding"][0]["code"] == "85354-9"
    assert "valueQuantity" not in obs
    systolic, diastolic = obs["component"]
    assert systolic["code"]["coding"][0]["code"] == "8480-6" and systolic["valueQuantity"]["code"] == "mm[Hg]"
    assert diastolic["code"]["coding"][0]["code"] == "8462-4" and diastolic["valueQuantity"]["value"] == 85
    assert systolic["interpretation"][0]["coding"][0]["code"] == "H"
    assert diastolic["interpretation"][0]["coding"][0]["code"] == "N"
    same = loinc.vital_observation("85354-9", {"systolic": 150, "diastolic": 85}, PATIENT, when="2025-03-01")
    assert same == obs
    with pytest.raises(ValueError):
        loinc.vital_observation("blood-pressure", 150, PATIENT)


def test_every_vital_sign_makes_a_valid_observation():
    values = {"heart-rate": 80, "body-temperature": 37.0, "respiratory-rate": 16, "oxygen-saturation": 97,
              "spo2": 97, "body-weight": 58.5, "body-height": 162, "bmi": loinc.bmi(58.5, 162),
              "head-circumference": 35}  # fmt: skip
    for kind, value in values.items():
        obs = loinc.vital_observation(kind, value, {"reference": PATIENT, "display": "Nguyễn Văn A"})
        assert validate(obs) == [], kind
        assert obs["category"][0]["coding"][0]["code"] == "vital-signs"
        assert datetime.fromisoformat(obs["effectiveDateTime"]).tzinfo is not None
    spo2 = loinc.vital_observation("spo2", 97, PATIENT)
    assert [c["code"] for c in spo2["code"]["coding"]] == ["59408-5", "2708-6"]
    assert loinc.bmi(58.5, 162) == 22.3
    naive = loinc.vital_observation("heart-rate", 70, PATIENT, when=datetime(2025, 1, 1, 12, 0))
    assert naive["effectiveDateTime"] == datetime(2025, 1, 1, 12, 0, tzinfo=UTC).isoformat()
    with pytest.raises(KeyError):
        loinc.vital_observation("hemoglobin", 120, PATIENT)


def test_lab_observation_has_reference_range_and_interpretation():
    obs = loinc.lab_observation("718-7", 95, PATIENT, when=WHEN, sex="female")
    assert validate(obs) == []
    assert obs["category"][0]["coding"][0]["code"] == "laboratory"
    assert "meta" not in obs
    assert obs["valueQuantity"]["code"] == "g/L"
    (rr,) = obs["referenceRange"]
    assert (rr["low"]["value"], rr["high"]["value"]) == (120, 155)
    assert rr["appliesTo"][0]["coding"][0]["code"] == "248152002"
    assert obs["interpretation"][0]["coding"][0]["code"] == "L"
    both = loinc.lab_observation("hemoglobin", 95, PATIENT, when=WHEN)
    assert validate(both) == []
    assert len(both["referenceRange"]) == 2
    high_only = loinc.lab_observation("crp", "12,5", PATIENT, when=WHEN)
    assert high_only["valueQuantity"]["value"] == 12.5
    assert "low" not in high_only["referenceRange"][0] and high_only["referenceRange"][0]["text"] == "≤ 5 mg/L"
    assert high_only["interpretation"][0]["coding"][0]["code"] == "H"


def test_critical_and_qualitative_lab_results():
    critical = loinc.lab_observation("potassium", 6.8, PATIENT, when=WHEN)
    assert validate(critical) == []
    assert critical["interpretation"][0]["coding"][0]["code"] == "HH"
    negative = loinc.lab_observation("urine-nitrite", "Âm tính", PATIENT, when=WHEN)
    assert validate(negative) == []
    assert negative["valueCodeableConcept"]["coding"][0]["code"] == "260385009"
    assert negative["interpretation"][0]["coding"][0]["code"] == "N"
    trace = loinc.lab_observation("urine-protein", "1+", PATIENT, when=WHEN)
    assert validate(trace) == []
    assert trace["valueCodeableConcept"] == {"text": "1+"}
    assert trace["interpretation"][0]["coding"][0]["code"] == "A"
    for t in loinc.terms("laboratory"):
        if t.kind == "quantity":
            r = t.reference_range("male")
            value = r.high if r and r.high is not None else 1
            assert validate(loinc.lab_observation(t.code, value, PATIENT, when=WHEN)) == [], t.code
    with pytest.raises(KeyError):
        loinc.lab_observation("58410-2", 1, PATIENT)
