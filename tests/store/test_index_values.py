"""Index value extraction per search-parameter type, on values as they appear in real resources."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sante.store.index_values import (
    date_entries,
    date_range,
    fold,
    number_entries,
    quantity_entries,
    reference_entries,
    string_entries,
    token_entries,
)


@pytest.mark.parametrize(
    "text,folded",
    [("Nguyễn", "nguyen"), ("Đặng Thị Hồng", "dang thi hong"), ("  TRẦN   văn  ", "tran van"), ("Zoë", "zoe")],
)
def test_fold_is_accent_and_case_insensitive(text, folded):
    assert fold(text) == folded


@given(st.text())
def test_fold_is_idempotent(text):
    assert fold(fold(text)) == fold(text)


def test_human_name_and_address_strings():
    name = {"family": "Nguyễn", "given": ["Văn", "Đức"], "prefix": ["Ông"]}
    assert [e.folded for e in string_entries(name)] == ["nguyen", "van", "duc", "ong"]
    addr = {"line": ["12 Lê Lợi"], "city": "Huế", "country": "VN"}
    assert [e.folded for e in string_entries(addr)] == ["12 le loi", "hue", "vn"]


def test_tokens_from_codeable_concept_identifier_and_primitives():
    cc = {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}], "text": "HR"}
    assert token_entries(cc) == [("http://loinc.org", "8867-4", "heart rate")]
    ident = {"system": "urn:vn:cccd", "value": "001203004567", "type": {"text": "Căn cước"}}
    assert token_entries(ident) == [("urn:vn:cccd", "001203004567", "can cuoc")]
    assert token_entries(True) == [(None, "true", None)]
    assert token_entries("female") == [(None, "female", None)]


def test_references_relative_absolute_versioned_logical():
    assert reference_entries({"reference": "Patient/123"})[0][:3] == ("Patient", "123", None)
    assert reference_entries({"reference": "Patient/123/_history/4"})[0][:3] == ("Patient", "123", "4")
    absolute = reference_entries({"reference": "https://hospital.vn/fhir/Patient/9"})[0]
    assert absolute[:2] == ("Patient", "9") and absolute.url == "https://hospital.vn/fhir/Patient/9"
    logical = reference_entries({"identifier": {"system": "urn:vn:bhyt", "value": "DN4790123456789"}})[0]
    assert logical.identifier_value == "DN4790123456789" and logical.target_id is None
    assert reference_entries({"reference": "#contained-1"}) == []


def test_date_ranges_follow_precision():
    assert date_range("2024") == ("2024-01-01T00:00:00.000000+00:00", "2025-01-01T00:00:00.000000+00:00")
    assert date_range("2024-12") == ("2024-12-01T00:00:00.000000+00:00", "2025-01-01T00:00:00.000000+00:00")
    assert date_range("2024-02-29")[1] == "2024-03-01T00:00:00.000000+00:00"
    assert date_range("2024-05-01T10:00:00+07:00") == (
        "2024-05-01T03:00:00.000000+00:00", "2024-05-01T03:00:01.000000+00:00")
    assert date_range("2023-02-30") is None and date_range("not a date") is None
    period = date_entries({"start": "2024-01-05T08:00:00Z"})
    assert period == [("2024-01-05T08:00:00.000000+00:00", None)]


def test_numbers_carry_implicit_precision_and_quantities_canonicalise():
    (n,) = number_entries(100)
    assert (n.low, n.high) == (Decimal("99.5"), Decimal("100.5"))
    (q,) = quantity_entries({"value": 5.4, "system": "http://unitsofmeasure.org", "code": "mmol/L"})
    assert q.canonical_code == "mol/L" and q.canonical_value == Decimal("0.0054")
    (g,) = quantity_entries({"value": 1.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"})
    assert g.canonical_value == Decimal("1500.0") and g.canonical_code == "g"
