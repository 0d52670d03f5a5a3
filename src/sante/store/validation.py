"""The store's gate: nothing invalid is written, whichever way it arrives (API, Bundle, loader, web app)."""

from __future__ import annotations

from typing import Any

from sante.anomaly import Anomaly, Category, Problem
from sante.fhir.validate import Issue, validate


def check_resource(resource: dict[str, Any], in_bundle: str | None = None) -> list[Issue]:
    """The error-level issues of a resource (warnings do not block a write); see validate's `in_bundle`."""
    return [i for i in validate(resource, in_bundle=in_bundle) if i.severity in ("error", "fatal")]


def require_valid(resource: dict[str, Any]) -> None:
    """Raise a 422 Anomaly listing every error, each with its location."""
    errors = check_resource(resource)
    if errors:
        problems = tuple(Problem(i.message, i.location, "error", i.code) for i in errors)
        raise Anomaly(Category.UNPROCESSABLE, f"{len(errors)} validation error(s): {errors[0].message}",
                      location=errors[0].location, problems=problems)
