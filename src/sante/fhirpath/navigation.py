"""Navigation over FHIR JSON: typed navigators built from the model, and the dynamic fallback.

A typed navigator knows, for one step from one context, which JSON keys to probe (several for a choice
element), whether each holds an array, and how to turn a primitive's JSON value into a FHIRPath value (dates
into Date/DateTime, floats into Decimal). It is built once per (context, name) and cached, so evaluation does
no model look-ups.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any

from sante.fhir.model import Child, r4
from sante.fhirpath.nodes import PrimNode
from sante.fhirpath.temporal import fhir_date, fhir_datetime, fhir_time

# Contexts whose actual type is only known from the data (`resourceType`).
ABSTRACT_CONTEXTS = frozenset({"Resource", "DomainResource"})


def _decimal(v: Any) -> Any:
    return Decimal(str(v)) if type(v) is float else Decimal(v) if type(v) is int else v


CONVERSIONS: dict[str, Callable[[Any], Any]] = {
    "date": fhir_date,
    "dateTime": fhir_datetime,
    "instant": fhir_datetime,
    "time": fhir_time,
    "decimal": _decimal,
}


def child_type(child: Child) -> str:
    """The FHIR type of a child; the few `System.String` elements get the FHIR type they stand for."""
    t = child.type
    if t.startswith("System."):
        if child.json_name == "id":
            parent = child.element.path.rsplit(".", 1)[0]
            return "id" if parent in ABSTRACT_CONTEXTS or r4().is_resource(parent) else "string"
        if child.json_name == "url":
            return "uri"
        return {
            "System.String": "string",
            "System.Boolean": "boolean",
            "System.Integer": "integer",
            "System.Decimal": "decimal",
            "System.Date": "date",
            "System.DateTime": "dateTime",
            "System.Time": "time",
        }.get(t, "string")
    return t


def is_dynamic_context(ctx: str | None) -> bool:
    """Contexts where static navigation cannot be planned (unknown, abstract resource, primitive)."""
    if ctx is None or ctx in ABSTRACT_CONTEXTS or ctx.startswith("System."):
        return True
    return r4().is_primitive(ctx)


Spec = tuple[str, str, str, Callable[[Any], Any] | None, bool]


def make_navigator(children: tuple[Child, ...]) -> Callable[[list[Any]], list[Any]]:
    """A function items -> values for the given children (JSON keys) of dict items."""
    specs: list[Spec] = []
    for c in children:
        t = child_type(c)
        specs.append((c.json_name, "_" + c.json_name, t, CONVERSIONS.get(t), c.is_array))
    specs_t = tuple(specs)

    def navigate(items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for x in items:
            if type(x) is not dict:
                continue
            for key, ekey, ftype, conv, _arr in specs_t:
                v = x.get(key)
                e = x.get(ekey)
                if e is None:
                    if v is None:
                        continue
                    if type(v) is list:
                        if conv is None:
                            out.extend(i for i in v if i is not None)
                        else:
                            out.extend(conv(i) for i in v if i is not None)
                    else:
                        out.append(v if conv is None else conv(v))
                else:
                    _with_extensions(out, v, e, ftype, conv)
        return out

    return navigate


def _with_extensions(out: list[Any], v: Any, e: Any, ftype: str, conv: Callable[[Any], Any] | None) -> None:
    """A primitive (or primitive array) with its `_name` sibling: items become PrimNodes where they have one."""
    if type(v) is list or type(e) is list:
        vs = v if type(v) is list else ([] if v is None else [v])
        es = e if type(e) is list else [e]
        for i in range(max(len(vs), len(es))):
            item = vs[i] if i < len(vs) else None
            ext = es[i] if i < len(es) else None
            if item is not None and conv is not None:
                item = conv(item)
            if ext is None:
                if item is not None:
                    out.append(item)
            else:
                out.append(PrimNode(item, ext, ftype))
        return
    out.append(PrimNode(None if v is None else (conv(v) if conv else v), e, ftype))


@cache
def typed_navigator(ctx: str, name: str) -> Callable[[list[Any]], list[Any]] | None:
    """The navigator for `name` from a context, or None when the model has no such child there."""
    kids = r4().children_named(ctx, name)
    return make_navigator(kids) if kids else None


@lru_cache(maxsize=1)
def choice_names() -> frozenset[str]:
    """FHIRPath names of all choice elements (`value`, `effective`, ...): only these need key probing."""
    return frozenset(el.name for s in r4().structures.values() for el in s.elements.values() if el.is_choice)


def _untyped(out: list[Any], x: dict[str, Any], name: str, ename: str, choice: bool) -> None:
    v = x.get(name)
    e = x.get(ename)
    if v is None and e is None:
        if not choice:
            return
        n = len(name)
        for k, kv in x.items():  # a choice element (`value` -> `valueQuantity`) in data of unknown type
            if len(k) > n and k.startswith(name) and k[n].isupper():
                v, e = kv, x.get("_" + k)
                break
        else:
            return
    if e is not None:
        _with_extensions(out, v, e, "string", None)
    elif type(v) is list:
        out.extend(_decimal(i) if type(i) is float else i for i in v if i is not None)
    elif v is not None:
        out.append(_decimal(v) if type(v) is float else v)


def dynamic_nav(items: list[Any], name: str) -> list[Any]:
    """Navigation when the static type is unknown: resources use their typed navigators, other dicts are
    read as they are, and primitives with extensions expose `extension` and `id`."""
    out: list[Any] = []
    ename = "_" + name
    choice = name in choice_names()
    for x in items:
        t = type(x)
        if t is dict:
            rt = x.get("resourceType")
            if rt is not None:
                nav = typed_navigator(rt, name)
                if nav is not None:
                    out.extend(nav([x]))
                    continue
            _untyped(out, x, name, ename, choice)
        elif t is PrimNode:
            if name == "extension":
                out.extend(x.ext.get("extension") or ())
            elif name == "id" and x.ext.get("id") is not None:
                out.append(x.ext["id"])
    return out


def filter_resource_type(items: list[Any], type_name: str) -> list[Any]:
    """The items that are resources of the given type (or a subtype), for a path starting `Patient.`."""
    model = r4()
    return [
        x
        for x in items
        if type(x) is dict
        and x.get("resourceType") is not None
        and model.is_subtype(x["resourceType"], type_name)
    ]
