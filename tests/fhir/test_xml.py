"""FHIR XML converts to the FHIR JSON the specification's representation rules give."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sante.fhir.xml import xml_to_json

SUITE = Path(__file__).resolve().parents[3] / "shared" / "conformance" / "fhirpath"
SUITE_XML = (
    sorted(p for p in SUITE.glob("*.xml") if not p.name.startswith("tests-")) if SUITE.is_dir() else []
)

F = 'xmlns="http://hl7.org/fhir"'


def strictly_equal(mine: Any, theirs: Any, path: str = "") -> list[str]:
    """Differences between two JSON trees, with JSON types compared too (True != 1, "1" != 1).

    `theirs` is loaded with parse_float=Decimal; a Decimal of ours must have the same text as their number, so
    "185" matches 185 and "1.0" matches 1.0 but not 1.
    """
    if isinstance(mine, dict) and isinstance(theirs, dict):
        out = []
        for k in mine.keys() | theirs.keys():
            if k not in theirs:
                out.append(f"{path}/{k}: extra {mine[k]!r}"[:200])
            elif k not in mine:
                out.append(f"{path}/{k}: missing {theirs[k]!r}"[:200])
            else:
                out += strictly_equal(mine[k], theirs[k], f"{path}/{k}")
        return out
    if isinstance(mine, list) and isinstance(theirs, list):
        if len(mine) != len(theirs):
            return [f"{path}: {len(mine)} items, expected {len(theirs)}"]
        return [d for i, (a, b) in enumerate(zip(mine, theirs)) for d in strictly_equal(a, b, f"{path}[{i}]")]
    if isinstance(mine, Decimal):
        ok = isinstance(theirs, (int, Decimal)) and not isinstance(theirs, bool) and str(mine) == str(theirs)
    else:
        ok = type(mine) is type(theirs) and mine == theirs
    return [] if ok else [f"{path}: {mine!r} != {theirs!r}"]


# -- the FHIRPath suite's own inputs ----------------------------------------------------------------------------


@pytest.mark.skipif(not SUITE_XML, reason="../shared/conformance/fhirpath not present")
@pytest.mark.parametrize("xml_path", SUITE_XML, ids=lambda p: p.stem)
def test_suite_input_converts_to_its_json_copy(xml_path: Path) -> None:
    mine = xml_to_json(xml_path.read_bytes())
    theirs = json.loads((SUITE / "json" / (xml_path.stem + ".json")).read_text(), parse_float=Decimal)
    # Every difference would be listed here; none of the 7 inputs needs a correction of the reference copy.
    assert strictly_equal(mine, theirs) == []


def test_suite_has_the_expected_inputs() -> None:
    if not SUITE_XML:
        pytest.skip("../shared/conformance/fhirpath not present")
    assert {p.stem for p in SUITE_XML} >= {"patient-example", "observation-example", "questionnaire-example"}


# -- primitives -------------------------------------------------------------------------------------------------


def test_primitive_json_types() -> None:
    r = xml_to_json(
        f"""<Patient {F}><id value="p1"/><active value="true"/>
        <multipleBirthInteger value="2"/><birthDate value="1970-01-01"/></Patient>"""
    )
    assert r == {
        "resourceType": "Patient",
        "id": "p1",
        "active": True,
        "multipleBirthInteger": 2,
        "birthDate": "1970-01-01",
    }
    assert type(r["multipleBirthInteger"]) is int and r["active"] is True


def test_single_repeating_element_is_still_an_array() -> None:
    r = xml_to_json(f'<Patient {F}><name><given value="Ann"/></name></Patient>')
    assert r["name"] == [{"given": ["Ann"]}]


def test_repeated_primitive_with_extensions_aligns_arrays() -> None:
    r = xml_to_json(
        f"""<Patient {F}><name>
          <given value="Peter"/>
          <given id="g2"><extension url="http://e.org/x"><valueString value="five"/></extension></given>
          <given value="James"><extension url="http://e.org/y"><valueBoolean value="false"/></extension></given>
        </name></Patient>"""
    )
    name = r["name"][0]
    assert name["given"] == ["Peter", None, "James"]
    assert name["_given"] == [
        None,
        {"id": "g2", "extension": [{"url": "http://e.org/x", "valueString": "five"}]},
        {"extension": [{"url": "http://e.org/y", "valueBoolean": False}]},
    ]


def test_repeated_primitive_without_any_value_has_only_the_underscore_array() -> None:
    r = xml_to_json(f'<Patient {F}><name><given id="a"/><given id="b"/></name></Patient>')
    assert r["name"] == [{"_given": [{"id": "a"}, {"id": "b"}]}]


def test_single_primitive_extension_and_element_id() -> None:
    r = xml_to_json(
        f"""<Patient {F}><birthDate value="1974-12-25" id="bd">
          <extension url="http://hl7.org/fhir/StructureDefinition/patient-birthTime">
            <valueDateTime value="1974-12-25T14:35:45-05:00"/></extension></birthDate>
          <name id="n1"><family value="X"/></name></Patient>"""
    )
    assert r["birthDate"] == "1974-12-25"
    assert r["_birthDate"] == {
        "id": "bd",
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                "valueDateTime": "1974-12-25T14:35:45-05:00",
            }
        ],
    }
    assert r["name"] == [{"id": "n1", "family": "X"}]


def test_resource_id_with_extension() -> None:
    r = xml_to_json(
        f'<Patient {F}><id value="x"><extension url="u"><valueCode value="c"/></extension></id></Patient>'
    )
    assert r == {"resourceType": "Patient", "id": "x", "_id": {"extension": [{"url": "u", "valueCode": "c"}]}}


def test_decimals_keep_their_text_precision() -> None:
    xml = f"""<Observation {F}><status value="final"/><code><text value="t"/></code>
      <valueQuantity><value value="1.50"/><unit value="mg"/></valueQuantity>
      <referenceRange><low><value value="-0.0100"/></low><high><value value="1e3"/></high></referenceRange>
    </Observation>"""
    r = xml_to_json(xml)
    value = r["valueQuantity"]["value"]
    assert isinstance(value, Decimal) and str(value) == "1.50"
    assert str(r["referenceRange"][0]["low"]["value"]) == "-0.0100"
    assert r["referenceRange"][0]["high"]["value"] == 1000
    as_float = xml_to_json(xml, parse_decimal=float)
    assert as_float["valueQuantity"]["value"] == 1.5 and type(as_float["valueQuantity"]["value"]) is float


def test_modifier_extension_and_nested_extensions() -> None:
    r = xml_to_json(
        f"""<Patient {F}><modifierExtension url="http://e.org/m"><valueBoolean value="true"/></modifierExtension>
        <extension url="http://e.org/complex"><extension url="part"><valueInteger value="3"/></extension></extension>
        </Patient>"""
    )
    assert r["modifierExtension"] == [{"url": "http://e.org/m", "valueBoolean": True}]
    assert r["extension"] == [
        {"url": "http://e.org/complex", "extension": [{"url": "part", "valueInteger": 3}]}
    ]


# -- narrative --------------------------------------------------------------------------------------------------


def test_narrative_div_is_serialized_xhtml() -> None:
    r = xml_to_json(
        f"""<Patient {F}><text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"
        ><p class="x">A &amp; B &lt;c&gt; "q"<br/>tail</p><!-- dropped --><a href="?a=1&amp;b=2">l</a></div
        ></text></Patient>"""
    )
    assert r["text"] == {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p class="x">A &amp; B &lt;c&gt; "q"<br/>tail</p>'
        '<a href="?a=1&amp;b=2">l</a></div>',
    }


def test_div_outside_the_xhtml_namespace_is_refused() -> None:
    with pytest.raises(ValueError, match="XHTML"):
        xml_to_json(f'<Patient {F}><text><status value="generated"/><div>x</div></text></Patient>')


# -- nested resources -------------------------------------------------------------------------------------------


def test_contained_resources() -> None:
    r = xml_to_json(
        f"""<Patient {F}><id value="p"/>
        <contained><Organization><id value="o1"/><name value="Org"/></Organization></contained>
        <managingOrganization><reference value="#o1"/></managingOrganization></Patient>"""
    )
    assert r["contained"] == [{"resourceType": "Organization", "id": "o1", "name": "Org"}]
    assert r["managingOrganization"] == {"reference": "#o1"}


def test_bundle_entries_and_parameters_resources() -> None:
    r = xml_to_json(
        f"""<Bundle {F}><type value="transaction"/>
        <entry><fullUrl value="urn:uuid:1"/><resource><Patient><active value="false"/></Patient></resource>
          <request><method value="POST"/><url value="Patient"/></request></entry>
        <entry><resource><Parameters><parameter><name value="p"/>
          <resource><Observation><status value="final"/><code><text value="c"/></code></Observation></resource>
          </parameter></Parameters></resource></entry>
        <total value="2"/></Bundle>"""
    )
    assert r["resourceType"] == "Bundle" and r["total"] == 2
    first, second = r["entry"]
    assert first == {
        "fullUrl": "urn:uuid:1",
        "resource": {"resourceType": "Patient", "active": False},
        "request": {"method": "POST", "url": "Patient"},
    }
    param = second["resource"]["parameter"][0]
    assert param["resource"] == {"resourceType": "Observation", "status": "final", "code": {"text": "c"}}


def test_questionnaire_item_recursion_uses_the_content_reference() -> None:
    r = xml_to_json(
        f"""<Questionnaire {F}><status value="draft"/><item><linkId value="1"/><type value="group"/>
        <item><linkId value="1.1"/><type value="boolean"/><required value="true"/></item></item></Questionnaire>"""
    )
    assert r["item"][0]["item"] == [{"linkId": "1.1", "type": "boolean", "required": True}]


def test_bytes_with_encoding_declaration_and_str_agree() -> None:
    text = f'<?xml version="1.0" encoding="UTF-8"?><Patient {F}><name><family value="du Marché"/></name></Patient>'
    assert (
        xml_to_json(text.encode())
        == xml_to_json(text)
        == {"resourceType": "Patient", "name": [{"family": "du Marché"}]}
    )


# -- bad input --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("", "empty"),
        ("<Patient", "malformed XML"),
        ("<Patient/>", "namespace"),
        ('<Patient xmlns="http://example.org"/>', "namespace"),
        (f"<Banana {F}/>", "not an R4 resource type"),
        (f'<Patient {F}><banana value="x"/></Patient>', "unknown element <banana>"),
        (f'<Patient {F}><active value="yes"/></Patient>', "invalid boolean"),
        (f'<Patient {F}><multipleBirthInteger value="1.5"/></Patient>', "invalid integer"),
        (f'<Patient {F}><multipleBirthInteger value="1_0"/></Patient>', "invalid integer"),
        (
            f'<Observation {F}><valueQuantity><value value="NaN"/></valueQuantity></Observation>',
            "invalid decimal",
        ),
        (f'<Patient {F}><gender value="male"/><gender value="female"/></Patient>', "repeats"),
        (f"<Patient {F}><active/></Patient>", "neither a value"),
        (f"<Patient {F}><active>true</active></Patient>", "text content"),
        (f'<Patient {F}><name><id value="x"/></name></Patient>', "attribute, not an element"),
        (f"<Patient {F}><contained/></Patient>", "exactly one resource"),
        (f"<Patient {F}><contained><Banana/></contained></Patient>", "not an R4 resource type"),
        (f'<Patient {F}><name foo="1"/></Patient>', "unexpected attribute"),
    ],
)
def test_bad_input_raises_value_error(xml: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        xml_to_json(xml)


def test_doctype_and_entities_are_refused() -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
        f'<Patient {F}><name><family value="&b;"/></name></Patient>'
    )
    with pytest.raises(ValueError, match="DOCTYPE"):
        xml_to_json(bomb)
    external = f'<!DOCTYPE Patient SYSTEM "file:///etc/passwd"><Patient {F}/>'
    with pytest.raises(ValueError, match="DOCTYPE"):
        xml_to_json(external.encode())


def test_non_text_input_is_refused() -> None:
    with pytest.raises(TypeError, match="str or bytes"):
        xml_to_json(None)  # type: ignore[arg-type]
