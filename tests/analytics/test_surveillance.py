"""Unit tests of sante.analytics.surveillance on small hand-checkable inputs, edge cases and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from sante.analytics.surveillance import METHODS, SurveillanceInputError, detect, detect_many

Z_999 = norm.ppf(0.999)


def poisson_series(mean: float, length: int, seed: int = 7) -> list[int]:
    return np.random.default_rng(seed).poisson(mean, length).tolist()


# --- EARS -----------------------------------------------------------------------------------------------------


def test_c1_uses_mean_and_sd_of_the_seven_previous_weeks() -> None:
    rows = detect([1, 2, 3, 4, 5, 6, 7, 13], "ears_c1")
    sd = math.sqrt(sum((x - 4) ** 2 for x in range(1, 8)) / 6)
    assert [r["t"] for r in rows] == [8]
    assert rows[0]["expected"] == pytest.approx(4.0)
    assert rows[0]["upperbound"] == pytest.approx(4 + Z_999 * sd)
    assert rows[0]["alarm"] is True
    assert "ALARM" in rows[0]["reason"] and "EARS C1" in rows[0]["reason"]


def test_c2_skips_the_two_weeks_before_the_current_one() -> None:
    counts = [3, 4, 3, 4, 3, 4, 3, 50, 60, 6]
    row = detect(counts, "ears_c2")[0]
    assert row["t"] == 10
    assert row["expected"] == pytest.approx(24 / 7)  # weeks 1-7 only: the spikes at 8, 9 are in the guard band
    assert row["alarm"] is True


def test_c3_counts_the_current_week_unless_r_compatible() -> None:
    counts = [3, 4, 3, 4, 3, 4, 3, 4, 3, 4, 3, 9]
    cdc = detect(counts, "ears_c3")[-1]
    r_style = detect(counts, "ears_c3", r_compatible=True)[-1]
    # CDC: C3 = max(0, C2(t) - 1) + carried excess of the two previous weeks; R leaves the current week out.
    sd = math.sqrt(12 / 7 / 6)  # weeks 3-9: four 3s and three 4s (and weeks 1-7, 2-8 alike)
    carried = max(0.0, (4 - 24 / 7) / sd - 1)  # week 10 against weeks 1-7; week 11 (a 3) has no excess
    assert cdc["alarm"] is True
    assert r_style["alarm"] is False
    assert r_style["upperbound"] == pytest.approx(9 + sd * (norm.ppf(0.975) - carried), rel=1e-9)


def test_zero_variance_baseline_alarms_on_any_excess() -> None:
    rows = detect([0] * 7 + [1], "ears_c1")
    assert rows[0]["upperbound"] == 0 and rows[0]["alarm"] is True
    assert detect([2] * 7 + [2], "ears_c1")[0]["alarm"] is False


# --- CUSUM ----------------------------------------------------------------------------------------------------


def test_cusum_standard_by_hand() -> None:
    rows = detect([4, 10, 4, 12], "cusum", range=(1, 4), m=4.0)
    # z = (x - 4) / 2: 0, 3, 0, 4; S = max(0, S + z - 1.04): 0, 1.96, 0.92, 3.88
    assert [r["alarm"] for r in rows] == [False, False, False, True]
    assert rows[0]["upperbound"] == math.ceil(4 + 2 * (2.26 + 1.04))
    assert rows[2]["upperbound"] == math.ceil(4 + 2 * (2.26 + 1.04 - 1.96))


def test_cusum_rossi_bound_inverts_the_transformation() -> None:
    rows = detect([5, 5, 5, 5], "cusum", range=(2, 4), trans="rossi")
    m, z = 5.0, 2.26 + 1.04
    assert rows[0]["upperbound"] == pytest.approx((math.sqrt(4 * m + 2 * math.sqrt(m) * z) - math.sqrt(m)) ** 2)


def test_cusum_zero_baseline_rule() -> None:
    rows = detect([0, 0, 0, 0, 2, 0], "cusum", range=(5, 6))
    assert [(r["expected"], r["upperbound"], r["alarm"]) for r in rows] == [(0, 0, True), (0, 0, False)]


# --- Farrington ------------------------------------------------------------------------------------------------


def test_farrington_on_a_constant_series_matches_the_formula() -> None:
    c, n = 4.0, 35
    counts = [c] * (5 * 52 + 3) + [9.0]
    row = detect(counts, "farrington")[-1]
    # Intercept-only quasi-Poisson: mu0 = c, dispersion max(1, 0) = 1, Var(log mu0) = 1 / (n c); 2/3-power bound.
    variance = 4 / 9 * c ** (1 / 3) * (1 + c / (n * c))
    assert row["expected"] == pytest.approx(c)
    assert row["upperbound"] == pytest.approx((c ** (2 / 3) + norm.ppf(0.975) * math.sqrt(variance)) ** 1.5)
    assert row["alarm"] is True
    assert "trend not significant" in row["reason"]


def test_farrington_needs_five_cases_in_four_weeks() -> None:
    counts = [0.0] * (5 * 52 + 3) + [3.0]
    row = detect(counts, "farrington")[-1]
    assert (row["expected"], row["upperbound"], row["alarm"]) == (0.0, 0.0, False)
    assert "no case in any reference week" in row["reason"] and "suppressed" in row["reason"]
    counts[-1] = 6.0
    assert detect(counts, "farrington")[-1]["alarm"] is True


def test_flexible_differs_from_r_only_where_weights_were_lowered() -> None:
    counts = poisson_series(5, 5 * 52 + 4)
    counts[52 * 3 + 1] = 40  # a past outbreak inside the reference weeks of the last point
    default = detect_many(counts, "farrington_flexible", range=(len(counts), len(counts)))
    r_style = detect_many(counts, "farrington_flexible", range=(len(counts), len(counts)), r_compatible=True)
    assert default.expected[0, 0] == pytest.approx(r_style.expected[0, 0])
    assert default.upperbound[0, 0] != pytest.approx(r_style.upperbound[0, 0], rel=1e-3)
    clean = poisson_series(5, 5 * 52 + 4, seed=3)
    a = detect_many(clean, "farrington_flexible", range=(len(clean), len(clean)), weights_threshold=100.0)
    b = detect_many(
        clean, "farrington_flexible", range=(len(clean), len(clean)), weights_threshold=100.0, r_compatible=True
    )
    assert a.upperbound[0, 0] != b.upperbound[0, 0] or a.expected[0, 0] == b.expected[0, 0]


def test_flexible_threshold_methods_give_whole_counts_for_negative_binomial_quantiles() -> None:
    counts = poisson_series(6, 5 * 52 + 10)
    for method in ("nbPlugin", "muan"):
        bounds = detect_many(counts, "farrington_flexible", threshold_method=method).upperbound
        assert np.all(bounds == np.round(bounds))


def test_population_offset_scales_the_expectation() -> None:
    counts = np.array(poisson_series(8, 5 * 52 + 10), dtype=float)
    population = np.full(counts.size, 1000.0)
    population[-1] = 2000.0
    plain = detect_many(counts, "farrington_flexible", range=(counts.size, counts.size))
    offset = detect_many(counts, "farrington_flexible", range=(counts.size, counts.size), population=population)
    assert offset.expected[0, 0] == pytest.approx(2 * plain.expected[0, 0], rel=1e-6)


# --- glm_nb and recommended -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["glm_nb", "recommended"])
def test_quiet_series_has_few_alarms_and_a_big_spike_alarms(method: str) -> None:
    counts = poisson_series(6, 6 * 52 + 10, seed=11)
    quiet = detect_many(counts, method)
    assert quiet.alarm.mean() < 0.05
    assert np.all(np.abs(quiet.expected - 6) < 2.5)
    counts[-1] = 40
    assert detect(counts, method)[-1]["alarm"] is True


def test_recommended_two_week_rule_fires_on_two_moderate_weeks() -> None:
    counts = [10] * (5 * 52 + 20)
    counts = (np.array(counts) + np.tile([0, 1, -1, 2, -2], len(counts) // 5)).tolist()
    counts[-2], counts[-1] = 18, 18
    row = detect(counts, "recommended")[-1]
    assert row["alarm"] is True and "two-week rule" in row["reason"]


@pytest.mark.parametrize("method", ["glm_nb", "recommended"])
def test_zero_baseline_rule_for_sante_methods(method: str) -> None:
    counts = [0] * (6 * 52) + [1]
    row = detect(counts, method)[-1]
    assert (row["expected"], row["upperbound"], row["alarm"]) == (0.0, 0.0, True)
    assert "no case" in row["reason"]


# --- API and input errors --------------------------------------------------------------------------------------


def test_detect_returns_one_dict_per_point_with_dates() -> None:
    rows = detect(poisson_series(3, 60), "ears_c1", start=(2024, 50), range=(10, 12))
    assert [(r["t"], r["year"], r["week"]) for r in rows] == [(10, 2025, 7), (11, 2025, 8), (12, 2025, 9)]
    assert set(rows[0]) == {"t", "year", "week", "observed", "expected", "upperbound", "alarm", "reason"}


@pytest.mark.parametrize(
    ("call", "parameter"),
    [
        (lambda: detect([1, -1, 2] * 5, "ears_c1"), "observed"),
        (lambda: detect([1.0, float("nan")] * 8, "ears_c1"), "observed"),
        (lambda: detect([1.5] * 16, "ears_c1"), "observed"),
        (lambda: detect([1] * 20, "ears_c1", range=(5, 10)), "range"),
        (lambda: detect([1] * 20, "ears_c1", range=(8, 21)), "range"),
        (lambda: detect([1] * 20, "nowcast"), "method"),
        (lambda: detect([1] * 20, "ears_c1", lambda_=2), "lambda_"),
        (lambda: detect([1] * 20, "ears_c1", alpha=1.5), "alpha"),
        (lambda: detect([1] * 20, "farrington"), "observed"),
        (lambda: detect([1] * 300, "farrington", limit54=(5,)), "limit54"),
        (lambda: detect([1] * 300, "farrington", b="five"), "b"),
        (lambda: detect([1] * 300, "glm_nb", harmonics=-1), "harmonics"),
        (lambda: detect([1] * 300, "cusum", trans="log"), "trans"),
        (lambda: detect([1] * 20, "ears_c1", start=(2024, 60)), "start"),
    ],
)
def test_bad_input_names_the_parameter(call: object, parameter: str) -> None:
    with pytest.raises(SurveillanceInputError) as error:
        call()  # type: ignore[operator]
    assert error.value.parameter == parameter
    assert isinstance(error.value, ValueError)


def test_detect_many_matches_detect_row_by_row() -> None:
    counts = np.array([poisson_series(4, 5 * 52 + 12, seed=s) for s in range(3)])
    for method in METHODS:
        many = detect_many(counts, method)
        for s in range(3):
            single = detect(counts[s].tolist(), method)
            assert [r["alarm"] for r in single] == many.alarm[s].tolist()
            np.testing.assert_allclose([r["upperbound"] for r in single], many.upperbound[s], rtol=1e-12)


# --- properties ---------------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=12, max_size=40), st.integers(0, 60))
def test_ears_more_cases_never_remove_an_alarm(history: list[int], extra: int) -> None:
    for method in ("ears_c1", "ears_c2", "ears_c3"):
        base = detect(history, method)[-1]
        more = detect([*history[:-1], history[-1] + extra], method)[-1]
        assert more["upperbound"] == pytest.approx(base["upperbound"])
        assert more["alarm"] or not base["alarm"]


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.5, 20), st.integers(0, 50))
def test_recommended_alarm_iff_count_above_bound(seed: int, mean: float, extra: int) -> None:
    counts = np.random.default_rng(seed).poisson(mean, 5 * 52 + 15).astype(float)
    counts[-1] += extra
    result = detect_many(counts, "recommended")
    assert np.array_equal(result.alarm, result.observed > result.upperbound)
    assert np.all(result.upperbound >= 0)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.floats(1, 30))
def test_farrington_gives_identical_series_identical_bounds(seed: int, level: float) -> None:
    base = np.random.default_rng(seed).poisson(level, 5 * 52 + 6).astype(float)
    result = detect_many(np.vstack([base, base]), "farrington")
    np.testing.assert_allclose(result.upperbound[0], result.upperbound[1], rtol=1e-12)
    assert np.all((result.upperbound >= result.expected) | (result.expected == 0))
