"""Sante's negative-binomial GLM detector ("glm_nb").

For each monitored week t, a log-linear model with intercept, linear trend and `harmonics` pairs of seasonal
sine/cosine terms is fitted to all weeks of the `b` previous years (up to `guard` weeks before t excluded).  The
mean is fitted by IRLS with negative-binomial weights; the NB dispersion alpha (variance mu + alpha mu^2) is
estimated by moments from the Pearson statistic; weeks with an Anscombe residual above 2.58 (past outbreaks)
are down-weighted as in Noufaily et al. (2013) and the model refitted.  The upper bound is the (1 - alpha)
quantile of the negative binomial with the predicted mean and the estimated dispersion (plug-in).

Zero-baseline rule: a baseline without any case gives expected 0 and upper bound 0 (any case alarms).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import nbinom

from sante.analytics.surveillance import inputs
from sante.analytics.surveillance.detection import Detection, verdict
from sante.analytics.surveillance.quasipoisson import fit_poisson

DEFAULTS: dict[str, Any] = {"b": 3, "harmonics": 2, "trend": True, "alpha": 0.005, "guard": 0, "reweight": True}
OUTLIER_RESIDUAL = 2.58
CHUNK_ROWS = 2_000


def seasonal_design(offsets: np.ndarray, freq: int, harmonics: int, trend: bool) -> np.ndarray:
    """Columns: intercept, [trend in years], cos/sin of each harmonic, in time relative to the monitored week."""
    columns = [np.ones(offsets.size)]
    if trend:
        columns.append(offsets / freq)
    for k in range(1, harmonics + 1):
        angle = 2 * np.pi * k * offsets / freq
        columns += [np.cos(angle) - 1.0, np.sin(angle)]  # 0 at offset 0: the intercept is log mu at t
    return np.column_stack(columns)


def nb_alpha(y: np.ndarray, mu: np.ndarray, weights: np.ndarray, n_parameters: int) -> np.ndarray:
    """Moment estimate of the NB dispersion alpha from the weighted Pearson statistic: E = 1 + alpha * mu."""
    dof = max(y.shape[1] - n_parameters, 1)
    pearson = np.sum(weights * (y - mu) ** 2 / mu, axis=1) / dof
    return np.maximum(0.0, (pearson - 1) / np.average(mu, axis=1, weights=weights))


def glm_nb(counts: np.ndarray, index: np.ndarray, control: dict[str, Any], freq: int) -> Detection:
    """Run the NB GLM detector on counts (series × time) at the 0-based time `index`es."""
    options = inputs.control_options(control, DEFAULTS, "glm_nb")
    b = inputs.positive_int(options["b"], "b")
    harmonics = inputs.positive_int(options["harmonics"], "harmonics", minimum=0)
    guard = inputs.positive_int(options["guard"], "guard", minimum=0)
    alpha = inputs.probability(options["alpha"], "alpha")
    offsets = np.arange(-b * freq, -guard)
    inputs.require_history(int(index[0]), b * freq, "glm_nb")
    design = seasonal_design(offsets, freq, harmonics, bool(options["trend"]))
    parts = [
        _fit_rows(counts, index, offsets, design, chunk, bool(options["reweight"]), bool(options["trend"]))
        for chunk in np.array_split(
            np.arange(counts.shape[0] * index.size), max(1, -(-counts.shape[0] * index.size // CHUNK_ROWS))
        )
    ]
    mu0 = np.concatenate([p[0] for p in parts]).reshape(counts.shape[0], index.size)
    nb = np.concatenate([p[1] for p in parts]).reshape(counts.shape[0], index.size)
    silent = np.concatenate([p[2] for p in parts]).reshape(counts.shape[0], index.size)
    upper = np.where(silent, 0.0, nb_quantile(1 - alpha, mu0, nb))
    expected = np.where(silent, 0.0, mu0)
    observed = counts[:, index]
    alarm = observed > upper
    return Detection(index + 1, observed, expected, upper, alarm, _explainer(observed, expected, upper, alarm, nb, b))


def nb_quantile(level: float, mean: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Quantile of the negative binomial with this mean and variance mean + alpha mean^2 (Poisson at alpha 0)."""
    alpha = np.maximum(alpha, 1e-10)
    size = 1 / alpha
    return nbinom.ppf(level, size, size / (size + mean))


def _fit_rows(
    counts: np.ndarray,
    index: np.ndarray,
    offsets: np.ndarray,
    design: np.ndarray,
    rows: np.ndarray,
    reweight: bool,
    trend: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    series, column = np.divmod(rows, index.size)
    y = counts[series[:, np.newaxis], index[column][:, np.newaxis] + offsets[np.newaxis, :]]
    silent = y.sum(axis=1) == 0
    y = np.where(silent[:, np.newaxis], 1.0, y)
    mu0, alpha = _fit_nb(y, design, reweight)
    if trend:
        # A trend fitted to a few scattered cases can extrapolate to absurd means: those rows drop the trend.
        absurd = ~np.isfinite(mu0) | (mu0 > 2 * y.max(axis=1) + 5)
        if absurd.any():
            mu0[absurd], alpha[absurd] = _fit_nb(y[absurd], np.delete(design, 1, axis=1), reweight)
    return mu0, alpha, silent


def _fit_nb(y: np.ndarray, design: np.ndarray, reweight: bool) -> tuple[np.ndarray, np.ndarray]:
    """Poisson fit, NB dispersion, outlier down-weighting and NB-weighted refit: (mean at t, NB alpha)."""
    p = design.shape[1]
    weights = np.ones_like(y)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        fit = fit_poisson(y, design, weights)
        alpha = nb_alpha(y, fit.mu, weights, p)
        if reweight:
            variance = fit.mu + alpha[:, np.newaxis] * fit.mu**2
            residual = 1.5 * (y ** (2 / 3) - fit.mu ** (2 / 3)) * fit.mu ** (1 / 3) / np.sqrt(variance)
            weights = np.where(residual > OUTLIER_RESIDUAL, (OUTLIER_RESIDUAL / np.maximum(residual, 1e-12)) ** 2, 1.0)
        fit = fit_poisson(y, design, weights / (1 + alpha[:, np.newaxis] * fit.mu))
        alpha = nb_alpha(y, fit.mu, weights, p)
        return np.exp(fit.beta[:, 0]), alpha


def _explainer(
    observed: np.ndarray, expected: np.ndarray, upper: np.ndarray, alarm: np.ndarray, nb: np.ndarray, b: int
) -> Callable[[int, int], str]:
    def explain(s: int, j: int) -> str:
        head = verdict(observed[s, j], upper[s, j], bool(alarm[s, j]))
        if expected[s, j] == 0 and upper[s, j] == 0:
            return f"{head} (NB GLM: no case in the {b}-year baseline, any case alarms)"
        return f"{head} (NB GLM on {b} years, expected {expected[s, j]:.3g}, NB dispersion {nb[s, j]:.3g})"

    return explain
