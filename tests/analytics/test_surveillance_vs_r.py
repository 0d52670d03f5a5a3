"""Sante's detectors against R's `surveillance` package on the shared real series (a subset of units per set).

R runs once for the whole module (one Rscript process).  Without Rscript or the package the tests skip, except
when the environment variable CI is set: then they fail, so that CI cannot pass without the comparison.  The
full comparison on every unit is bench/surveillance_r.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from sante.analytics.surveillance import Detection, detect_many
from sante.analytics.surveillance.r_reference import (
    Comparison,
    Dataset,
    RJob,
    RResult,
    comparisons,
    load_datasets,
    r_available,
    run_r,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "surveillance"
UNITS_PER_SET = 2
GLM_WEEKS = 8  # monitored points per series for the GLM-based methods (R fits one GLM per point)
NAMES = [c.name for c, _, _ in comparisons(52, 312)]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: the R comparison must run in CI")
    pytest.skip(reason)


def representative_units(dataset: Dataset) -> list[int]:
    """The first unit and the unit with the most cases."""
    busiest = int(np.argmax(dataset.counts.sum(axis=1)))
    return sorted({0, busiest})[:UNITS_PER_SET]


def monitored(comparison: Comparison, first: int, last: int) -> tuple[int, int]:
    if comparison.tolerance < 1e-3:
        return first, last
    return max(first, last - GLM_WEEKS + 1), last


@pytest.fixture(scope="module")
def cases() -> list[tuple[Dataset, np.ndarray, Comparison, tuple[int, int]]]:
    if not DATA.is_dir():
        _unavailable(f"the shared data {DATA} is missing")
    found = []
    for dataset in load_datasets(DATA):
        counts = dataset.counts[representative_units(dataset)]
        for comparison, first, last in comparisons(dataset.freq, counts.shape[1]):
            found.append((dataset, counts, comparison, monitored(comparison, first, last)))
    return found


@pytest.fixture(scope="module")
def r_results(cases: list) -> dict[str, RResult]:
    if not r_available():
        _unavailable("Rscript or the R package surveillance is not installed")
    jobs = [
        RJob(f"{dataset.name}/{comparison.name}", comparison.r_fun, comparison.r_control, counts, *window, dataset.freq)
        for dataset, counts, comparison, window in cases
    ]
    return run_r(jobs)


@pytest.fixture(scope="module")
def sante_results(cases: list) -> dict[str, Detection]:
    return {
        f"{dataset.name}/{comparison.name}": detect_many(
            counts, comparison.method, freq=dataset.freq, range=window, **comparison.control
        )
        for dataset, counts, comparison, window in cases
    }


def differences(sante: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Relative differences of upper bounds; NaN on both sides and bounds below 1e-6 on both sides agree."""
    both_tiny = (np.abs(np.nan_to_num(sante)) < 1e-6) & (np.abs(np.nan_to_num(r)) < 1e-6)
    both_nan = np.isnan(sante) & np.isnan(r)
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.abs(sante - r) / np.maximum(np.abs(r), 1e-12)
    return np.where(both_tiny | both_nan, 0.0, np.nan_to_num(relative, nan=np.inf))


@pytest.mark.parametrize("name", NAMES)
def test_same_alarms_and_upper_bounds_as_r(
    name: str, cases: list, r_results: dict[str, RResult], sante_results: dict[str, Detection]
) -> None:
    checked = 0
    for dataset, _, comparison, (first, _) in cases:
        if comparison.name != name:
            continue
        r, sante = r_results[f"{dataset.name}/{name}"], sante_results[f"{dataset.name}/{name}"]
        worst = differences(sante.upperbound, r.upperbound)
        assert worst.max() <= comparison.tolerance, (
            f"{dataset.name}: upper bound differs by {worst.max():.3g} at t={first + int(worst.argmax() % worst.shape[1])}"
        )
        assert np.array_equal(sante.alarm, r.alarm), (
            f"{dataset.name}: {int((sante.alarm != r.alarm).sum())} alarms differ"
        )
        checked += r.alarm.size
    assert checked > 0


def test_flexible_expected_counts_match_r(
    cases: list, r_results: dict[str, RResult], sante_results: dict[str, Detection]
) -> None:
    for dataset, _, comparison, _ in cases:
        if comparison.r_fun != "farringtonFlexible":
            continue
        key = f"{dataset.name}/{comparison.name}"
        r, sante = r_results[key], sante_results[key]
        assert differences(sante.expected, r.expected).max() <= 1e-6, dataset.name
