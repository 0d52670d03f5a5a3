"""The one error type of the FHIRPath engine."""

from __future__ import annotations


class FHIRPathError(ValueError):
    """An invalid expression (syntax or semantic) or a failure while evaluating one.

    `kind` is "syntax", "semantic" or "execution"; `position` is the 0-based offset in the expression (or None
    when the failure has no single place), and the message names it as line:column.
    """

    def __init__(
        self,
        message: str,
        expression: str | None = None,
        position: int | None = None,
        kind: str = "execution",
    ) -> None:
        self.kind = kind
        self.position = position
        self.expression = expression
        if expression is not None and position is not None:
            line = expression.count("\n", 0, position) + 1
            column = position - (expression.rfind("\n", 0, position) + 1) + 1
            message = f"{message} at line {line}, column {column} (offset {position})"
        super().__init__(message)
