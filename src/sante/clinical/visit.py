"""The outpatient examination (khám bệnh): vital signs, the doctor's note, diagnoses, orders and prescriptions,
and the signed visit record.

Each function that takes a GuardedTransaction (`gtx`) works inside the caller's transaction (a page that saves
several things saves them together); `sign_visit` opens its own. Every write passes the authorization rules:
a nurse records vital signs but cannot diagnose or prescribe, a receptionist cannot prescribe (403).

Representations:
- vital signs: one Observation per sign (sante.clinical.loinc, R4 vital-signs profiles; blood pressure one
  Observation with systolic and diastolic components; BMI added when weight and height are taken together);
  the first set moves the visit from arrived to triaged;
- diagnoses: a Condition each (category encounter-diagnosis, ICD-10 code from sante.clinical.icd10, clinical
  status active, verification confirmed) and an Encounter.diagnosis entry (use billing, as the demo's data);
  the main diagnosis (bệnh chính) has rank 1, the others (bệnh kèm theo) rank 2 and up;
- lab orders: a ServiceRequest with the LOINC test (category Laboratory procedure, SNOMED 108252007); imaging
  orders: a ServiceRequest with the DICOM modality and the body site as text (category Imaging, 363679005);
- prescriptions: a MedicationRequest per drug, referencing the formulary Medication, with a full
  dosageInstruction (Vietnamese text, timing.repeat frequency per day for the number of days, doseAndRate, route
  coded in SNOMED CT and HL7 v3) and a dispenseRequest (quantity, supply duration, valid 5 days as Vietnamese
  prescriptions are);
- the visit record: ONE Composition per visit, type LOINC 34108-1 Outpatient Note. `record_soap_note` writes it
  as a draft (status preliminary, sections Subjective / Objective / Assessment / Plan with the doctor's
  narrative); `sign_visit` completes it (status final: the vital signs, diagnoses, orders and prescriptions as
  narrative and entries, the attester), signs that version exactly as `$sign` does (sante.clinical.signing: a
  Provenance with the practitioner's JWS) and finishes the Encounter, in one transaction. A visit without a
  main diagnosis is not signed (422 at the field `diagnosis`).
- the printable prescription: `prescription_pdf` (sante.clinical.prescription_print), an A5 đơn thuốc.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sante.anomaly import Anomaly, Category
from sante.auth import ca
from sante.auth.guarded import GuardedRepository, GuardedTransaction
from sante.auth.policy import forbidden, require
from sante.clinical import icd10, loinc, signing
from sante.clinical.forms import FieldProblem, problem, raise_errors, refuse
from sante.clinical.formulary import ROUTES, route_concept
from sante.clinical.prescription_print import prescription_pdf
from sante.clinical.queue import WAITING, acting_practitioner, add_participant, read_visit, transition
from sante.clinical.service_support import (
    SNOMED,
    UCUM,
    aware,
    concept_text,
    fhir_time,
    person_name,
    read_at,
    ref,
    ref_id,
    search_all,
)

LOINC = loinc.LOINC_SYSTEM
VISIT_NOTE = {"system": LOINC, "code": "34108-1", "display": "Outpatient Note"}
VISIT_TITLE = "Phiếu khám bệnh ngoại trú"
# section key -> (LOINC code, display, Vietnamese title)
SECTIONS: dict[str, tuple[str, str, str]] = {
    "subjective": ("61150-9", "Subjective Narrative", "Lý do khám và bệnh sử"),
    "objective": ("61149-1", "Objective Narrative", "Khám lâm sàng"),
    "assessment": ("51848-0", "Evaluation note", "Chẩn đoán"),
    "plan": ("18776-5", "Plan of care note", "Chỉ định và hướng xử trí"),
    "medications": ("10160-0", "History of Medication use Narrative", "Đơn thuốc"),
}
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
DIAGNOSIS_ROLE = "http://terminology.hl7.org/CodeSystem/diagnosis-role"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
# route key (sante.clinical.formulary.ROUTES) -> SNOMED CT route of administration
ROUTE_SNOMED: dict[str, tuple[str, str]] = {
    "oral": ("26643006", "Oral route"),
    "iv": ("47625008", "Intravenous route"),
    "im": ("78421000", "Intramuscular route"),
    "sc": ("34206005", "Subcutaneous route"),
    "topical": ("6064005", "Topical route"),
    "inhalation": ("447694001", "Respiratory tract route"),
    "sublingual": ("37839007", "Sublingual route"),
    "rectal": ("37161004", "Rectal route"),
}
# imaging modality key -> (DICOM modality code, display, Vietnamese)
MODALITIES: dict[str, tuple[str, str, str]] = {
    "xray": ("DX", "Digital Radiography", "Chụp X-quang"),
    "ultrasound": ("US", "Ultrasound", "Siêu âm"),
    "ct": ("CT", "Computed Tomography", "Chụp cắt lớp vi tính (CT)"),
    "mri": ("MR", "Magnetic Resonance", "Chụp cộng hưởng từ (MRI)"),
}
ORDER_PRIORITIES = ("routine", "urgent", "asap", "stat")
PRESCRIPTION_VALID_DAYS = 5  # a Vietnamese prescription is dispensed within 5 days of its date
# Vital signs outside these bounds are typing errors ("375" for 37.5 °C), not patients.
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "heart-rate": (20, 250), "respiratory-rate": (4, 80), "body-temperature": (30, 45), "spo2": (40, 100),
    "oxygen-saturation": (40, 100), "body-weight": (0.3, 350), "body-height": (20, 250), "bmi": (8, 80),
    "head-circumference": (20, 70), "systolic": (50, 300), "diastolic": (20, 200),
}  # fmt: skip
_UCUM_UNITS = {"ml": "mL", "mL": "mL", "mg": "mg", "g": "g", "mcg": "ug", "µg": "ug", "IU": "[iU]"}
_OPEN = ("arrived", "triaged", "in-progress")


# -- helpers ----------------------------------------------------------------------------------------------------
def _open_visit(gtx: GuardedTransaction, encounter_id: str) -> dict[str, Any]:
    encounter = read_visit(gtx, encounter_id)
    if encounter.get("status") not in _OPEN:
        raise Anomaly(Category.CONFLICT, f"Encounter/{encounter['id']} is {encounter.get('status')}: the visit is "
                                         "closed", location="encounter")
    return encounter


def _practitioner_ref(gtx: GuardedTransaction, practitioner: str | None, field: str) -> dict[str, str] | None:
    who = acting_practitioner(gtx.principal, practitioner, field)
    if who is None:
        return None
    doc = read_at(gtx, "Practitioner", who.removeprefix("Practitioner/"), field)
    return ref("Practitioner", doc["id"], person_name(doc) or None)


def _required_practitioner(gtx: GuardedTransaction, practitioner: str | None, field: str) -> dict[str, str]:
    who = _practitioner_ref(gtx, practitioner, field)
    if who is None:
        raise refuse("practitioner.required", field, "Name the practitioner who does this")
    return who


def _subject(encounter: dict[str, Any]) -> dict[str, Any]:
    return dict(encounter["subject"])


def _update_visit(gtx: GuardedTransaction, encounter: dict[str, Any]) -> dict[str, Any]:
    return gtx.update(encounter, if_match=int(encounter["meta"]["versionId"])).resource or {}


def primary_diagnosis(encounter: dict[str, Any]) -> str | None:
    """The id of the visit's main diagnosis Condition (Encounter.diagnosis rank 1), None without one."""
    return next((ref_id(d.get("condition"), "Condition") for d in encounter.get("diagnosis", [])
                 if d.get("rank") == 1), None)


def _narrative(*paragraphs: str) -> dict[str, str]:
    body = "".join(f"<p>{html.escape(p).replace(chr(10), '<br/>')}</p>" for p in paragraphs if p and p.strip())
    return {"status": "additional", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>'}


def _list_narrative(lead: str, items: list[str]) -> dict[str, str]:
    parts = f"<p>{html.escape(lead)}</p>" if lead.strip() else ""
    if items:
        parts += "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"
    parts = parts or "<p>Không ghi nhận</p>"  # a narrative is never empty (FHIR txt-2)
    return {"status": "additional", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{parts}</div>'}


# -- vital signs ------------------------------------------------------------------------------------------------
def _vital_problems(values: dict[str, Any]) -> list[FieldProblem]:
    out = []
    for kind, value in values.items():
        try:
            t = loinc.term(kind)
        except KeyError:
            t = None
        if t is None or t.category != "vital-signs" or t.code == "85353-1":
            out.append(problem("vitals.unknown", kind, "{kind} is not a vital sign", kind=kind))
            continue
        if t.key == "blood-pressure":
            pair = (value.get("systolic"), value.get("diastolic")) if isinstance(value, dict) else value
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2
                    and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)):
                out.append(problem("vitals.blood-pressure.format", kind,
                                   "Blood pressure is two numbers, systolic and diastolic"))
                continue
            for name, v in zip(("systolic", "diastolic"), pair):
                low, high = PLAUSIBLE[name]
                if not low <= v <= high:
                    out.append(problem("vitals.implausible", kind, "{value} is not a plausible {kind} ({low}–{high})",
                                       value=v, kind=name, low=low, high=high))
            if pair[1] >= pair[0]:
                out.append(problem("vitals.blood-pressure.order", kind,
                                   "The diastolic pressure must be below the systolic"))
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            out.append(problem("vitals.number", kind, "{kind} must be a number", kind=t.key))
            continue
        low, high = PLAUSIBLE.get(t.key, (float("-inf"), float("inf")))
        if not low <= value <= high:
            out.append(problem("vitals.implausible", kind, "{value} is not a plausible {kind} ({low}–{high})",
                               value=value, kind=t.key, low=low, high=high))
    return out


def record_vitals(gtx: GuardedTransaction, encounter_id: str, values: dict[str, Any], *,
                  when: datetime | None = None, performer: str | None = None) -> list[dict[str, Any]]:
    """One Observation per vital sign (`values`: sante.clinical.loinc key or code -> number, blood pressure
    (systolic, diastolic)); the visit moves from arrived to triaged. Returns the stored Observations."""
    if not values:
        raise refuse("vitals.empty", "vitals", "Enter at least one vital sign")
    raise_errors(_vital_problems(values))
    require(gtx.principal, "c", "Observation")
    encounter = _open_visit(gtx, encounter_id)
    when = aware(when)
    who = _practitioner_ref(gtx, performer, "performer")
    keys = {loinc.term(k).key: k for k in values}
    readings = dict(values)
    if "body-weight" in keys and "body-height" in keys and "bmi" not in keys:
        readings["bmi"] = loinc.bmi(values[keys["body-weight"]], values[keys["body-height"]])
    stored = []
    for kind, value in readings.items():
        obs = loinc.vital_observation(kind, value, _subject(encounter), ref("Encounter", encounter["id"]),
                                      when=fhir_time(when))
        if who:
            obs["performer"] = [who]
        stored.append(gtx.create(obs).resource or {})
    if encounter["status"] == "arrived":
        transition(encounter, "triaged", when)
        _update_visit(gtx, encounter)
    return stored


# -- the doctor's note ------------------------------------------------------------------------------------------
def _visit_note(gtx: GuardedTransaction, encounter_id: str) -> dict[str, Any] | None:
    notes, _ = search_all(gtx, "Composition", [("encounter", f"Encounter/{encounter_id}"),
                                               ("type", f"{LOINC}|{VISIT_NOTE['code']}")])
    return next((n for n in notes if n.get("status") in ("preliminary", "final")), None)


def _section(key: str, text: dict[str, str], entries: list[dict[str, str]] | None = None) -> dict[str, Any]:
    code, display, title = SECTIONS[key]
    section: dict[str, Any] = {"title": title, "code": {"coding": [{"system": LOINC, "code": code,
                                                                      "display": display}]}, "text": text}
    if entries:
        section["entry"] = entries
    return section


def _section_text(note: dict[str, Any] | None, key: str) -> str:
    """The doctor's words in one SOAP section of the draft note (its narrative's first paragraph)."""
    code = SECTIONS[key][0]
    for section in (note or {}).get("section", []):
        if any(c.get("code") == code for c in (section.get("code") or {}).get("coding", [])):
            return _plain(section.get("text", {}).get("div", ""))
    return ""


def visit_note(gtx: GuardedTransaction, encounter_id: str) -> dict[str, Any] | None:
    """The visit's Composition: the doctor's draft (preliminary) or the signed record (final); None before."""
    return _visit_note(gtx, encounter_id)


def note_texts(note: dict[str, Any] | None) -> dict[str, str]:
    """The doctor's words in each SOAP section of a visit note (empty strings where there are none)."""
    return {key: _section_text(note, key) for key in ("subjective", "objective", "assessment", "plan")}


def _plain(div: str) -> str:
    """The text of a narrative's first paragraph (what record_soap_note wrote)."""
    start = div.find("<p>")
    end = div.find("</p>", start)
    if start < 0 or end < 0:
        return ""
    return html.unescape(div[start + 3:end].replace("<br/>", "\n"))


def record_soap_note(gtx: GuardedTransaction, encounter_id: str, *, subjective: str = "", objective: str = "",
                     assessment: str = "", plan: str = "", author: str | None = None,
                     when: datetime | None = None) -> dict[str, Any]:
    """The doctor's note of the visit, as the draft visit Composition (preliminary, LOINC 34108-1) with the
    Subjective, Objective, Assessment and Plan sections; writing it again replaces the draft (a new version)."""
    texts = {"subjective": subjective, "objective": objective, "assessment": assessment, "plan": plan}
    if not any(t.strip() for t in texts.values()):
        raise refuse("note.empty", "subjective", "Write at least one part of the note")
    require(gtx.principal, "c", "Composition")
    encounter = _open_visit(gtx, encounter_id)
    who = _required_practitioner(gtx, author, "author")
    when = aware(when)
    existing = _visit_note(gtx, encounter["id"])
    if existing is not None and existing.get("status") != "preliminary":
        raise Anomaly(Category.CONFLICT, f"Composition/{existing['id']}: the visit record is signed already",
                      location="encounter")
    note: dict[str, Any] = {
        "resourceType": "Composition", "status": "preliminary", "type": {"coding": [VISIT_NOTE], "text": VISIT_TITLE},
        "subject": _subject(encounter), "encounter": ref("Encounter", encounter["id"]), "date": fhir_time(when),
        "author": [who], "title": VISIT_TITLE,
        "section": [_section(k, _narrative(t)) for k, t in texts.items() if t.strip()],
    }
    if existing is not None:
        note["id"] = existing["id"]
        return gtx.update(note, if_match=int(existing["meta"]["versionId"])).resource or {}
    return gtx.create(note).resource or {}


# -- diagnoses --------------------------------------------------------------------------------------------------
def add_diagnosis(gtx: GuardedTransaction, encounter_id: str, icd10_code: str, *, primary: bool = False,
                  note: str | None = None, recorder: str | None = None, when: datetime | None = None
                  ) -> dict[str, Any]:
    """A diagnosis of the visit: a Condition with the ICD-10 code and an Encounter.diagnosis entry (rank 1 for the
    main diagnosis, which a new main diagnosis moves down). Returns the Condition."""
    code = icd10.normalise_code(icd10_code or "")
    if code is None:
        raise refuse("diagnosis.code.invalid", "diagnosis", "{code} is not an ICD-10 code", code=icd10_code)
    require(gtx.principal, "c", "Condition")
    encounter = _open_visit(gtx, encounter_id)
    who = _practitioner_ref(gtx, recorder, "recorder")
    when = aware(when)
    condition: dict[str, Any] = {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "active", "display": "Active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                           "code": "confirmed", "display": "Confirmed"}]},
        "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "encounter-diagnosis",
                                  "display": "Encounter Diagnosis"}]}],
        "code": icd10.condition_code(code),
        "subject": _subject(encounter),
        "encounter": ref("Encounter", encounter["id"]),
        "recordedDate": fhir_time(when),
    }
    if who:
        condition["recorder"] = who
    if note:
        condition["note"] = [{"text": note}]
    stored = gtx.create(condition).resource or {}
    entry = {"condition": ref("Condition", stored["id"], concept_text(stored.get("code")) or None),
             "use": {"coding": [{"system": DIAGNOSIS_ROLE, "code": "billing", "display": "Billing"}]}}
    entries = sorted(encounter.get("diagnosis", []), key=lambda d: int(d.get("rank", 99)))
    has_main = primary or any(d.get("rank") == 1 for d in entries)
    entries = [entry, *entries] if primary else [*entries, entry]
    for rank, d in enumerate(entries, 1 if has_main else 2):  # rank 1 is kept for the main diagnosis
        d["rank"] = rank
    encounter["diagnosis"] = entries
    _update_visit(gtx, encounter)
    return stored


def set_main_diagnosis(gtx: GuardedTransaction, encounter_id: str, condition_id: str) -> dict[str, Any]:
    """Make one of the visit's diagnoses the main one (rank 1); the former main one becomes a further diagnosis.
    404 at `diagnosis` for a Condition that is not a diagnosis of this visit. Returns the Encounter."""
    require(gtx.principal, "c", "Condition")
    encounter = _open_visit(gtx, encounter_id)
    cid = condition_id.removeprefix("Condition/")
    entries = sorted(encounter.get("diagnosis", []), key=lambda d: int(d.get("rank", 99)))
    chosen = next((d for d in entries if ref_id(d.get("condition"), "Condition") == cid), None)
    if chosen is None:
        raise Anomaly(Category.NOT_FOUND, f"Condition/{cid} is not a diagnosis of Encounter/{encounter['id']}",
                      location="diagnosis")
    for rank, d in enumerate([chosen, *(d for d in entries if d is not chosen)], 1):
        d["rank"] = rank
    encounter["diagnosis"] = sorted(entries, key=lambda d: d["rank"])
    return _update_visit(gtx, encounter)


# -- orders -----------------------------------------------------------------------------------------------------
def _order(gtx: GuardedTransaction, encounter: dict[str, Any], category: tuple[str, str], code: dict[str, Any],
           priority: str, note: str | None, requester: str | None, when: datetime | None,
           body_site: str | None = None) -> dict[str, Any]:
    if priority not in ORDER_PRIORITIES:
        raise refuse("order.priority.unknown", "priority", "{priority} is not a priority (routine, urgent, asap, "
                     "stat)", priority=priority)
    who = _required_practitioner(gtx, requester, "requester")
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "category": [{"coding": [{"system": SNOMED, "code": category[0], "display": category[1]}]}],
        "priority": priority, "code": code, "subject": _subject(encounter),
        "encounter": ref("Encounter", encounter["id"]), "authoredOn": fhir_time(aware(when)), "requester": who,
    }
    if (main := primary_diagnosis(encounter)) is not None:
        request["reasonReference"] = [ref("Condition", main)]
    if body_site:
        request["bodySite"] = [{"text": body_site}]
    if note:
        request["note"] = [{"text": note}]
    return gtx.create(request).resource or {}


def order_lab(gtx: GuardedTransaction, encounter_id: str, test: str, *, priority: str = "routine",
              note: str | None = None, requester: str | None = None, when: datetime | None = None) -> dict[str, Any]:
    """A laboratory order (ServiceRequest) for a LOINC test or panel (a sante.clinical.loinc key or code)."""
    try:
        term = loinc.term(test)
    except KeyError:
        term = None
    if term is None or term.category != "laboratory":
        raise refuse("order.lab.unknown", "test", "{test} is not a laboratory test Sante knows", test=test)
    require(gtx.principal, "c", "ServiceRequest")
    encounter = _open_visit(gtx, encounter_id)
    code = {"coding": [{"system": LOINC, "code": term.code, "display": term.display}], "text": term.vi}
    return _order(gtx, encounter, ("108252007", "Laboratory procedure"), code, priority, note, requester, when)


def order_imaging(gtx: GuardedTransaction, encounter_id: str, modality: str, body_site: str, *,
                  priority: str = "routine", note: str | None = None, requester: str | None = None,
                  when: datetime | None = None) -> dict[str, Any]:
    """An imaging order (ServiceRequest): a modality (xray, ultrasound, ct, mri) of a body site ("ngực thẳng")."""
    problems = []
    if modality not in MODALITIES:
        problems.append(problem("order.imaging.modality", "modality", "{modality} is not a modality (xray, "
                                "ultrasound, ct, mri)", modality=modality))
    if not (body_site or "").strip():
        problems.append(problem("order.imaging.body-site", "body_site", "Say what to image (the body site)"))
    raise_errors(problems)
    require(gtx.principal, "c", "ServiceRequest")
    encounter = _open_visit(gtx, encounter_id)
    dcm, display, vi = MODALITIES[modality]
    site = " ".join(body_site.split())
    code = {"coding": [{"system": DCM, "code": dcm, "display": display}], "text": f"{vi} {site}"}
    return _order(gtx, encounter, ("363679005", "Imaging"), code, priority, note, requester, when, site)


# -- prescriptions ----------------------------------------------------------------------------------------------
def route_of_administration(route: str) -> dict[str, Any]:
    """Dosage.route: SNOMED CT (where Sante maps it) and HL7 v3 codings, Vietnamese text."""
    concept = route_concept(route)
    if route in ROUTE_SNOMED:
        code, display = ROUTE_SNOMED[route]
        concept["coding"] = [{"system": SNOMED, "code": code, "display": display}, *concept.get("coding", [])]
    return concept


def _quantity(value: float, unit: str) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value, "unit": unit}
    if unit in _UCUM_UNITS:
        q.update(system=UCUM, code=_UCUM_UNITS[unit])
    return q


def dosage_text(dose: float, unit: str, route: str, per_day: int, days: int, instructions: str = "",
                as_needed: bool = False) -> str:
    """The dosage as a Vietnamese prescription writes it: "Uống 1 viên/lần, 3 lần/ngày, sau ăn; trong 5 ngày"."""
    verb = ROUTES[route][2]
    text = f"{verb} {dose:g} {unit}/lần, {'tối đa ' if as_needed else ''}{per_day} lần/ngày"
    if instructions.strip():
        text += f", {instructions.strip()}"
    return f"{text}; trong {days} ngày"


def _prescription_problems(dose: Any, unit: str, route: str, per_day: Any, days: Any, quantity: Any
                           ) -> list[FieldProblem]:
    out = []

    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    if not number(dose) or dose <= 0:
        out.append(problem("prescription.dose", "dose", "The dose must be a number above 0"))
    if not (unit or "").strip():
        out.append(problem("prescription.unit", "unit", "Give the unit of the dose (viên, ml, gói...)"))
    if route not in ROUTES:
        out.append(problem("prescription.route", "route", "{route} is not a route of administration", route=route))
    if not isinstance(per_day, int) or isinstance(per_day, bool) or not 1 <= per_day <= 24:
        out.append(problem("prescription.frequency", "frequency_per_day", "Times a day is a whole number, 1 to 24"))
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 90:
        out.append(problem("prescription.duration", "duration_days", "Days of treatment is a whole number, 1 to 90"))
    if not number(quantity) or quantity <= 0:
        out.append(problem("prescription.quantity", "quantity", "The quantity to dispense must be above 0"))
    return out


def prescribe(gtx: GuardedTransaction, encounter_id: str, medication_id: str, dose: float, unit: str, route: str,
              frequency_per_day: int, duration_days: int, quantity: float, instructions: str = "", *,
              quantity_unit: str | None = None, as_needed: bool = False, prescriber: str | None = None,
              when: datetime | None = None) -> dict[str, Any]:
    """A prescription line: a MedicationRequest for a formulary Medication (`eml-...`), with its dosage and the
    quantity to dispense (in `quantity_unit`, the dose's unit by default)."""
    require(gtx.principal, "c", "MedicationRequest")
    raise_errors(_prescription_problems(dose, unit, route, frequency_per_day, duration_days, quantity))
    encounter = _open_visit(gtx, encounter_id)
    medication = read_at(gtx, "Medication", medication_id, "medication")
    who = _required_practitioner(gtx, prescriber, "prescriber")
    when = aware(when)
    unit = unit.strip()
    dosage: dict[str, Any] = {
        "sequence": 1,
        "text": dosage_text(dose, unit, route, frequency_per_day, duration_days, instructions, as_needed),
        "timing": {"repeat": {"boundsDuration": {"value": duration_days, "unit": "ngày", "system": UCUM,
                                                 "code": "d"},
                              "frequency": frequency_per_day, "period": 1, "periodUnit": "d"}},
    }
    if instructions.strip():
        dosage["patientInstruction"] = instructions.strip()
    if as_needed:
        dosage["asNeededBoolean"] = True
    dosage["route"] = route_of_administration(route)
    dosage["doseAndRate"] = [{"doseQuantity": _quantity(dose, unit)}]
    request: dict[str, Any] = {
        "resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                                  "code": "outpatient", "display": "Outpatient"}]}],
        "medicationReference": ref("Medication", medication["id"], concept_text(medication.get("code")) or None),
        "subject": _subject(encounter), "encounter": ref("Encounter", encounter["id"]),
        "authoredOn": fhir_time(when), "requester": who,
    }
    if (main := primary_diagnosis(encounter)) is not None:
        request["reasonReference"] = [ref("Condition", main)]
    request["courseOfTherapyType"] = {"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy",
        **({"code": "continuous", "display": "Continuous long term therapy"} if duration_days >= 28 else
           {"code": "acute", "display": "Short course (acute) therapy"})}]}
    request["dosageInstruction"] = [dosage]
    request["dispenseRequest"] = {
        "validityPeriod": {"start": when.date().isoformat(),
                           "end": (when + timedelta(days=PRESCRIPTION_VALID_DAYS)).date().isoformat()},
        "numberOfRepeatsAllowed": 0,
        "quantity": _quantity(quantity, (quantity_unit or unit).strip()),
        "expectedSupplyDuration": {"value": duration_days, "unit": "ngày", "system": UCUM, "code": "d"},
    }
    return gtx.create(request).resource or {}


# -- signing the visit ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SignedVisit:
    composition: dict[str, Any]  # the final visit Composition, as signed
    provenance: dict[str, Any]  # the signature
    encounter: dict[str, Any]  # the finished Encounter


def signing_practitioner(principal: Any, requested: str | None) -> str:
    """Who signs, by the rule of `$sign` (sante.api.signing_routes): a signed-in practitioner as themselves, a
    system client the practitioner it names; nobody else."""
    user = principal.fhir_user or ""
    if user.startswith("Practitioner/"):
        return str(acting_practitioner(principal, requested))
    if principal.role != "system":
        raise forbidden("only a practitioner (a user whose fhirUser is a Practitioner) can sign")
    if requested is None:
        raise refuse("practitioner.required", "practitioner", "Name the practitioner who signs")
    return ca.practitioner_reference(requested if "/" in requested else f"Practitioner/{requested}")


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value or "")


def _vital_line(obs: dict[str, Any]) -> str:
    name = concept_text(obs.get("code"))
    if obs.get("component"):
        values = [c.get("valueQuantity", {}) for c in obs["component"]]
        unit = values[0].get("unit", "") if values else ""
        return f"{name}: {'/'.join(_number(v.get('value')) for v in values)} {unit}".strip()
    q = obs.get("valueQuantity") or {}
    return f"{name}: {_number(q.get('value'))} {q.get('unit', '')}".strip()


def _diagnosis_line(condition: dict[str, Any], rank: int) -> str:
    codes = [c.get("code") for c in (condition.get("code") or {}).get("coding", []) if c.get("code")]
    kind = "Bệnh chính" if rank == 1 else "Bệnh kèm theo"
    return f"{kind}: {codes[0] if codes else ''} – {concept_text(condition.get('code'))}"


def _drug_line(request: dict[str, Any]) -> str:
    name = (request.get("medicationReference") or {}).get("display") or concept_text(
        request.get("medicationCodeableConcept"))
    q = (request.get("dispenseRequest") or {}).get("quantity") or {}
    dosage: dict[str, Any] = next(iter(request.get("dosageInstruction") or []), {})
    return f"{name} – số lượng {_number(q.get('value'))} {q.get('unit', '')}: {dosage.get('text', '')}"


def _in_order(records: list[dict[str, Any]], time_element: str) -> list[dict[str, Any]]:
    """Records in the order they happened, then in the order they were written."""
    return sorted(records, key=lambda r: (str(r.get(time_element, "")), r.get("meta", {}).get("lastUpdated", "")))


def _visit_record(gtx: GuardedTransaction, encounter: dict[str, Any], note: dict[str, Any] | None,
                  author: dict[str, str], when: datetime) -> dict[str, Any]:
    """The final visit Composition: the doctor's words, and the visit's records as narrative and entries."""
    eid = encounter["id"]
    in_visit = [("encounter", f"Encounter/{eid}")]
    vitals = _in_order(search_all(gtx, "Observation", [*in_visit, ("category", "vital-signs")])[0],
                       "effectiveDateTime")
    orders = [o for o in _in_order(search_all(gtx, "ServiceRequest", in_visit)[0], "authoredOn")
              if o.get("status") not in ("revoked", "entered-in-error")]
    drugs = [d for d in _in_order(search_all(gtx, "MedicationRequest", in_visit)[0], "authoredOn")
             if d.get("status") not in ("cancelled", "entered-in-error")]
    ranked = sorted(encounter.get("diagnosis", []), key=lambda d: d.get("rank", 99))
    conditions = [(read_at(gtx, "Condition", cid, "diagnosis"), int(d.get("rank", 99)))
                  for d in ranked if (cid := ref_id(d.get("condition"), "Condition"))]
    reason = "; ".join(concept_text(r) for r in encounter.get("reasonCode", []))
    sections = [
        _section("subjective", _narrative(_section_text(note, "subjective") or reason or "Không ghi nhận")),
        _section("objective", _list_narrative(_section_text(note, "objective"), [_vital_line(v) for v in vitals]),
                 [ref("Observation", v["id"]) for v in vitals]),
        _section("assessment", _list_narrative(_section_text(note, "assessment"),
                                               [_diagnosis_line(c, rank) for c, rank in conditions]),
                 [ref("Condition", c["id"]) for c, _ in conditions]),
        _section("plan", _list_narrative(_section_text(note, "plan"),
                                         [concept_text(o.get("code")) for o in orders] or
                                         ([] if _section_text(note, "plan") else ["Không có chỉ định"])),
                 [ref("ServiceRequest", o["id"]) for o in orders]),
    ]
    if drugs:
        sections.append(_section("medications", _list_narrative("", [_drug_line(d) for d in drugs]),
                                 [ref("MedicationRequest", d["id"]) for d in drugs]))
    record: dict[str, Any] = {
        "resourceType": "Composition", "status": "final", "type": {"coding": [VISIT_NOTE], "text": VISIT_TITLE},
        "subject": _subject(encounter), "encounter": ref("Encounter", eid), "date": fhir_time(when),
        "author": [author], "title": VISIT_TITLE,
        "attester": [{"mode": "legal", "time": fhir_time(when), "party": author}],
    }
    if encounter.get("serviceProvider"):
        record["custodian"] = encounter["serviceProvider"]
    record["section"] = sections
    return record


def sign_visit(guarded_repo: GuardedRepository, encounter_id: str, *, practitioner: str | None = None,
               ca_dir: Path | None = None, now: datetime | None = None) -> SignedVisit:
    """Complete the visit record (final), sign it as `$sign` does and finish the visit, in one transaction.

    422 at `diagnosis` without a main diagnosis; 409 for a visit already closed; 403 for someone who may not
    sign. The signing key comes from the hospital CA under the data dir (or `ca_dir`)."""
    principal = guarded_repo.principal
    signer = signing_practitioner(principal, practitioner)
    signing.check_signable("Composition")
    # The visit record holds the diagnoses: whoever signs it must be one who may diagnose (not a nurse).
    for op, rtype in (("r", "Composition"), ("c", "Composition"), ("c", "Provenance"), ("u", "Encounter"),
                      ("c", "Condition")):
        require(principal, op, rtype)
    if ca_dir is None:
        from sante.settings import Settings

        ca_dir = ca.default_ca_dir(Settings.from_env().data_dir)
    key, chain = ca.load_signer(ca_dir, signer)  # before anything is written: no key, nothing changes
    now = aware(now)
    with guarded_repo.transaction() as gtx:
        encounter = _open_visit(gtx, encounter_id)
        if primary_diagnosis(encounter) is None:
            raise refuse("diagnosis.primary.required", "diagnosis",
                         "Add the main diagnosis (bệnh chính) before signing the visit")
        doc = read_at(gtx, "Practitioner", signer.removeprefix("Practitioner/"), "practitioner")
        author = ref("Practitioner", doc["id"], person_name(doc) or None)
        note = _visit_note(gtx, encounter["id"])
        record = _visit_record(gtx, encounter, note, author, now)
        if note is not None:
            record["id"] = note["id"]
            stored = gtx.update(record, if_match=int(note["meta"]["versionId"]))
        else:
            stored = gtx.create(record)
        provenance = signing.sign(gtx.tx, "Composition", stored.id, signer, key, chain)
        if gtx.event is not None:
            gtx.event.entities.append(f"Provenance/{provenance['id']}")
        if encounter["status"] in WAITING:
            transition(encounter, "in-progress", now)
        transition(encounter, "finished", now)
        add_participant(encounter, author)
        finished = _update_visit(gtx, encounter)
        return SignedVisit(stored.resource or {}, provenance, finished)


__all__ = ["MODALITIES", "ROUTE_SNOMED", "SECTIONS", "VISIT_NOTE", "SignedVisit", "add_diagnosis", "dosage_text",
           "note_texts", "order_imaging", "order_lab", "prescribe", "prescription_pdf", "primary_diagnosis",
           "record_soap_note", "record_vitals", "route_of_administration", "set_main_diagnosis", "sign_visit",
           "signing_practitioner", "visit_note"]
