"""The patient chart: everything `/patients/{id}` shows, read in one transaction through the guarded repository
(one read and at most nine searches, whatever the size of the record) and shaped for the templates.

Sections the user's role may not read (a receptionist and the allergies, say) are left out (None), never an
error; the patient must be visible to the user (else 404) and readable by their role (else 403)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup

from sante.auth.guarded import GuardedRepository, GuardedTransaction
from sante.web.chart_sections import ChartAdditions, load_additions
from sante.web.i18n import N_, Formats, parse_fhir_datetime
from sante.web.patients import PatientSummary, summarize
from sante.web.render import may
from sante.web.svg import Series, line_chart

LOINC = "http://loinc.org"
INTERPRETATION = {  # v3 ObservationInterpretation: (flag, message id)
    "H": ("high", N_("High")), "HU": ("high", N_("High")), "HH": ("critical", N_("Critically high")),
    "L": ("low", N_("Low")), "LU": ("low", N_("Low")), "LL": ("critical", N_("Critically low")),
    "A": ("abnormal", N_("Abnormal")), "AA": ("critical", N_("Critically abnormal")),
    "N": ("normal", N_("Normal")), ">": ("high", N_("Above range")), "<": ("low", N_("Below range")),
    "POS": ("abnormal", N_("Positive")), "DET": ("abnormal", N_("Detected")),
}
MED_STATUS = {"active": N_("Active"), "on-hold": N_("On hold"), "completed": N_("Completed"),
              "stopped": N_("Stopped"), "cancelled": N_("Cancelled"), "draft": N_("Draft"),
              "entered-in-error": N_("Entered in error"), "unknown": N_("Unknown")}
ENCOUNTER_CLASS = {"AMB": N_("Outpatient"), "IMP": N_("Inpatient"), "ACUTE": N_("Inpatient"),
                   "EMER": N_("Emergency"), "HH": N_("Home visit"), "VR": N_("Telehealth"),
                   "OBSENC": N_("Observation"), "SS": N_("Day case")}
ENCOUNTER_STATUS = {"planned": N_("Planned"), "arrived": N_("Arrived"), "triaged": N_("Triaged"),
                    "in-progress": N_("In progress"), "onleave": N_("On leave"), "finished": N_("Finished"),
                    "cancelled": N_("Cancelled"), "entered-in-error": N_("Entered in error"),
                    "unknown": N_("Unknown")}
VISIT = N_("Visit")  # an encounter of another class


@dataclass(frozen=True, slots=True)
class VitalSign:
    key: str
    label: str  # a message id
    unit: str
    codes: tuple[str, ...]  # LOINC
    digits: int  # decimals shown


VITALS = (
    VitalSign("pulse", N_("Pulse"), N_("/min"), ("8867-4",), 0),
    VitalSign("bp", N_("Blood pressure"), "mmHg", ("85354-9", "55284-4", "8480-6", "8462-4"), 0),
    VitalSign("temperature", N_("Temperature"), "°C", ("8310-5", "8331-1"), 1),
    VitalSign("respiration", N_("Respiratory rate"), N_("/min"), ("9279-1",), 0),
    VitalSign("spo2", N_("Oxygen saturation"), "%", ("2708-6", "59408-5"), 0),
    VitalSign("weight", N_("Weight"), "kg", ("29463-7", "3141-9"), 1),
    VitalSign("height", N_("Height"), "cm", ("8302-2",), 0),
    VitalSign("bmi", N_("BMI"), "kg/m²", ("39156-5",), 1),
)
SYSTOLIC, DIASTOLIC = "8480-6", "8462-4"
_BY_CODE = {code: v for v in VITALS for code in v.codes}
MAX_VITAL_ROWS = 12


@dataclass(frozen=True, slots=True)
class Allergy:
    name: str
    reaction: str
    high_risk: bool


@dataclass(frozen=True, slots=True)
class Banner:
    patient: PatientSummary
    allergies: list[Allergy] | None  # None: the user may not see allergies
    alerts: list[str] | None


@dataclass(frozen=True, slots=True)
class VitalCard:
    key: str
    label: str  # in the user's language, as every text of these view models
    unit: str
    latest: str
    latest_at: str
    chart: Markup


@dataclass(frozen=True, slots=True)
class VitalRow:
    when: str
    values: dict[str, str]


@dataclass(frozen=True, slots=True)
class VitalColumn:
    key: str
    label: str
    unit: str


@dataclass(frozen=True, slots=True)
class Problem:
    name: str
    code: str
    onset: str
    id: str = ""  # the Condition (resolving it from the chart)
    version: str = ""


@dataclass(frozen=True, slots=True)
class Medication:
    name: str
    dosage: str
    status: str
    active: bool
    authored: str


@dataclass(frozen=True, slots=True)
class LabResult:
    name: str
    value: str
    range: str
    flag: str | None  # high, low, critical, abnormal, normal
    flag_label: str | None
    when: str


@dataclass(frozen=True, slots=True)
class Visit:
    kind: str
    description: str
    start: str
    end: str
    status: str
    place: str


@dataclass(frozen=True, slots=True)
class Chart:
    banner: Banner
    vitals: list[VitalCard] | None
    vital_rows: list[VitalRow]
    vital_columns: list[VitalColumn]
    problems: list[Problem] | None
    medications: list[Medication] | None
    labs: list[LabResult] | None
    encounters: list[Visit] | None
    additions: ChartAdditions | None = None  # allergies, immunizations, documents, lab trends: chart_sections


# -- reading FHIR ------------------------------------------------------------------------------------------------------
def concept_text(concept: Any) -> str:
    """What a CodeableConcept says: its text, else its first coding's display, else its code."""
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return str(concept["text"])
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict) and (coding.get("display") or coding.get("code")):
            return str(coding.get("display") or coding.get("code"))
    return ""


def _codes(concept: Any) -> list[str]:
    return [str(c.get("code")) for c in (concept or {}).get("coding") or [] if isinstance(c, dict) and c.get("code")]


def _status(concept: Any) -> str | None:
    codes = _codes(concept)
    return codes[0] if codes else None


def _effective(resource: dict[str, Any]) -> str | None:
    return resource.get("effectiveDateTime") or (resource.get("effectivePeriod") or {}).get("start") \
        or resource.get("effectiveInstant") or resource.get("issued")


def _quantity(value: Any) -> float | None:
    if isinstance(value, dict) and isinstance(value.get("value"), (int, float)) and not isinstance(value["value"], bool):
        return float(value["value"])
    return None


def value_text(resource: dict[str, Any], fmt: Formats) -> str:
    """An Observation's (or component's) value as written in a table, with its unit."""
    if "valueQuantity" in resource:
        q = resource["valueQuantity"]
        number = _quantity(q)
        unit = q.get("unit") or q.get("code") or ""
        comparator = q.get("comparator", "")
        return f"{comparator}{fmt.number(number)} {unit}".strip() if number is not None else ""
    for key in ("valueString", "valueInteger", "valueDateTime", "valueTime"):
        if key in resource:
            return fmt.number(resource[key], 0) if key == "valueInteger" else str(resource[key])
    if "valueCodeableConcept" in resource:
        return concept_text(resource["valueCodeableConcept"])
    if "valueBoolean" in resource:
        return "+" if resource["valueBoolean"] else "−"
    return ""


# -- sections ---------------------------------------------------------------------------------------------------------
def allergies_of(resources: list[dict[str, Any]]) -> list[Allergy]:
    """Allergies and intolerances still current: not resolved or inactive, not refuted or entered in error."""
    out = []
    for a in resources:
        if _status(a.get("clinicalStatus")) in ("inactive", "resolved"):
            continue
        if _status(a.get("verificationStatus")) in ("refuted", "entered-in-error"):
            continue
        reactions = [concept_text(m) for r in a.get("reaction") or [] if isinstance(r, dict)
                     for m in r.get("manifestation") or []]
        out.append(Allergy(concept_text(a.get("code")) or "—", ", ".join(r for r in reactions if r),
                           a.get("criticality") == "high"))
    return sorted(out, key=lambda a: (not a.high_risk, a.name))


def _minute(moment: datetime) -> str:
    """The minute of a reading, in UTC: readings of one minute make one row of the table."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def vital_signs(observations: list[dict[str, Any]], fmt: Formats
                ) -> tuple[list[VitalCard], list[VitalRow], list[VitalColumn]]:
    """A card per vital sign recorded (latest value, a chart over time) and the table of the latest readings."""
    series: dict[str, list[tuple[datetime, float]]] = {}
    rows: dict[str, dict[str, str]] = {}
    moments: dict[str, datetime] = {}
    for obs in observations:
        if obs.get("status") in ("entered-in-error", "cancelled"):
            continue
        moment = parse_fhir_datetime(_effective(obs))
        if moment is None:
            continue
        when = _minute(moment)
        moments[when] = moment
        components = {code: _quantity(c.get("valueQuantity"))
                      for c in obs.get("component") or [] if isinstance(c, dict) for code in _codes(c.get("code"))}
        for code in _codes(obs.get("code")):
            sign = _BY_CODE.get(code)
            if sign is None:
                continue
            if sign.key == "bp":
                if code == SYSTOLIC:
                    systolic, diastolic = _quantity(obs.get("valueQuantity")), None
                elif code == DIASTOLIC:
                    systolic, diastolic = None, _quantity(obs.get("valueQuantity"))
                else:  # a panel: the two pressures are its components
                    systolic, diastolic = components.get(SYSTOLIC), components.get(DIASTOLIC)
                if systolic is not None:
                    series.setdefault("systolic", []).append((moment, systolic))
                if diastolic is not None:
                    series.setdefault("diastolic", []).append((moment, diastolic))
                row = rows.setdefault(when, {})
                old_s, _, old_d = row.get("bp", "/").partition("/")  # the two pressures may come apart
                row["bp"] = (f"{fmt.number(systolic, 0) if systolic is not None else old_s}/"
                             f"{fmt.number(diastolic, 0) if diastolic is not None else old_d}")
            else:
                value = _quantity(obs.get("valueQuantity"))
                if value is None:
                    continue
                series.setdefault(sign.key, []).append((moment, value))
                rows.setdefault(when, {})[sign.key] = fmt.number(value, sign.digits)
            break
    gettext = fmt.t.gettext
    cards = []
    for sign in VITALS:
        lines = ([Series("systolic", sorted(series.get("systolic", []))),
                  Series("diastolic", sorted(series.get("diastolic", [])))] if sign.key == "bp"
                 else [Series(sign.key, sorted(series.get(sign.key, [])))])
        lines = [s for s in lines if s.points]
        if not lines:
            continue
        label, unit = gettext(sign.label), gettext(sign.unit)
        last = max(p[0] for s in lines for p in s.points)
        latest = rows.get(_minute(last), {}).get(sign.key, "")
        values = [p[1] for s in lines for p in s.points]
        count = max(len(s.points) for s in lines)
        description = gettext("%(count)d readings from %(first)s to %(last)s. Latest %(latest)s %(unit)s, "
                              "lowest %(low)s, highest %(high)s.") % {
            "count": count, "first": fmt.date(min(p[0] for s in lines for p in s.points).date()),
            "last": fmt.date(last.date()), "latest": latest, "unit": unit,
            "low": fmt.number(min(values), sign.digits), "high": fmt.number(max(values), sign.digits)}
        chart = line_chart(
            f"vital-{sign.key}", label, description, lines,
            value_text=lambda v, d=sign.digits: fmt.number(v, d),  # type: ignore[misc]
            day_text=fmt.short_day,
            point_text=lambda t, v, d=sign.digits, u=unit: f"{fmt.datetime(t)}: {fmt.number(v, d)} {u}")  # type: ignore[misc]
        cards.append(VitalCard(sign.key, label, unit, latest, fmt.datetime(last), chart))
    ordered = sorted(rows, reverse=True)[:MAX_VITAL_ROWS]
    table = [VitalRow(fmt.datetime(moments[w]), rows[w]) for w in ordered]
    columns = [VitalColumn(v.key, gettext(v.label), gettext(v.unit)) for v in VITALS
               if any(v.key in r.values for r in table)]
    return cards, table, columns


def problems_of(conditions: list[dict[str, Any]], fmt: Formats) -> list[Problem]:
    out = []
    for c in conditions:
        if _status(c.get("verificationStatus")) in ("refuted", "entered-in-error"):
            continue
        icd = next((str(x.get("code")) for x in (c.get("code") or {}).get("coding") or []
                    if isinstance(x, dict) and "icd" in str(x.get("system", "")).lower() and x.get("code")), "")
        onset = c.get("onsetDateTime") or (c.get("onsetPeriod") or {}).get("start") or c.get("recordedDate")
        out.append(Problem(concept_text(c.get("code")) or "—", icd, fmt.date(onset), str(c.get("id") or ""),
                           str((c.get("meta") or {}).get("versionId") or "")))
    return out


def medications_of(requests: list[dict[str, Any]], medications: dict[str, dict[str, Any]], fmt: Formats
                   ) -> list[Medication]:
    out = []
    for r in requests:
        if r.get("status") == "entered-in-error":
            continue
        name = concept_text(r.get("medicationCodeableConcept"))
        ref = (r.get("medicationReference") or {}).get("reference", "")
        if not name and ref in medications:
            name = concept_text(medications[ref].get("code"))
        name = name or (r.get("medicationReference") or {}).get("display") or "—"
        dosage = "; ".join(str(d.get("text")) for d in r.get("dosageInstruction") or []
                           if isinstance(d, dict) and d.get("text"))
        status = str(r.get("status") or "unknown")
        out.append(Medication(name, dosage, fmt.t.gettext(MED_STATUS.get(status, MED_STATUS["unknown"])),
                              status == "active", fmt.date(r.get("authoredOn"))))
    return sorted(out, key=lambda m: not m.active)  # stable: newest first within each group


def _range_text(ranges: Any, fmt: Formats) -> tuple[str, float | None, float | None]:
    for r in ranges or []:
        if not isinstance(r, dict):
            continue
        low, high = _quantity(r.get("low")), _quantity(r.get("high"))
        unit = (r.get("low") or r.get("high") or {}).get("unit", "")
        if low is not None and high is not None:
            return f"{fmt.number(low)}–{fmt.number(high)} {unit}".strip(), low, high
        if low is not None:
            return f"≥ {fmt.number(low)} {unit}".strip(), low, None
        if high is not None:
            return f"≤ {fmt.number(high)} {unit}".strip(), None, high
        if r.get("text"):
            return str(r["text"]), None, None
    return "", None, None


def labs_of(observations: list[dict[str, Any]], fmt: Formats) -> list[LabResult]:
    """Results with their reference range and flag: the interpretation recorded, else high or low against the
    range."""
    out = []
    for obs in observations:
        if obs.get("status") in ("entered-in-error", "cancelled"):
            continue
        range_text, low, high = _range_text(obs.get("referenceRange"), fmt)
        flag = label = None
        for concept in obs.get("interpretation") or []:
            for code in _codes(concept):
                if code in INTERPRETATION:
                    flag, label = INTERPRETATION[code]
                    break
            if flag:
                break
        value = _quantity(obs.get("valueQuantity"))
        if flag is None and value is not None:
            if high is not None and value > high:
                flag, label = INTERPRETATION["H"]
            elif low is not None and value < low:
                flag, label = INTERPRETATION["L"]
        out.append(LabResult(concept_text(obs.get("code")) or "—", value_text(obs, fmt), range_text, flag,
                             fmt.t.gettext(label) if label else None, fmt.datetime(_effective(obs))))
    return out


def visits_of(encounters: list[dict[str, Any]], fmt: Formats) -> list[Visit]:
    out = []
    for e in encounters:
        if e.get("status") == "entered-in-error":
            continue
        code = str((e.get("class") or {}).get("code") or "")
        period = e.get("period") or {}
        description = ", ".join(t for t in (concept_text(x) for x in e.get("type") or []) if t) \
            or concept_text(e.get("serviceType")) or ", ".join(concept_text(r) for r in e.get("reasonCode") or [])
        places = [str((loc.get("location") or {}).get("display") or "") for loc in e.get("location") or []
                  if isinstance(loc, dict)]
        place = next((p for p in places if p), "") or str((e.get("serviceProvider") or {}).get("display") or "")
        status = ENCOUNTER_STATUS.get(str(e.get("status")), ENCOUNTER_STATUS["unknown"])
        out.append(Visit(fmt.t.gettext(ENCOUNTER_CLASS.get(code, VISIT)), description,
                         fmt.datetime(period.get("start")), fmt.datetime(period.get("end")), fmt.t.gettext(status),
                         place))
    return out


# -- the chart ---------------------------------------------------------------------------------------------------------
def _search(g: GuardedTransaction, rtype: str, query: list[tuple[str, str]]) -> list[dict[str, Any]] | None:
    """The resources found, or None when the principal may not search the type at all (a section left out)."""
    if not may(g.principal, "s", rtype):
        return None
    return [m.resource or {} for m in g.search(rtype, query).matches]


def load_chart(guarded: GuardedRepository, pid: str, fmt: Formats) -> Chart:
    """Read everything the chart shows (one read transaction) and shape it."""
    with guarded.reader() as g:
        patient = g.read("Patient", pid).resource or {}
        ref = f"Patient/{pid}"
        allergies = _search(g, "AllergyIntolerance", [("patient", ref), ("_count", "100")])
        flags = _search(g, "Flag", [("patient", ref), ("_count", "50")])  # R4 has no Flag status parameter
        vitals = _search(g, "Observation", [("patient", ref), ("category", "vital-signs"), ("_sort", "-date"),
                                            ("_count", "300")])
        labs = _search(g, "Observation", [("patient", ref), ("category", "laboratory"), ("_sort", "-date"),
                                          ("_count", "200")])  # the table shows the newest 40, the trends all
        conditions = _search(g, "Condition", [("patient", ref), ("clinical-status", "active,recurrence,relapse"),
                                              ("_count", "100")])
        medications = None
        if may(g.principal, "s", "MedicationRequest"):
            found = g.search("MedicationRequest", [("patient", ref), ("_sort", "-authoredon"), ("_count", "50"),
                                                   ("_include", "MedicationRequest:medication")])
            included = {f"{m.type}/{m.id}": m.resource or {} for m in found.included}
            medications = medications_of([m.resource or {} for m in found.matches], included, fmt)
        encounters = _search(g, "Encounter", [("patient", ref), ("_sort", "-date"), ("_count", "15")])
        additions = load_additions(g, pid, allergies, labs, fmt)
    alerts = None if flags is None else [t for t in (concept_text(f.get("code")) for f in flags
                                                     if f.get("status") == "active") if t]
    banner = Banner(summarize(patient, fmt), None if allergies is None else allergies_of(allergies), alerts)
    cards, rows, columns = vital_signs(vitals, fmt) if vitals is not None else (None, [], [])
    return Chart(
        banner=banner, vitals=cards, vital_rows=rows, vital_columns=columns,
        problems=None if conditions is None else problems_of(conditions, fmt), medications=medications,
        labs=None if labs is None else labs_of(labs[:40], fmt),
        encounters=None if encounters is None else visits_of(encounters, fmt), additions=additions)


__all__ = ["VITALS", "Banner", "Chart", "VitalSign", "concept_text", "load_chart"]
