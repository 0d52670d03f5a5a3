"""EARS C1, C2 and C3 (Hutwagner et al. 2003): Shewhart-type charts on a short moving baseline.

C1 compares the count with the mean and standard deviation of the `baseline` weeks just before it, C2 does the
same with a two-week guard band, and C3 sums the positive parts of C2's standardised excesses minus one over the
current and two previous weeks.  R's `earsC` computes C3's upper bound from the two previous weeks only, so that
its threshold ignores the "-1" of the current week's term; Sante follows the CDC definition by default and
reproduces R with `r_compatible=True`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.stats import norm

from sante.analytics.surveillance import inputs
from sante.analytics.surveillance.detection import Detection, verdict

VARIANTS = ("C1", "C2", "C3")
DEFAULTS: dict[str, Any] = {"alpha": None, "baseline": 7, "r_compatible": False}
DEFAULT_ALPHA = {"C1": 0.001, "C2": 0.001, "C3": 0.025}  # the CDC's choices, as R's earsC
GUARD_WEEKS = {"C1": 0, "C2": 2, "C3": 2}


def first_monitorable(variant: str, baseline: int) -> int:
    """The first 1-based time point with a full baseline (R's default start of `range`)."""
    return baseline + 1 + GUARD_WEEKS[variant] + (2 if variant == "C3" else 0)


def moving_baseline(counts: np.ndarray, index: np.ndarray, baseline: int, guard: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (n-1) of the `baseline` counts ending `guard` weeks before each index."""
    windows = sliding_window_view(counts, baseline, axis=1)  # window w covers counts[:, w : w + baseline]
    chosen = windows[:, index - guard - baseline]
    return chosen.mean(axis=2), chosen.std(axis=2, ddof=1)


def standardised(observed: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """(y - mean) / sd; on a zero-variance baseline any excess is +inf and no excess is 0."""
    excess = observed - mean
    with np.errstate(divide="ignore", invalid="ignore"):
        z = excess / sd
    return np.where(sd > 0, z, np.where(excess > 0, np.inf, 0.0))


def carried_excess(counts: np.ndarray, index: np.ndarray, baseline: int, r_compatible: bool) -> np.ndarray:
    """C3's sum of max(0, C2 - 1) over the two weeks before each index (R: NaN where a C2 is 0/0)."""
    total = np.zeros((counts.shape[0], index.size))
    for lag in (1, 2):
        mean, sd = moving_baseline(counts, index - lag, baseline, GUARD_WEEKS["C2"])
        c2 = standardised(counts[:, index - lag], mean, sd)
        if r_compatible:
            with np.errstate(divide="ignore", invalid="ignore"):
                c2 = (counts[:, index - lag] - mean) / sd
        total = total + np.maximum(0.0, c2 - 1)
    return total


def ears(counts: np.ndarray, index: np.ndarray, variant: str, control: dict[str, Any]) -> Detection:
    """Run EARS `variant` on counts (series × time) at the 0-based time `index`es."""
    method = f"ears_{variant.lower()}"
    options = inputs.control_options(control, DEFAULTS, method)
    alpha = DEFAULT_ALPHA[variant] if options["alpha"] is None else inputs.probability(options["alpha"], "alpha")
    baseline = inputs.positive_int(options["baseline"], "baseline", minimum=2)
    r_compatible = bool(options["r_compatible"])
    inputs.require_history(int(index[0]), first_monitorable(variant, baseline) - 1, method)
    z = float(norm.ppf(1 - alpha))
    mean, sd = moving_baseline(counts, index, baseline, GUARD_WEEKS[variant])
    observed = counts[:, index]
    current = standardised(observed, mean, sd)
    if variant != "C3":
        carried = np.zeros_like(mean)
        upper = mean + z * sd
        alarm = current >= z
    elif r_compatible:
        carried = carried_excess(counts, index, baseline, r_compatible=True)
        with np.errstate(invalid="ignore"):
            upper = np.maximum(0.0, observed + sd * (z - carried))
            alarm = observed > upper
    else:
        carried = carried_excess(counts, index, baseline, r_compatible=False)
        with np.errstate(invalid="ignore"):
            upper = np.where(carried < z, mean + sd * (1 + z - carried), 0.0)
        alarm = carried + np.maximum(0.0, current - 1) >= z
    explain = _explainer(variant, observed, mean, sd, upper, alarm, carried, baseline)
    return Detection(index + 1, observed, mean, upper, alarm, explain)


def _explainer(
    variant: str,
    observed: np.ndarray,
    mean: np.ndarray,
    sd: np.ndarray,
    upper: np.ndarray,
    alarm: np.ndarray,
    carried: np.ndarray,
    baseline: int,
) -> Callable[[int, int], str]:
    def explain(s: int, j: int) -> str:
        text = (
            f"{verdict(observed[s, j], upper[s, j], bool(alarm[s, j]))} (EARS {variant}, baseline mean {mean[s, j]:.3g}"
        )
        text += f", sd {sd[s, j]:.3g} over {baseline} weeks"
        if variant == "C3":
            text += f", carried excess {carried[s, j]:.3g} from the two previous weeks"
        return text + ")"

    return explain
