"""Subsetting resources for _summary and _elements, from the definitions' isSummary flags."""

from __future__ import annotations

from functools import cache
from typing import Any

from sante.fhir.model import r4

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
_ALWAYS = ("resourceType", "id", "meta")


@cache
def summary_elements(rtype: str) -> frozenset[str]:
    """Top-level JSON names of a type's summary elements (choice types expanded)."""
    names = set(_ALWAYS)
    for json_name, child in r4().children(rtype).items():
        if child.element.summary or child.element.min > 0:
            names.add(json_name)
            names.add("_" + json_name)
    return frozenset(names)


def _mark(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    resource["meta"] = meta
    return resource


def subset(resource: dict[str, Any], summary: str | None, elements: list[str]) -> dict[str, Any]:
    """The resource reduced per _summary (true|text|data) or _elements, tagged SUBSETTED when reduced."""
    if summary == "true":
        keep = summary_elements(resource["resourceType"])
        return _mark({k: v for k, v in resource.items() if k in keep})
    if summary == "text":
        return _mark({k: v for k, v in resource.items() if k in (*_ALWAYS, "text")})
    if summary == "data":
        return _mark({k: v for k, v in resource.items() if k != "text"})
    if elements:
        wanted = set(elements) | {"_" + e for e in elements} | set(_ALWAYS)
        return _mark({k: v for k, v in resource.items() if k in wanted})
    return resource
