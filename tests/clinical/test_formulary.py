"""The WHO EML starter formulary: coverage, valid FHIR Medications, strengths as Ratios, search."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from sante.clinical import formulary
from sante.fhir.validate import validate
from sante.store.index_values import fold

ATC = re.compile(r"^[A-Z]\d{2}[A-Z]{2}(\d{2})?$")
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def test_covers_the_main_sections_of_the_list():
    products = formulary.products()
    assert len(products) >= 250
    assert len({p.name for p in products}) >= 200
    sections = Counter(p.section.split(" ")[0] for p in products)
    for prefix in ("2.1", "2.2", "6.2.1", "6.2.2", "6.2.5", "6.3", "6.4.2", "6.5.3", "12.3", "12.5", "18.5",
                   "17.1", "24.1", "24.2", "25.1", "26.2"):  # fmt: skip
        assert sections[prefix] > 0, prefix
    names = {p.name for p in products}
    for inn in ("paracetamol", "amoxicillin", "isoniazid", "rifampicin", "artemether + lumefantrine", "metformin",
                "amlodipine", "salbutamol", "omeprazole", "fluoxetine", "insulin glargine", "oral rehydration salts"):  # fmt: skip
        assert inn in names, inn


def test_every_product_is_well_formed():
    products = formulary.products()
    ids = [p.id for p in products]
    assert len(ids) == len(set(ids))
    for p in products:
        assert p.id.startswith("eml-") and FHIR_ID.match(p.id), p.id
        assert ATC.match(p.atc) or re.match(r"^[A-Z]\d{2}[A-Z]{2}$", p.atc), (p.id, p.atc)
        assert p.form in formulary.FORMS and p.route in formulary.ROUTES, p.id
        if p.vi:  # a Vietnamese name only where it is spelled differently
            assert fold(p.vi) != fold(p.name), p.id
        if p.strength:
            assert all(i.strength is not None for i in p.ingredients), p.id


def test_every_medication_is_valid_fhir():
    medications = formulary.medications()
    assert len(medications) == len(formulary.products())
    for m in medications:
        assert validate(m) == [], m["id"]
        assert m["code"]["coding"][0]["system"] == "http://www.whocc.no/atc"


def test_strengths_become_ratios():
    amox = formulary.medication("eml-amoxicillin-500mg-capsule")
    assert amox["code"]["coding"][0]["code"] == "J01CA04"
    assert amox["form"]["coding"][0]["code"] == "CAP"
    strength = amox["ingredient"][0]["strength"]
    assert strength["numerator"] == {"value": 500, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}
    assert (strength["denominator"]["value"], strength["denominator"]["code"]) == (1, "{capsule}")

    syrup = formulary.medication("eml-amoxicillin-clavulanic-acid-250mg-5ml-62.5mg-5ml-c661b4")
    assert [i["itemCodeableConcept"]["text"] for i in syrup["ingredient"]] == ["amoxicillin", "clavulanic acid"]
    clav = syrup["ingredient"][1]["strength"]
    assert (clav["numerator"]["value"], clav["numerator"]["code"]) == (62.5, "mg")
    assert (clav["denominator"]["value"], clav["denominator"]["code"]) == (5, "mL")

    cream = next(p for p in formulary.products() if p.name == "miconazole")
    s = cream.ingredients[0].strength
    assert (s.numerator, s.numerator_unit, s.denominator, s.denominator_unit) == (2, "g", 100, "g")
    eye = next(p for p in formulary.products() if p.name == "gentamicin" and p.form == "eye-drops")
    assert eye.ingredients[0].strength.denominator_unit == "mL"

    insulin = next(p for p in formulary.products() if p.name == "insulin glargine")
    assert (insulin.ingredients[0].strength.numerator_unit, insulin.ingredients[0].strength.denominator_unit) == (
        "[iU]",
        "mL",
    )
    ors = next(p for p in formulary.products() if p.name == "oral rehydration salts")
    assert len(ors.ingredients) == 4 and ors.ingredients[0].strength.denominator_unit == "L"
    tdf = next(p for p in formulary.products() if p.atc == "J05AR27")
    assert [i.strength.numerator for i in tdf.ingredients] == [50, 300, 300]


def test_ids_are_stable():
    first = [p.id for p in formulary.products()]
    formulary._products.cache_clear()
    formulary._by_id.cache_clear()
    assert [p.id for p in formulary.products()] == first
    assert "eml-paracetamol-500mg-tablet" in first
    assert formulary.medication("eml-nothing") is None


def test_search_by_name_in_any_spelling():
    by_inn = formulary.search("Amoxicillin")
    assert by_inn and all("amoxicillin" in p.name for p in by_inn)
    assert formulary.search("amoxicilin") == by_inn  # Vietnamese spelling
    assert formulary.search("AMOXICILLIN") == by_inn
    assert by_inn[0].name == "amoxicillin"  # the plain medicine before combinations
    assert {p.name for p in formulary.search("sắt")} >= {"ferrous sulfate"}
    assert formulary.search("sat")[0].name == "ferrous sulfate"
    assert [p.name for p in formulary.search("oresol")] == ["oral rehydration salts"]
    rifampicin = {p.name for p in formulary.search("rifampicin", limit=50)}
    assert "rifampicin" in rifampicin and "isoniazid + rifampicin" in rifampicin
    assert formulary.search("") == [] and formulary.search("zzzz") == []


def test_search_by_atc_prefix():
    penicillins = formulary.search("J01C", limit=100)
    assert penicillins and all(p.atc.startswith("J01C") for p in penicillins)
    assert {"amoxicillin", "benzylpenicillin", "cloxacillin"} <= {p.name for p in penicillins}
    exact = formulary.search("c08ca01")
    assert exact and all(p.atc == "C08CA01" for p in exact)
    assert len(formulary.search("J", limit=5)) == 5


@pytest.mark.parametrize("route", sorted(formulary.ROUTES))
def test_route_concepts(route):
    concept = formulary.route_concept(route)
    assert concept["text"]
    request = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationReference": {"reference": "Medication/eml-paracetamol-500mg-tablet"},
        "subject": {"reference": "Patient/p1"},
        "dosageInstruction": [{"route": concept}],
    }
    assert validate(request) == []
