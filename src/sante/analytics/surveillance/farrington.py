"""The Farrington (1996) detector and its improved version (Noufaily et al. 2013), as R's `algo.farrington`
and `farringtonFlexible`.

For each monitored week t, a quasi-Poisson log-linear model (intercept, optional linear trend, optional seasonal
factor) is fitted to reference weeks from the `b` previous years; past outbreaks are down-weighted by their
Anscombe residuals; the trend is dropped unless it is significant, and the upper bound is a quantile of the
predictive distribution of the count at t.  An alarm needs the count above the bound and at least `limit54[0]`
cases in the last `limit54[1]` weeks.

Zero-baseline rule: when every reference count is 0 the model has no finite fit; R's IRLS stops after 25
iterations with a mean near 0 and reports a small bound (about 0.003 for Farrington, NA for some improved
Farrington thresholds).  Sante reports expected 0 and upper bound 0, so any case is above the bound (the
5-in-4-weeks rule still applies); `r_compatible=True` fits the zeros as R does.

Known R departure: `farringtonFlexible` replaces the model's working weights by the down-weighting weights after
the refit, so the variance of its estimates, used by the trend test and by the "delta" and "muan" thresholds,
is scaled by sum w (y - mu)^2 / mu^2 / (n - p) instead of the Pearson dispersion.  Sante uses the correct dispersion; `r_compatible=True` reproduces R.
Also under `r_compatible=True`, the original method reports an upper bound of 0 where the 5-in-4-weeks rule
blocks alarms, as R's `algo.farrington` does; Sante reports the model's bound there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import nbinom, norm, poisson
from scipy.stats import t as student_t

from sante.analytics.surveillance import inputs
from sante.analytics.surveillance.detection import Detection, verdict
from sante.analytics.surveillance.quasipoisson import PoissonFit, fit_poisson

ORIGINAL_DEFAULTS: dict[str, Any] = {
    "b": 5,
    "w": 3,
    "alpha": 0.05,
    "reweight": True,
    "trend": True,
    "powertrans": "2/3",
    "limit54": (5, 4),
    "r_compatible": False,
}
FLEXIBLE_DEFAULTS: dict[str, Any] = {
    **ORIGINAL_DEFAULTS,
    "weights_threshold": 2.58,
    "p_threshold_trend": 0.05,
    "threshold_method": "delta",
    "no_periods": 1,
    "past_weeks_not_included": None,
    "population": None,
}
POWERS = {"2/3": 2 / 3, "1/2": 1 / 2, "none": 1.0}
THRESHOLD_METHODS = ("delta", "nbPlugin", "muan")
CHUNK_ROWS = 2_000


@dataclass(frozen=True)
class Settings:
    """Resolved options of one Farrington run."""

    b: int
    w: int
    freq: int
    alpha: float
    one_sided: bool
    reweight: bool
    weights_threshold: float
    trend: bool
    p_threshold_trend: float
    powertrans: str
    limit54: tuple[int, int]
    threshold_method: str
    no_periods: int
    past_weeks_not_included: int
    flexible: bool
    r_compatible: bool

    @property
    def first_monitorable(self) -> int:
        """The first 1-based week with a complete reference set: b years and w weeks of history."""
        return self.b * self.freq + self.w + 1


def settings_for(control: dict[str, Any], freq: int, flexible: bool) -> Settings:
    """Validate `control` against the defaults of the original or the flexible method."""
    method = "farrington_flexible" if flexible else "farrington"
    options = inputs.control_options(control, FLEXIBLE_DEFAULTS if flexible else ORIGINAL_DEFAULTS, method)
    w = inputs.positive_int(options["w"], "w", minimum=0)
    limit = options["limit54"]
    if not (isinstance(limit, tuple | list) and len(limit) == 2):
        raise inputs.SurveillanceInputError("limit54", f"must be a pair (cases, weeks), got {limit!r}")
    pwni = options.get("past_weeks_not_included")
    return Settings(
        b=inputs.positive_int(options["b"], "b"),
        w=w,
        freq=freq,
        alpha=inputs.probability(options["alpha"], "alpha"),
        one_sided=flexible,
        reweight=bool(options["reweight"]),
        weights_threshold=inputs.non_negative(options.get("weights_threshold", 1.0), "weights_threshold"),
        trend=bool(options["trend"]),
        p_threshold_trend=inputs.non_negative(options.get("p_threshold_trend", 0.05), "p_threshold_trend"),
        powertrans=inputs.choice(options["powertrans"], "powertrans", POWERS),
        limit54=(inputs.positive_int(limit[0], "limit54", 0), inputs.positive_int(limit[1], "limit54")),
        threshold_method=inputs.choice(options.get("threshold_method", "delta"), "threshold_method", THRESHOLD_METHODS),
        no_periods=inputs.positive_int(options.get("no_periods", 1), "no_periods"),
        past_weeks_not_included=w if pwni is None else inputs.positive_int(pwni, "past_weeks_not_included", 0),
        flexible=flexible,
        r_compatible=bool(options.get("r_compatible", False)),
    )


def reference_layout(settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """Offsets of the reference weeks from t and the seasonal period (0 = the windows around t) of each."""
    b, w, freq = settings.b, settings.w, settings.freq
    if settings.no_periods == 1:
        offsets = np.array([-j * freq + d for j in range(b, 0, -1) for d in range(-w, w + 1)])
        return offsets, np.zeros(offsets.size, dtype=int)
    offsets = np.arange(-b * freq - w, -settings.past_weeks_not_included)
    phase = (offsets + w) % freq
    outside = freq - 2 * w - 1
    period = np.where(phase <= 2 * w, 0, 1 + (phase - 2 * w - 1) * (settings.no_periods - 1) // outside)
    return offsets, period


def design_matrices(offsets: np.ndarray, period: np.ndarray, no_periods: int) -> tuple[np.ndarray, np.ndarray]:
    """Designs with and without the trend: intercept, [time], one indicator per non-current period."""
    dummies = [(period == level).astype(float) for level in range(1, no_periods) if np.any(period == level)]
    without = np.column_stack([np.ones(offsets.size), *dummies])
    with_trend = np.column_stack([np.ones(offsets.size), offsets.astype(float), *dummies])
    return with_trend, without


@dataclass(frozen=True)
class ModelFit:
    """One Farrington model fitted to every row: prediction at t and what the trend test needs."""

    log_mu0: np.ndarray
    var_log_mu0: np.ndarray
    phi: np.ndarray
    trend_p: np.ndarray
    trend_coefficient: np.ndarray


def fit_model(
    y: np.ndarray, design: np.ndarray, offset: np.ndarray, offset0: np.ndarray, settings: Settings, has_trend: bool
) -> ModelFit:
    """Fit, down-weight outliers, refit, and predict at t (design row [1, 0, 0...])."""
    n, p = design.shape
    ones = np.ones_like(y)
    fit = fit_poisson(y, design, ones, offset)
    weights = ones
    if settings.reweight:
        phi = np.maximum(1.0, fit.pearson_dispersion)
        weights = anscombe_weights(y, fit, design, phi, settings.weights_threshold)
        fit = fit_poisson(y, design, weights, offset)
    phi = np.maximum(1.0, fit.pearson_dispersion)
    # R's farringtonFlexible estimates the parameters' variance (trend test, prediction) with the wrong dispersion.
    parameter_dispersion = overwritten_weights_dispersion(y, fit, weights) if _r_flexible(settings) else phi
    log_mu0 = fit.beta[:, 0] + offset0
    var_log_mu0 = fit.xtwx_inverse[:, 0, 0] * parameter_dispersion
    if has_trend:
        # The t-test takes the dispersion as estimated, not floored at 1 (as R's summary.glm).
        test_dispersion = parameter_dispersion if _r_flexible(settings) else fit.pearson_dispersion
        with np.errstate(divide="ignore", invalid="ignore"):  # a perfect fit has dispersion 0: t is infinite
            t_value = fit.beta[:, 1] / np.sqrt(fit.xtwx_inverse[:, 1, 1] * test_dispersion)
        trend_p = 2 * student_t.sf(np.abs(t_value), n - p)
        trend_coefficient = fit.beta[:, 1]
    else:
        trend_p = trend_coefficient = np.full(y.shape[0], np.nan)
    return ModelFit(log_mu0, var_log_mu0, phi, trend_p, trend_coefficient)


def _r_flexible(settings: Settings) -> bool:
    return settings.flexible and settings.r_compatible and settings.reweight


def overwritten_weights_dispersion(y: np.ndarray, fit: PoissonFit, weights: np.ndarray) -> np.ndarray:
    """R farringtonFlexible's dispersion: the down-weighting weights times squared working residuals, / (n - p)."""
    dof = y.shape[1] - fit.beta.shape[1]
    return np.sum(weights * ((y - fit.mu) / fit.mu) ** 2, axis=1) / dof


def anscombe_weights(
    y: np.ndarray, fit: PoissonFit, design: np.ndarray, phi: np.ndarray, threshold: float
) -> np.ndarray:
    """Farrington's weights: s^-2 for standardised Anscombe residuals s above the threshold, 1 otherwise, scaled to
    sum to n."""
    leverage = fit.leverages(design)
    mu = fit.mu
    with np.errstate(invalid="ignore", divide="ignore"):  # leverage 1 or mu 0 in degenerate fits, as in R
        residual = 1.5 * (y ** (2 / 3) - mu ** (2 / 3)) / (mu ** (1 / 6) * np.sqrt(phi[:, np.newaxis] * (1 - leverage)))
    raw = np.where(residual > threshold, 1.0 / np.maximum(residual, threshold) ** 2, 1.0)
    return raw * y.shape[1] / raw.sum(axis=1, keepdims=True)


def upper_bound(model: ModelFit, settings: Settings) -> np.ndarray:
    """The (1 - alpha) quantile of the predictive distribution at t, by the chosen threshold method."""
    z = norm.ppf(1 - settings.alpha) if settings.one_sided else norm.ppf(1 - settings.alpha / 2)
    mu0 = np.exp(model.log_mu0)
    if settings.threshold_method == "delta":
        power = POWERS[settings.powertrans]
        variance = power**2 * mu0 ** (2 * power - 1) * (model.phi + mu0 * model.var_log_mu0)
        return np.maximum(0.0, mu0**power + z * np.sqrt(variance)) ** (1 / power)
    with np.errstate(over="ignore", invalid="ignore"):  # degenerate (all-zero) fits in r_compatible mode
        if settings.threshold_method == "muan":
            mu0 = np.exp(model.log_mu0 + z * np.sqrt(model.var_log_mu0))
        return negative_binomial_quantile(1 - settings.alpha, mu0, model.phi)


def negative_binomial_quantile(level: float, mean: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Quantile of the count with this mean and variance phi * mean (Poisson where phi = 1)."""
    overdispersed = phi > 1
    size = mean / np.where(overdispersed, phi - 1, 1.0)
    nb = nbinom.ppf(level, size, size / (size + mean))
    return np.where(overdispersed, nb, poisson.ppf(level, mean))


def farrington(
    counts: np.ndarray,
    index: np.ndarray,
    control: dict[str, Any],
    freq: int,
    flexible: bool,
) -> Detection:
    """Run the original (flexible=False) or improved Farrington detector at the 0-based time `index`es."""
    settings = settings_for(control, freq, flexible)
    population = control.get("population")
    method = "farrington_flexible" if flexible else "farrington"
    inputs.require_history(int(index[0]), settings.first_monitorable - 1, method)
    offsets, period = reference_layout(settings)
    if np.any(index[:, None] + offsets[None, :] < 0):
        inputs.require_history(int(index[0]), int(-offsets.min()), method)
    log_population = _log_population(population, counts.shape)
    rows = [
        _farrington_chunk(counts, index, offsets, period, settings, log_population, chunk)
        for chunk in np.array_split(
            np.arange(counts.shape[0] * index.size), max(1, -(-counts.shape[0] * index.size // CHUNK_ROWS))
        )
    ]
    columns = {key: np.concatenate([r[key] for r in rows]).reshape(counts.shape[0], index.size) for key in rows[0]}
    observed = counts[:, index]
    recent = _recent_cases(counts, index, settings.limit54[1])
    enough_cases = recent >= settings.limit54[0]
    alarm = (observed > columns["upper"]) & enough_cases
    if settings.r_compatible:  # R blanks the bound where the rule blocks alarms: 0 (original) or NA (flexible)
        blank = np.nan if settings.flexible else 0.0
        columns["upper"] = np.where(enough_cases, columns["upper"], blank)
        if settings.flexible:
            columns["expected"] = np.where(enough_cases, columns["expected"], np.nan)
    explain = _explainer(observed, columns, alarm, recent, settings)
    return Detection(index + 1, observed, columns["expected"], columns["upper"], alarm, explain)


def _log_population(population: Any, shape: tuple[int, int]) -> np.ndarray | None:
    if population is None:
        return None
    values = np.asarray(population, dtype=float)
    if values.shape not in (shape, shape[1:]) or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise inputs.SurveillanceInputError("population", f"must be positive numbers of shape {shape[1:]} or {shape}")
    return np.log(np.broadcast_to(values, shape))


def _farrington_chunk(
    counts: np.ndarray,
    index: np.ndarray,
    offsets: np.ndarray,
    period: np.ndarray,
    settings: Settings,
    log_population: np.ndarray | None,
    rows: np.ndarray,
) -> dict[str, np.ndarray]:
    """Fit and threshold the rows (flattened series × monitored weeks) of one chunk."""
    series, column = np.divmod(rows, index.size)
    weeks = index[column][:, np.newaxis] + offsets[np.newaxis, :]
    y = counts[series[:, np.newaxis], weeks]
    if log_population is None:
        offset, offset0 = np.zeros_like(y), np.zeros(rows.size)
    else:
        offset, offset0 = log_population[series[:, np.newaxis], weeks], log_population[series, index[column]]
    # The zero-baseline rule; R fits the all-zero reference set anyway, and so does r_compatible mode.
    silent = (y.sum(axis=1) == 0) & (not settings.r_compatible)
    y_fit = np.where(silent[:, np.newaxis], 1.0, y)
    with_trend, without = design_matrices(offsets, period, settings.no_periods)
    model = fit_model(y_fit, without, offset, offset0, settings, has_trend=False)
    trend_kept = np.zeros(rows.size, dtype=bool)
    if settings.trend:
        trended = fit_model(y_fit, with_trend, offset, offset0, settings, has_trend=True)
        trend_kept = (
            (trended.trend_p < settings.p_threshold_trend)
            & (trended.log_mu0 <= np.log(np.maximum(y.max(axis=1), 1e-300)))
            & (settings.b >= 3)
        )
        model = ModelFit(*(np.where(trend_kept, a, b) for a, b in zip(_fields(trended), _fields(model))))
    upper = np.where(silent, 0.0, upper_bound(model, settings))
    expected = np.where(silent, 0.0, np.exp(model.log_mu0))
    return {
        "upper": upper,
        "expected": expected,
        "phi": model.phi,
        "trend": trend_kept,
        "trend_p": model.trend_p,
        "trend_coefficient": model.trend_coefficient,
        "silent": silent,
    }


def _fields(model: ModelFit) -> tuple[np.ndarray, ...]:
    return (model.log_mu0, model.var_log_mu0, model.phi, model.trend_p, model.trend_coefficient)


def _recent_cases(counts: np.ndarray, index: np.ndarray, weeks: int) -> np.ndarray:
    """Cases in the `weeks` weeks ending with (and including) each monitored week."""
    cumulative = np.concatenate([np.zeros((counts.shape[0], 1)), np.cumsum(counts, axis=1)], axis=1)
    return cumulative[:, index + 1] - cumulative[:, np.maximum(index + 1 - weeks, 0)]


def _explainer(
    observed: np.ndarray, columns: dict[str, np.ndarray], alarm: np.ndarray, recent: np.ndarray, settings: Settings
) -> Callable[[int, int], str]:
    name = "improved Farrington" if settings.flexible else "Farrington"
    unit = {52: "week", 12: "month", 365: "day", 7: "day"}.get(settings.freq, "time point")
    cases, weeks = settings.limit54

    def explain(s: int, j: int) -> str:
        head = verdict(observed[s, j], columns["upper"][s, j], bool(alarm[s, j]))
        if columns["silent"][s, j]:
            detail = "no case in any reference week, so any case is above the bound"
        else:
            trend = (
                f"trend kept ({100 * np.expm1(columns['trend_coefficient'][s, j]):+.2g} % per {unit}, "
                f"p={columns['trend_p'][s, j]:.2g})"
                if columns["trend"][s, j]
                else "trend not significant"
                if settings.trend
                else "no trend"
            )
            detail = f"expected {columns['expected'][s, j]:.3g}, dispersion {columns['phi'][s, j]:.3g}, {trend}"
        text = f"{head} ({name}, {settings.b} baseline years, {detail}"
        if recent[s, j] < cases and (observed[s, j] > columns["upper"][s, j] or columns["upper"][s, j] == 0):
            text += f"; suppressed: only {recent[s, j]:g} cases in the last {weeks} weeks (< {cases})"
        return text + ")"

    return explain
