"""Validation of the arguments every detector shares: the counts, the range and the control options."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from sante.analytics.surveillance.errors import SurveillanceInputError


def counts_matrix(observed: Any, *, parameter: str = "observed") -> np.ndarray:
    """The counts as a float array (series × time); one series becomes one row. Rejects NaN, negatives, non-integers."""
    try:
        counts = np.asarray(observed, dtype=float)
    except (TypeError, ValueError) as exc:
        raise SurveillanceInputError(parameter, f"must be a sequence of counts ({exc})") from None
    if counts.ndim == 1:
        counts = counts[np.newaxis, :]
    if counts.ndim != 2 or counts.shape[1] == 0:
        raise SurveillanceInputError(
            parameter, f"must be a non-empty 1-D series or a 2-D array, got shape {counts.shape}"
        )
    if not np.all(np.isfinite(counts)):
        raise SurveillanceInputError(parameter, "contains NaN or infinite values")
    if np.any(counts < 0):
        raise SurveillanceInputError(parameter, "contains negative counts")
    if np.any(counts != np.round(counts)):
        raise SurveillanceInputError(parameter, "contains non-integer counts")
    return counts


def time_indices(range_: Sequence[int] | None, default: tuple[int, int], n_time: int) -> np.ndarray:
    """0-based indices of the monitored time points; `range_` is R's 1-based inclusive (first, last)."""
    first, last = default if range_ is None else _first_last(range_)
    if not 1 <= first <= last <= n_time:
        raise SurveillanceInputError(
            "range", f"({first}, {last}) must satisfy 1 <= first <= last <= {n_time} (length of the series)"
        )
    return np.arange(first - 1, last)


def _first_last(range_: Sequence[int]) -> tuple[int, int]:
    values = list(range_)
    if len(values) != 2 or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values):
        raise SurveillanceInputError("range", f"must be a pair of integers (first, last), got {range_!r}")
    return int(values[0]), int(values[1])


def require_history(first_index: int, needed: int, method: str) -> None:
    """Fail when the first monitored point (0-based) has fewer than `needed` earlier time points."""
    if first_index < needed:
        raise SurveillanceInputError(
            "range",
            f"{method} needs {needed} earlier time points; the first monitored point {first_index + 1} has "
            f"{first_index}",
        )


def control_options(control: Mapping[str, Any], defaults: Mapping[str, Any], method: str) -> dict[str, Any]:
    """The defaults updated by `control`; an unknown option is an error naming it."""
    unknown = sorted(set(control) - set(defaults))
    if unknown:
        raise SurveillanceInputError(
            unknown[0], f"unknown control option for method {method!r}; known: {', '.join(sorted(defaults))}"
        )
    return {**defaults, **control}


def positive_int(value: Any, parameter: str, minimum: int = 1) -> int:
    """`value` as an int >= minimum, or an error naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise SurveillanceInputError(parameter, f"must be an integer >= {minimum}, got {value!r}")
    return int(value)


def probability(value: Any, parameter: str) -> float:
    """`value` as a float strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating) or not 0 < value < 1:
        raise SurveillanceInputError(parameter, f"must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def non_negative(value: Any, parameter: str) -> float:
    """`value` as a finite float >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating) or not 0 <= value < np.inf:
        raise SurveillanceInputError(parameter, f"must be a finite number >= 0, got {value!r}")
    return float(value)


def choice(value: Any, parameter: str, allowed: Iterable[str]) -> str:
    """`value` if it is one of `allowed`."""
    options = tuple(allowed)
    if value not in options:
        raise SurveillanceInputError(parameter, f"must be one of {', '.join(map(repr, options))}, got {value!r}")
    return str(value)
