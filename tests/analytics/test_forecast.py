"""Weekly forecasts (sante.analytics.forecast): a seasonal series is followed, the intervals nest and cover, and
short, zero or sparse series get the recent mean instead of a failed fit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sante.analytics.forecast import MAX_HORIZON, forecast_weekly


def seasonal_series(weeks: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Negative-binomial counts around a yearly cycle (peak 20, trough 2); and the true means."""
    t = np.arange(weeks + MAX_HORIZON)
    mean = np.exp(np.log(6.3) + 1.15 * np.sin(2 * math.pi * t / (365.25 / 7)))
    rng = np.random.default_rng(seed)
    counts = rng.negative_binomial(8, 8 / (8 + mean[:weeks]))
    return counts, mean[weeks:]


def test_a_seasonal_series_is_followed_with_nested_intervals():
    counts, truth = seasonal_series(170)
    f = forecast_weekly(counts, 8)
    assert f.method == "negative-binomial" and f.horizon == 8
    for n in range(8):
        assert f.lower95[n] <= f.lower80[n] <= f.mean[n] <= f.upper80[n] <= f.upper95[n]
        assert f.lower95[n] <= truth[n] <= f.upper95[n]
    assert np.corrcoef(f.mean, truth)[0, 1] > 0.9  # it rises and falls with the season
    assert all(abs(m - t) / t < 0.5 for m, t in zip(f.mean, truth, strict=True))


def test_the_forecast_is_reproducible():
    counts, _ = seasonal_series(120, seed=5)
    assert forecast_weekly(counts, 6) == forecast_weekly(counts, 6)


def test_the_95_percent_interval_covers_most_future_weeks():
    covered = total = 0
    for seed in range(6):
        counts, _ = seasonal_series(160 + 8, seed=seed)
        f = forecast_weekly(counts[:-8], 8)
        covered += sum(lo <= y <= hi for lo, y, hi in zip(f.lower95, counts[-8:], f.upper95, strict=True))
        total += 8
    assert covered / total >= 0.85


def test_short_zero_and_sparse_series_do_not_fail():
    assert forecast_weekly([3, 4], 4).method == "mean"
    zero = forecast_weekly([0] * 80, 4)
    assert zero.mean == (0.0,) * 4 and zero.upper95 == (0.0,) * 4
    sparse = forecast_weekly([0] * 60 + [1] + [0] * 20, 5)
    assert sparse.horizon == 5 and all(m >= 0 and math.isfinite(m) for m in sparse.mean)
    short = forecast_weekly([2, 5, 3, 4, 6, 2, 3, 5, 4, 3, 5, 4, 6, 3], 4)  # under a year: no seasonal terms
    assert short.method in ("negative-binomial", "poisson") and 2 < short.mean[0] < 7


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        forecast_weekly([1, 2, 3], 9)
    with pytest.raises(ValueError):
        forecast_weekly([1, -2, 3] * 10, 4)
