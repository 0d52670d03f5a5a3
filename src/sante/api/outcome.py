"""OperationOutcome responses for the API (built by sante.anomaly, the one place errors take shape)."""

from __future__ import annotations

from typing import Any

from sante.anomaly import Problem, operation_outcome, outcome_for


def information(message: str) -> dict[str, Any]:
    return operation_outcome([Problem(message, severity="information", code="informational")])


__all__ = ["information", "operation_outcome", "outcome_for"]
