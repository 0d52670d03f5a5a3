"""What clinicians add to a patient's record from the chart: allergies, problems (ICD-10), immunizations and
documents (a PDF or an image).

Each function writes in one transaction through a GuardedRepository, so every write passes the principal's
authorization rules (a nurse records allergies but not problems or immunizations: 403) and is inside the patients
they may see (404 otherwise). Input is checked first; what is wrong raises sante.clinical.forms.InvalidInput with
one FieldProblem per field (stable keys such as `allergy.substance.missing`), nothing written.

Representations (FHIR R4):
- an allergy: AllergyIntolerance, clinical status active, verification confirmed, the substance coded in SNOMED CT
  when it is one of `ALLERGENS` (else as text), category, criticality (low, high, unable-to-assess), a reaction
  (its manifestation, coded when known, and severity mild, moderate or severe), recorder, recordedDate;
- a problem: Condition, category problem-list-item, ICD-10 code (sante.clinical.icd10.condition_code), clinical
  status active, verification confirmed, onset, recorder; resolving it sets clinical status resolved and
  abatementDateTime (a version check: a problem changed in the meantime is a 412);
- an immunization: Immunization, status completed, vaccine coded in CVX (`VACCINES`), occurrence date, dose
  number (protocolApplied), lot number, primarySource true, the recording practitioner as performer;
- a document: a Binary (the bytes, securityContext the Patient) and a DocumentReference (status current, a LOINC
  document type from `DOCUMENT_KINDS`, description, the attachment: content type, size, SHA-1, title = file name,
  url = the Binary), written together. The type is read from the file's first bytes (PDF, JPEG, PNG), never from
  what the browser says.
"""

from __future__ import annotations

import base64
import hashlib
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sante.anomaly import Anomaly, Category
from sante.auth.guarded import GuardedRepository, GuardedTransaction
from sante.clinical import icd10
from sante.clinical.forms import FieldProblem, problem, raise_errors
from sante.clinical.service_support import (
    LOINC,
    SNOMED,
    aware,
    bare_id,
    fhir_time,
    local_day,
    practitioner_of,
    read_at,
    ref_id,
)

ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CVX = "http://hl7.org/fhir/sid/cvx"
ALLERGY_CATEGORIES = ("medication", "food", "environment", "biologic")
CRITICALITIES = ("low", "high", "unable-to-assess")
SEVERITIES = ("mild", "moderate", "severe")
MAX_TEXT = 200
MAX_NOTE = 1000
MAX_DOCUMENT_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Allergen:
    code: str  # SNOMED CT substance
    display: str
    vi: str
    category: str


ALLERGENS: dict[str, Allergen] = {
    "penicillin": Allergen("764146007", "Penicillin", "Penicillin", "medication"),
    "aspirin": Allergen("387458008", "Aspirin", "Aspirin", "medication"),
    "sulfonamide": Allergen("387406002", "Sulfonamide", "Sulfamid", "medication"),
    "paracetamol": Allergen("387517004", "Paracetamol", "Paracetamol", "medication"),
    "seafood": Allergen("44027008", "Seafood", "Hải sản", "food"),
    "egg": Allergen("102263004", "Eggs (edible)", "Trứng", "food"),
    "milk": Allergen("3718001", "Cow's milk", "Sữa bò", "food"),
    "dust-mite": Allergen("260147004", "House dust mite", "Mạt bụi nhà", "environment"),
}
REACTIONS: dict[str, tuple[str, str, str]] = {  # key: (SNOMED CT finding, display, Vietnamese)
    "hives": ("247472004", "Hives", "Nổi mề đay"),
    "rash": ("271807003", "Rash", "Phát ban"),
    "angioedema": ("41291007", "Angioedema", "Phù mạch"),
    "dyspnoea": ("267036007", "Dyspnea", "Khó thở"),
    "anaphylaxis": ("39579001", "Anaphylaxis", "Sốc phản vệ"),
    "nausea": ("422587007", "Nausea", "Buồn nôn"),
    "cough": ("49727002", "Cough", "Ho"),
}


@dataclass(frozen=True, slots=True)
class Vaccine:
    cvx: str
    display: str  # the CVX short description
    vi: str


VACCINES: dict[str, Vaccine] = {
    "hepb-birth": Vaccine("08", "Hep B, adolescent or pediatric", "Viêm gan B sơ sinh"),
    "hepb": Vaccine("45", "Hep B, unspecified formulation", "Viêm gan B"),
    "bcg": Vaccine("19", "BCG", "Lao (BCG)"),
    "dtp-hib-hepb": Vaccine("102", "DTP-Hib-Hep B", "DPT-VGB-Hib (5 trong 1)"),
    "bopv": Vaccine("178", "Non-US bivalent oral polio vaccine (types 1, 3)", "Bại liệt uống (bOPV)"),
    "ipv": Vaccine("10", "IPV", "Bại liệt tiêm (IPV)"),
    "measles": Vaccine("05", "measles", "Sởi"),
    "mr": Vaccine("04", "M/R", "Sởi – Rubella"),
    "je": Vaccine("39", "Japanese Encephalitis SC", "Viêm não Nhật Bản"),
    "dtp": Vaccine("01", "DTP", "DPT (bạch hầu, ho gà, uốn ván)"),
    "td": Vaccine("09", "Td (adult), adsorbed", "Uốn ván – bạch hầu (Td)"),
    "tetanus": Vaccine("112", "tetanus toxoid, unspecified formulation", "Uốn ván (VAT)"),
    "influenza": Vaccine("88", "influenza, unspecified formulation", "Cúm"),
    "covid-19": Vaccine("213", "SARS-COV-2 (COVID-19) vaccine, UNSPECIFIED FORMULATION", "COVID-19"),
    "hpv": Vaccine("62", "HPV, quadrivalent", "HPV (ung thư cổ tử cung)"),
    "rabies": Vaccine("18", "rabies, intramuscular injection", "Dại"),
}
DOCUMENT_KINDS: dict[str, tuple[str, str]] = {  # key: (LOINC document type, display)
    "lab-report": ("11502-2", "Laboratory report"),
    "imaging": ("18748-4", "Diagnostic imaging study"),
    "referral": ("57133-1", "Referral note"),
    "discharge": ("18842-5", "Discharge summary"),
    "consent": ("59284-0", "Patient Consent"),
    "other": ("34133-9", "Summary of episode note"),
}
FILE_TYPES = {"application/pdf": ".pdf", "image/jpeg": ".jpg", "image/png": ".png"}


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFD", text.strip().lower()).replace("đ", "d")
    return "".join(c for c in text if not unicodedata.combining(c))


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    return {"system": system, "code": code, **({"display": display} if display else {})}


def _text(value: Any) -> str:
    return " ".join(str(value or "").split())


def _day(value: str, field: str, key: str, today: date, *, required: bool) -> tuple[date | None, list[FieldProblem]]:
    text = value.strip()
    if not text:
        return None, [problem(f"{key}.missing", field, "Enter the date.")] if required else []
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None, [problem(f"{key}.invalid", field, "{value} is not a date.", value=text)]
    if day > today:
        return None, [problem(f"{key}.future", field, "The date cannot be in the future.")]
    return day, []


def _long(value: str, field: str, key: str, limit: int) -> list[FieldProblem]:
    return [problem(f"{key}.long", field, "At most {limit} characters.", limit=limit)] if len(value) > limit else []


def _patient(g: GuardedTransaction, patient_id: str) -> dict[str, Any]:
    """The patient, as the principal may see them (404 otherwise: field `patient`)."""
    return read_at(g, "Patient", patient_id, "patient")


def _practitioner(g: GuardedTransaction) -> dict[str, str] | None:
    who = practitioner_of(g)
    return {"reference": who} if who else None


def _note(text: str, when: datetime) -> list[dict[str, str]]:
    return [{"text": text, "time": fhir_time(when)}] if text else []


# -- allergies ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AllergyInput:
    substance: str
    criticality: str
    category: str = ""
    reaction: str = ""
    severity: str = ""
    note: str = ""


def known_allergen(text: str) -> Allergen | None:
    folded = _fold(text)
    return next((a for a in ALLERGENS.values() if folded in (_fold(a.vi), _fold(a.display))), None)


def _reaction_concept(text: str) -> dict[str, Any]:
    folded = _fold(text)
    for code, display, vi in REACTIONS.values():
        if folded in (_fold(vi), _fold(display)):
            return {"coding": [_coding(SNOMED, code, display)], "text": text}
    return {"text": text}


def allergy_problems(a: AllergyInput) -> list[FieldProblem]:
    out = []
    substance, reaction = _text(a.substance), _text(a.reaction)
    if not substance:
        out.append(problem("allergy.substance.missing", "substance", "Name the substance."))
    out += _long(substance, "substance", "allergy.substance", MAX_TEXT)
    if a.category and a.category not in ALLERGY_CATEGORIES:
        out.append(problem("allergy.category.unknown", "category", "Choose a category from the list."))
    if a.criticality not in CRITICALITIES:
        out.append(problem("allergy.criticality.missing", "criticality", "Choose the criticality."))
    if a.severity and a.severity not in SEVERITIES:
        out.append(problem("allergy.severity.unknown", "severity", "Choose a severity from the list."))
    if a.severity and not reaction:
        out.append(problem("allergy.reaction.missing", "reaction", "Describe the reaction to give its severity."))
    out += _long(reaction, "reaction", "allergy.reaction", MAX_TEXT)
    out += _long(a.note.strip(), "note", "allergy.note", MAX_NOTE)
    return out


def record_allergy(guarded: GuardedRepository, patient_id: str, a: AllergyInput, *, now: datetime | None = None
                   ) -> dict[str, Any]:
    """Record an allergy or intolerance (see the module's docstring); returns the stored AllergyIntolerance."""
    raise_errors(allergy_problems(a))
    when = aware(now)
    substance, reaction = _text(a.substance), _text(a.reaction)
    known = known_allergen(substance)
    code: dict[str, Any] = {"text": substance}
    if known is not None:
        code["coding"] = [_coding(SNOMED, known.code, known.display)]
    allergy: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {"coding": [_coding(ALLERGY_CLINICAL, "active", "Active")]},
        "verificationStatus": {"coding": [_coding(ALLERGY_VERIFICATION, "confirmed", "Confirmed")]},
        "type": "allergy",
        "category": [a.category or (known.category if known else "")],
        "criticality": a.criticality,
        "code": code,
        "patient": {"reference": f"Patient/{bare_id(patient_id, 'Patient')}"},
        "recordedDate": fhir_time(when),
    }
    if not allergy["category"][0]:
        del allergy["category"]
    if reaction:
        allergy["reaction"] = [{"manifestation": [_reaction_concept(reaction)],
                                **({"severity": a.severity} if a.severity else {})}]
    if a.note.strip():
        allergy["note"] = _note(a.note.strip(), when)
    with guarded.transaction() as g:
        _patient(g, patient_id)
        if (who := _practitioner(g)) is not None:
            allergy["recorder"] = who
        return g.create(allergy).resource or {}


# -- problems -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ProblemInput:
    code: str
    onset: str = ""  # YYYY-MM-DD
    note: str = ""


def add_problem(guarded: GuardedRepository, patient_id: str, p: ProblemInput, *, now: datetime | None = None
                ) -> dict[str, Any]:
    """Add a problem to the patient's problem list (an ICD-10 code, "J18.9" or "j189"); returns the Condition."""
    when = aware(now)
    out: list[FieldProblem] = []
    typed = p.code.strip().split(" ")[0] if p.code.strip() else ""
    normal = icd10.normalise_code(typed) if typed else None
    if not typed:
        out.append(problem("problem.code.missing", "code", "Choose a diagnosis (ICD-10 code)."))
    elif normal is None:
        out.append(problem("problem.code.invalid", "code", "{value} is not an ICD-10 code.", value=typed))
    onset, found = _day(p.onset, "onset", "problem.onset", local_day(when), required=False)
    out += found + _long(p.note.strip(), "note", "problem.note", MAX_NOTE)
    raise_errors(out)
    assert normal is not None
    condition: dict[str, Any] = {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [_coding(CONDITION_CLINICAL, "active", "Active")]},
        "verificationStatus": {"coding": [_coding(CONDITION_VERIFICATION, "confirmed", "Confirmed")]},
        "category": [{"coding": [_coding(CONDITION_CATEGORY, "problem-list-item", "Problem List Item")]}],
        "code": icd10.condition_code(normal),
        "subject": {"reference": f"Patient/{bare_id(patient_id, 'Patient')}"},
        **({"onsetDateTime": onset.isoformat()} if onset else {}),
        "recordedDate": fhir_time(when),
    }
    if p.note.strip():
        condition["note"] = _note(p.note.strip(), when)
    with guarded.transaction() as g:
        _patient(g, patient_id)
        if (who := _practitioner(g)) is not None:
            condition["recorder"] = who
        return g.create(condition).resource or {}


def resolve_problem(guarded: GuardedRepository, patient_id: str, condition_id: str, *, version: int | None = None,
                    now: datetime | None = None) -> dict[str, Any]:
    """Mark a problem of the patient resolved (today). `version`: the version the user saw; another one is 412."""
    when = aware(now)
    with guarded.transaction() as g:
        _patient(g, patient_id)
        condition = read_at(g, "Condition", condition_id, "problem")
        if ref_id(condition.get("subject"), "Patient") != bare_id(patient_id, "Patient"):
            raise Anomaly(Category.NOT_FOUND, f"Condition/{condition_id} is not a problem of this patient",
                          location="problem")
        condition["clinicalStatus"] = {"coding": [_coding(CONDITION_CLINICAL, "resolved", "Resolved")]}
        condition["abatementDateTime"] = fhir_time(when)
        return g.update(condition, if_match=version).resource or {}


# -- immunizations ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ImmunizationInput:
    vaccine: str  # a VACCINES key
    given: str  # YYYY-MM-DD
    dose: str = ""
    lot: str = ""
    note: str = ""


def record_immunization(guarded: GuardedRepository, patient_id: str, i: ImmunizationInput, *,
                        now: datetime | None = None) -> dict[str, Any]:
    """Record a vaccination given (see the module's docstring); returns the Immunization."""
    when = aware(now)
    out: list[FieldProblem] = []
    vaccine = VACCINES.get(i.vaccine)
    if vaccine is None:
        out.append(problem("immunization.vaccine.missing", "vaccine", "Choose the vaccine."))
    given, found = _day(i.given, "given", "immunization.given", local_day(when), required=True)
    out += found
    dose = i.dose.strip()
    if dose and (not dose.isdigit() or not 1 <= int(dose) <= 20):
        out.append(problem("immunization.dose.invalid", "dose", "The dose is a number from 1 to 20."))
    out += _long(i.lot.strip(), "lot", "immunization.lot", 40) + _long(i.note.strip(), "note", "immunization.note",
                                                                        MAX_NOTE)
    with guarded.transaction() as g:
        patient = _patient(g, patient_id)
        born = patient.get("birthDate")
        if given is not None and isinstance(born, str) and given.isoformat() < born[:10]:
            out.append(problem("immunization.given.before-birth", "given", "The date is before the patient's birth."))
        raise_errors(out)
        assert vaccine is not None and given is not None
        immunization: dict[str, Any] = {
            "resourceType": "Immunization", "status": "completed",
            "vaccineCode": {"coding": [_coding(CVX, vaccine.cvx, vaccine.display)], "text": vaccine.vi},
            "patient": {"reference": f"Patient/{bare_id(patient_id, 'Patient')}"},
            "occurrenceDateTime": given.isoformat(), "recorded": fhir_time(when), "primarySource": True,
        }
        if i.lot.strip():
            immunization["lotNumber"] = i.lot.strip()
        if (who := _practitioner(g)) is not None:
            immunization["performer"] = [{"actor": who}]
        if i.note.strip():
            immunization["note"] = [{"text": i.note.strip()}]
        if dose:
            immunization["protocolApplied"] = [{"doseNumberPositiveInt": int(dose)}]
        return g.create(immunization).resource or {}


# -- documents ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DocumentInput:
    title: str
    kind: str  # a DOCUMENT_KINDS key
    filename: str
    data: bytes


def file_type(data: bytes) -> str | None:
    """The content type a file's first bytes show: application/pdf, image/jpeg, image/png; None for another."""
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    return None


def _file_name(name: str, content_type: str) -> str:
    """The file's name without its folders or control characters, with its type's extension."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if c.isprintable() and c not in '"<>|:*?')[:120].strip() or "document"
    extension = FILE_TYPES[content_type]
    return base if base.lower().endswith(extension) or (extension == ".jpg" and base.lower().endswith(".jpeg")) \
        else base + extension


def attach_document(guarded: GuardedRepository, patient_id: str, d: DocumentInput, *, now: datetime | None = None
                    ) -> dict[str, Any]:
    """Store a PDF or an image in the patient's record: a Binary and its DocumentReference, in one transaction."""
    when = aware(now)
    out: list[FieldProblem] = []
    title = _text(d.title)
    if not title:
        out.append(problem("document.title.missing", "title", "Give the document a title."))
    out += _long(title, "title", "document.title", MAX_TEXT)
    if d.kind not in DOCUMENT_KINDS:
        out.append(problem("document.kind.missing", "kind", "Choose the kind of document."))
    content_type = file_type(d.data)
    if not d.data:
        out.append(problem("document.file.missing", "file", "Choose a file."))
    elif len(d.data) > MAX_DOCUMENT_BYTES:
        out.append(problem("document.file.large", "file", "The file is larger than {limit} MB.",
                           limit=MAX_DOCUMENT_BYTES // (1024 * 1024)))
    elif content_type is None:
        out.append(problem("document.file.type", "file", "Only PDF, JPEG and PNG files can be added."))
    raise_errors(out)
    assert content_type is not None
    pid = bare_id(patient_id, "Patient")
    loinc_code, display = DOCUMENT_KINDS[d.kind]
    with guarded.transaction() as g:
        _patient(g, pid)
        binary = g.create({"resourceType": "Binary", "contentType": content_type,
                           "securityContext": {"reference": f"Patient/{pid}"},
                           "data": base64.b64encode(d.data).decode("ascii")})
        document: dict[str, Any] = {
            "resourceType": "DocumentReference", "status": "current", "docStatus": "final",
            "type": {"coding": [_coding(LOINC, loinc_code, display)]},
            "subject": {"reference": f"Patient/{pid}"}, "date": fhir_time(when),
            "description": title,
            "content": [{"attachment": {
                "contentType": content_type, "url": f"Binary/{binary.id}", "size": len(d.data),
                "hash": base64.b64encode(hashlib.sha1(d.data).digest()).decode("ascii"),
                "title": _file_name(d.filename, content_type), "creation": fhir_time(when)}}],
        }
        if (who := _practitioner(g)) is not None:
            document["author"] = [who]
        return g.create(document).resource or {}


@dataclass(frozen=True, slots=True)
class DocumentFile:
    data: bytes
    content_type: str
    filename: str


def document_file(guarded: GuardedRepository, patient_id: str, document_id: str) -> DocumentFile:
    """The file of one of the patient's documents (read, like the document, with the principal's rights)."""
    with guarded.reader() as g:
        document = read_at(g, "DocumentReference", document_id, "document")
        if ref_id(document.get("subject"), "Patient") != bare_id(patient_id, "Patient"):
            raise Anomaly(Category.NOT_FOUND, f"DocumentReference/{document_id} is not this patient's",
                          location="document")
        attachment = next((c.get("attachment") or {} for c in document.get("content", []) if isinstance(c, dict)),
                          {})
        if "data" in attachment:
            data = base64.b64decode(attachment["data"])
        else:
            binary_id = str(attachment.get("url") or "").removeprefix("Binary/")
            if not binary_id or "/" in binary_id:
                raise Anomaly(Category.NOT_FOUND, "the document's file is not stored here", location="document")
            binary = read_at(g, "Binary", binary_id, "document")
            data = base64.b64decode(binary.get("data") or "")
    shown = file_type(data) or "application/octet-stream"  # served as what it is, whatever was declared
    return DocumentFile(data, shown, str(attachment.get("title") or "document"))


__all__ = ["ALLERGENS", "ALLERGY_CATEGORIES", "CRITICALITIES", "DOCUMENT_KINDS", "MAX_DOCUMENT_BYTES", "REACTIONS",
           "SEVERITIES", "VACCINES", "AllergyInput", "DocumentFile", "DocumentInput", "ImmunizationInput",
           "ProblemInput", "add_problem", "allergy_problems", "attach_document", "document_file", "file_type",
           "known_allergen", "record_allergy", "record_immunization", "resolve_problem"]
