"""Vietnamese identifiers: CCCD and BHYT parsing, cross-checks with the patient record, FHIR Identifiers."""

from __future__ import annotations

from datetime import date

import pytest

from sante.clinical import identifiers as ids
from sante.clinical.identifiers import IdentifierError, parse_bhyt, parse_cccd
from sante.fhir.validate import validate

TODAY = date(2025, 9, 1)


def test_parse_cccd_reads_every_field():
    c = parse_cccd("001089012345", today=TODAY)
    assert (c.number, c.province_code, c.sex, c.birth_year, c.serial) == ("001089012345", "001", "male", 1989, "012345")
    assert c.province_name == "Thành phố Hà Nội"
    c = parse_cccd("079303001234", today=TODAY)
    assert (c.province_code, c.sex, c.birth_year) == ("079", "female", 2003)
    assert c.province_name == "Thành phố Hồ Chí Minh"


def test_parse_cccd_accepts_separators_and_pre_reform_provinces():
    # 002 = Hà Giang, merged into Tuyên Quang in 2025: still a valid birth-registration code
    c = parse_cccd(" 002 195 000001 ", today=TODAY)
    assert (c.province_code, c.sex, c.birth_year) == ("002", "female", 1995)
    assert parse_cccd("096-100-123456", today=TODAY).province_name == "Tỉnh Cà Mau"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("00108901234", "12 digits, got 11"),
        ("0010890123456", "12 digits, got 13"),
        ("00108901234a", "only digits"),
        ("", "12 digits, got 0"),
        ("003089012345", "province code 003"),  # no province 03
        ("097089012345", "province code 097"),
        ("101089012345", "province code 101"),
        ("001489012345", "birth year 2189"),
        ("001930012345", "birth year 2330"),
    ],
)
def test_parse_cccd_rejects_with_a_clear_message(text, message):
    with pytest.raises(IdentifierError) as err:
        parse_cccd(text, today=TODAY)
    assert message in err.value.message


def test_cccd_birth_year_in_the_future_is_impossible():
    assert parse_cccd("001225000001", today=TODAY).birth_year == 2025
    with pytest.raises(IdentifierError, match="2026"):
        parse_cccd("001226000001", today=TODAY)


def test_check_cccd_against_the_patient_record():
    c = parse_cccd("001089012345", today=TODAY)
    assert ids.check_cccd_against(c, date(1989, 5, 1), "male") == []
    assert ids.check_cccd_against(c, "1989-05-01", "other") == []
    assert ids.check_cccd_against(c, None, None) == []
    warnings = ids.check_cccd_against("001089012345", "1990-02", "female")
    assert len(warnings) == 2
    assert "sex male" in warnings[0] and "female" in warnings[0]
    assert "birth year 1989" in warnings[1] and "1990" in warnings[1]


def test_parse_bhyt_reads_every_field():
    b = parse_bhyt("DN4010123456789")
    assert (b.object_code, b.benefit_level, b.province_code, b.social_insurance_number) == ("DN", 4, "01", "0123456789")
    assert b.warnings == ()
    assert b.object_label == "Người lao động làm việc trong doanh nghiệp"
    assert b.benefit["percent"] == 80


def test_parse_bhyt_normalises_case_and_space():
    b = parse_bhyt("  te1791234567890\n")
    assert b.number == "TE1791234567890"
    assert (b.object_code, b.benefit_level, b.province_code) == ("TE", 1, "79")
    assert b.object_label == "Trẻ em dưới 6 tuổi"


def test_unknown_bhyt_codes_are_warnings_not_errors():
    b = parse_bhyt("ZZ3991234567890")
    assert b.object_code == "ZZ"
    assert any("ZZ" in w for w in b.warnings)
    assert any("province code 99" in w for w in b.warnings)
    assert b.object_label is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("DN401012345678", "15 characters, got 14"),
        ("DN40101234567890", "15 characters, got 16"),
        ("1N4010123456789", "start with 2 letters"),
        ("DN0010123456789", "benefit level"),
        ("DN6010123456789", "benefit level"),
        ("DN40101234567X9", "end with 12 digits"),
    ],
)
def test_parse_bhyt_rejects_malformed_numbers(text, message):
    with pytest.raises(IdentifierError) as err:
        parse_bhyt(text)
    assert message in err.value.message


def test_benefit_levels_are_data():
    assert {k: v["percent"] for k, v in ids.BHYT_BENEFIT_LEVELS.items()} == {1: 100, 2: 100, 3: 95, 4: 80, 5: 100}
    assert ids.BHYT_BENEFIT_LEVELS[5]["out_of_list"] and not ids.BHYT_BENEFIT_LEVELS[1]["capped"]
    assert ids.BHYT_BENEFIT_LEVELS[2]["capped"]
    for code in ("DN", "HX", "CH", "NN", "TK", "HC", "XK", "HT", "TB", "NO", "CT", "XB", "TN", "CS", "QN", "CA"):
        assert code in ids.BHYT_OBJECT_CODES


def test_fhir_identifiers_validate_on_a_patient():
    cccd = ids.fhir_identifier("cccd", "001 089 012345")
    bhyt = ids.fhir_identifier("bhyt", "dn4010123456789")
    mrn = ids.fhir_identifier("mrn", "  BV-000123 ")
    assert (cccd["system"], cccd["value"], cccd["type"]["coding"][0]["code"]) == (ids.CCCD_SYSTEM, "001089012345", "NI")
    assert (bhyt["system"], bhyt["value"], bhyt["type"]["coding"][0]["code"]) == (
        ids.BHYT_SYSTEM,
        "DN4010123456789",
        "SN",
    )
    assert (mrn["system"], mrn["value"], mrn["type"]["coding"][0]["code"]) == (ids.MRN_SYSTEM, "BV-000123", "MR")
    patient = {"resourceType": "Patient", "identifier": [cccd, bhyt, mrn], "gender": "male", "birthDate": "1989-05-01"}
    assert validate(patient) == []


def test_fhir_identifier_refuses_bad_values():
    with pytest.raises(IdentifierError):
        ids.fhir_identifier("cccd", "12345")
    with pytest.raises(IdentifierError):
        ids.fhir_identifier("bhyt", "DN40101234")
    with pytest.raises(IdentifierError):
        ids.fhir_identifier("mrn", "   ")
    with pytest.raises(IdentifierError, match="unknown identifier kind"):
        ids.fhir_identifier("passport", "B1234567")  # type: ignore[arg-type]
