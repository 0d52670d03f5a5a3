"""The result every detector returns: arrays over series × monitored time points, plus an explanation per cell."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detection:
    """Expected counts, upper bounds and alarms (series × monitored time points) and why each alarm fired or not.

    `t` holds the 1-based time points (R's `range`); `explain(series, j)` is the human-readable reason for the
    cell at row `series`, column `j`.
    """

    t: np.ndarray
    observed: np.ndarray
    expected: np.ndarray
    upperbound: np.ndarray
    alarm: np.ndarray
    explain: Callable[[int, int], str]


def verdict(observed: float, upperbound: float, alarm: bool) -> str:
    """The first half of a reason: how the observed count compares with the upper bound."""
    relation = ">" if observed > upperbound else ("=" if observed == upperbound else "<=")
    head = f"observed {observed:g} {relation} upper bound {upperbound:.4g}"
    return ("ALARM: " if alarm else "no alarm: ") + head
