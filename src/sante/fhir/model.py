"""The FHIR R4 type model: structure definitions reduced to what navigation and validation need.

Built from the packaged `data/r4-model.json.gz` (see tools/build_fhir_data.py). Everything here is read-only and
cached; look-ups are dictionary hits so FHIRPath and the validator can call them on hot paths.

Terms used here:
- a *context* is where children are looked up: a type name (`"Patient"`, `"HumanName"`, `"string"`) or, for an
  inline backbone element, the element's path (`"Patient.contact"`, `"Questionnaire.item"`).
- a *child* is one JSON property allowed in a context. A choice element `value[x]` yields one child per type
  (`valueQuantity`, `valueString`, ...), all sharing the FHIRPath name `value`.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import orjson

PRIMITIVE_SYSTEM_TYPES = {
    "boolean": "Boolean",
    "integer": "Integer",
    "unsignedInt": "Integer",
    "positiveInt": "Integer",
    "decimal": "Decimal",
    "string": "String",
    "code": "String",
    "id": "String",
    "markdown": "String",
    "uri": "String",
    "url": "String",
    "canonical": "String",
    "oid": "String",
    "uuid": "String",
    "base64Binary": "String",
    "xhtml": "String",
    "date": "Date",
    "dateTime": "DateTime",
    "instant": "DateTime",
    "time": "Time",
}


@dataclass(frozen=True, slots=True)
class Constraint:
    key: str
    severity: str
    expression: str
    human: str


@dataclass(frozen=True, slots=True)
class ElementDef:
    """One element of a structure definition (a row of its snapshot)."""

    path: str  # as in the definition, e.g. "Observation.value[x]"
    name: str  # FHIRPath name: last path segment without "[x]"
    types: tuple[str, ...]
    min: int
    max: int  # -1 for unbounded
    targets: tuple[str, ...] = ()
    content_ref: str | None = None
    regex: str | None = None
    binding_strength: str | None = None
    binding_valueset: str | None = None
    constraints: tuple[Constraint, ...] = ()
    summary: bool = False
    modifier: bool = False

    @property
    def is_choice(self) -> bool:
        return self.path.endswith("[x]")

    @property
    def is_array(self) -> bool:
        return self.max != 1


@dataclass(frozen=True, slots=True)
class Child:
    """One JSON property allowed in a context."""

    json_name: str  # e.g. "valueQuantity"
    element: ElementDef
    type: str  # FHIR type of the value: "Quantity", "string", "BackboneElement", "Resource", ...
    context: str  # where this child's own children are looked up

    @property
    def is_array(self) -> bool:
        return self.element.max != 1

    @property
    def is_primitive(self) -> bool:
        return self.type in PRIMITIVE_SYSTEM_TYPES


@dataclass(slots=True)
class Structure:
    """A StructureDefinition: a resource, complex type or primitive type."""

    name: str
    kind: str  # "resource" | "complex-type" | "primitive-type"
    abstract: bool
    base: str | None
    elements: dict[str, ElementDef] = field(default_factory=dict)


def _title(type_code: str) -> str:
    return type_code[0].upper() + type_code[1:]


class Model:
    """All R4 structures with precomputed child tables for every context."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.fhir_version: str = raw["fhirVersion"]
        self.structures: dict[str, Structure] = {}
        self._valuesets: dict[str, dict[str, list[str]]] = raw["valuesets"]
        self._valueset_cache: dict[str, dict[str, frozenset[str]] | None] = {}
        for name, sd in raw["types"].items():
            s = Structure(name, sd["kind"], sd["abstract"], sd["base"])
            for path, e in sd["elements"].items():
                s.elements[path] = ElementDef(
                    path=path,
                    name=path.rsplit(".", 1)[-1].removesuffix("[x]"),
                    types=tuple(e.get("types", ())),
                    min=e["min"],
                    max=e["max"],
                    targets=tuple(e.get("targets", ())),
                    content_ref=e.get("ref"),
                    regex=e.get("regex"),
                    binding_strength=(e.get("binding") or {}).get("strength"),
                    binding_valueset=(e.get("binding") or {}).get("valueSet"),
                    constraints=tuple(
                        Constraint(c["key"], c["severity"], c["expression"], c.get("human", ""))
                        for c in e.get("constraints", ())
                    ),
                    summary=e.get("summary", False),
                    modifier=e.get("modifier", False),
                )
            self.structures[name] = s
        self.resource_types: frozenset[str] = frozenset(
            n for n, s in self.structures.items() if s.kind == "resource" and not s.abstract
        )
        self.primitive_types: frozenset[str] = frozenset(
            n for n, s in self.structures.items() if s.kind == "primitive-type"
        )
        self._children: dict[str, dict[str, Child]] = {}
        self._by_name: dict[str, dict[str, tuple[Child, ...]]] = {}
        self._element_at: dict[str, ElementDef] = {}
        for s in self.structures.values():
            for path, el in s.elements.items():
                self._element_at.setdefault(path, el)
        for s in self.structures.values():
            self._build_contexts(s)

    # -- construction -------------------------------------------------------------------------------------------
    def _build_contexts(self, s: Structure) -> None:
        contexts: dict[str, dict[str, Child]] = {}
        for path, el in s.elements.items():
            if "." not in path:
                contexts.setdefault(path, {})
                continue
            parent = path.rsplit(".", 1)[0]
            table = contexts.setdefault(parent, {})
            for child in self._children_of(s, el):
                table[child.json_name] = child
        for ctx, table in contexts.items():
            self._children[ctx] = table
            by_name: dict[str, list[Child]] = {}
            for child in table.values():
                by_name.setdefault(child.element.name, []).append(child)
            self._by_name[ctx] = {k: tuple(v) for k, v in by_name.items()}

    def _children_of(self, s: Structure, el: ElementDef) -> list[Child]:
        if el.content_ref:
            # e.g. Questionnaire.item.item -> #Questionnaire.item: same children as the referenced element.
            ref = self._element_at.get(el.content_ref)
            ref_types = ref.types if ref else ("BackboneElement",)
            return [Child(el.name, el, ref_types[0], el.content_ref)]
        types = el.types or ("Element",)
        if el.is_choice:
            return [Child(el.name + _title(t), el, t, self._context_for(s, el, t)) for t in types]
        t = types[0]
        if t.startswith("System."):
            # The `value` of a primitive type, or an `id`/`url` of Element/Extension: no children.
            return [Child(el.name, el, t, t)]
        return [Child(el.name, el, t, self._context_for(s, el, t))]

    def _context_for(self, s: Structure, el: ElementDef, type_code: str) -> str:
        if type_code in ("BackboneElement", "Element") and any(
            p.startswith(el.path + ".") for p in s.elements
        ):
            return el.path
        return type_code

    # -- queries ------------------------------------------------------------------------------------------------
    def structure(self, name: str) -> Structure | None:
        return self.structures.get(name)

    def children(self, context: str) -> dict[str, Child]:
        """JSON property name -> Child for a context (type name or backbone path); {} if unknown."""
        return self._children.get(context, {})

    def children_named(self, context: str, name: str) -> tuple[Child, ...]:
        """The children reachable by a FHIRPath name (several for a choice element)."""
        return self._by_name.get(context, {}).get(name, ())

    def element(self, path: str) -> ElementDef | None:
        """The element definition at a path such as "Patient.contact.name" (first definition wins)."""
        return self._element_at.get(path)

    def is_resource(self, name: str) -> bool:
        return name in self.resource_types

    def is_primitive(self, name: str) -> bool:
        return name in self.primitive_types

    def ancestors(self, name: str) -> tuple[str, ...]:
        """The type and its bases, most specific first, e.g. Age -> (Age, Quantity, Element)."""
        return _ancestors(self, name)

    def is_subtype(self, name: str, base: str) -> bool:
        return base in self.ancestors(name)

    def valueset(self, url: str) -> dict[str, frozenset[str]] | None:
        """system -> codes of a value set expanded from the package, or None when not expandable here."""
        key = url.split("|", 1)[0]
        if key not in self._valueset_cache:
            raw = self._valuesets.get(key)
            self._valueset_cache[key] = (
                {s: frozenset(codes) for s, codes in raw.items()} if raw is not None else None
            )
        return self._valueset_cache[key]


_ANCESTORS: dict[str, tuple[str, ...]] = {}


def _ancestors(model: Model, name: str) -> tuple[str, ...]:
    hit = _ANCESTORS.get(name)
    if hit is None:
        chain = [name]
        s = model.structures.get(name)
        while s is not None and s.base and s.base not in chain:
            chain.append(s.base)
            s = model.structures.get(s.base)
        hit = _ANCESTORS[name] = tuple(chain)
    return hit


def _read_data(name: str) -> bytes:
    data = resources.files("sante.fhir").joinpath("data", name).read_bytes()
    return gzip.decompress(data) if name.endswith(".gz") else data


@lru_cache(maxsize=1)
def r4() -> Model:
    """The FHIR R4 model (loaded once per process)."""
    return Model(orjson.loads(_read_data("r4-model.json.gz")))


# Sante's own search parameters, beside the specification's: what authorization needs to ask in SQL.
SANTE_SEARCH_PARAMETERS: list[dict[str, Any]] = [
    {"resourceType": "SearchParameter", "id": "sante-consent-provision-type",
     "url": "https://sante.health/fhir/SearchParameter/consent-provision-type", "name": "provision-type",
     "status": "active", "description": "Consent.provision.type: deny or permit (the base rule of a consent)",
     "code": "provision-type", "base": ["Consent"], "type": "token", "expression": "Consent.provision.type"},
]


@lru_cache(maxsize=1)
def search_parameters() -> list[dict[str, Any]]:
    """All R4 SearchParameter resources from the specification, and Sante's own."""
    bundle = orjson.loads(_read_data("search-parameters.json.gz"))
    spec = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "SearchParameter"]
    return spec + SANTE_SEARCH_PARAMETERS


@lru_cache(maxsize=1)
def patient_compartment() -> dict[str, Any]:
    """The R4 Patient CompartmentDefinition."""
    return orjson.loads(_read_data("compartmentdefinition-patient.json"))


# -------------------------------------------------------------------------------------------------------------
# code system hierarchies (token :below / :above)


@lru_cache(maxsize=1)
def _code_parents() -> dict[str, dict[str, list[str]]]:
    """system -> code -> parent codes, for the complete code systems of the R4 package (is-a hierarchies)."""
    return orjson.loads(_read_data("code-hierarchies.json.gz"))


@lru_cache(maxsize=1)
def _code_children() -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    for system, codes in _code_parents().items():
        children = out.setdefault(system, {})
        for code, parents in codes.items():
            for parent in parents:
                children.setdefault(parent, []).append(code)
    return out


@lru_cache(maxsize=1)
def _systems_by_code() -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for system, codes in sorted(_code_parents().items()):
        for code in codes:
            out.setdefault(code, []).append(system)
    return {code: tuple(systems) for code, systems in out.items()}


def _closure(links: dict[str, list[str]], code: str) -> frozenset[str]:
    seen = {code}
    todo = [code]
    while todo:
        for nxt in links.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return frozenset(seen)


def code_system_known(system: str) -> bool:
    """Whether the concepts (and any hierarchy) of a code system are packaged here: the R4 package's own."""
    return system in _code_parents()


@lru_cache(maxsize=4096)
def descendants(system: str, code: str) -> frozenset[str] | None:
    """The code and every code it subsumes in the system's hierarchy (several parents allowed); None when the
    code system is not known here. A code the system does not define is returned alone."""
    if system not in _code_parents():
        return None
    return _closure(_code_children().get(system, {}), code)


@lru_cache(maxsize=4096)
def ancestors(system: str, code: str) -> frozenset[str] | None:
    """The code and every code that subsumes it in the system's hierarchy; None when the system is not known."""
    parents = _code_parents().get(system)
    return None if parents is None else _closure(parents, code)


def systems_with_code(code: str) -> tuple[str, ...]:
    """The known code systems that define a code (sorted): where a code given without its system may come from."""
    return _systems_by_code().get(code, ())
