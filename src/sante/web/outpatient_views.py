"""What the outpatient pages (sante.web.outpatient) show, and how they read what was typed: the services' field
problems in the user's language, the forms turned into service arguments, and the views of a visit, a queue, the
duplicate candidates and a merge, each read in one transaction through the guarded repository.

The services (sante.clinical.registration, queue, visit, merge) do the work and the checks; this module only
translates between them and the templates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sante.auth.guarded import GuardedRepository, GuardedTransaction
from sante.auth.principal import Principal
from sante.clinical import admin_units, formulary, icd10, loinc
from sante.clinical import queue as queue_service
from sante.clinical import visit as visit_service
from sante.clinical.forms import FieldProblem
from sante.clinical.registration import Candidate, RegistrationForm, find_duplicates
from sante.clinical.service_support import by_ids, parse_time, ref_id, search_all
from sante.web.chart import ENCOUNTER_STATUS, Banner, allergies_of, concept_text, vital_signs
from sante.web.i18n import N_, Formats
from sante.web.patients import GENDERS, PatientSummary, summarize
from sante.web.render import may

# -- the services' messages --------------------------------------------------------------------------------------
# Every FieldProblem template of the services these pages call (sante.clinical.registration, visit, queue, merge):
# the English text is the message id; tests/web/test_outpatient.py checks that none is missing.
SERVICE_MESSAGES = (
    N_("Enter the family name (họ)"), N_("Enter the middle and given names (tên đệm và tên)"), N_("Choose the sex"),
    N_("Sex must be male, female, other or unknown, not {value}"),
    N_("Write the birth date as dd/mm/yyyy (or mm/yyyy, or the year alone), not {value}"),
    N_("Enter the birth date (or at least the year)"), N_("The birth date {value} is in the future"),
    N_("The birth date {value} is more than {years} years ago"),
    N_("A CCCD number has digits only, not {value}"), N_("A CCCD number has 12 digits; this one has {count}"),
    N_("The CCCD number {value} does not start with a province code (001-096)"),
    N_("The CCCD number {value} encodes a birth year in the future"),
    N_("The CCCD number encodes the sex {cccd_sex}, the form says {sex}: check both"),
    N_("The CCCD number encodes the birth year {cccd_year}, the form says {year}: check both"),
    N_("A BHYT card number has 15 characters; this one has {count}"),
    N_("The BHYT card number {value} is not well formed: {reason}"),
    N_("{code} is not a known BHYT beneficiary group: check the card"),
    N_("A phone number is a 10-digit mobile number (09x, 03x, 05x, 07x, 08x) or an 11-digit landline (02x), not "
       "{value}"),
    N_("{value} is not a commune (xã/phường) code"), N_("Choose the commune (xã/phường) of the address"),
    N_("The contact's phone number is not a Vietnamese phone number: {value}"),
    N_("Enter the emergency contact's name"), N_("{value} is not a known relationship"),
    N_("Enter the emergency contact's phone number"),
    N_("Name the practitioner who does this"), N_("Name the practitioner who signs"),
    N_("Enter at least one vital sign"), N_("{kind} is not a vital sign"), N_("{kind} must be a number"),
    N_("{value} is not a plausible {kind} ({low}–{high})"),
    N_("Blood pressure is two numbers, systolic and diastolic"),
    N_("The diastolic pressure must be below the systolic"),
    N_("Write at least one part of the note"), N_("{code} is not an ICD-10 code"),
    N_("Add the main diagnosis (bệnh chính) before signing the visit"),
    N_("{priority} is not a priority (routine, urgent, asap, stat)"),
    N_("{test} is not a laboratory test Sante knows"),
    N_("{modality} is not a modality (xray, ultrasound, ct, mri)"), N_("Say what to image (the body site)"),
    N_("The dose must be a number above 0"), N_("Give the unit of the dose (viên, ml, gói...)"),
    N_("{route} is not a route of administration"), N_("Times a day is a whole number, 1 to 24"),
    N_("Days of treatment is a whole number, 1 to 90"), N_("The quantity to dispense must be above 0"),
    N_("{status} is not a queue status (arrived, triaged, in-progress, finished, cancelled)"),
    N_("Encounter/{id} is not an outpatient visit"), N_("{priority} is not a priority (emergency, urgent, routine)"),
    N_("A patient cannot be merged into itself"),
    N_("Patient/{id} was merged into {into}: merge into that one instead"),
    N_("Patient/{id} is inactive: it cannot be the target"), N_("Patient/{id} was already merged into {into}"),
    N_("Say why these two records are merged"),
)
# Where a page says it better than the service's general text (by the problem's key).
BETTER_MESSAGES = {
    "vitals.implausible": N_("{kind} {value} cannot be right: it must be from {low} to {high}"),
}
NOT_A_NUMBER = N_("Type a number, such as {example}")
VITAL_KINDS = {  # sante.clinical.loinc keys named in the vital-sign messages
    "heart-rate": N_("Pulse"), "systolic": N_("Systolic"), "diastolic": N_("Diastolic"),
    "body-temperature": N_("Temperature"), "respiratory-rate": N_("Respiratory rate"),
    "spo2": N_("Oxygen saturation"), "oxygen-saturation": N_("Oxygen saturation"), "body-weight": N_("Weight"),
    "body-height": N_("Height"), "bmi": N_("BMI"),
}


@dataclass(frozen=True, slots=True)
class Message:
    """A message next to a field (or on top of a form), in the user's language."""

    text: str
    warning: bool = False


Errors = dict[str, list[Message]]


def _param(name: str, value: Any, fmt: Formats) -> str:
    if name in ("sex", "cccd_sex") and value in GENDERS:
        return fmt.t.gettext(GENDERS[value]).lower()
    if name == "kind" and value in VITAL_KINDS:
        return fmt.t.gettext(VITAL_KINDS[value])
    if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool) and name != "year"
                                    and name != "cccd_year"):
        return fmt.number(value)
    if name == "value" and isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return fmt.date(value)
    return str(value)


def problem_text(p: FieldProblem, fmt: Formats) -> str:
    """A service's field problem in the user's language."""
    template = BETTER_MESSAGES.get(p.key, p.template)
    params = {k: _param(k, v, fmt) for k, v in p.params.items()}
    try:
        return fmt.t.gettext(template).format(**params)
    except (KeyError, IndexError, ValueError):  # a translation that lost a placeholder: the English text
        return p.text


def field_errors(problems: Iterable[FieldProblem], fmt: Formats, fields: Mapping[str, str] | None = None) -> Errors:
    """The problems by form field (renamed through `fields`: the service's field -> the form's)."""
    out: Errors = {}
    for p in problems:
        name = (fields or {}).get(p.field, p.field)
        out.setdefault(name, []).append(Message(problem_text(p, fmt), not p.is_error))
    return out


def add_error(errors: Errors, name: str, text: str, *, warning: bool = False) -> None:
    errors.setdefault(name, []).append(Message(text, warning))


def has_errors(errors: Errors) -> bool:
    return any(not m.warning for messages in errors.values() for m in messages)


# -- reading numbers ---------------------------------------------------------------------------------------------
def parse_number(text: str) -> float | None:
    """A number as typed in any of the app's languages ("37,5", "37.5", "1 250"); None when it is not one."""
    t = (text or "").strip().replace(" ", "").replace("\u00a0", "")
    if not t:
        return None
    if "," in t and "." not in t:
        t = t.replace(",", ".")
    elif "," in t:  # 1,250.5 or 1.250,5: the last mark is the decimal one
        t = t.replace(".", "").replace(",", ".") if t.rfind(",") > t.rfind(".") else t.replace(",", "")
    if not re.fullmatch(r"-?\d+(\.\d+)?", t):
        raise ValueError(text)
    value = float(t)
    return int(value) if value.is_integer() else value


def number_field(fields: Mapping[str, str], name: str, errors: Errors, fmt: Formats, example: float = 37.5
                 ) -> float | None:
    """The number typed in a field (None when empty); an error next to the field when it is not a number."""
    try:
        return parse_number(fields.get(name, ""))
    except ValueError:
        add_error(errors, name, fmt.t.gettext(NOT_A_NUMBER).format(example=fmt.number(example)))
        return None


# -- registration ----------------------------------------------------------------------------------------------
REGISTRATION_FIELDS = ("family_name", "given_names", "sex", "birth_date", "cccd", "bhyt", "phone", "address_line",
                       "province", "commune_code", "commune_q", "legacy_address", "contact_name", "contact_phone",
                       "contact_relationship")
RELATIONSHIPS = {  # CONTACT_RELATIONSHIPS codes
    "SPS": N_("Spouse"), "MTH": N_("Mother"), "FTH": N_("Father"), "CHILD": N_("Child"), "SIB": N_("Sibling"),
    "GRPRN": N_("Grandparent"), "GRNDCHILD": N_("Grandchild"), "FAMMEMB": N_("Family member"),
    "GUARD": N_("Guardian"), "FRND": N_("Friend"),
}
LEVELS = {"certain": N_("The same person"), "likely": N_("Probably the same person"),
          "possible": N_("Possibly the same person")}
REASONS = {"cccd": N_("the same CCCD number"), "bhyt": N_("the same BHYT card number"),
           "name-birth-date": N_("the same name and birth date"),
           "phone-birth-date": N_("the same phone number and birth date")}


def registration_form(fields: Mapping[str, str]) -> RegistrationForm:
    return RegistrationForm(**{f: fields.get(f, "") for f in (
        "family_name", "given_names", "sex", "birth_date", "cccd", "bhyt", "phone", "address_line", "commune_code",
        "legacy_address", "contact_name", "contact_phone", "contact_relationship")})


@dataclass(frozen=True, slots=True)
class CommuneChoice:
    code: str
    name: str
    province: str


def commune_choices(query: str, province: str, chosen: str = "", limit: int = 12) -> list[CommuneChoice]:
    """The communes matching what was typed (in the province when one is chosen), the chosen one first."""
    found = admin_units.search_communes(query, province or None, limit) if query.strip() else []
    picked = admin_units.commune(chosen) if chosen.strip() else None
    if picked is not None:
        found = [picked, *(c for c in found if c.code != picked.code)]
    provinces = {p.code: p.name for p in admin_units.provinces()}
    return [CommuneChoice(c.code, c.name, provinces.get(c.province_code, "")) for c in found]


@dataclass(frozen=True, slots=True)
class CandidateView:
    """A patient already registered who may be the same person, as the duplicate warning shows them."""

    patient_id: str
    name: str
    facts: str  # sex · born
    mrn: str
    level: str  # certain | likely | possible
    level_label: str
    reasons: str


def candidate_views(candidates: Iterable[Candidate], fmt: Formats) -> list[CandidateView]:
    gettext = fmt.t.gettext
    out = []
    for c in candidates:
        facts = [gettext(GENDERS.get(c.gender or "unknown", GENDERS["unknown"]))]
        if c.birth_date:
            facts.append(f"{gettext('born')} {fmt.date(c.birth_date)}")
        out.append(CandidateView(c.patient_id, c.name, " · ".join(facts), c.mrn or "", c.level,
                                 gettext(LEVELS[c.level]), ", ".join(gettext(REASONS[r]) for r in c.reasons)))
    return out


# -- the banner ----------------------------------------------------------------------------------------------------
def banner_of(g: GuardedTransaction, patient: dict[str, Any], fmt: Formats) -> Banner:
    """The patient banner (sante.web.chart's): who, and the allergies and alerts when the role may read them."""
    ref = f"Patient/{patient.get('id')}"
    allergies = alerts = None
    if may(g.principal, "s", "AllergyIntolerance"):
        allergies = allergies_of(search_all(g, "AllergyIntolerance", [("patient", ref)])[0])
    if may(g.principal, "s", "Flag"):
        alerts = [t for t in (concept_text(f.get("code")) for f in search_all(g, "Flag", [("patient", ref)])[0]
                              if f.get("status") == "active") if t]
    return Banner(summarize(patient, fmt), allergies, alerts)


def read_banner(guarded: GuardedRepository, pid: str, fmt: Formats) -> tuple[Banner, dict[str, Any]]:
    with guarded.reader() as g:
        patient = g.read("Patient", pid).resource or {}
        return banner_of(g, patient, fmt), patient


def age_in_years(birth_date: str | None, today: date) -> int | None:
    """Whole years on a day, from a FHIR birth date (a year alone: from its first day)."""
    parts = (birth_date or "").split("-")
    if not parts[0].isdigit():
        return None
    born = (int(parts[0]), int(parts[1]) if len(parts) > 1 else 1, int(parts[2][:2]) if len(parts) > 2 else 1)
    return today.year - born[0] - ((today.month, today.day) < born[1:])


# -- clinics and queues --------------------------------------------------------------------------------------------
PRIORITIES = {"emergency": N_("Emergency"), "urgent": N_("Urgent"), "routine": N_("Routine")}
PRIORITY_HELP = {
    "emergency": N_("needs care now"),
    "urgent": N_("the elderly, children under 6, pregnant women, people with disabilities"),
    "routine": N_("in order of arrival"),
}
WAITING_STATUS = {"arrived": N_("Waiting"), "triaged": N_("Vital signs taken"), "in-progress": N_("With the doctor"),
                  "finished": N_("Done"), "cancelled": N_("Left")}


def clock(moment: datetime | None, fmt: Formats) -> str:
    """The time of day where the hospital is (24 hours in every language)."""
    return moment.astimezone(fmt.zone).strftime("%H:%M") if moment else ""


def minutes(value: float | None, fmt: Formats) -> str:
    if value is None:
        return "—"
    return fmt.t.gettext("%(num)d min") % {"num": round(value)}


@dataclass(frozen=True, slots=True)
class QueueRow:
    encounter_id: str
    ticket: str
    patient_id: str
    patient: str
    facts: str  # sex · age
    priority: str  # emergency | urgent | routine
    priority_label: str
    status: str
    status_label: str
    arrived: str
    waited: str
    waiting: bool


def queue_rows(entries: Iterable[queue_service.QueueEntry], fmt: Formats) -> list[QueueRow]:
    gettext = fmt.t.gettext
    rows = []
    for e in entries:
        facts = [gettext(GENDERS.get(e.gender or "unknown", GENDERS["unknown"]))]
        if e.age is not None:
            facts.append(fmt.t.ngettext("%(num)d year", "%(num)d years", e.age) % {"num": e.age})
        rows.append(QueueRow(e.encounter_id, e.ticket, e.patient_id, e.patient_name, " · ".join(facts), e.priority,
                             gettext(PRIORITIES[e.priority]), e.status, gettext(WAITING_STATUS.get(e.status, N_(
                                 "Unknown"))), clock(e.arrived, fmt), minutes(e.waited_minutes, fmt), e.waiting))
    return rows


@dataclass(frozen=True, slots=True)
class QueueView:
    clinic_id: str
    clinic: str
    rows: list[QueueRow]
    stats: queue_service.WaitingTimes
    updated: str


def load_queue(guarded: GuardedRepository, clinic_id: str, fmt: Formats) -> QueueView:
    """A clinic's queue of today and its waiting times (the queue read once: the statistics come from it)."""
    now = datetime.now(fmt.zone).replace(microsecond=0)
    with guarded.reader() as g:
        clinic = g.read("Location", clinic_id).resource or {}
    entries = queue_service.queue(guarded, clinic_id, now=now)
    stats = queue_service.waiting_times(guarded, clinic_id, now=now)
    return QueueView(clinic_id, str(clinic.get("name") or clinic_id), queue_rows(entries, fmt), stats,
                     clock(now, fmt))


# -- the visit -------------------------------------------------------------------------------------------------------
LAB = "108252007"
IMAGING = "363679005"
MODALITIES = {"xray": N_("X-ray"), "ultrasound": N_("Ultrasound"), "ct": N_("CT scan"), "mri": N_("MRI")}
ORDER_PRIORITIES = {"routine": N_("Routine"), "urgent": N_("Urgent (within hours)"),
                    "asap": N_("As soon as possible"), "stat": N_("Immediately (stat)")}
ROUTES = {  # sante.clinical.formulary.ROUTES keys a clinic prescribes by
    "oral": N_("By mouth"), "sublingual": N_("Under the tongue"), "inhalation": N_("Inhaled"),
    "topical": N_("On the skin"), "ophthalmic": N_("In the eye"), "otic": N_("In the ear"),
    "nasal": N_("In the nose"), "rectal": N_("Rectal"), "vaginal": N_("Vaginal"), "transdermal": N_("Patch"),
    "im": N_("Intramuscular injection"), "iv": N_("Intravenous"), "sc": N_("Subcutaneous injection"),
}
UNITS = {  # the dose's unit as the prescription writes it (Vietnamese: the record's language) -> label
    "viên": N_("tablet (viên)"), "gói": N_("sachet (gói)"), "ml": N_("millilitre (ml)"),
    "ống": N_("ampoule (ống)"), "lọ": N_("vial (lọ)"), "giọt": N_("drop (giọt)"), "nhát xịt": N_("puff (nhát xịt)"),
    "miếng": N_("patch (miếng)"), "lần bôi": N_("application (lần bôi)"), "mg": "mg", "g": "g",
}
_FORM_UNITS = {"{tablet}": "viên", "{capsule}": "viên", "{sachet}": "gói", "{vial}": "lọ", "{actuation}": "nhát xịt",
               "{patch}": "miếng", "{suppository}": "viên", "{implant}": "viên", "{piece}": "viên"}
_LIQUID_UNITS = {"oral-solution": "ml", "oral-suspension": "ml", "oral-drops": "giọt", "eye-drops": "giọt",
                 "ear-drops": "giọt", "cream": "lần bôi", "ointment": "lần bôi", "gel": "lần bôi",
                 "eye-ointment": "lần bôi", "lotion": "lần bôi", "injection": "ống", "infusion": "ml",
                 "nasal-spray": "nhát xịt"}


def default_unit(product: formulary.Product) -> str:
    """The usual unit of a dose of a product: a tablet, a sachet, millilitres..."""
    return _LIQUID_UNITS.get(product.form) or _FORM_UNITS.get(formulary.FORMS[product.form][3], "viên")


def default_quantity(dose: float | None, per_day: float | None, days: float | None) -> float | None:
    """What to dispense for a course: dose × times a day × days, rounded up to a whole unit."""
    if not dose or not per_day or not days or dose <= 0 or per_day <= 0 or days <= 0:
        return None
    return math.ceil(round(dose * per_day * days, 6))


def _term_label(term: loinc.LoincTerm, lang: str) -> str:
    return term.vi if lang == "vi" else term.fr if lang == "fr" else term.display


def lab_tests(lang: str) -> list[tuple[str, str]]:
    """The laboratory tests and panels a doctor may order: (key, label in the language), panels first."""
    terms = loinc.terms("laboratory")
    return [(t.key, _term_label(t, lang)) for t in sorted(terms, key=lambda t: (t.kind != "panel",
                                                                                _term_label(t, lang).lower()))]


@dataclass(frozen=True, slots=True)
class Icd10Choice:
    code: str
    title: str
    other: str  # the title in the other language, when the page's is not Vietnamese


def icd10_choices(query: str, lang: str, limit: int = 10) -> list[Icd10Choice]:
    titles = "vi" if lang == "vi" else "en"
    return [Icd10Choice(e.code, e.title(titles), "" if titles == "vi" else e.vi)
            for e in icd10.search(query, limit, titles)]


@dataclass(frozen=True, slots=True)
class DrugChoice:
    id: str
    label: str
    detail: str  # active ingredients' strength, the form
    unit: str  # default dose unit
    route: str


def formulary_choices(guarded: GuardedRepository, query: str, limit: int = 10) -> list[DrugChoice]:
    """The formulary products matching what was typed that the hospital has (a stored Medication)."""
    found = formulary.search(query, 60) if len(query.strip()) >= 2 else []
    if not found:
        return []
    with guarded.reader() as g:
        stocked = by_ids(g, "Medication", [p.id for p in found])
    return [DrugChoice(p.id, p.label, f"{p.name} · {formulary.FORMS[p.form][1]}", default_unit(p), p.route)
            for p in found if p.id in stocked][:limit]


@dataclass(frozen=True, slots=True)
class Diagnosis:
    condition_id: str
    code: str
    title: str
    main: bool


@dataclass(frozen=True, slots=True)
class Order:
    kind: str  # lab | imaging
    kind_label: str
    text: str
    priority: str
    when: str


@dataclass(frozen=True, slots=True)
class Prescription:
    name: str
    dosage: str
    quantity: str


@dataclass(slots=True)
class VisitView:
    """Everything the examination page shows of one outpatient visit."""

    encounter_id: str
    patient_id: str
    banner: Banner
    ticket: str
    clinic_id: str
    clinic: str
    status: str
    status_label: str
    priority_label: str
    arrived: str
    reason: str
    vital_rows: list[Any]
    vital_columns: list[Any]
    note: dict[str, str]
    note_status: str  # none | preliminary | final
    note_saved: str
    diagnoses: list[Diagnosis]
    orders: list[Order]
    prescriptions: list[Prescription]
    signed_by: str = ""
    signed_at: str = ""
    may_examine: bool = False  # diagnose, order, prescribe, sign: a doctor
    may_take_vitals: bool = False
    is_open: bool = True

    @property
    def main_diagnosis(self) -> Diagnosis | None:
        return next((d for d in self.diagnoses if d.main), None)


def may_examine(principal: Principal | None) -> bool:
    """Whether the user examines: diagnoses, orders, prescribes and signs the visit (a physician)."""
    return may(principal, "c", "Condition") and may(principal, "c", "MedicationRequest")


def load_visit(guarded: GuardedRepository, encounter_id: str, fmt: Formats) -> VisitView:
    """The visit and its records, in one read transaction (404 for a visit the user may not see, 403 for a role
    that may not read the clinical record)."""
    lang = fmt.lang
    gettext = fmt.t.gettext
    with guarded.reader() as g:
        encounter = queue_service.read_visit(g, encounter_id)
        pid = ref_id(encounter.get("subject"), "Patient") or ""
        patient = g.read("Patient", pid).resource or {}
        banner = banner_of(g, patient, fmt)
        in_visit = [("encounter", f"Encounter/{encounter['id']}")]
        vitals = search_all(g, "Observation", [*in_visit, ("category", "vital-signs")])[0]
        note = visit_service.visit_note(g, encounter["id"])
        conditions = {c["id"]: c for c in search_all(g, "Condition", in_visit)[0]}
        requests = search_all(g, "ServiceRequest", in_visit)[0]
        drugs = search_all(g, "MedicationRequest", in_visit)[0]
    _, rows, columns = vital_signs(vitals, fmt)
    diagnoses = []
    for d in sorted(encounter.get("diagnosis", []), key=lambda d: int(d.get("rank", 99))):
        condition = conditions.get(ref_id(d.get("condition"), "Condition") or "")
        if condition is None:
            continue
        code = next((c.get("code") for c in (condition.get("code") or {}).get("coding", []) if c.get("code")), "")
        entry = icd10.lookup(code) if code else None
        title = entry.title("vi" if lang == "vi" else "en") if entry else concept_text(condition.get("code"))
        diagnoses.append(Diagnosis(condition["id"], code, title, d.get("rank") == 1))
    orders = []
    for r in sorted(requests, key=lambda r: str(r.get("authoredOn", ""))):
        if r.get("status") in ("revoked", "entered-in-error"):
            continue
        category = next((c.get("code") for cc in r.get("category", []) for c in cc.get("coding", [])), "")
        coding: dict[str, Any] = next(iter((r.get("code") or {}).get("coding", [])), {})
        if category == LAB:
            try:
                text = _term_label(loinc.term(str(coding.get("code"))), lang)
            except KeyError:
                text = concept_text(r.get("code"))
            kind, label = "lab", gettext(N_("Laboratory"))
        else:
            modality = next((k for k, (dcm, _, _) in visit_service.MODALITIES.items() if dcm == coding.get("code")),
                            None)
            site = ", ".join(str(s.get("text")) for s in r.get("bodySite", []) if s.get("text"))
            text = f"{gettext(MODALITIES[modality])} — {site}" if modality else concept_text(r.get("code"))
            kind, label = "imaging", gettext(N_("Imaging"))
        orders.append(Order(kind, label, text, gettext(ORDER_PRIORITIES.get(str(r.get("priority")), N_("Routine"))),
                            clock(parse_time(r.get("authoredOn")), fmt)))
    prescriptions = []
    for r in sorted(drugs, key=lambda r: str(r.get("authoredOn", ""))):
        if r.get("status") in ("cancelled", "entered-in-error"):
            continue
        q = (r.get("dispenseRequest") or {}).get("quantity") or {}
        dosage: dict[str, Any] = next(iter(r.get("dosageInstruction") or []), {})
        prescriptions.append(Prescription((r.get("medicationReference") or {}).get("display") or concept_text(
            r.get("medicationCodeableConcept")), str(dosage.get("text") or ""),
            f"{fmt.number(q.get('value'))} {q.get('unit', '')}".strip()))
    status = str(encounter.get("status"))
    priority = next((k for k, (code, _, _) in queue_service.PRIORITIES.items()
                     for c in (encounter.get("priority") or {}).get("coding", []) if c.get("code") == code), "routine")
    place: dict[str, Any] = next(iter(encounter.get("location", [])), {})
    clinic: dict[str, Any] = place.get("location") or {}
    view = VisitView(
        encounter_id=encounter["id"], patient_id=pid, banner=banner, ticket=queue_service.ticket_of(encounter) or "",
        clinic_id=ref_id(clinic, "Location") or "", clinic=str(clinic.get("display") or ""), status=status,
        status_label=gettext(ENCOUNTER_STATUS.get(status, ENCOUNTER_STATUS["unknown"])),
        priority_label=gettext(PRIORITIES[priority]),
        arrived=fmt.datetime((encounter.get("period") or {}).get("start")),
        reason="; ".join(concept_text(r) for r in encounter.get("reasonCode", [])),
        vital_rows=rows, vital_columns=columns, note=visit_service.note_texts(note),
        note_status=str(note.get("status")) if note else "none",
        note_saved=fmt.datetime(note.get("date")) if note else "", diagnoses=diagnoses, orders=orders,
        prescriptions=prescriptions, may_examine=may_examine(guarded.principal),
        may_take_vitals=may(guarded.principal, "c", "Observation"), is_open=status in ("arrived", "triaged",
                                                                                         "in-progress"))
    if note and note.get("status") == "final":
        attester: dict[str, Any] = next(iter(note.get("attester", [])), {})
        view.signed_by = str((attester.get("party") or {}).get("display") or "")
        view.signed_at = fmt.datetime(attester.get("time"))
    return view


# -- duplicates and merging ------------------------------------------------------------------------------------------
def duplicates_of(guarded: GuardedRepository, pid: str, fmt: Formats
                  ) -> tuple[Banner, dict[str, Any], list[CandidateView]]:
    """A registered patient's banner and the other records that may be the same person."""
    with guarded.reader() as g:
        patient = g.read("Patient", pid).resource or {}
        banner = banner_of(g, patient, fmt)
        candidates = find_duplicates(g, patient, limit=10)
    return banner, patient, candidate_views(candidates, fmt)


@dataclass(frozen=True, slots=True)
class MergeSide:
    summary: PatientSummary
    active: bool
    merged: bool


def merge_side(patient: dict[str, Any], fmt: Formats) -> MergeSide:
    merged = any(link.get("type") == "replaced-by" for link in patient.get("link", []))
    return MergeSide(summarize(patient, fmt), patient.get("active") is not False, merged)


def read_merge_sides(guarded: GuardedRepository, source: str, target: str, fmt: Formats
                     ) -> tuple[MergeSide, MergeSide]:
    with guarded.reader() as g:
        return (merge_side(g.read("Patient", source).resource or {}, fmt),
                merge_side(g.read("Patient", target).resource or {}, fmt))


def moved_counts(moved: Iterable[str]) -> list[tuple[str, int]]:
    """How many records of each type a merge moves: [("Encounter", 3), ...]."""
    counts: dict[str, int] = {}
    for reference in moved:
        rtype = reference.split("/", 1)[0]
        counts[rtype] = counts.get(rtype, 0) + 1
    return sorted(counts.items())


RECORD_TYPES = {
    "Encounter": N_("Visits"), "Observation": N_("Observations (vital signs, results)"),
    "Condition": N_("Diagnoses"), "MedicationRequest": N_("Prescriptions"), "ServiceRequest": N_("Orders"),
    "Composition": N_("Visit records and notes"), "AllergyIntolerance": N_("Allergies"),
    "DiagnosticReport": N_("Reports"), "Immunization": N_("Vaccinations"), "RelatedPerson": N_("Family members"),
    "Procedure": N_("Procedures"), "Flag": N_("Alerts"),
}


__all__ = [
    "BETTER_MESSAGES", "MODALITIES", "ORDER_PRIORITIES", "PRIORITIES", "PRIORITY_HELP", "RECORD_TYPES",
    "REGISTRATION_FIELDS", "RELATIONSHIPS", "ROUTES", "SERVICE_MESSAGES", "UNITS", "CandidateView", "Errors",
    "Message", "QueueView", "VisitView", "add_error", "age_in_years", "candidate_views", "commune_choices", "default_quantity",
    "default_unit", "duplicates_of", "field_errors", "formulary_choices", "has_errors", "icd10_choices",
    "lab_tests", "load_queue", "load_visit", "may_examine", "moved_counts", "number_field", "parse_number",
    "problem_text", "queue_rows", "read_banner", "read_merge_sides", "registration_form",
]
