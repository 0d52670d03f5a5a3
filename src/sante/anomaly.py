"""Sante's one error type: an anomaly with a category that the API maps to an HTTP status in one place.

Modelled on Blaze's `anomaly`: the category says what went wrong from the caller's point of view; the
location says where (a FHIRPath-style path into the resource or request).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Category(Enum):
    """What kind of failure, with its HTTP status and FHIR issue type."""

    INCORRECT = (400, "invalid")  # malformed request or resource
    UNPROCESSABLE = (422, "processing")  # well-formed but violates the rules (validation)
    NOT_FOUND = (404, "not-found")
    DELETED = (410, "deleted")
    CONFLICT = (409, "conflict")
    PRECONDITION_FAILED = (412, "conflict")  # If-Match / version mismatch
    UNSUPPORTED = (405, "not-supported")
    FORBIDDEN = (403, "forbidden")
    UNAUTHORIZED = (401, "login")
    FAULT = (500, "exception")

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def issue_code(self) -> str:
        return self.value[1]


@dataclass(frozen=True, slots=True)
class Problem:
    """One located problem inside an anomaly (e.g. one validation issue)."""

    message: str
    location: str | None = None
    severity: str = "error"
    code: str | None = None


class Anomaly(Exception):
    """A failure that is reported to the caller, never a crash."""

    def __init__(
        self, category: Category, message: str, *, location: str | None = None, problems: tuple[Problem, ...] = ()
    ) -> None:
        super().__init__(message)
        self.category = category
        self.message = message
        self.location = location
        self.problems = problems or (Problem(message, location, code=category.issue_code),)

    def __repr__(self) -> str:
        return f"Anomaly({self.category.name}, {self.message!r})"


def operation_outcome(problems: tuple[Problem, ...] | list[Problem], default_code: str = "processing") -> dict:
    """The FHIR OperationOutcome for a list of problems."""
    issues = []
    for p in problems:
        issue: dict = {"severity": p.severity, "code": p.code or default_code, "diagnostics": p.message}
        if p.location:
            issue["expression"] = [p.location]
        issues.append(issue)
    return {"resourceType": "OperationOutcome", "issue": issues}


def outcome_for(anomaly: Anomaly) -> dict:
    return operation_outcome(anomaly.problems, anomaly.category.issue_code)


def incorrect(message: str, location: str | None = None) -> Anomaly:
    return Anomaly(Category.INCORRECT, message, location=location)


def not_found(message: str) -> Anomaly:
    return Anomaly(Category.NOT_FOUND, message)


def conflict(message: str) -> Anomaly:
    return Anomaly(Category.CONFLICT, message)
