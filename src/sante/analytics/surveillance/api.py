"""The public entry points: `detect` for one series (a list of dicts with reasons) and `detect_many` for arrays.

Methods: "ears_c1", "ears_c2", "ears_c3", "cusum", "farrington", "farrington_flexible", "glm_nb" and
"recommended".  Time points are 1-based as R's `range`; the default range of each method is the one R uses, or
for methods where R has none (cusum, glm_nb, recommended) every week from the first with a full baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sante.analytics.surveillance import ears, inputs, recommended
from sante.analytics.surveillance.cusum import cusum
from sante.analytics.surveillance.detection import Detection
from sante.analytics.surveillance.errors import SurveillanceInputError
from sante.analytics.surveillance.farrington import ORIGINAL_DEFAULTS, farrington
from sante.analytics.surveillance.nbglm import DEFAULTS as GLM_NB_DEFAULTS
from sante.analytics.surveillance.nbglm import glm_nb

Runner = Callable[[np.ndarray, np.ndarray, dict[str, Any], int], Detection]


def _ears_runner(variant: str) -> Runner:
    return lambda counts, index, control, freq: ears.ears(counts, index, variant, control)


RUNNERS: dict[str, Runner] = {
    "ears_c1": _ears_runner("C1"),
    "ears_c2": _ears_runner("C2"),
    "ears_c3": _ears_runner("C3"),
    "cusum": lambda counts, index, control, freq: cusum(counts, index, control),
    "farrington": lambda counts, index, control, freq: farrington(counts, index, control, freq, flexible=False),
    "farrington_flexible": lambda counts, index, control, freq: farrington(counts, index, control, freq, flexible=True),
    "glm_nb": glm_nb,
    "recommended": recommended.recommended,
}
METHODS = tuple(RUNNERS)


def default_first(method: str, control: dict[str, Any], freq: int) -> int:
    """The first 1-based time point monitored when no range is given."""

    def option(name: str, default: int, minimum: int = 1) -> int:
        return inputs.positive_int(control.get(name, default), name, minimum)

    if method.startswith("ears_"):
        return ears.first_monitorable(method[-2:].upper(), option("baseline", ears.DEFAULTS["baseline"], 2))
    if method == "cusum":
        return freq + 1 if control.get("m") is None else 1
    if method in ("farrington", "farrington_flexible"):
        return option("b", ORIGINAL_DEFAULTS["b"]) * freq + option("w", ORIGINAL_DEFAULTS["w"], 0) + 1
    if method == "glm_nb":
        return option("b", GLM_NB_DEFAULTS["b"]) * freq + 1
    b, w = option("b", recommended.DEFAULTS["b"]), option("w", recommended.DEFAULTS["w"], 0)
    return recommended.first_monitorable(b, w, freq)


def detect_many(
    counts_2d: Any,
    method: str,
    *,
    freq: int = 52,
    range: Sequence[int] | None = None,  # R's name for the monitored time points
    **control: Any,
) -> Detection:
    """Run `method` on every row of `counts_2d` (series × time); returns arrays (series × monitored points)."""
    runner = RUNNERS.get(method)
    if runner is None:
        raise SurveillanceInputError("method", f"unknown method {method!r}; known: {', '.join(METHODS)}")
    freq = inputs.positive_int(freq, "freq", minimum=1)
    counts = inputs.counts_matrix(counts_2d, parameter="observed" if np.ndim(counts_2d) == 1 else "counts_2d")
    n_time = counts.shape[1]
    if range is None:
        first = default_first(method, control, freq)
        if first > n_time:
            raise SurveillanceInputError(
                "observed", f"{n_time} time points are too few for {method} with these options (needs {first})"
            )
        index = inputs.time_indices(None, (first, n_time), n_time)
    else:
        index = inputs.time_indices(range, (1, n_time), n_time)
    return runner(counts, index, dict(control), freq)


def detect(
    observed: Sequence[float],
    method: str,
    *,
    freq: int = 52,
    start: tuple[int, int] = (2000, 1),
    range: Sequence[int] | None = None,  # R's name for the monitored time points
    **control: Any,
) -> list[dict[str, Any]]:
    """Run `method` on one series; one dict per monitored time point: t, year, week, expected, upperbound, alarm,
    reason."""
    if np.ndim(observed) != 1:
        raise SurveillanceInputError("observed", "must be a one-dimensional sequence of counts")
    year, week = _start(start, freq)
    result = detect_many(observed, method, freq=freq, range=range, **control)
    rows = []
    for j, t in enumerate(result.t):
        epoch = week - 1 + int(t) - 1
        rows.append(
            {
                "t": int(t),
                "year": year + epoch // freq,
                "week": epoch % freq + 1,
                "observed": float(result.observed[0, j]),
                "expected": _number(result.expected[0, j]),
                "upperbound": _number(result.upperbound[0, j]),
                "alarm": bool(result.alarm[0, j]),
                "reason": result.explain(0, j),
            }
        )
    return rows


def _start(start: Any, freq: int) -> tuple[int, int]:
    if not (isinstance(start, tuple | list) and len(start) == 2 and all(isinstance(v, int) for v in start)):
        raise SurveillanceInputError("start", f"must be a pair (year, week), got {start!r}")
    if not 1 <= start[1] <= freq:
        raise SurveillanceInputError("start", f"week {start[1]} is outside 1..{freq}")
    return int(start[0]), int(start[1])


def _number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
