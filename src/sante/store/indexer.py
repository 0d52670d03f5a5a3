"""Search-index extraction: every R4 SearchParameter, compiled once per resource type with the FHIRPath engine.

`index_rows(resource)` returns, per index kind, the rows to store for one resource. The expressions come from
the specification's SearchParameter resources (HAPI's lesson: never re-type the spec); a union such as
`Patient.name | Practitioner.name` is split so each type evaluates only its own branch.

The full-text parameters `_text` (the narrative) and `_content` (every string of the resource) have no
expression: `text_entries` extracts them in one walk over the JSON, as distinct folded words (see `words`).
"""

from __future__ import annotations

import html
import re
import unicodedata
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
    rows["text"] = text_entries(resource)
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


# ---------------------------------------------------------------------------------------------------------------
# full text: _text and _content

# Keys whose string values are identifiers, links, dates or binary rather than text: left out of _content.
_NOT_TEXT = frozenset({"id", "reference", "system", "url", "data", "meta", "resourceType", "div", "fullUrl"})
_TAG = re.compile(r"<[^>]*>")
_WORD = re.compile(r"[^\W_]{1,64}")  # letters and digits; a longer run (a hash, an encoded blob) is cut in pieces
_DATEISH = re.compile(r"\d{4}(-\d{2}(-\d{2}(T[\d:.]+(Z|[+-]\d{2}:\d{2})?)?)?)?\Z")
_EXTRA_FOLD = iv._EXTRA_FOLD  # the letters fold() maps beyond Unicode decomposition (đ -> d, ...)
MAX_TEXT = 100_000  # characters of distinct words kept per resource and kind


@cache
def _combining() -> dict[int, None]:
    """str.translate table deleting the combining marks that unicodedata.combining() reports (as fold does)."""
    return {cp: None for cp in range(0x300, 0x20000) if unicodedata.combining(chr(cp))}


def fold_text(text: str) -> str:
    """index_values.fold for running text: the same letters (Nguyễn -> nguyen, đ -> d), without its cache
    (texts rarely repeat) and with translate tables instead of a loop per character."""
    text = text.lower()
    if text.isascii():
        return text
    return unicodedata.normalize("NFD", text.translate(_EXTRA_FOLD)).translate(_combining()).lower()


# ASCII letters and digits kept, every other byte a space: the fast path of _distinct_words (most clinical text
# is ASCII once folded, Vietnamese included).
_ASCII_WORD_BYTES = bytes(c if 48 <= c <= 57 or 97 <= c <= 122 else 32 for c in range(256))


def _distinct_words(text: str) -> dict[str, None]:
    folded = fold_text(text)
    if folded.isascii():
        found = folded.encode("ascii").translate(_ASCII_WORD_BYTES).decode("ascii").split()
        if max(map(len, found), default=0) <= 64:
            return dict.fromkeys(found)
    return dict.fromkeys(_WORD.findall(folded))


def words(text: str) -> list[str]:
    """The distinct folded words of a text in first-seen order: what the text index holds and queries match."""
    return list(_distinct_words(text))


def _joined(found: dict[str, None]) -> str:
    text = " ".join(found)
    return text if len(text) <= MAX_TEXT else text[: text.rfind(" ", 0, MAX_TEXT + 1)]


def narrative(resource: dict[str, Any]) -> str:
    """The text of the resource's narrative: text.div without its XHTML tags, entities decoded."""
    text = resource.get("text")
    div = text.get("div") if isinstance(text, dict) else None
    if not isinstance(div, str) or not div:
        return ""
    return html.unescape(_TAG.sub(" ", div))


def _strings(node: dict[str, Any], out: list[str]) -> None:
    for key, value in node.items():
        if key in _NOT_TEXT:
            continue
        t = type(value)
        if t is str:
            if not (value[:1].isdigit() and _DATEISH.match(value)):
                out.append(value)
        elif t is dict:
            _strings(value, out)
        elif t is list:
            for item in value:
                ti = type(item)
                if ti is str:
                    if not (item[:1].isdigit() and _DATEISH.match(item)):
                        out.append(item)
                elif ti is dict:
                    _strings(item, out)


def text_entries(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """[("_text", narrative words), ("_content", all words)]: a resource's rows in the full-text index.

    _content covers every string value, the narrative included, except ids, references, system and extension
    URIs, dates, base64 data and meta. A row holds the distinct folded words separated by single spaces.
    """
    strings: list[str] = []
    _strings(resource, strings)
    out = []
    story = narrative(resource)
    if story:
        told = _distinct_words(story)
        if told:
            out.append(("_text", _joined(told)))
        strings.append(story)
    content = _distinct_words("\n".join(strings))
    if content:
        out.append(("_content", _joined(content)))
    return out
