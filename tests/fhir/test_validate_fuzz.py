"""Arbitrary JSON never makes the validator raise: it always answers with issues."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sante.fhir.model import r4
from sante.fhir.validate import Issue, validate, validate_json

M = r4()
RESOURCE_TYPES = [*sorted(M.resource_types), "DomainResource", "Resource", "Nope"]
# Property names the model knows anywhere (so fuzzed objects often hit real elements), plus `_` siblings.
NAMES = sorted(
    {
        n
        for ctx in (
            "Patient",
            "Observation",
            "Bundle",
            "Bundle.entry",
            "HumanName",
            "Extension",
            "CodeableConcept",
            "Coding",
            "Reference",
            "Quantity",
            "Period",
            "Meta",
            "Narrative",
            "Identifier",
            "Observation.component",
        )
        for n in M.children(ctx)
    }
)
KEYS = st.sampled_from(NAMES + ["_" + n for n in NAMES] + ["resourceType", "contained", "resource", "_", ""])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "#",
            "#p",
            "Patient/1",
            "urn:uuid:x",
            "2023-02-30",
            "male",
            "final",
            "<div/>",
            '<div xmlns="http://www.w3.org/1999/xhtml">x</div>',
            "http://x",
            " ",
            "",
        ]
    ),
)


def objects(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(KEYS, children, max_size=6),
        st.dictionaries(st.text(max_size=6), children, max_size=4),
    )


json_values = st.recursive(scalars, objects, max_leaves=40)


@st.composite
def resources(draw: st.DrawFn) -> dict[str, Any]:
    doc = draw(st.dictionaries(KEYS, json_values, max_size=8))
    doc["resourceType"] = draw(st.sampled_from(RESOURCE_TYPES))
    if draw(st.booleans()):
        doc["contained"] = draw(
            st.lists(
                st.builds(
                    lambda d, t: {**d, "resourceType": t},
                    st.dictionaries(KEYS, json_values, max_size=4),
                    st.sampled_from(RESOURCE_TYPES),
                ),
                max_size=3,
            )
        )
    return doc


def check(issues: list[Issue]) -> None:
    assert isinstance(issues, list)
    for i in issues:
        assert isinstance(i, Issue)
        assert i.severity in ("fatal", "error", "warning", "information")
        assert isinstance(i.location, str) and isinstance(i.message, str) and i.message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_never_raises(value: Any) -> None:
    check(validate(value))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resources())
def test_resource_shaped_json_never_raises(doc: dict[str, Any]) -> None:
    check(validate(doc))
    check(validate(doc, warnings=True))
    check(validate({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": doc}, doc]}))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=40), st.text(max_size=40)))
def test_arbitrary_bytes_never_raise(raw: bytes | str) -> None:
    check(validate_json(raw))


def _seed_resources() -> list[dict[str, Any]]:
    """A few real resources to corrupt (official examples when ../shared is present)."""
    root = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fhir-examples-r4"
    names = [
        "core/Patient-example.json",
        "core/Observation-example-genetics-1.json",
        "core/AllergyIntolerance-example.json",
        "supporting/Questionnaire-f201.json",
        "supporting/ExplanationOfBenefit-EB3500.json",
        "core/Bundle-bundle-transaction.json",
    ]
    found = [orjson.loads((root / n).read_bytes()) for n in names if (root / n).exists()]
    return found or [
        {
            "resourceType": "Patient",
            "id": "p",
            "name": [{"given": ["A"], "family": "B"}],
            "contained": [{"resourceType": "Organization", "id": "o"}],
            "managingOrganization": {"reference": "#o"},
        }
    ]


SEEDS = _seed_resources()


def _slots(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in a JSON tree."""
    out: list[tuple[Any, Any]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((node, k))
            out.extend(_slots(v))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append((node, i))
            out.extend(_slots(v))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0), st.integers(min_value=0), json_values, KEYS)
def test_corrupted_real_resources_never_raise(which: int, where: int, value: Any, key: str) -> None:
    doc = copy.deepcopy(SEEDS[which % len(SEEDS)])
    slots = _slots(doc)
    container, slot = slots[where % len(slots)]
    container[slot] = value
    if isinstance(value, dict):
        value.setdefault(key, value.get(key))
    check(validate(doc))
