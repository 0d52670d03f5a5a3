"""Search-index extraction: every R4 SearchParameter, compiled once per resource type with the FHIRPath engine.

`index_rows(resource)` returns, per index kind, the rows to store for one resource. The expressions come from
the specification's SearchParameter resources (HAPI's lesson: never re-type the spec); a union such as
`Patient.name | Practitioner.name` is split so each type evaluates only its own branch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from sante import fhirpath
from sante.fhir.model import r4, search_parameters
from sante.fhirpath.text import split_top_level
from sante.store import index_values as iv

# Index kind per search-parameter type; composite and special parameters are handled elsewhere.
KIND_OF_TYPE = {
    "string": "string",
    "token": "token",
    "reference": "reference",
    "date": "date",
    "number": "number",
    "quantity": "quantity",
    "uri": "uri",
}
EXTRACTORS: dict[str, Callable[[Any], list[Any]]] = {
    "string": iv.string_entries,
    "token": iv.token_entries,
    "reference": iv.reference_entries,
    "date": iv.date_entries,
    "number": iv.number_entries,
    "quantity": iv.quantity_entries,
    "uri": iv.uri_entries,
}


@dataclass(frozen=True, slots=True)
class IndexedParam:
    code: str
    type: str  # FHIR search-parameter type
    expression: str
    evaluate: Callable[..., list[Any]]
    targets: tuple[str, ...]


def split_union(expression: str) -> list[str]:
    """Top-level `|` branches of an expression (not inside parentheses, brackets or quotes)."""
    parts = split_top_level(expression, "|") or [expression]
    return [p.strip() for p in parts if p.strip()]


def _branch_root(branch: str) -> str:
    head = branch.lstrip("(")
    name = ""
    for ch in head:
        if ch.isalnum() or ch == "_":
            name += ch
        else:
            break
    return name


def expression_for_type(expression: str, rtype: str) -> str | None:
    """The part of a (possibly multi-type) expression that applies to rtype, or None if no branch does."""
    model = r4()
    keep = []
    for branch in split_union(expression):
        root = _branch_root(branch)
        if root == rtype or root in ("Resource", "DomainResource") or root not in model.structures:
            keep.append(branch)
    return " | ".join(keep) if keep else None


@cache
def params_for(rtype: str) -> tuple[IndexedParam, ...]:
    """The indexable search parameters of a resource type (including those on Resource/DomainResource)."""
    bases = {rtype, "Resource", "DomainResource"}
    out = []
    for sp in search_parameters():
        kind = KIND_OF_TYPE.get(sp.get("type", ""))
        expression = sp.get("expression")
        if kind is None or not expression or not bases.intersection(sp.get("base", ())):
            continue
        if sp["code"] == "_id":
            continue  # searched on resources.id itself; an index row would only cost writes
        mine = expression_for_type(expression, rtype)
        if mine is None:
            continue
        out.append(IndexedParam(sp["code"], sp["type"], mine, fhirpath.compile(mine), tuple(sp.get("target", ()))))
    return tuple(out)


@cache
def evaluator_for(rtype: str) -> Callable[..., list[Any]]:
    """All of `params_for(rtype)` compiled together: one call per resource, one result (or error) per param."""
    return fhirpath.compile_many([p.expression for p in params_for(rtype)])


def index_rows(resource: dict[str, Any]) -> dict[str, list[tuple[Any, ...]]]:
    """kind -> [(param code, *entry fields)] for every indexable search parameter of the resource."""
    rows: dict[str, list[tuple[Any, ...]]] = {kind: [] for kind in EXTRACTORS}
    rtype = resource["resourceType"]
    for p, values in zip(params_for(rtype), evaluator_for(rtype)(resource), strict=True):
        if isinstance(values, BaseException):
            if isinstance(values, fhirpath.FHIRPathError):
                continue  # a value the expression cannot handle is not searchable; the resource is still stored
            raise values
        if not values:
            continue
        extract = EXTRACTORS[p.type]
        target = rows[p.type]
        seen = set()
        for v in values:
            for entry in extract(v):
                key = entry if p.type != "uri" else (entry,)
                if key not in seen:
                    seen.add(key)
                    target.append((p.code, *key))
    return rows
