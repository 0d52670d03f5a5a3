"""ICD-10 (WHO 2019) subset: lookup, Vietnamese/English search and ranking, chapters, FHIR Condition.code."""

from __future__ import annotations

import pytest

from sante.clinical import icd10
from sante.fhir.validate import validate
from sante.store.index_values import fold


def test_twenty_two_chapters_in_order():
    chapters = icd10.chapters()
    assert [c.number for c in chapters][:3] == ["I", "II", "III"] and len(chapters) == 22
    assert all(c.vi and c.en and c.vi != c.en for c in chapters)
    assert icd10.chapter_of("J18.9").number == "X"
    assert icd10.chapter_of("D50").number == "III" and icd10.chapter_of("D48").number == "II"
    assert icd10.chapter_of("H60").number == "VIII" and icd10.chapter_of("h59.9").number == "VII"
    assert icd10.chapter_of("T63.0").number == "XIX" and icd10.chapter_of("Y09").number == "XX"
    assert icd10.chapter_of("U07.1").number == "XXII"
    assert icd10.chapter_of("B99.9").title("en") == "Certain infectious and parasitic diseases"
    assert icd10.chapter_of("not a code") is None


def test_the_subset_is_large_and_bilingual():
    codes = icd10.codes()
    assert len(codes) >= 300
    assert all(c.vi and c.en and fold(c.vi) != fold(c.en) for c in codes)
    assert all(icd10.chapter_of(c.code) is not None for c in codes)
    assert len({icd10.chapter_of(c.code).number for c in codes}) == 22
    # every subcategory's category is there too, except where only the subcategory is in common use
    present = {c.code for c in codes}
    for wanted in ("I10", "E11", "E11.9", "J00", "J02", "J03", "J04", "J05.0", "J06", "J06.9", "J18", "J18.9",
                   "A15", "A16", "A17", "A18", "A19", "A97", "A97.0", "A97.1", "A97.2", "K29", "K29.7", "B08.4"):  # fmt: skip
        assert wanted in present, wanted


def test_lookup_normalises_codes():
    assert icd10.lookup("J18.9").vi == "Viêm phổi, không đặc hiệu"
    assert icd10.lookup(" j189 ") == icd10.lookup("J18.9")
    assert icd10.lookup("I10").en == "Essential (primary) hypertension"
    assert icd10.lookup("J99.9") is None
    assert icd10.lookup("viêm") is None
    assert icd10.normalise_code("e119") == "E11.9" and icd10.normalise_code("E11.") is None


def test_dengue_codes_of_the_2010_edition_are_retired():
    a90 = icd10.lookup("A90")
    assert a90.retired and a90.replaced_by == ("A97.0", "A97.1")
    assert icd10.lookup("A91").replaced_by == ("A97.1", "A97.2")
    assert not icd10.lookup("A97.2").retired
    results = [c.code for c in icd10.search("sot xuat huyet")]
    assert results.index("A97") < results.index("A91")  # current codes first


def test_search_by_code_prefix_ranks_exact_first():
    results = icd10.search("J18")
    assert [c.code for c in results] == ["J18", "J18.0", "J18.1", "J18.9"]
    assert [c.code for c in icd10.search("j18.9")] == ["J18.9"]
    assert icd10.search("E11")[0].code == "E11"
    assert all(c.code.startswith("E11") for c in icd10.search("E11"))
    assert {c.code for c in icd10.search("J0", limit=50)} >= {"J00", "J02.9", "J06.9"}


def test_search_words_in_vietnamese_without_accents():
    results = icd10.search("viem phoi")
    assert results == icd10.search("Viêm phổi") == icd10.search("VIEM PHOI")
    codes = [c.code for c in results]
    assert "J18.9" in codes and "J18" in codes
    # titles starting with the words come before titles that only contain them
    first_other = next(i for i, c in enumerate(results) if not fold(c.vi).startswith("viem phoi"))
    assert all(fold(c.vi).startswith("viem phoi") for c in results[:first_other])
    assert "J18.0" in codes[first_other:]  # "Viêm phế quản phổi": both words, not as a phrase
    assert icd10.search("tay chan mieng")[0].code == "B08.4"
    assert icd10.search("tiểu đường")[0].code.startswith("E1")
    # typed with diacritics: "dạ dày" (stomach) before "đa dây" (polyneuropathy), which folds the same
    stomach = icd10.search("dạ dày", limit=50)
    as_typed = [c for c in stomach if "dạ dày" in c.vi.lower()]
    assert stomach[: len(as_typed)] == as_typed
    assert {"K29.7", "K25", "C16"} <= {c.code for c in as_typed}
    assert "G62.9" in [c.code for c in stomach[len(as_typed) :]]
    assert "G62.9" in [c.code for c in icd10.search("da day", limit=50)]


def test_search_in_english_and_languages_mixed():
    en = icd10.search("pneumonia", lang="en")
    assert en[0].en.lower().startswith("pneumonia")
    assert {c.code for c in en} >= {"J18.9", "J13"}
    assert {c.code for c in icd10.search("pneumonia")} == {c.code for c in en}  # found from Vietnamese too
    assert icd10.search("gastritis", lang="en")[0].code.startswith("K29")
    assert icd10.search("") == [] and icd10.search("zzzz") == []
    assert len(icd10.search("viem", limit=5)) == 5


def test_condition_code_is_a_valid_codeable_concept():
    concept = icd10.condition_code("j18.9")
    assert concept == {
        "coding": [
            {"system": icd10.ICD10_SYSTEM, "version": "2019", "code": "J18.9", "display": "Pneumonia, unspecified"}
        ],
        "text": "Viêm phổi, không đặc hiệu",
    }
    assert icd10.condition_code("A90")["coding"][0]["version"] == "2010"
    assert icd10.condition_code("J99.0") == {"coding": [{"system": icd10.ICD10_SYSTEM, "code": "J99.0"}]}
    with pytest.raises(ValueError):
        icd10.condition_code("pneumonia")
    condition = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/p1"},
        "code": icd10.condition_code("I10"),
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
    }
    assert validate(condition) == []
