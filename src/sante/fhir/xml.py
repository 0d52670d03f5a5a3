"""FHIR R4 XML -> FHIR JSON, following the specification's XML and JSON representation rules.

The conversion is driven by the type model (`sante.fhir.model`), which says for every element whether it
repeats, whether it is a primitive (and of which type), and where its own children are looked up:

- a primitive's `value` attribute becomes a JSON value of the right JSON type: `boolean` -> bool,
  `integer`/`unsignedInt`/`positiveInt` -> int, `decimal` -> `decimal.Decimal` by default (it keeps the text's
  precision, e.g. "1.50"; pass `parse_decimal=float` for floats), everything else -> str;
- elements whose maximum cardinality is `*` become JSON arrays, even with one item;
- a primitive's `id` attribute and `extension` children go to the `_name` property; for repeating primitives
  the `name` and `_name` arrays are aligned, with None where one side has nothing;
- the XHTML `div` of a Narrative becomes its serialized XHTML string;
- a resource wrapper (`contained`, `Bundle.entry.resource`, `Parameters.parameter.resource`, ...) holds one
  element named after the resource type; it becomes a nested resource with `resourceType`;
- the `id` attribute of a complex element and the `url` attribute of an Extension become properties.

Only the standard library parser is used. Documents with a DOCTYPE are refused (so no entity declarations, no
external entities), and anything that is not a FHIR resource raises `ValueError` with a message that says where.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sante.fhir.model import Child, Model, r4

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
XML_NS = "http://www.w3.org/XML/1998/namespace"

_F = "{" + FHIR_NS + "}"
_XHTML_DIV = "{" + XHTML_NS + "}div"

_INTEGER_TYPES = frozenset({"integer", "unsignedInt", "positiveInt", "integer64"})
_INTEGER_RE = re.compile(r"[+-]?[0-9]+")
_DECIMAL_RE = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")

__all__ = ["FHIR_NS", "XHTML_NS", "serialize_xhtml", "xml_to_json"]


def xml_to_json(xml: str | bytes, *, parse_decimal: Callable[[str], Any] = Decimal) -> dict[str, Any]:
    """Convert one FHIR R4 XML resource to its FHIR JSON form (decimals as `Decimal` unless told otherwise).

    Raises ValueError for malformed XML, a DOCTYPE, or content that is not a valid FHIR R4 resource.
    """
    root = _parse(xml)
    return _Converter(r4(), parse_decimal).resource(root, "")


# -- parsing ------------------------------------------------------------------------------------------------------


class _NoDoctypeBuilder(ET.TreeBuilder):
    """A tree builder that stops the parse at a DOCTYPE, before any entity declaration can take effect."""

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise ValueError("XML with a DOCTYPE is not accepted (DTDs and entity declarations are forbidden)")


def _parse(xml: str | bytes) -> ET.Element:
    if not isinstance(xml, (str, bytes)):
        raise TypeError(f"expected FHIR XML as str or bytes, got {type(xml).__name__}")
    if not xml.strip():
        raise ValueError("empty input: expected a FHIR XML resource")
    parser = ET.XMLParser(target=_NoDoctypeBuilder())
    try:
        parser.feed(xml)
        root: ET.Element = parser.close()
    except ET.ParseError as e:
        raise ValueError(f"malformed XML: {e}") from None
    return root


# -- conversion -----------------------------------------------------------------------------------------------------


def _split(tag: str) -> tuple[str | None, str]:
    """'{ns}local' -> (ns, local); 'local' -> (None, local)."""
    if tag[:1] == "{":
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return None, tag


class _Converter:
    def __init__(self, model: Model, parse_decimal: Callable[[str], Any]) -> None:
        self.model = model
        self.parse_decimal = parse_decimal

    def resource(self, el: ET.Element, where: str) -> dict[str, Any]:
        ns, name = _split(el.tag) if isinstance(el.tag, str) else (None, "?")
        if ns != FHIR_NS:
            what = f"<{name}>" if ns is None else f"<{name}> in namespace {ns}"
            raise ValueError(f"not a FHIR resource{_at(where)}: {what} is not in the {FHIR_NS} namespace")
        if not self.model.is_resource(name):
            raise ValueError(f"not a FHIR resource{_at(where)}: <{name}> is not an R4 resource type")
        for attr in el.attrib:
            if not attr.startswith("{"):
                raise ValueError(f"unexpected attribute {attr!r} on resource <{name}>{_at(where)}")
        out: dict[str, Any] = {"resourceType": name}
        self._fill(out, el, name, where + name if not where else f"{where}/{name}", is_resource=True)
        return out

    def _fill(self, out: dict[str, Any], el: ET.Element, context: str, where: str, is_resource: bool) -> None:
        """Add the JSON properties of a resource or complex element `el` (children looked up in `context`)."""
        children = self.model.children(context)
        if not children:
            raise ValueError(f"no type information for {context!r} (at {where})")
        if not is_resource:
            for attr, value in el.attrib.items():
                if attr.startswith("{"):
                    continue  # e.g. xsi:schemaLocation
                child = children.get(attr)
                if child is None or not child.type.startswith("System."):
                    raise ValueError(f"unexpected attribute {attr!r} at {where}")
                out[attr] = value
        text = (el.text or "").strip()
        if text:
            raise ValueError(f"unexpected text content at {where}: {text[:40]!r}")

        # Collected in document order: json name -> (child, [values], [underscore objects]).
        found: dict[str, tuple[Child, list[Any], list[dict[str, Any] | None]]] = {}
        for sub in el:
            tag = sub.tag
            if not isinstance(tag, str):
                continue  # comments / processing instructions, if a builder kept them
            tail = (sub.tail or "").strip()
            if tail:
                raise ValueError(f"unexpected text content at {where}: {tail[:40]!r}")
            ns, name = _split(tag)
            child = children.get(name)
            sub_where = f"{where}.{name}"
            if child is None:
                raise ValueError(f"unknown element <{name}> at {where} (not an R4 element of {context})")
            if ns != FHIR_NS and not (ns == XHTML_NS and child.type == "xhtml"):
                raise ValueError(f"element <{name}> at {where} is in namespace {ns!r}, expected {FHIR_NS}")
            entry = found.get(name)
            if entry is None:
                entry = found[name] = (child, [], [])
            elif not child.is_array:
                raise ValueError(f"element <{name}> repeats at {where} but has at most one value")
            t = child.type
            if t == "xhtml":
                if tag != _XHTML_DIV:
                    raise ValueError(f"{sub_where} must be an XHTML <div> in namespace {XHTML_NS}")
                entry[1].append(serialize_xhtml(sub))
                entry[2].append(None)
            elif child.is_primitive or t.startswith("System."):
                if t.startswith("System.") and not is_resource:
                    raise ValueError(f"<{name}> at {where} must be an attribute, not an element")
                value, extra = self._primitive(sub, child, sub_where)
                entry[1].append(value)
                entry[2].append(extra)
            elif t == "Resource":
                inner = [x for x in sub if isinstance(x.tag, str)]
                if len(inner) != 1 or (sub.text or "").strip():
                    raise ValueError(f"{sub_where} must hold exactly one resource element")
                entry[1].append(self.resource(inner[0], sub_where))
                entry[2].append(None)
            else:
                obj: dict[str, Any] = {}
                self._fill(obj, sub, child.context, sub_where, is_resource=False)
                entry[1].append(obj)
                entry[2].append(None)

        for name, (child, values, extras) in found.items():
            has_value = any(v is not None for v in values)
            has_extra = any(x is not None for x in extras)
            if child.is_array:
                if has_value:
                    out[name] = values
                if has_extra:
                    out["_" + name] = extras
            else:
                if has_value:
                    out[name] = values[0]
                if has_extra:
                    out["_" + name] = extras[0]

    def _primitive(self, el: ET.Element, child: Child, where: str) -> tuple[Any, dict[str, Any] | None]:
        """(JSON value or None, {"id", "extension"} or None) of a primitive element."""
        extra: dict[str, Any] = {}
        raw: str | None = None
        for attr, text in el.attrib.items():
            if attr == "value":
                raw = text
            elif attr == "id":
                extra["id"] = text
            elif not attr.startswith("{"):
                raise ValueError(f"unexpected attribute {attr!r} at {where}")
        if (el.text or "").strip():
            raise ValueError(
                f"unexpected text content at {where}: primitive values go in the value attribute"
            )
        extensions: list[dict[str, Any]] = []
        for sub in el:
            if not isinstance(sub.tag, str):
                continue
            if sub.tag != _F + "extension":
                raise ValueError(
                    f"unexpected element <{_split(sub.tag)[1]}> at {where}: a primitive only holds extensions"
                )
            if (sub.tail or "").strip():
                raise ValueError(f"unexpected text content at {where}")
            ext: dict[str, Any] = {}
            self._fill(ext, sub, "Extension", where + ".extension", is_resource=False)
            extensions.append(ext)
        if extensions:
            extra["extension"] = extensions
        if raw is None and not extra:
            raise ValueError(f"primitive element at {where} has neither a value attribute nor extensions")
        value = None if raw is None else self._convert(raw, child.type, where)
        return value, (extra or None)

    def _convert(self, raw: str, type_code: str, where: str) -> Any:
        if type_code == "boolean":
            if raw == "true":
                return True
            if raw == "false":
                return False
            raise ValueError(f"invalid boolean {raw!r} at {where} (expected 'true' or 'false')")
        if type_code in _INTEGER_TYPES:
            if not _INTEGER_RE.fullmatch(raw):
                raise ValueError(f"invalid {type_code} {raw!r} at {where}")
            return int(raw)
        if type_code == "decimal":
            if not _DECIMAL_RE.fullmatch(raw):
                raise ValueError(f"invalid decimal {raw!r} at {where}")
            return self.parse_decimal(raw)
        return raw


def _at(where: str) -> str:
    return f" at {where}" if where else ""


# -- XHTML ----------------------------------------------------------------------------------------------------------


def _escape_text(s: str) -> str:
    if "&" in s:
        s = s.replace("&", "&amp;")
    if "<" in s:
        s = s.replace("<", "&lt;")
    if ">" in s:
        s = s.replace(">", "&gt;")
    return s


def _escape_attr(s: str) -> str:
    s = _escape_text(s)
    if '"' in s:
        s = s.replace('"', "&quot;")
    for ch, ref in (("\n", "&#10;"), ("\r", "&#13;"), ("\t", "&#9;")):
        if ch in s:
            s = s.replace(ch, ref)
    return s


def serialize_xhtml(div: ET.Element) -> str:
    """The XHTML string of a Narrative div: default namespace on the root, text as parsed (tail excluded)."""
    parts: list[str] = []
    _write_xhtml(div, parts, XHTML_NS, root=True)
    return "".join(parts)


def _write_xhtml(el: ET.Element, parts: list[str], parent_ns: str | None, root: bool = False) -> None:
    ns, name = _split(el.tag)
    parts.append("<" + name)
    if root or ns != parent_ns:
        parts.append(f' xmlns="{_escape_attr(ns or "")}"')
    prefixes: dict[str, str] = {}
    for attr, value in el.attrib.items():
        ans, aname = _split(attr)
        if ans is None:
            qname = aname
        elif ans == XML_NS:
            qname = "xml:" + aname
        else:
            prefix = prefixes.get(ans)
            if prefix is None:
                prefix = prefixes[ans] = f"ns{len(prefixes)}"
                parts.append(f' xmlns:{prefix}="{_escape_attr(ans)}"')
            qname = f"{prefix}:{aname}"
        parts.append(f' {qname}="{_escape_attr(value)}"')
    kids = [k for k in el if isinstance(k.tag, str)]
    if not kids and not el.text:
        parts.append("/>")
        return
    parts.append(">")
    if el.text:
        parts.append(_escape_text(el.text))
    for kid in kids:
        _write_xhtml(kid, parts, ns)
        if kid.tail:
            parts.append(_escape_text(kid.tail))
    parts.append(f"</{name}>")
