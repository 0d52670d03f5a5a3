"""Sante's recommended detector: a robust, closed-form Farrington-type model with a one-week and a two-week rule.

Designed to run on every disease × commune series of a country each week (closed form: no iterative GLM per
week) with a weekly false-positive rate at or below 0.5 %; the two-week rule adds sensitivity to outbreaks that
spread their cases over two weeks.  For each monitored week t:

1. Reference weeks: the weeks t - j*freq - w .. t - j*freq + w of the `b` previous years (as Farrington).
2. Model: weekly mean mu_j = exp(a + beta * (-j)) for reference year j, fitted by Poisson maximum likelihood on
   the (weighted) yearly totals by Newton's method; dispersion phi = Pearson statistic / (n - 2), at least 1.
3. Past outbreaks: reference weeks with a 2/3-power (Anscombe) residual above 2.58 are down-weighted by
   residual^-2 (Noufaily et al. 2013) and the model refitted.
4. Trend: kept if its Wald z exceeds 1 (p < 0.32; a stricter test drops real trends and raises false alarms)
   and the prediction does not exceed the largest reference count (Farrington's rule); otherwise the weighted
   mean is the prediction.
5. Bounds (2/3-power delta method, Farrington 1996, including the estimation error of the prediction):
   U1 for the week alone at one-sided level `alpha_week` (default 0.0003), U2 for the sum of weeks t-1 and t
   at `alpha_pair` (default 0.0012); the levels were chosen in bench/surveillance_noufaily.py so that the
   realised weekly false-positive rate stays at or below 0.5 % despite model error.
   Alarm when y_t > U1, or when y_{t-1} + y_t > U2 and y_t exceeds its expectation.  The reported upper bound is
   the smallest count at t that alarms: min(U1, max(U2 - y_{t-1}, expected)).

Zero-baseline rule: no case in any reference week gives expected 0 and upper bound 0 (any case alarms).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import norm

from sante.analytics.surveillance import inputs
from sante.analytics.surveillance.detection import Detection, verdict

DEFAULTS: dict[str, Any] = {"b": 5, "w": 3, "alpha_week": 0.0003, "alpha_pair": 0.0012}
OUTLIER_RESIDUAL = 2.58
TREND_Z = 1.0  # keep a trend whose Wald z exceeds 1 (p < 0.32): dropping real trends costs more than noise
NEWTON_STEPS = 5
MAX_YEARLY_LOG_TREND = 2.0  # keeps Newton's method finite when all cases fall in one reference year
MAX_STEP = 5.0
CHUNK_CELLS = 2_000_000


def first_monitorable(b: int, w: int, freq: int) -> int:
    """First 1-based week whose previous week also has a complete reference set."""
    return b * freq + w + 2


def recommended(counts: np.ndarray, index: np.ndarray, control: dict[str, Any], freq: int) -> Detection:
    """Run the recommended detector on counts (series × time) at the 0-based time `index`es."""
    options = inputs.control_options(control, DEFAULTS, "recommended")
    b = inputs.positive_int(options["b"], "b")
    w = inputs.positive_int(options["w"], "w", minimum=0)
    z_week = float(norm.ppf(1 - inputs.probability(options["alpha_week"], "alpha_week")))
    z_pair = float(norm.ppf(1 - inputs.probability(options["alpha_pair"], "alpha_pair")))
    inputs.require_history(int(index[0]), first_monitorable(b, w, freq) - 1, "recommended")
    offsets = (-np.arange(1, b + 1)[:, np.newaxis] * freq + np.arange(-w, w + 1)[np.newaxis, :]).ravel()
    weeks = np.concatenate([[index[0] - 1], index])  # the week before the range gives the first pair's expectation
    rows_per_chunk = max(1, CHUNK_CELLS // (weeks.size * offsets.size))
    parts = [
        predict_weeks(counts[chunk], weeks, offsets, b)
        for chunk in np.array_split(np.arange(counts.shape[0]), -(-counts.shape[0] // rows_per_chunk))
    ]
    mu0, var_log, phi, silent, trend = (np.concatenate([p[k] for p in parts]) for k in range(5))
    observed = counts[:, index]
    previous = counts[:, index - 1]
    week_bound = delta_bound(mu0[:, 1:], var_log[:, 1:], phi[:, 1:], z_week)
    pair_mean = mu0[:, :-1] + mu0[:, 1:]
    pair_var_log = (mu0[:, :-1] ** 2 * var_log[:, :-1] + mu0[:, 1:] ** 2 * var_log[:, 1:]) / pair_mean**2
    pair_bound = delta_bound(pair_mean, pair_var_log, np.maximum(phi[:, :-1], phi[:, 1:]), z_pair)
    expected = mu0[:, 1:]
    upper = np.minimum(week_bound, np.maximum(pair_bound - previous, expected))
    zero = silent[:, 1:]
    upper = np.where(zero, 0.0, upper)
    expected = np.where(zero, 0.0, expected)
    alarm = observed > upper
    explain = _explainer(observed, previous, expected, week_bound, pair_bound, upper, alarm, zero, trend[:, 1:], b)
    return Detection(index + 1, observed, expected, upper, alarm, explain)


def delta_bound(mean: np.ndarray, var_log_mean: np.ndarray, phi: np.ndarray, z: float) -> np.ndarray:
    """Upper bound on the 2/3-power scale: prediction error phi*mu plus estimation error mu^2 Var(log mu)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = (2 / 3) * mean ** (1 / 6) * np.sqrt(phi + mean * var_log_mean)
    return (mean ** (2 / 3) + z * spread) ** 1.5


def predict_weeks(
    counts: np.ndarray, weeks: np.ndarray, offsets: np.ndarray, b: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Prediction at each week (series × weeks): mean, Var(log mean), dispersion, silent baseline, trend kept."""
    # Layout reference years × window weeks × rows (rows = series × weeks): reductions run over contiguous slabs.
    take = offsets[:, np.newaxis] + weeks[np.newaxis, :]
    y = counts[:, take].transpose(1, 0, 2).reshape(b, offsets.size // b, -1)
    silent = y.sum(axis=(0, 1)) == 0
    y[:, :, silent] = 1.0
    years = -np.arange(1, b + 1, dtype=float)[:, np.newaxis]
    first = YearlySums(y.sum(axis=1), (y * y).sum(axis=1), np.full((b, y.shape[2]), float(y.shape[1])), y.shape[1])
    weekly, _, _, _ = fit_yearly_trend(first, years)
    weighted = down_weight_outliers(y, weekly, first.dispersion(weekly, 2), first)
    log_mu0, var_log, phi, trend = choose_trend(weighted, y.max(axis=(0, 1)), years)
    shape = (counts.shape[0], weeks.size)
    return (
        np.exp(log_mu0).reshape(shape),
        var_log.reshape(shape),
        phi.reshape(shape),
        silent.reshape(shape),
        trend.reshape(shape),
    )


class YearlySums:
    """Weighted sums per reference year and row (w·y, w·y², w): all the yearly model and its dispersion need."""

    def __init__(self, totals: np.ndarray, squares: np.ndarray, exposure: np.ndarray, weeks_per_year: int) -> None:
        self.totals, self.squares, self.exposure = totals, squares, exposure  # years × rows
        self.n = totals.shape[0] * weeks_per_year

    def dispersion(self, weekly: np.ndarray, n_parameters: int) -> np.ndarray:
        """max(1, sum w (y - mu_j)^2 / mu_j / (n - p)) for weekly means mu_j per year."""
        chi2 = np.sum(self.squares / weekly - 2 * self.totals + weekly * self.exposure, axis=0)
        return np.maximum(1.0, chi2 / (self.n - n_parameters))


def down_weight_outliers(y: np.ndarray, weekly: np.ndarray, phi: np.ndarray, sums: YearlySums) -> YearlySums:
    """The sums with reference weeks whose 2/3-power residual exceeds 2.58 weighted by residual^-2, all weights
    then scaled to sum to the number of reference weeks (Farrington's gamma)."""
    mu23 = weekly ** (2 / 3)
    scale = weekly ** (1 / 6) * np.sqrt(phi) / 1.5
    cutoff = (mu23 + OUTLIER_RESIDUAL * scale) ** 1.5  # residual > 2.58  <=>  y > cutoff
    year, week, row = np.nonzero(y > cutoff[:, np.newaxis, :])
    value = y[year, week, row]
    residual = (value ** (2 / 3) - mu23[year, row]) / scale[year, row]
    change = 1.0 / residual**2 - 1.0  # weight minus 1 at each outlier
    totals, squares, exposure = sums.totals.copy(), sums.squares.copy(), sums.exposure.copy()
    np.add.at(totals, (year, row), change * value)
    np.add.at(squares, (year, row), change * value**2)
    np.add.at(exposure, (year, row), change)
    gamma = sums.n / exposure.sum(axis=0)
    return YearlySums(totals * gamma, squares * gamma, exposure * gamma, sums.n // totals.shape[0])


def fit_yearly_trend(sums: YearlySums, years: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Poisson MLE of log mu_j = a + beta * year_j on weighted yearly totals: (mu_j, a, beta, Var(a), Var(beta))."""
    totals, exposure = sums.totals, sums.exposure
    a = np.log(totals.sum(axis=0) / exposure.sum(axis=0))
    beta = np.zeros_like(a)
    for _ in range(NEWTON_STEPS):
        mu = np.exp(a + beta * years) * exposure
        residual = totals - mu
        score_a, score_b = residual.sum(axis=0), (residual * years).sum(axis=0)
        i_aa, i_ab, i_bb = mu.sum(axis=0), (mu * years).sum(axis=0), (mu * years**2).sum(axis=0)
        det = i_aa * i_bb - i_ab**2
        with np.errstate(divide="ignore", invalid="ignore"):
            step_a, step_b = (i_bb * score_a - i_ab * score_b) / det, (i_aa * score_b - i_ab * score_a) / det
        a = a + np.where(np.isfinite(step_a), np.clip(step_a, -MAX_STEP, MAX_STEP), 0.0)
        step_b = np.where(np.isfinite(step_b), step_b, 0.0)
        beta = np.clip(beta + step_b, -MAX_YEARLY_LOG_TREND, MAX_YEARLY_LOG_TREND)
    weekly = np.exp(a + beta * years)
    mu = weekly * exposure
    i_aa, i_ab, i_bb = mu.sum(axis=0), (mu * years).sum(axis=0), (mu * years**2).sum(axis=0)
    phi = sums.dispersion(weekly, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        det = i_aa * i_bb - i_ab**2
        return weekly, a, beta, np.stack([phi * i_bb / det, phi * i_aa / det, phi])


def choose_trend(
    sums: YearlySums, largest: np.ndarray, years: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Log prediction, its variance, the dispersion and whether the trend was kept."""
    _, a, beta, (var_a, var_beta, phi_trend) = fit_yearly_trend(sums, years)
    exposure = sums.exposure.sum(axis=0)
    mean = sums.totals.sum(axis=0) / exposure
    flat_phi = sums.dispersion(np.broadcast_to(mean, sums.totals.shape), 1)
    with np.errstate(invalid="ignore"):
        significant = np.abs(beta) > TREND_Z * np.sqrt(var_beta)
    keep = significant & (np.exp(a) <= largest) & (years.size >= 3)
    log_mu0 = np.where(keep, a, np.log(mean))
    var_log = np.where(keep, var_a, flat_phi / (exposure * mean))
    return log_mu0, var_log, np.where(keep, phi_trend, flat_phi), keep


def _explainer(
    observed: np.ndarray,
    previous: np.ndarray,
    expected: np.ndarray,
    week_bound: np.ndarray,
    pair_bound: np.ndarray,
    upper: np.ndarray,
    alarm: np.ndarray,
    zero: np.ndarray,
    trend: np.ndarray,
    b: int,
) -> Callable[[int, int], str]:
    def explain(s: int, j: int) -> str:
        head = verdict(observed[s, j], upper[s, j], bool(alarm[s, j]))
        if zero[s, j]:
            return f"{head} (recommended: no case in the reference weeks of {b} years, any case alarms)"
        pair = previous[s, j] + observed[s, j]
        rule = (
            f"week rule: {observed[s, j]:g} > {week_bound[s, j]:.3g}"
            if observed[s, j] > week_bound[s, j]
            else f"two-week rule: {pair:g} cases in weeks t-1..t > {pair_bound[s, j]:.3g}"
            if alarm[s, j]
            else f"week bound {week_bound[s, j]:.3g}, two-week total {pair:g} vs {pair_bound[s, j]:.3g}"
        )
        trend_text = "trend kept" if trend[s, j] else "no significant trend"
        return f"{head} (recommended, {b} baseline years, expected {expected[s, j]:.3g}, {trend_text}; {rule})"

    return explain
