"""Type specifiers (`is`/`as`/`ofType`, `FHIR.x`, `System.X`) and how item types match them."""

from __future__ import annotations

from sante.fhir.model import r4
from sante.fhirpath.errors import FHIRPathError

SYSTEM_TYPES = frozenset({"Boolean", "Integer", "Decimal", "String", "Date", "DateTime", "Time", "Quantity"})


def parse_type_spec(
    spec: str, expression: str | None = None, position: int | None = None
) -> tuple[str | None, str]:
    """(namespace or None, name) of a type specifier; an unknown type is an error."""
    ns, _, name = spec.rpartition(".")
    if ns not in ("", "FHIR", "System"):
        raise FHIRPathError(f"unknown type namespace {ns!r}", expression, position, "semantic")
    known_fhir = name in r4().structures
    # `System.Patient` is a valid specifier that no value has; an unknown bare or FHIR name is an error.
    if (ns == "FHIR" and not known_fhir) or (ns == "" and not known_fhir and name not in SYSTEM_TYPES):
        raise FHIRPathError(f"unknown type {spec!r}", expression, position, "execution")
    return (ns or None), name


def type_matches(actual: str | None, ns: str | None, name: str, exact: bool) -> bool | None:
    """Whether an item of type `actual` ("System.Integer", "code", "Patient", ...) is of the given type.

    `is` accepts subtypes (a `code` is a `string`, an `Age` is a `Quantity`); `as`/`ofType` (`exact`) need the
    primitive type itself, as the FHIRPath suite expects (`Patient.gender.as(string)` is empty). A FHIR
    primitive is never a System type (`Patient.active is System.Boolean` is false). None: type unknown.
    """
    if actual is None:
        return None
    if actual.startswith("System."):
        return ns != "FHIR" and actual[7:] == name
    if ns == "System":
        return False
    model = r4()
    if exact and model.is_primitive(actual):
        return actual == name
    return name in model.ancestors(actual)
