"""Vital signs and common laboratory tests: LOINC codes, labels (English, Vietnamese, French), UCUM units, adult
reference ranges and critical limits, and FHIR R4 Observations built from them.

Data: `data/loinc/observations.tsv` (LOINC codes and names used under the LOINC licence, notice in
`data/loinc/NOTICE-LOINC.txt`; labels, units and ranges written by the project). Units are those Vietnamese
laboratories report in (SI: mmol/L, µmol/L, g/L, G/L). Ranges are typical adult values, sex-specific where it
matters; BMI uses the WHO cut-offs for Asian populations (18.5-22.9). A value is critical (HH/LL) when it lies
strictly beyond a critical limit; only tests with well-established limits have them.

Vital-sign Observations follow the R4 vital-signs profiles (category vital-signs, LOINC code, UCUM quantity,
blood pressure as one Observation with systolic and diastolic components); laboratory ones carry referenceRange
and interpretation (v3 ObservationInterpretation: N, H, L, HH, LL; A for an abnormal qualitative result).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

from sante.clinical.reference_data import read_csv
from sante.store.index_values import fold

LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
SNOMED_SYSTEM = "http://snomed.info/sct"

_CATEGORY_DISPLAY = {"vital-signs": "Vital Signs", "laboratory": "Laboratory"}
_INTERPRETATION_DISPLAY = {
    "N": "Normal", "H": "High", "L": "Low", "HH": "Critical high", "LL": "Critical low", "A": "Abnormal",
}  # fmt: skip
_UNIT_DISPLAY = {
    "Cel": "°C", "mm[Hg]": "mmHg", "10*9/L": "G/L", "10*12/L": "T/L", "umol/L": "µmol/L",
    "m[IU]/L": "mIU/L", "[pH]": "pH", "kg/m2": "kg/m²",
}  # fmt: skip
# R4 vital-signs profiles by LOINC code (http://hl7.org/fhir/StructureDefinition/<name>)
_VITAL_PROFILE = {
    "8867-4": "heartrate", "85354-9": "bp", "8310-5": "bodytemp", "9279-1": "resprate", "2708-6": "oxygensat",
    "59408-5": "oxygensat", "29463-7": "bodyweight", "8302-2": "bodyheight", "39156-5": "bmi",
    "9843-4": "headcircum", "85353-1": "vitalspanel",
}  # fmt: skip
# folded qualitative results -> (interpretation, SNOMED CT qualifier or None)
_NEGATIVE = ("negative", "neg", "am tinh", "-", "normal", "binh thuong", "khong phat hien", "not detected")
_POSITIVE = ("positive", "pos", "duong tinh", "trace", "vet", "+", "1+", "2+", "3+", "4+", "detected", "phat hien")
_SEX_CODING = {
    "male": {"system": SNOMED_SYSTEM, "code": "248153007", "display": "Male"},
    "female": {"system": SNOMED_SYSTEM, "code": "248152002", "display": "Female"},
}


@dataclass(frozen=True, slots=True)
class Range:
    """An inclusive range; None = unbounded on that side."""

    low: float | None
    high: float | None

    def contains(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


@dataclass(frozen=True, slots=True)
class LoincTerm:
    """One observable: a vital sign, a laboratory test or a panel of them."""

    code: str
    key: str  # Sante's short name, e.g. "heart-rate", "hemoglobin"
    category: str  # "vital-signs" | "laboratory"
    kind: str  # "quantity" | "ordinal" (negative/positive-like results) | "panel"
    unit: str  # UCUM code ("" for panels and presence tests)
    display: str  # LOINC long common name
    vi: str
    fr: str
    normal: Mapping[str | None, Range]  # by sex: None = both, or "male"/"female"
    critical: Range | None
    members: tuple[str, ...]  # LOINC codes of a panel's members

    def reference_range(self, sex: str | None = None) -> Range | None:
        """The adult reference range for `sex` ("male"/"female"); without a sex, the span of both sexes' ranges."""
        if None in self.normal:
            return self.normal[None]
        if sex in self.normal:
            return self.normal[sex]
        if not self.normal:
            return None
        ranges = list(self.normal.values())
        lows, highs = [r.low for r in ranges], [r.high for r in ranges]
        return Range(
            None if None in lows else min(x for x in lows if x is not None),
            None if None in highs else max(x for x in highs if x is not None),
        )


def _number(text: str) -> float | None:
    return float(text) if text else None


def _range(text: str) -> Range:
    low, _, high = text.partition("-")
    return Range(_number(low), _number(high))


def _ranges(text: str) -> dict[str | None, Range]:
    if not text:
        return {}
    if ":" not in text:
        return {None: _range(text)}
    sexes = {"M": "male", "F": "female"}
    return {sexes[s]: _range(r) for s, _, r in (part.partition(":") for part in text.split("|"))}


@cache
def _terms() -> dict[str, LoincTerm]:
    out: dict[str, LoincTerm] = {}
    for r in read_csv("loinc/observations.tsv", delimiter="\t"):
        t = LoincTerm(
            r["code"], r["key"], r["category"], r["kind"], r["unit"], r["display"], r["vi"], r["fr"],
            _ranges(r["normal"]), _range(r["critical"]) if r["critical"] else None, tuple(r["members"].split()),
        )  # fmt: skip
        out[t.code] = out[t.key] = t
    return out


def terms(category: str | None = None) -> list[LoincTerm]:
    """All terms (or those of one category: "vital-signs", "laboratory"), in file order."""
    seen = {id(t): t for t in _terms().values()}
    return [t for t in seen.values() if category is None or t.category == category]


def term(code_or_key: str) -> LoincTerm:
    """The term for a LOINC code ("718-7") or key ("hemoglobin"); KeyError if unknown."""
    try:
        return _terms()[code_or_key.strip()]
    except KeyError:
        raise KeyError(f"unknown LOINC code or key {code_or_key!r}") from None


def panel_members(code_or_key: str) -> list[LoincTerm]:
    """The member tests of a panel (CBC, lipid, basic metabolic, electrolytes, urinalysis, vital signs, BP)."""
    return [term(c) for c in term(code_or_key).members]


def search(query: str) -> list[LoincTerm]:
    """Terms whose code, key or any label contains `query`, accent- and case-insensitively."""
    q = fold(query)
    return [t for t in terms() if q and any(q in fold(s) for s in (t.code, t.key, t.display, t.vi, t.fr))]


def interpret(code: str, value: float | str, sex: str | None = None) -> str:
    """v3 interpretation code of a result: "LL"/"HH" beyond a critical limit, "L"/"H" outside the reference
    range, "N" inside it, "A" for a positive qualitative result; "" when there is nothing to judge by.

    Without `sex`, a sex-specific range is the span of both (only values abnormal for either sex are flagged).
    """
    t = term(code)
    if isinstance(value, str):
        folded = fold(value)
        if t.kind == "ordinal":
            if folded in _NEGATIVE:
                return "N"
            if folded in _POSITIVE or folded.endswith("+"):
                return "A"
        try:
            value = float(folded)
        except ValueError:
            return ""
    v = float(value)
    if t.critical is not None:
        if t.critical.low is not None and v < t.critical.low:
            return "LL"
        if t.critical.high is not None and v > t.critical.high:
            return "HH"
    r = t.reference_range(sex)
    if r is None:
        return ""
    if r.low is not None and v < r.low:
        return "L"
    if r.high is not None and v > r.high:
        return "H"
    return "N"


def is_valid_loinc(code: str) -> bool:
    """Whether `code` is shaped like a LOINC code ("8867-4") and its check digit (mod 10) is right."""
    number, dash, check = code.strip().partition("-")
    if not (dash and number.isdigit() and check.isdigit() and len(check) == 1 and number.isascii()):
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d // 10 + d % 10
    return (10 - total % 10) % 10 == int(check)


def bmi(weight_kg: float, height_cm: float) -> float:
    """Body-mass index in kg/m², rounded to one decimal."""
    return round(weight_kg / (height_cm / 100) ** 2, 1)


# -- FHIR ---------------------------------------------------------------------------------------------------------


def _concept(t: LoincTerm, *extra: LoincTerm) -> dict[str, Any]:
    codings = [{"system": LOINC_SYSTEM, "code": x.code, "display": x.display} for x in (t, *extra)]
    return {"coding": codings, "text": t.vi}


def _quantity(value: float, unit: str) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value}
    display = _UNIT_DISPLAY.get(unit, unit)
    if display and unit != "1":
        q["unit"] = display
    if unit:
        q.update({"system": UCUM_SYSTEM, "code": unit})
    return q


def _interpretation(code: str) -> list[dict[str, Any]]:
    coding = {"system": INTERPRETATION_SYSTEM, "code": code, "display": _INTERPRETATION_DISPLAY[code]}
    return [{"coding": [coding]}]


def _reference(ref: str | Mapping[str, Any]) -> dict[str, Any]:
    return {"reference": ref} if isinstance(ref, str) else dict(ref)


def _instant(when: datetime | date | str | None) -> str:
    if when is None:
        when = datetime.now(UTC)
    if isinstance(when, str):
        return when
    if isinstance(when, datetime):
        if when.tzinfo is None:  # naive times are taken as UTC
            when = when.replace(tzinfo=UTC)
        return when.isoformat(timespec="seconds")
    return when.isoformat()


def _base(
    t: LoincTerm,
    patient_ref: str | Mapping[str, Any],
    encounter_ref: str | Mapping[str, Any] | None,
    when: datetime | date | str | None,
    status: str,
) -> dict[str, Any]:
    obs: dict[str, Any] = {"resourceType": "Observation"}
    if t.code in _VITAL_PROFILE:
        obs["meta"] = {"profile": [f"http://hl7.org/fhir/StructureDefinition/{_VITAL_PROFILE[t.code]}"]}
    obs["status"] = status
    display = _CATEGORY_DISPLAY[t.category]
    obs["category"] = [{"coding": [{"system": CATEGORY_SYSTEM, "code": t.category, "display": display}]}]
    # the oxygen-saturation profile requires 2708-6 beside the pulse-oximetry code
    obs["code"] = _concept(t, term("2708-6")) if t.code == "59408-5" else _concept(t)
    obs["subject"] = _reference(patient_ref)
    if encounter_ref is not None:
        obs["encounter"] = _reference(encounter_ref)
    obs["effectiveDateTime"] = _instant(when)
    return obs


def _blood_pressure_values(value: Any) -> tuple[float, float]:
    if isinstance(value, Mapping):
        return value["systolic"], value["diastolic"]
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        return value[0], value[1]
    raise ValueError("blood pressure needs (systolic, diastolic) or {'systolic': .., 'diastolic': ..}")


def vital_observation(
    kind: str,
    value: Any,
    patient_ref: str | Mapping[str, Any],
    encounter_ref: str | Mapping[str, Any] | None = None,
    when: datetime | date | str | None = None,
    status: str = "final",
) -> dict[str, Any]:
    """A vital-signs Observation. `kind` is a key ("heart-rate", "blood-pressure", "body-temperature",
    "respiratory-rate", "spo2", "oxygen-saturation", "body-weight", "body-height", "bmi", "head-circumference")
    or its LOINC code; blood pressure takes (systolic, diastolic). `when` defaults to now; naive times are UTC."""
    t = term(kind)
    if t.category != "vital-signs" or t.code == "85353-1":
        raise KeyError(f"{kind!r} is not a single vital sign")
    obs = _base(t, patient_ref, encounter_ref, when, status)
    if t.code == "85354-9":
        components = []
        for member, v in zip(panel_members(t.code), _blood_pressure_values(value)):
            component: dict[str, Any] = {"code": _concept(member), "valueQuantity": _quantity(v, member.unit)}
            if flag := interpret(member.code, v):
                component["interpretation"] = _interpretation(flag)
            components.append(component)
        obs["component"] = components
        return obs
    obs["valueQuantity"] = _quantity(value, t.unit)
    if flag := interpret(t.code, value):
        obs["interpretation"] = _interpretation(flag)
    return obs


def _range_entry(t: LoincTerm, r: Range, sex: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if r.low is not None:
        entry["low"] = _quantity(r.low, t.unit)
    if r.high is not None:
        entry["high"] = _quantity(r.high, t.unit)
    if sex is not None:
        entry["appliesTo"] = [{"coding": [_SEX_CODING[sex]], "text": "Nam" if sex == "male" else "Nữ"}]
    low = "" if r.low is None else f"{r.low:g}"
    high = "" if r.high is None else f"{r.high:g}"
    unit = _UNIT_DISPLAY.get(t.unit, t.unit) if t.unit != "1" else ""
    bounds = f"{low}–{high}" if low and high else (f"≥ {low}" if low else f"≤ {high}")
    entry["text"] = f"{bounds} {unit}".strip()
    return entry


def _reference_ranges(t: LoincTerm, sex: str | None) -> list[dict[str, Any]]:
    if t.kind == "ordinal":
        return [{"text": "Âm tính (negative)"}]
    if None in t.normal:
        return [_range_entry(t, t.normal[None], None)]
    if sex in t.normal:
        return [_range_entry(t, t.normal[sex], sex)]
    return [_range_entry(t, r, s) for s, r in t.normal.items()]


def _qualitative_value(text: str) -> dict[str, Any]:
    folded = fold(text)
    if folded in _NEGATIVE:
        return {"coding": [{"system": SNOMED_SYSTEM, "code": "260385009", "display": "Negative"}], "text": text}
    if folded in ("positive", "pos", "duong tinh", "detected", "phat hien"):
        return {"coding": [{"system": SNOMED_SYSTEM, "code": "10828004", "display": "Positive"}], "text": text}
    return {"text": text}


def _number_or_text(value: float | str) -> float | str:
    """A number as given, or read from text ("12,5" with a decimal comma too); other text stripped."""
    if not isinstance(value, str):
        return value
    try:
        return float(value.strip().replace(",", "."))
    except ValueError:
        return value.strip()


def lab_observation(
    code: str,
    value: float | str,
    patient_ref: str | Mapping[str, Any],
    encounter_ref: str | Mapping[str, Any] | None = None,
    when: datetime | date | str | None = None,
    sex: str | None = None,
    status: str = "final",
) -> dict[str, Any]:
    """A laboratory Observation with referenceRange and interpretation. `code` is a LOINC code or key; a
    qualitative result ("negative", "1+", "âm tính") becomes valueCodeableConcept, a number valueQuantity.
    With `sex`, only that sex's range is given; without, both, each with appliesTo."""
    t = term(code)
    if t.category != "laboratory" or t.kind == "panel":
        raise KeyError(f"{code!r} is not a single laboratory test")
    obs = _base(t, patient_ref, encounter_ref, when, status)
    result = _number_or_text(value)
    if isinstance(result, str):
        obs["valueCodeableConcept"] = _qualitative_value(result)
    else:
        obs["valueQuantity"] = _quantity(result, t.unit)
    if flag := interpret(t.code, result, sex):
        obs["interpretation"] = _interpretation(flag)
    if ranges := _reference_ranges(t, sex):
        obs["referenceRange"] = ranges
    return obs
