"""The population-health indicators (sante.analytics.indicators) over a small population written to a real
repository: cases per ISO week, place, age and sex; registers, coverage, positivity and activity."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from sante.analytics import indicators as ind
from sante.analytics import parse_view, run_view
from sante.analytics.notifiable import DISEASES, disease_of
from sante.store import open_repository
from tests.analytics.population_seed import population, write

JANUARY = ind.Filters(date(2024, 12, 1), date(2025, 3, 1))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ind.PopulationData]:
    folder: Path = tmp_path_factory.mktemp("indicators")
    repo = open_repository(f"sqlite:///{folder / 'sante.db'}")
    write(repo, population())
    yield ind.load_population(repo)
    repo.close()


def test_every_shipped_view_is_a_valid_view_definition():
    for name in ind.VIEWS:
        view = parse_view(ind.view_definition(name))
        assert view.resource in {"Patient", "Condition", "Encounter", "Immunization", "Observation",
                                 "MedicationRequest", "Location"}
    with pytest.raises(KeyError):
        ind.view_definition("../secrets")


def test_the_patient_view_reads_the_2025_province_and_commune_codes():
    rows = run_view(ind.view_definition("patients"), [r for r in population() if r["resourceType"] == "Patient"])
    by_id = {r["id"]: r for r in rows}
    assert (by_id["a"]["province"], by_id["a"]["commune"]) == ("01", "00004")
    assert (by_id["d"]["province"], by_id["d"]["commune"]) == ("40", "16681")
    assert by_id["e"]["province"] is None and by_id["e"]["commune"] is None


def test_notifiable_diseases_match_their_icd10_ranges():
    assert disease_of("A91").key == disease_of("A90").key == disease_of("A97.0").key == "dengue"
    assert disease_of("B08.4").key == "hfmd" and disease_of("B08.3") is None
    assert disease_of("A15.0").key == disease_of("A19.9").key == "tuberculosis"
    assert disease_of("J10.1").key == "influenza" and disease_of("U07.1").key == "covid19"
    assert disease_of("A900") is None and disease_of("J18.9") is None
    assert all(d.vi and d.en and d.fr for d in DISEASES)


def test_cases_are_counted_per_iso_week_refuted_ones_left_out(data):
    dengue = ind.filtered_cases(data, ind.Filters(date(2024, 12, 23), date(2025, 1, 19), disease="dengue"))
    weeks = ind.weekly_counts(dengue, date(2024, 12, 23), date(2025, 1, 19))
    assert [(w.week, w.count) for w in weeks] == [((2024, 52), 0), ((2025, 1), 2), ((2025, 2), 3), ((2025, 3), 0)]
    assert weeks[1].monday == date(2024, 12, 30)
    hfmd = [c for c in data.cases if c.disease == "hfmd"]
    assert [c.week for c in hfmd] == [(2020, 53)]


def test_cases_by_place_age_and_sex(data):
    cases = ind.filtered_cases(data, JANUARY)
    assert ind.cases_by(cases, ind.by_province) == {"01": 4, "40": 1}  # e has no address
    assert ind.cases_by(cases, ind.by_disease) == {"dengue": 5, "measles": 1}
    hanoi = ind.Filters(JANUARY.first, JANUARY.last, province="01")
    assert ind.cases_by(ind.filtered_cases(data, hanoi), ind.by_commune) == {"00004": 3, "00008": 1}
    assert len(ind.filtered_cases(data, ind.Filters(JANUARY.first, JANUARY.last, province="01",
                                                    commune="00008"))) == 1
    assert ind.filtered_cases(data, ind.Filters(JANUARY.first, JANUARY.last, age_group="0-4")) == []
    school = ind.Filters(JANUARY.first, JANUARY.last, age_group="5-14")
    assert [c.code for c in ind.filtered_cases(data, school)] == ["A91"]  # a, 5 years old at onset
    women = ind.Filters(JANUARY.first, JANUARY.last, sex="female")
    assert sorted(c.code for c in ind.filtered_cases(data, women)) == ["A91", "A91"]
    pyramid = {r.band: (r.male, r.female) for r in ind.age_sex_pyramid(cases)}
    assert pyramid["0-9"] == (0, 1) and pyramid["30-39"] == (2, 1) and pyramid["70-79"] == (1, 0)
    assert pyramid["20-29"] == (1, 0)  # e: 25, no address but a sex and an age


def test_the_filters_refuse_what_they_cannot_count():
    with pytest.raises(ValueError):
        ind.Filters(date(2025, 2, 1), date(2025, 1, 1))
    with pytest.raises(ValueError):
        ind.Filters(date(2025, 1, 1), date(2025, 2, 1), age_group="5-9")


def test_the_hypertension_and_diabetes_registers(data):
    registers = {r.key: r for r in ind.chronic_registers(data, ind.Filters(date(2025, 1, 1), date(2025, 3, 1)))}
    assert registers["hypertension"] == ind.Register("hypertension", 1, 1, 1, 1)  # last BP 130/80: controlled
    assert registers["diabetes"] == ind.Register("diabetes", 1, 0, 1, 0)  # untreated, HbA1c 8.1 %
    before = {r.key: r for r in ind.chronic_registers(data, ind.Filters(date(2025, 1, 1), date(2025, 1, 15)))}
    assert before["hypertension"].controlled == 0  # its last BP then was 160/100
    nghe_an = {r.key: r.registered for r in ind.chronic_registers(
        data, ind.Filters(date(2025, 1, 1), date(2025, 3, 1), province="40"))}
    assert nghe_an == {"hypertension": 0, "diabetes": 1}


def test_vaccination_coverage_of_young_children(data):
    today = date.today()
    found = ind.vaccination_coverage(data, ind.Filters(date(today.year, 1, 1), today))
    assert [(c.vaccine, c.vaccinated, c.children) for c in found] == [("05", 1, 2)]
    assert found[0].rate == 0.5 and found[0].label == "Sởi – Rubella"


def test_laboratory_positivity(data):
    [test] = ind.lab_positivity(data, JANUARY)
    assert (test.code, test.tested, test.positive) == ("75377-6", 3, 1)
    assert round(test.rate, 3) == 0.333


def test_visits_admissions_length_of_stay_and_occupancy(data):
    act = ind.activity(data, ind.Filters(date(2025, 1, 1), date(2025, 1, 10)))
    assert (act.visits, act.admissions, act.discharges, act.average_length_of_stay) == (1, 1, 1, 3.0)
    assert act.beds == 2 and act.occupancy == pytest.approx(3 / 20)  # 3 bed-days of 2 beds × 10 days
    assert ind.activity(data, ind.Filters(date(2025, 1, 1), date(2025, 1, 10), province="40")).admissions == 0


def test_diagnoses_by_chapter(data):
    chapters = ind.diagnoses_by_chapter(data, JANUARY)
    assert chapters == {"I": 6, "X": 1}  # dengue ×5 and measles (chapter I), pneumonia (X)


def test_duckdb_is_used_for_large_inputs_only():
    assert ind.engine_for(10) == "memory"
    assert ind.engine_for(ind.SMALL_INPUT) == "duckdb"


def test_the_cache_reads_again_after_a_write(tmp_path):
    repo = open_repository(f"sqlite:///{tmp_path / 'sante.db'}")
    write(repo, population())
    cache, lazy = ind.PopulationCache(max_age=0), ind.PopulationCache(max_age=3600)
    first, kept = cache.get(repo), lazy.get(repo)
    assert cache.get(repo) is first
    write(repo, [{"resourceType": "Condition", "id": "new", "subject": {"reference": "Patient/a"},
                  "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "A09"}]},
                  "onsetDateTime": "2025-01-08"}])
    again = cache.get(repo)
    assert again is not first and len(again.cases) == len(first.cases) + 1
    assert lazy.get(repo) is kept  # within its age, a write does not make it read everything again
    repo.close()
