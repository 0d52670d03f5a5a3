"""What a page shows next to a form field when the input is wrong: a located, translatable problem.

A `FieldProblem` has
- `key`: a stable message key ("cccd.length"), for tests and for a page that handles one case specially;
- `field`: the form field it belongs to ("cccd", the names of RegistrationForm's fields or of a service's
  parameters), so a page shows it beside that field;
- `template` and `params`: the English message with `{placeholders}` and their values. The web layer translates
  the template as a gettext message id and formats it with the params: `_(p.template).format(**p.params)`;
  `p.text` is the English text;
- `severity`: "error" refuses the input, "warning" lets it through (the page shows it and may ask to confirm).

Services raise `InvalidInput` (an Anomaly: 422, one OperationOutcome issue per problem, the field as its
expression) carrying the problems themselves in `field_problems`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sante.anomaly import Anomaly, Category, Problem


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One problem with one field of a form."""

    key: str
    field: str
    template: str
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    severity: str = "error"  # "error" | "warning"

    @property
    def text(self) -> str:
        """The message in English."""
        return self.template.format(**self.params)

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def as_issue(self) -> Problem:
        """The problem as an OperationOutcome issue (sante.anomaly.Problem), located at the field."""
        return Problem(self.text, self.field, self.severity, "invalid" if self.is_error else "business-rule")


def problem(key: str, field_name: str, template: str, *, warning: bool = False, **params: Any) -> FieldProblem:
    return FieldProblem(key, field_name, template, params, "warning" if warning else "error")


class InvalidInput(Anomaly):
    """Input refused (422): the field problems, errors and warnings, each located at its field."""

    def __init__(self, problems: Iterable[FieldProblem]) -> None:
        self.field_problems = list(problems)
        errors = [p for p in self.field_problems if p.is_error] or self.field_problems
        first = errors[0]
        super().__init__(Category.UNPROCESSABLE, first.text, location=first.field,
                         problems=tuple(p.as_issue() for p in self.field_problems))


def refuse(key: str, field_name: str, template: str, **params: Any) -> InvalidInput:
    """An InvalidInput with one error, to raise."""
    return InvalidInput([problem(key, field_name, template, **params)])


def raise_errors(problems: Iterable[FieldProblem]) -> list[FieldProblem]:
    """Raise InvalidInput (with the warnings too) when any problem is an error; return the warnings otherwise."""
    problems = list(problems)
    if any(p.is_error for p in problems):
        raise InvalidInput(problems)
    return problems


__all__ = ["FieldProblem", "InvalidInput", "problem", "raise_errors", "refuse"]
