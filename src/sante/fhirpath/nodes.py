"""How FHIR data appears inside the engine.

Values are plain Python objects (bool, int, Decimal, str, Date/DateTime/Time, Quantity, JSON dicts) so the hot
paths create nothing. The one wrapper, `PrimNode`, exists only for a primitive that has a `_name` sibling in
the JSON (an id or extensions, possibly without a value): it keeps the extension object and the FHIR type.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sante.fhirpath.quantity import Quantity
from sante.fhirpath.temporal import Date, DateTime, Time


class PrimNode:
    """A FHIR primitive that carries an element (`id`/`extension`) beside its value (which may be None)."""

    __slots__ = ("ext", "ftype", "value")

    def __init__(self, value: Any, ext: dict[str, Any] | None, ftype: str) -> None:
        self.value = value
        self.ext = ext or {}
        self.ftype = ftype

    def __repr__(self) -> str:
        return f"PrimNode({self.value!r}, {self.ftype})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrimNode) and other.value == self.value and other.ext == self.ext

    def __hash__(self) -> int:
        return hash(self.value)

    @property
    def extension(self) -> list[dict[str, Any]]:
        return self.ext.get("extension") or []


def unwrap(x: Any) -> Any:
    """The plain value of an item (a PrimNode's value; anything else as is)."""
    return x.value if type(x) is PrimNode else x


_SYSTEM_OF_PY = {
    bool: "System.Boolean",
    int: "System.Integer",
    Decimal: "System.Decimal",
    str: "System.String",
    Date: "System.Date",
    DateTime: "System.DateTime",
    Time: "System.Time",
    Quantity: "System.Quantity",
    float: "System.Decimal",
}


def runtime_type(x: Any) -> str | None:
    """The type of an item known from the item itself: a FHIR type for resources and PrimNodes, a System type
    for plain values, None for a complex element whose type only its position tells."""
    t = type(x)
    if t is PrimNode:
        return x.ftype
    if t is dict:
        return x.get("resourceType")
    return _SYSTEM_OF_PY.get(t)
