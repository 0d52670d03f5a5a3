"""Approximate Poisson CUSUM (Rossi et al. 1999), as R's `algo.cusum`.

Each count is transformed to an approximately standard-normal score against the expected count m, and the
one-sided sum S_t = max(0, S_{t-1} + z_t - k) raises an alarm while S_t >= h (no reset after an alarm).  The
upper bound is the count that would have brought S_t to h.  m defaults to the mean of all counts before the
monitored range.  Transformations: "standard" (z = (x - m)/sqrt(m), bound rounded up to a whole count as R),
"rossi" (Rossi's z3), "anscombe" (Anscombe residual) and "pearsonNegBin" (Pearson residual of a negative
binomial with variance m + alpha m^2).

Zero-baseline rule: when m is 0 the score is undefined; Sante then judges each week alone (expected 0, upper
bound 0, alarm on any case, the sum restarting at 0).  `r_compatible=True` keeps R's arithmetic instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sante.analytics.surveillance import inputs
from sante.analytics.surveillance.detection import Detection, verdict

TRANSFORMS = ("standard", "rossi", "anscombe", "pearsonNegBin")
DEFAULTS: dict[str, Any] = {"k": 1.04, "h": 2.26, "m": None, "trans": "standard", "alpha": None, "r_compatible": False}


def score(x: np.ndarray, m: np.ndarray, trans: str, alpha: float) -> np.ndarray:
    """The transformed count z_t of each observation x against its expectation m."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if trans == "standard":
            return (x - m) / np.sqrt(m)
        if trans == "rossi":
            return (x - 3 * m + 2 * np.sqrt(x * m)) / (2 * np.sqrt(m))
        if trans == "anscombe":
            return 1.5 * (x ** (2 / 3) - m ** (2 / 3)) / m ** (1 / 6)
        return (x - m) / np.sqrt(m + alpha * m**2)


def count_for_score(z: np.ndarray, m: np.ndarray, trans: str, alpha: float) -> np.ndarray:
    """The inverse of `score`: the count whose score is z (R's upper bound before any rounding)."""
    with np.errstate(invalid="ignore"):
        if trans == "standard":
            return np.maximum(0.0, np.ceil(m + z * np.sqrt(m)))
        if trans == "rossi":
            return (np.sqrt(4 * m + 2 * np.sqrt(m) * z) - np.sqrt(m)) ** 2
        if trans == "anscombe":
            return np.maximum(0.0, m ** (2 / 3) + 2 / 3 * z * m ** (1 / 6)) ** 1.5
        return m + z * np.sqrt(m + alpha * m**2)


def expected_counts(counts: np.ndarray, index: np.ndarray, m: Any) -> np.ndarray:
    """m per series × monitored point: the pre-range mean (m=None) or the given number or sequence."""
    if m is None:
        inputs.require_history(int(index[0]), 1, "cusum")
        return np.repeat(counts[:, : index[0]].mean(axis=1, keepdims=True), index.size, axis=1)
    values = np.asarray(m, dtype=float)
    if values.ndim > 1 or (values.ndim == 1 and values.size != index.size) or not np.all(np.isfinite(values)):
        raise inputs.SurveillanceInputError(
            "m", f"must be None, a number or {index.size} finite numbers (one per week)"
        )
    if np.any(values < 0):
        raise inputs.SurveillanceInputError("m", "expected counts must be >= 0")
    return np.broadcast_to(values, (counts.shape[0], index.size)).astype(float)


def cusum(counts: np.ndarray, index: np.ndarray, control: dict[str, Any]) -> Detection:
    """Run the CUSUM on counts (series × time) at the 0-based time `index`es."""
    options = inputs.control_options(control, DEFAULTS, "cusum")
    k = inputs.non_negative(options["k"], "k")
    h = inputs.non_negative(options["h"], "h")
    trans = inputs.choice(options["trans"], "trans", TRANSFORMS)
    alpha = 0.0 if options["alpha"] is None else inputs.non_negative(options["alpha"], "alpha")
    if trans == "pearsonNegBin" and options["alpha"] is None:
        raise inputs.SurveillanceInputError("alpha", "trans='pearsonNegBin' needs the dispersion alpha")
    r_compatible = bool(options["r_compatible"])
    m = expected_counts(counts, index, options["m"])
    observed = counts[:, index]
    z = score(observed, m, trans, alpha)
    silent = (m == 0) & (not r_compatible)
    z = np.where(silent, 0.0, z)
    sums, before = _cumulative_sums(z, k)
    upper = count_for_score(h + k - before, m, trans, alpha)
    alarm = sums >= h
    if np.any(silent):
        upper = np.where(silent, 0.0, upper)
        alarm = np.where(silent, observed > 0, alarm)
    return Detection(index + 1, observed, m, upper, alarm, _explainer(observed, m, upper, alarm, sums, trans, k, h))


def _cumulative_sums(z: np.ndarray, k: float) -> tuple[np.ndarray, np.ndarray]:
    """S_t and S_{t-1} for every column, S_0 = 0 before the first monitored point."""
    sums = np.empty_like(z)
    previous = np.zeros(z.shape[0])
    for j in range(z.shape[1]):
        previous = np.maximum(0.0, previous + z[:, j] - k)
        sums[:, j] = previous
    before = np.concatenate([np.zeros((z.shape[0], 1)), sums[:, :-1]], axis=1)
    return sums, before


def _explainer(
    observed: np.ndarray,
    m: np.ndarray,
    upper: np.ndarray,
    alarm: np.ndarray,
    sums: np.ndarray,
    trans: str,
    k: float,
    h: float,
) -> Callable[[int, int], str]:
    def explain(s: int, j: int) -> str:
        if m[s, j] == 0 and upper[s, j] == 0:
            return (
                f"{verdict(observed[s, j], 0.0, bool(alarm[s, j]))} (CUSUM: no case in the baseline, any case alarms)"
            )
        head = verdict(observed[s, j], upper[s, j], bool(alarm[s, j]))
        return f"{head} (CUSUM {trans}, expected {m[s, j]:.3g}, sum {sums[s, j]:.3g} vs h={h:g}, k={k:g})"

    return explain
