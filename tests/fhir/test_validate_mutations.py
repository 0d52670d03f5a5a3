"""A mutation corpus: one defect at a time injected into valid official examples, each rejected at its location.

The generator walks each example with the R4 model, lists every element with its FHIRPath-style location, and
for each kind of defect picks the first element where the defect applies. The expected location is computed
from the walk, independently of the validator.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from sante.fhir.model import Child, r4
from sante.fhir.validate import validate, validate_json

EXAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fhir-examples-r4" / "core"


@dataclass
class Element:
    location: str
    parent: dict  # the JSON object holding it
    key: str
    index: int | None  # position in the parent's array, None for a single value
    child: Child
    value: Any
    parent_context: str
    parent_location: str


def elements(obj: dict, context: str, loc: str) -> Iterator[Element]:
    """Every element of a resource (contained resources and Bundle entries not entered), depth first."""
    kids = r4().children(context)
    for key, value in obj.items():
        child = kids.get(key)
        if child is None:
            continue
        items = value if isinstance(value, list) else [value]
        for i, v in enumerate(items):
            here = f"{loc}.{key}[{i}]" if isinstance(value, list) else f"{loc}.{key}"
            yield Element(here, obj, key, i if isinstance(value, list) else None, child, v, context, loc)
            if isinstance(v, dict) and child.type != "Resource" and not child.type.startswith("System."):
                yield from elements(v, child.context, here)


def set_value(e: Element, new: Any) -> None:
    if e.index is None:
        e.parent[e.key] = new
    else:
        e.parent[e.key][e.index] = new


# A mutation: (name, applies to element?, mutate (returns the expected location)).
Mutation = tuple[str, Callable[[Element], bool], Callable[[Element], str]]


def _is_prim(e: Element, *types: str) -> bool:
    return e.child.type in types and e.value is not None


def _required_binding(e: Element) -> bool:
    el = e.child.element
    return (
        e.child.type == "code"
        and el.binding_strength == "required"
        and el.binding_valueset is not None
        and r4().valueset(el.binding_valueset) is not None
        and isinstance(e.value, str)
    )


def _required_single(e: Element) -> bool:
    el = e.child.element
    return el.min >= 1 and not el.is_choice and e.index is None and f"_{e.key}" not in e.parent


def _remove(e: Element) -> str:
    del e.parent[e.key]
    return f"{e.parent_location}.{e.child.element.name}"


def _wrong_type(e: Element) -> str:
    set_value(e, 12345)
    return e.location


def _bad_date(e: Element) -> str:
    set_value(e, "2023-02-30")
    return e.location


def _bad_code(e: Element) -> str:
    set_value(e, "no-such-code")
    return e.location


def _unknown(e: Element) -> str:
    e.value["bogusElement"] = True
    return f"{e.location}.bogusElement"


def _over_cardinality(e: Element) -> str:
    e.parent[e.key] = [e.value, e.value]
    return e.location


def _bad_reference(e: Element) -> str:
    e.value["reference"] = "not a reference"
    return f"{e.location}.reference"


def _empty_string(e: Element) -> str:
    set_value(e, "")
    return e.location


def _empty_array(e: Element) -> str:
    e.parent[e.key] = []
    return f"{e.parent_location}.{e.key}"


def _null(e: Element) -> str:
    set_value(e, None)
    return e.location


MUTATIONS: list[Mutation] = [
    ("wrong type", lambda e: _is_prim(e, "string", "markdown", "code", "dateTime", "uri"), _wrong_type),
    (
        "unknown element",
        lambda e: isinstance(e.value, dict) and not e.child.is_primitive and e.child.type != "Resource",
        _unknown,
    ),
    ("missing required element", _required_single, _remove),
    ("bad date", lambda e: _is_prim(e, "date", "dateTime"), _bad_date),
    ("bad code in required binding", _required_binding, _bad_code),
    (
        "over-cardinality",
        lambda e: (
            e.index is None
            and not e.child.is_primitive
            and isinstance(e.value, dict)
            and e.child.type != "Resource"
        ),
        _over_cardinality,
    ),
    (
        "bad reference format",
        lambda e: (
            e.child.type == "Reference"
            and isinstance(e.value, dict)
            and isinstance(e.value.get("reference"), str)
        ),
        _bad_reference,
    ),
    ("empty string", lambda e: _is_prim(e, "string"), _empty_string),
    ("empty array", lambda e: e.index == 0 and e.child.type != "Resource", _empty_array),
    ("null", lambda e: e.index is None and e.value is not None and f"_{e.key}" not in e.parent, _null),
]


def example_resources() -> list[tuple[str, dict]]:
    if not EXAMPLES.is_dir():
        return []
    out = []
    for p in sorted(EXAMPLES.glob("*.json")):
        r = orjson.loads(p.read_bytes())
        if r["resourceType"] != "Bundle" and validate(r) == []:
            out.append((p.name, r))
    return out


def mutants() -> Iterator[tuple[str, str, dict, str]]:
    """(example, mutation, mutated resource, expected location) for each example and applicable mutation."""
    for name, resource in example_resources():
        for label, applies, mutate in MUTATIONS:
            doc = copy.deepcopy(resource)
            target = next(
                (e for e in elements(doc, doc["resourceType"], doc["resourceType"]) if applies(e)), None
            )
            if target is not None:
                yield name, label, doc, mutate(target)


def test_mutation_corpus_is_rejected_at_the_right_location() -> None:
    if not EXAMPLES.is_dir():
        pytest.skip("official examples not available")
    counts: dict[str, int] = {}
    failures = []
    for name, label, doc, expected in mutants():
        counts[label] = counts.get(label, 0) + 1
        issues = [i for i in validate(doc) if i.severity in ("error", "fatal")]
        if expected not in {i.location for i in issues}:
            failures.append(f"{name}: {label}: expected an error at {expected}, got {issues}")
    assert not failures, "\n".join(failures[:20])
    assert set(counts) == {m[0] for m in MUTATIONS}
    assert sum(counts.values()) > 1000, counts


def test_malformed_json_mutations_are_one_fatal_issue() -> None:
    if not EXAMPLES.is_dir():
        pytest.skip("official examples not available")
    for name, resource in example_resources()[:40]:
        raw = orjson.dumps(resource, option=orjson.OPT_INDENT_2)
        for broken in (
            raw[: len(raw) // 2],
            raw.replace(b":", b"", 1),
            raw + b"}",
            raw.replace(b"{", b"[", 1),
        ):
            issues = validate_json(broken)
            assert len(issues) == 1 and issues[0].severity == "fatal", (name, issues)
            assert "line " in issues[0].message and "column " in issues[0].message


@pytest.mark.parametrize(
    ("mutate", "location", "code"),
    [
        (lambda p: p.__setitem__("gender", "xyz"), "Patient.gender", "code-invalid"),
        (lambda p: p.__setitem__("birthDate", "2023-02-30"), "Patient.birthDate", "value"),
        (lambda p: p["name"][0]["given"].__setitem__(1, 7), "Patient.name[0].given[1]", "value"),
        (lambda p: p["name"][0].__setitem__("given", []), "Patient.name[0].given", "structure"),
        (lambda p: p["contact"][0].__setitem__("nickname", "x"), "Patient.contact[0].nickname", "structure"),
        (
            lambda p: p.__setitem__("managingOrganization", {"reference": "Patient/1"}),
            "Patient.managingOrganization.reference",
            "invalid",
        ),
        (
            lambda p: (
                p["link"][0].pop("other") if "link" in p else p.__setitem__("link", [{"type": "seealso"}])
            ),
            "Patient.link[0].other",
            "required",
        ),
        (lambda p: p.__setitem__("active", None), "Patient.active", "structure"),
        (lambda p: p["telecom"][0].__setitem__("system", "pager "), "Patient.telecom[0].system", "value"),
    ],
)
def test_patient_example_mutations(mutate: Callable[[dict], Any], location: str, code: str) -> None:
    path = EXAMPLES / "Patient-example.json"
    if not path.exists():
        pytest.skip("official examples not available")
    p = orjson.loads(path.read_bytes())
    mutate(p)
    assert [(i.location, i.code) for i in validate(p)] == [(location, code)]
