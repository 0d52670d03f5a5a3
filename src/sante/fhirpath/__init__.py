"""FHIRPath (N1, as used by FHIR R4) over FHIR JSON, compiled to Python.

    >>> from sante.fhirpath import compile, evaluate
    >>> given = compile("Patient.name.given")
    >>> given({"resourceType": "Patient", "name": [{"given": ["Ana"]}]})
    ['Ana']

`compile()` parses once and returns a function `fn(resource, variables=None) -> list`; the first call for each
`resourceType` generates Python code specialised for that type (see `compiler`). `evaluate()` does the same
through a cache of compiled expressions. Invalid expressions and evaluation errors raise `FHIRPathError`.
"""

from __future__ import annotations

from sante.fhirpath.api import compile, compile_for_type, compile_many, evaluate, result_type
from sante.fhirpath.errors import FHIRPathError
from sante.fhirpath.nodes import PrimNode
from sante.fhirpath.quantity import Quantity
from sante.fhirpath.temporal import Date, DateTime, Time

__all__ = [
    "Date", "DateTime", "FHIRPathError", "PrimNode", "Quantity", "Time",
    "compile", "compile_for_type", "compile_many", "evaluate", "result_type",
]
