"""Outbreak early warning: aberration detection on weekly (or daily) disease counts per disease × place.

Mirrors the R package `surveillance` (EARS C1/C2/C3, CUSUM, Farrington, improved Farrington) so results can be
compared one to one, and adds Sante's negative-binomial GLM and its recommended detector.  See
docs/surveillance.md.

    from sante.analytics.surveillance import detect
    detect(counts, "recommended", freq=52, start=(2020, 1))  # one dict per monitored week, with a reason
"""

from __future__ import annotations

from sante.analytics.surveillance.api import METHODS, detect, detect_many
from sante.analytics.surveillance.detection import Detection
from sante.analytics.surveillance.errors import SurveillanceInputError

__all__ = ["METHODS", "Detection", "SurveillanceInputError", "detect", "detect_many"]
