"""The chart's additions (sante.web.chart loads them with the rest, in the same read transaction): the allergy
list, immunizations, documents and laboratory results as trends — one small line chart per test with its
reference range shaded and the results outside it marked — and what the user may add to each (the forms of
sante.web.chart_forms, with their choices in the user's language).

A section the user's role may not read is None (left out); a form the role may not use is not offered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from markupsafe import Markup

from sante.auth.guarded import GuardedTransaction
from sante.clinical.chart_entries import (
    ALLERGENS,
    ALLERGY_CATEGORIES,
    CRITICALITIES,
    DOCUMENT_KINDS,
    REACTIONS,
    SEVERITIES,
    VACCINES,
)
from sante.clinical.service_support import codes, concept_text
from sante.web.i18n import N_, Formats, parse_fhir_datetime
from sante.web.render import may
from sante.web.svg import Series, line_chart

CATEGORY_LABELS = {"medication": N_("Medication"), "food": N_("Food"), "environment": N_("Environment"),
                   "biologic": N_("Biologic")}
SEVERITY_LABELS = {"mild": N_("Mild"), "moderate": N_("Moderate"), "severe": N_("Severe")}
CRITICALITY_LABELS = {"low": N_("Low risk"), "high": N_("High risk"), "unable-to-assess": N_("Unable to assess")}
ALLERGY_STATUS = {"active": N_("Current"), "inactive": N_("Inactive"), "resolved": N_("Resolved")}
ALLERGEN_LABELS = {"penicillin": N_("Penicillin"), "aspirin": N_("Aspirin"), "sulfonamide": N_("Sulfonamides"),
                   "paracetamol": N_("Paracetamol"), "seafood": N_("Seafood"), "egg": N_("Eggs"),
                   "milk": N_("Cow's milk"), "dust-mite": N_("House dust mite")}
REACTION_LABELS = {"hives": N_("Hives"), "rash": N_("Rash"), "angioedema": N_("Angioedema"),
                   "dyspnoea": N_("Shortness of breath"), "anaphylaxis": N_("Anaphylaxis"), "nausea": N_("Nausea"),
                   "cough": N_("Cough")}
VACCINE_LABELS = {
    "hepb-birth": N_("Hepatitis B (birth dose)"), "hepb": N_("Hepatitis B"), "bcg": N_("BCG (tuberculosis)"),
    "dtp-hib-hepb": N_("DTP-HepB-Hib (5-in-1)"), "bopv": N_("Oral polio (bOPV)"), "ipv": N_("Injected polio (IPV)"),
    "measles": N_("Measles"), "mr": N_("Measles and rubella (MR)"), "je": N_("Japanese encephalitis"),
    "dtp": N_("DTP (diphtheria, tetanus, pertussis)"), "td": N_("Tetanus and diphtheria (Td)"),
    "tetanus": N_("Tetanus (TT)"), "influenza": N_("Influenza"), "covid-19": N_("COVID-19"),
    "hpv": N_("HPV (human papillomavirus)"), "rabies": N_("Rabies"),
}
DOCUMENT_LABELS = {"lab-report": N_("Laboratory report"), "imaging": N_("Imaging report or image"),
                   "referral": N_("Referral letter"), "discharge": N_("Discharge summary"),
                   "consent": N_("Signed consent"), "other": N_("Other document")}
IMMUNIZATION_STATUS = {"completed": N_("Given"), "not-done": N_("Not given")}
_VACCINE_OF_CVX = {v.cvx: key for key, v in VACCINES.items()}
_KIND_OF_LOINC = {code: key for key, (code, _) in DOCUMENT_KINDS.items()}
ABNORMAL = {"H", "HH", "HU", "L", "LL", "LU", "A", "AA", ">", "<", "POS", "DET"}
MAX_TRENDS = 12


@dataclass(frozen=True, slots=True)
class AllergyRow:
    name: str
    category: str
    reaction: str
    severity: str
    criticality: str
    high_risk: bool
    current: bool
    status: str
    recorded: str


@dataclass(frozen=True, slots=True)
class ImmunizationRow:
    vaccine: str
    given: str
    dose: str
    lot: str
    status: str
    given_as_recorded: bool  # status completed (the usual case: no tag shown)


@dataclass(frozen=True, slots=True)
class DocumentRow:
    id: str
    title: str
    kind: str
    date: str
    file: str  # "PDF · 1.2 MB"
    name: str  # the file's name


@dataclass(frozen=True, slots=True)
class LabTrend:
    key: str
    name: str
    unit: str
    latest: str
    latest_flagged: bool
    range: str
    count: int
    flagged: int
    chart: Markup


@dataclass(frozen=True, slots=True)
class Choice:
    value: str
    label: str


@dataclass(frozen=True, slots=True)
class FormChoices:
    """The choices of the chart's forms, in the user's language."""

    allergens: list[Choice]
    reactions: list[Choice]
    categories: list[Choice]
    severities: list[Choice]
    criticalities: list[Choice]
    vaccines: list[Choice]
    document_kinds: list[Choice]


@dataclass(frozen=True, slots=True)
class ChartAdditions:
    allergies: list[AllergyRow] | None
    immunizations: list[ImmunizationRow] | None
    documents: list[DocumentRow] | None
    lab_trends: list[LabTrend] | None
    may_add: frozenset[str] = field(default_factory=frozenset)  # allergy, problem, immunization, document
    choices: FormChoices | None = None
    today: str = ""  # YYYY-MM-DD: the date inputs' upper bound


def _status(concept: Any) -> str:
    found = codes(concept)
    return found[0] if found else ""


def _label(labels: dict[str, str], key: str | None, fmt: Formats) -> str:
    return fmt.t.gettext(labels[key]) if key in labels else (key or "")


def allergy_rows(resources: list[dict[str, Any]], fmt: Formats) -> list[AllergyRow]:
    """Every allergy recorded (entered in error and refuted ones left out): current first, high risk first."""
    out = []
    for a in resources:
        if _status(a.get("verificationStatus")) in ("refuted", "entered-in-error"):
            continue
        status = _status(a.get("clinicalStatus")) or "active"
        reactions = [r for r in a.get("reaction") or [] if isinstance(r, dict)]
        manifestation = ", ".join(t for t in (concept_text(m) for r in reactions
                                              for m in r.get("manifestation") or []) if t)
        severity = next((r.get("severity") for r in reactions if r.get("severity")), None)
        category = ", ".join(_label(CATEGORY_LABELS, c, fmt) for c in a.get("category") or [] if isinstance(c, str))
        out.append(AllergyRow(concept_text(a.get("code")) or "—", category, manifestation,
                              _label(SEVERITY_LABELS, severity, fmt), _label(CRITICALITY_LABELS, a.get("criticality"),
                                                                             fmt),
                              a.get("criticality") == "high", status == "active", _label(ALLERGY_STATUS, status, fmt),
                              fmt.date(a.get("recordedDate") or a.get("onsetDateTime"))))
    return sorted(out, key=lambda r: (not r.current, not r.high_risk, r.name))


def immunization_rows(resources: list[dict[str, Any]], fmt: Formats) -> list[ImmunizationRow]:
    out = []
    for i in resources:
        if i.get("status") == "entered-in-error":
            continue
        key = next((_VACCINE_OF_CVX[c] for c in codes(i.get("vaccineCode")) if c in _VACCINE_OF_CVX), None)
        vaccine = concept_text(i.get("vaccineCode")) if fmt.lang == "vi" or key is None \
            else fmt.t.gettext(VACCINE_LABELS[key])
        dose = next((str(p.get("doseNumberPositiveInt") or p.get("doseNumberString") or "")
                     for p in i.get("protocolApplied") or [] if isinstance(p, dict)), "")
        out.append(ImmunizationRow(vaccine or "—", fmt.date(i.get("occurrenceDateTime") or i.get("recorded")), dose,
                                   str(i.get("lotNumber") or ""), _label(IMMUNIZATION_STATUS, i.get("status"), fmt),
                                   i.get("status") == "completed"))
    return out


def _size(fmt: Formats, size: Any) -> str:
    if not isinstance(size, int):
        return ""
    if size < 1024 * 1024:
        return fmt.t.gettext("%(size)s kB") % {"size": fmt.number(max(size / 1024, 0.1), 1)}
    return fmt.t.gettext("%(size)s MB") % {"size": fmt.number(size / (1024 * 1024), 1)}


def document_rows(resources: list[dict[str, Any]], fmt: Formats) -> list[DocumentRow]:
    out = []
    for d in resources:
        if d.get("status") == "entered-in-error":
            continue
        attachment = next((c.get("attachment") or {} for c in d.get("content") or [] if isinstance(c, dict)), {})
        kind = next((_KIND_OF_LOINC[c] for c in codes(d.get("type")) if c in _KIND_OF_LOINC), None)
        ctype = str(attachment.get("contentType") or "")
        file_kind = "PDF" if ctype == "application/pdf" else fmt.t.gettext("Image") if ctype.startswith("image/") \
            else ctype
        out.append(DocumentRow(str(d.get("id")), str(d.get("description") or attachment.get("title") or "—"),
                               _label(DOCUMENT_LABELS, kind, fmt) if kind else concept_text(d.get("type")),
                               fmt.datetime(d.get("date") or attachment.get("creation")),
                               " · ".join(t for t in (file_kind, _size(fmt, attachment.get("size"))) if t),
                               str(attachment.get("title") or "")))
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, dict) and isinstance(value.get("value"), (int, float)) and not isinstance(value["value"], bool):
        return float(value["value"])
    return None


def _range(obs: dict[str, Any]) -> tuple[float | None, float | None]:
    for r in obs.get("referenceRange") or []:
        if isinstance(r, dict) and (_number(r.get("low")) is not None or _number(r.get("high")) is not None):
            return _number(r.get("low")), _number(r.get("high"))
    return None, None


def _outside(obs: dict[str, Any], value: float) -> bool:
    if any(c in ABNORMAL for concept in obs.get("interpretation") or [] for c in codes(concept)):
        return True
    low, high = _range(obs)
    return (low is not None and value < low) or (high is not None and value > high)


def lab_trends(observations: list[dict[str, Any]], fmt: Formats) -> list[LabTrend]:
    """Per test (its LOINC code, else its name) with numeric results: the results over time, newest test first."""
    tests: dict[str, list[tuple[datetime, float, dict[str, Any]]]] = {}
    for obs in observations:
        if obs.get("status") in ("entered-in-error", "cancelled"):
            continue
        value = _number(obs.get("valueQuantity"))
        moment = parse_fhir_datetime(obs.get("effectiveDateTime") or (obs.get("effectivePeriod") or {}).get("start")
                                     or obs.get("issued"))
        if value is None or moment is None:
            continue
        key = next(iter(codes(obs.get("code"))), None) or concept_text(obs.get("code"))
        if key:
            tests.setdefault(key, []).append((moment, value, obs))
    gettext = fmt.t.gettext
    out = []
    ordered = sorted(tests.items(), key=lambda kv: max(p[0] for p in kv[1]), reverse=True)[:MAX_TRENDS]
    for n, (key, points) in enumerate(ordered):
        points.sort(key=lambda p: p[0])
        latest_obs = points[-1][2]
        name = concept_text(latest_obs.get("code")) or key
        unit = str((latest_obs.get("valueQuantity") or {}).get("unit") or "")
        low, high = next(((lo, hi) for lo, hi in (_range(p[2]) for p in reversed(points))
                          if lo is not None or hi is not None), (None, None))
        flags = [_outside(p[2], p[1]) for p in points]
        if low is not None and high is not None:
            range_text = f"{fmt.number(low)}–{fmt.number(high)}"
        elif low is not None:
            range_text = f"≥ {fmt.number(low)}"
        elif high is not None:
            range_text = f"≤ {fmt.number(high)}"
        else:
            range_text = ""
        latest = fmt.number(points[-1][1])
        description = gettext("%(count)d results from %(first)s to %(last)s; latest %(latest)s %(unit)s; %(flagged)d "
                              "outside the reference range %(range)s.") % {
            "count": len(points), "first": fmt.date(points[0][0].date()), "last": fmt.date(points[-1][0].date()),
            "latest": latest, "unit": unit, "flagged": sum(flags), "range": range_text or "—"}
        band = (low, high) if low is not None and high is not None else None  # a one-sided range: no band

        def point_text(moment: datetime, value: float, unit: str = unit) -> str:
            return f"{fmt.datetime(moment)}: {fmt.number(value)} {unit}".strip()

        chart = line_chart(f"lab-trend-{n}", name, description, [Series("lab", [(p[0], p[1]) for p in points], flags)],
                           value_text=fmt.number, day_text=fmt.short_day, band=band, point_text=point_text)
        out.append(LabTrend(f"lab-{n}", name, unit, latest, flags[-1], range_text, len(points), sum(flags), chart))
    return out


def form_choices(fmt: Formats) -> FormChoices:
    gettext = fmt.t.gettext

    def choices(labels: dict[str, str], keys: Any) -> list[Choice]:
        return [Choice(k, gettext(labels[k])) for k in keys]

    return FormChoices(choices(ALLERGEN_LABELS, ALLERGENS), choices(REACTION_LABELS, REACTIONS),
                       choices(CATEGORY_LABELS, ALLERGY_CATEGORIES), choices(SEVERITY_LABELS, SEVERITIES),
                       choices(CRITICALITY_LABELS, CRITICALITIES), choices(VACCINE_LABELS, VACCINES),
                       choices(DOCUMENT_LABELS, DOCUMENT_KINDS))


def _found(g: GuardedTransaction, rtype: str, query: list[tuple[str, str]]) -> list[dict[str, Any]] | None:
    if not may(g.principal, "s", rtype):
        return None
    return [m.resource or {} for m in g.search(rtype, query).matches]


def load_additions(g: GuardedTransaction, pid: str, allergies: list[dict[str, Any]] | None,
                   labs: list[dict[str, Any]] | None, fmt: Formats) -> ChartAdditions:
    """The additions' sections (two more searches in the chart's transaction) and the forms the user may use."""
    ref = f"Patient/{pid}"
    immunizations = _found(g, "Immunization", [("patient", ref), ("_sort", "-date"), ("_count", "50")])
    documents = _found(g, "DocumentReference", [("patient", ref), ("_sort", "-date"), ("_count", "30")])
    principal = g.principal
    may_add = {name for name, types in (("allergy", ("AllergyIntolerance",)), ("problem", ("Condition",)),
                                        ("immunization", ("Immunization",)),
                                        ("document", ("DocumentReference", "Binary")))
               if all(may(principal, "c", t) for t in types)}
    return ChartAdditions(
        allergies=None if allergies is None else allergy_rows(allergies, fmt),
        immunizations=None if immunizations is None else immunization_rows(immunizations, fmt),
        documents=None if documents is None else document_rows(documents, fmt),
        lab_trends=None if labs is None else lab_trends(labs, fmt),
        may_add=frozenset(may_add), choices=form_choices(fmt), today=fmt.today().isoformat())


__all__ = ["ALLERGEN_LABELS", "AllergyRow", "ChartAdditions", "Choice", "DocumentRow", "FormChoices",
           "ImmunizationRow", "LabTrend", "allergy_rows", "document_rows", "form_choices", "immunization_rows",
           "lab_trends", "load_additions"]
