"""OperationOutcome: the one shape every API error takes, built in one place from an Anomaly."""

from __future__ import annotations

from typing import Any

from sante.anomaly import Anomaly, Category, Problem


def operation_outcome(problems: tuple[Problem, ...] | list[Problem], default_code: str = "processing") -> dict[str, Any]:
    issues = []
    for p in problems:
        issue: dict[str, Any] = {
            "severity": p.severity,
            "code": p.code or default_code,
            "diagnostics": p.message,
        }
        if p.location:
            issue["expression"] = [p.location]
        issues.append(issue)
    return {"resourceType": "OperationOutcome", "issue": issues}


def outcome_for(anomaly: Anomaly) -> dict[str, Any]:
    return operation_outcome(anomaly.problems, anomaly.category.issue_code)


def information(message: str) -> dict[str, Any]:
    return operation_outcome([Problem(message, severity="information", code="informational")])


def status_of(anomaly: Anomaly) -> int:
    return anomaly.category.status


__all__ = ["operation_outcome", "outcome_for", "information", "status_of", "Category"]
