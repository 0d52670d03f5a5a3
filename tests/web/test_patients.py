"""Reading what is typed in the patient search box, and the facts shown of a patient."""

from __future__ import annotations

from datetime import date

import pytest

from sante.clinical.identifiers import fhir_identifier
from sante.web.i18n import Formats
from sante.web.patients import identifier_kind, parse_query, summarize

TODAY = date(2026, 11, 23)


@pytest.mark.parametrize("typed,searches", [
    ("nguyen van", [[("name", "nguyen"), ("name", "van")]]),
    ("  Nguyễn   Văn ", [[("name", "Nguyễn"), ("name", "Văn")]]),
    ("001085012345", [[("identifier", "001085012345")]]),
    ("dn4790123456789", [[("identifier", "DN4790123456789")]]),  # a BHYT card number, in capitals
    ("BV-000123", [[("identifier", "BV-000123")]]),
    ("0912 345 678", [[("identifier", "0912345678")], [("phone", "0912345678,+84912345678")]]),
    ("+84912345678", [[("identifier", "+84912345678")], [("phone", "0912345678,+84912345678")]]),
    ("12/03/1985", [[("birthdate", "1985-03-12")]]),
    ("2/3/1985", [[("birthdate", "1985-03-02")]]),
    ("03/1985", [[("birthdate", "1985-03")]]),
    ("1985-03-12", [[("birthdate", "1985-03-12")]]),
    ("an 1985", [[("name", "an"), ("birthdate", "1985")]]),
    ("an 3000", [[("name", "an"), ("identifier", "3000")]]),  # not a birth year
    ("a", []),
    ("", []),
])
def test_what_is_typed_becomes_searches(typed, searches):
    query = parse_query(typed, TODAY)
    assert query.problem is None and query.searches == searches


def test_an_impossible_date_is_explained():
    assert parse_query("31/02/1985", TODAY).problem and parse_query("13/1985", TODAY).problem


def test_identifier_kinds_and_the_summary():
    assert identifier_kind(fhir_identifier("cccd", "001085012345")) == "cccd"  # Sante's own systems
    assert identifier_kind(fhir_identifier("bhyt", "DN4790123456789")) == "bhyt"
    assert identifier_kind(fhir_identifier("mrn", "BV-1")) == "mrn"
    assert identifier_kind({"system": "urn:vn:cccd"}) == "cccd"
    assert identifier_kind({"system": "https://example.vn/sid/bhyt"}) == "bhyt"
    assert identifier_kind({"type": {"coding": [{"code": "MR"}]}, "system": "urn:x"}) == "mrn"
    assert identifier_kind({"system": "urn:other"}) is None
    patient = {"id": "p", "name": [{"family": "Trần", "given": ["Thị", "Bình"]}], "gender": "female",
               "birthDate": "1992-07-01", "identifier": [{"system": "urn:x", "value": "9", "type": {"text": "Hộ chiếu"}},
                                                         {"system": "urn:vn:cccd", "value": "001192004567"}]}
    s = summarize(patient, Formats("vi"))
    assert s.name == "Trần Thị Bình" and s.gender == "Nữ" and s.birth_date == "01/07/1992"
    assert [(i.label, i.value) for i in s.identifiers] == [("CCCD", "001192004567"), ("Hộ chiếu", "9")]
    assert summarize({"id": "x"}, Formats("en")).gender == "Unknown sex"
