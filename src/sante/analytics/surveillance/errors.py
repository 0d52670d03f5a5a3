"""The one error type of the surveillance package: bad input, naming the parameter at fault."""

from __future__ import annotations


class SurveillanceInputError(ValueError):
    """Invalid input to a detector; `parameter` names the argument or control option at fault."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
