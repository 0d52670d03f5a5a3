"""Forecasts of weekly case counts, 4 to 8 weeks ahead, with 80 % and 95 % prediction intervals.

The model: a negative-binomial regression (statsmodels' NB2, dispersion estimated by maximum likelihood) of the
weekly count on a linear trend and, when the series covers at least a year, two pairs of yearly Fourier terms
(sin and cos of 2πkt/52.18, k = 1, 2). It suits surveillance counts: they are counts (never negative, often
zero), overdispersed (outbreaks), and seasonal with one yearly cycle that two harmonics draw smoothly from a
few years of data. Holt–Winters and SARIMA need two complete seasons of 52 weekly states, assume Gaussian errors
(negative lower bounds, too-narrow intervals on small counts) and fail on sparse series; they were not used.

Prediction intervals come from simulation: coefficients drawn from their estimated sampling distribution, then
counts from the negative binomial at each drawn mean; the 10/90 % and 2.5/97.5 % quantiles of the draws are
the 80 % and 95 % intervals. The seed is fixed, so a forecast is reproducible.

Guards: fewer than MIN_WEEKS weeks, or an all-zero history, give the recent mean with Poisson intervals
(`method = "mean"`); a fit that fails or does not converge falls back the same way. Only the last FIT_WEEKS
weeks are fitted: older years say little about next month and slow the fit.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

WEEKS_PER_YEAR = 365.25 / 7
MIN_WEEKS = 12  # shorter histories get the recent mean
FIT_WEEKS = 156  # the last three years
SEASONAL_WEEKS = 52  # harmonics only with a year of data
RECENT_WEEKS = 8
DRAWS = 2000
MAX_HORIZON = 8


@dataclass(frozen=True, slots=True)
class Forecast:
    """Expected counts and prediction intervals for the weeks after the series (one value per week ahead)."""

    mean: tuple[float, ...]
    lower80: tuple[float, ...]
    upper80: tuple[float, ...]
    lower95: tuple[float, ...]
    upper95: tuple[float, ...]
    method: str  # "negative-binomial" | "poisson" | "mean"

    @property
    def horizon(self) -> int:
        return len(self.mean)


def _design(t: np.ndarray, seasonal: bool) -> np.ndarray:
    columns = [np.ones_like(t), t / WEEKS_PER_YEAR]
    if seasonal:
        for k in (1, 2):
            angle = 2 * math.pi * k * t / WEEKS_PER_YEAR
            columns += [np.sin(angle), np.cos(angle)]
    return np.column_stack(columns)


def _quantiles(draws: np.ndarray) -> dict[str, tuple[float, ...]]:
    q = np.quantile(draws, [0.025, 0.10, 0.90, 0.975], axis=0)
    return {"lower95": tuple(map(float, q[0])), "lower80": tuple(map(float, q[1])),
            "upper80": tuple(map(float, q[2])), "upper95": tuple(map(float, q[3]))}


def _mean_forecast(counts: np.ndarray, horizon: int) -> Forecast:
    """The mean of the recent weeks, with Poisson intervals."""
    level = float(counts[-RECENT_WEEKS:].mean()) if counts.size else 0.0
    mean = (level,) * horizon
    low95, low80, high80, high95 = (float(stats.poisson.ppf(p, level)) if level > 0 else 0.0
                                    for p in (0.025, 0.10, 0.90, 0.975))
    return Forecast(mean, (low80,) * horizon, (high80,) * horizon, (low95,) * horizon, (high95,) * horizon, "mean")


def _fit(counts: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(coefficients, their covariance, the NB2 dispersion or None for Poisson), or raises ValueError."""
    import statsmodels.api as sm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = sm.NegativeBinomial(counts, x, loglike_method="nb2").fit(disp=0, maxiter=200)
            converged = bool(result.mle_retvals.get("converged", False))
            params, cov = np.asarray(result.params), np.asarray(result.cov_params())
            if converged and np.all(np.isfinite(params)) and np.all(np.isfinite(cov)) and params[-1] > 1e-6:
                return params[:-1], cov[:-1, :-1], float(params[-1])
            poisson = sm.GLM(counts, x, family=sm.families.Poisson()).fit()
        except (np.linalg.LinAlgError, ValueError, OverflowError) as e:
            raise ValueError(f"the model could not be fitted: {e}") from e
    params, cov = np.asarray(poisson.params), np.asarray(poisson.cov_params())
    if not (np.all(np.isfinite(params)) and np.all(np.isfinite(cov))):
        raise ValueError("the model could not be fitted")
    return params, cov, None


def forecast_weekly(counts: Sequence[float], horizon: int = MAX_HORIZON) -> Forecast:
    """Forecast `horizon` (1–8) weeks after a series of weekly counts (oldest first)."""
    if not 1 <= horizon <= MAX_HORIZON:
        raise ValueError(f"the horizon is 1 to {MAX_HORIZON} weeks")
    y = np.asarray(counts, dtype=float)[-FIT_WEEKS:]
    if np.any(y < 0) or not np.all(np.isfinite(y)):
        raise ValueError("weekly counts are finite and not negative")
    if y.size < MIN_WEEKS or not np.any(y > 0):
        return _mean_forecast(y, horizon)
    seasonal = y.size >= SEASONAL_WEEKS
    t = np.arange(y.size, dtype=float)
    try:
        params, cov, alpha = _fit(y, _design(t, seasonal))
    except ValueError:
        return _mean_forecast(y, horizon)
    ahead = _design(np.arange(y.size, y.size + horizon, dtype=float), seasonal)
    rng = np.random.default_rng(20250701)
    drawn = rng.multivariate_normal(params, cov, size=DRAWS, method="svd")
    means = np.exp(np.clip(drawn @ ahead.T, -30, 12))
    if alpha is None:
        draws = rng.poisson(means)
    else:
        size = 1.0 / alpha
        draws = rng.negative_binomial(size, size / (size + means))
    mean = np.exp(np.clip(ahead @ params, -30, 12))
    return Forecast(tuple(map(float, mean)), method="negative-binomial" if alpha is not None else "poisson",
                    **_quantiles(draws))


__all__ = ["MAX_HORIZON", "Forecast", "forecast_weekly"]
