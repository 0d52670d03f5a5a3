"""Checkers for the JSON form of FHIR R4 primitive values.

`checker(type_code)` returns a function `value -> str | None`: None when the JSON value is a valid instance of
the primitive type, otherwise a readable reason. Formats come from the official regexes of the primitive
StructureDefinitions (`<type>.value`), completed by what a regex cannot say: the JSON kind (decimal is a JSON
number, boolean a JSON boolean), calendar validity (no 2023-02-30), 32-bit integer ranges, non-empty strings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import cache, lru_cache
from html.entities import name2codepoint
from xml.parsers import expat

from sante.fhir.model import r4

PrimitiveChecker = Callable[[object], "str | None"]

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
MAX_STRING_CHARS = 1024 * 1024  # FHIR: strings SHALL NOT exceed 1 MB
XHTML_NS = "http://www.w3.org/1999/xhtml"
_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# Narrative may hold basic HTML only (txt-1): no active content, no forms, no embedded documents.
_XHTML_FORBIDDEN = frozenset(
    [
        "script",
        "style",
        "form",
        "input",
        "button",
        "select",
        "textarea",
        "iframe",
        "frame",
        "frameset",
        "object",
        "embed",
        "applet",
        "base",
        "link",
        "meta",
    ]
)


def _regex(type_code: str) -> re.Pattern[str]:
    el = r4().structure(type_code).elements[f"{type_code}.value"]  # type: ignore[union-attr]
    assert el.regex, type_code
    return re.compile(el.regex)


def _calendar_error(s: str) -> str | None:
    """The day of a YYYY-MM-DD prefix must exist in its month (regexes accept 2023-02-30)."""
    if len(s) >= 10:
        month, day = int(s[5:7]), int(s[8:10])
        if day > _DAYS[month] or (month == 2 and day == 29 and not _leap(int(s[0:4]))):
            return f"'{s[:10]}' is not a real calendar date"
    return None


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _string_checker(type_code: str, pattern: re.Pattern[str] | None, what: str) -> PrimitiveChecker:
    match = pattern.fullmatch if pattern is not None else None

    def check(v: object) -> str | None:
        if type(v) is not str and not isinstance(v, str):
            return f"{type_code} must be a JSON string, not {_describe(v)}"
        if not v or v.isspace():
            return f"{type_code} must not be empty or whitespace only"
        if len(v) > MAX_STRING_CHARS:
            return f"{type_code} is longer than 1 MB"
        if match is not None and match(v) is None:
            return f"'{_clip(v)}' is not a valid {type_code} ({what})"
        return None

    return check


def _date_checker(type_code: str, what: str) -> PrimitiveChecker:
    match = _regex(type_code).fullmatch

    def check(v: object) -> str | None:
        if not isinstance(v, str):
            return f"{type_code} must be a JSON string, not {_describe(v)}"
        if match(v) is None:
            return f"'{_clip(v)}' is not a valid {type_code} ({what})"
        return _calendar_error(v)

    return check


def _integer_checker(type_code: str, low: int) -> PrimitiveChecker:
    def check(v: object) -> str | None:
        if type(v) is not int:
            return f"{type_code} must be a JSON integer number, not {_describe(v)}"
        if v < low or v > INT32_MAX:
            return f"{v} is out of range for {type_code} ({low}..{INT32_MAX})"
        return None

    return check


def _check_decimal(v: object) -> str | None:
    if type(v) is int:
        return None
    if type(v) is not float:
        return f"decimal must be a JSON number, not {_describe(v)}"
    if not math.isfinite(v):
        return "decimal must be a finite number"
    return None


def _check_boolean(v: object) -> str | None:
    return None if type(v) is bool else f"boolean must be JSON true or false, not {_describe(v)}"


_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_WS = re.compile(r"\s+")


def _check_base64(v: object) -> str | None:
    if type(v) is not str:
        return f"base64Binary must be a JSON string, not {_describe(v)}"
    if not v or v.isspace():
        return "base64Binary must not be empty"
    s = _WS.sub("", v) if not v.isalnum() else v
    if len(s) % 4 or _B64.fullmatch(s) is None:
        return "base64Binary is not valid base64 (alphabet A-Z a-z 0-9 + / with = padding, length a multiple of 4)"
    return None


def check_xhtml(v: object) -> str | None:
    """Narrative.div: well-formed XHTML, one <div> in the XHTML namespace, basic HTML only, not empty."""
    if type(v) is not str:
        return f"xhtml must be a JSON string, not {_describe(v)}"
    if not v.strip():
        return "xhtml must not be empty"
    parser = expat.ParserCreate(namespace_separator=" ")
    # HTML named entities (&nbsp;) are accepted as the HL7 validator does; unknown ones are not.
    parser.UseForeignDTD(True)
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_ALWAYS)
    depth = 0
    problems: list[str] = []
    has_content = False

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth, has_content
        ns, _, local = name.rpartition(" ")
        if depth == 0 and (local != "div" or ns != XHTML_NS):
            problems.append("the narrative must be a single <div> in the XHTML namespace")
        if local.lower() in _XHTML_FORBIDDEN:
            problems.append(f"<{local}> is not allowed in narrative (txt-1)")
        for a in attrs:
            if a.rpartition(" ")[2].lower().startswith("on"):
                problems.append(f"event attribute '{a}' is not allowed in narrative (txt-1)")
        if local == "img":
            has_content = True
        depth += 1

    def end(name: str) -> None:
        nonlocal depth
        depth -= 1

    def text(data: str) -> None:
        nonlocal has_content
        if not has_content and not data.isspace():
            has_content = True

    def entity(name: str, is_parameter: bool) -> None:
        nonlocal has_content
        if name in name2codepoint:
            has_content = True
        else:
            problems.append(f"unknown entity '&{name};' in narrative")

    def doctype(*_: object) -> None:
        problems.append("a narrative must not declare a DOCTYPE")

    parser.SkippedEntityHandler = entity
    parser.StartDoctypeDeclHandler = doctype
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(v, True)
    except expat.ExpatError as e:
        return f"xhtml is not well-formed XML ({expat.ErrorString(e.code)} at line {e.lineno}, column {e.offset})"
    if problems:
        return problems[0]
    if not has_content:
        return "the narrative must have some non-whitespace content (txt-2)"
    return None


_ANY_DAY = "(0[1-9]|[1-2][0-9]|3[0-1])"
_DAY_UP_TO_28 = "(0[1-9]|1[0-9]|2[0-8])"


@cache
def fast_accept(type_code: str) -> Callable[[str], object] | None:
    """A C-level test that accepts most valid JSON strings of a type at once (truthy = valid; falsy = ask
    `checker`, which gives the verdict and the reason). None for types that are not JSON strings."""
    if type_code in ("string", "markdown", "System.String"):
        return str.strip  # non-empty once stripped: has a non-whitespace character
    if type_code in ("uri", "url", "canonical"):
        return re.compile(r"\S+").fullmatch
    if type_code in ("date", "dateTime", "instant"):
        # The official regex with days limited to 1..28: whatever it accepts is a real calendar date.
        official = _regex(type_code).pattern
        assert _ANY_DAY in official, type_code
        # Dates and times repeat across resources (an encounter's start, end and results): remember verdicts.
        return lru_cache(maxsize=1 << 16)(re.compile(official.replace(_ANY_DAY, _DAY_UP_TO_28)).fullmatch)
    if type_code in ("code", "id", "time", "oid", "uuid"):
        return _regex(type_code).fullmatch
    return None


def _clip(s: str, n: int = 60) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


@cache
def checker(type_code: str) -> PrimitiveChecker:
    """The value checker for a FHIR primitive type code (also "System.String" & co for id/url/extension ids)."""
    if type_code == "boolean":
        return _check_boolean
    if type_code == "decimal":
        return _check_decimal
    if type_code == "integer":
        return _integer_checker("integer", INT32_MIN)
    if type_code == "unsignedInt":
        return _integer_checker("unsignedInt", 0)
    if type_code == "positiveInt":
        return _integer_checker("positiveInt", 1)
    if type_code in ("date", "dateTime", "instant"):
        shape = {
            "date": "YYYY, YYYY-MM or YYYY-MM-DD",
            "dateTime": "YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a timezone",
            "instant": "YYYY-MM-DDThh:mm:ss[.fff] with a timezone",
        }[type_code]
        return _date_checker(type_code, shape)
    if type_code == "base64Binary":
        return _check_base64
    if type_code == "xhtml":
        return check_xhtml
    if type_code in ("string", "markdown", "System.String"):
        return _string_checker("string" if type_code == "System.String" else type_code, None, "")
    what = {
        "time": "hh:mm:ss[.fff]",
        "code": "no leading, trailing or double whitespace",
        "id": "1 to 64 of A-Z a-z 0-9 - .",
        "uri": "no whitespace",
        "url": "no whitespace",
        "canonical": "no whitespace",
        "oid": "urn:oid:1.2.3",
        "uuid": "urn:uuid: and a lower-case UUID",
    }
    if type_code in what:
        return _string_checker(type_code, _regex(type_code), what[type_code])
    raise KeyError(f"not a FHIR primitive type: {type_code}")
