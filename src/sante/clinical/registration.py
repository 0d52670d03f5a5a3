"""Registering a patient at the reception desk (tiếp đón): the form a receptionist fills in, its checks, the FHIR
Patient it becomes, and the search for the same person already registered.

- `validate(form)` lists every problem with the form, each located at its field and carried as a message key with
  its English text (sante.clinical.forms): errors refuse the registration, warnings (a CCCD whose encoded sex or
  birth year disagrees with the form, an unknown BHYT beneficiary group) are shown and let through.
- `to_patient(form)` builds the Patient: MRN, CCCD and BHYT identifiers (sante.clinical.identifiers), the name in
  Vietnamese order (text "Family Middle Given", `given` holding the middle and given names in order), gender,
  birth date (a year alone is kept as a year: older people often know no more), the mobile or landline phone,
  the two-level address of today (sante.clinical.admin_units.fhir_address), a pre-2025 address as text (use
  `old`), the emergency contact, Vietnamese as the preferred language, the managing organization.
- `find_duplicates(gtx, form_or_patient)` searches the record for the same person: the same CCCD or BHYT number
  is *certain*; the same name (accents and case folded) and birth date is *likely*; the same phone and birth date
  is *possible*. Patients already merged into another (inactive, `replaced-by`) are not offered.
- `register(guarded_repo, form)` validates, refuses (409, with the candidates) when a certain or likely
  duplicate exists — a likely one can be overridden with `allow_duplicate=True` after the receptionist checked,
  a certain one cannot (register a visit for that patient, or correct the other record first) — assigns the
  MRN and creates the Patient, in one transaction.

MRN: two digits of the registration year, then the running number of patients with an MRN, at least six digits
("26000124"), the same shape as the demo hospital's. Registrations take turns on the counter
(sante.clinical.numbering.serialise_writers), so two receptionists never hand out the same number.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sante.anomaly import Anomaly, Category, Problem
from sante.auth.guarded import GuardedRepository, GuardedTransaction
from sante.auth.policy import require
from sante.clinical import admin_units
from sante.clinical.forms import FieldProblem, problem, raise_errors
from sante.clinical.identifiers import (
    BHYT_OBJECT_CODES,
    BHYT_SYSTEM,
    CCCD_SYSTEM,
    MRN_SYSTEM,
    IdentifierError,
    fhir_identifier,
    parse_bhyt,
    parse_cccd,
)
from sante.clinical.numbering import count_all, serialise_writers
from sante.clinical.service_support import aware, person_name, search_all
from sante.store import Transaction
from sante.store.index_values import fold

SEXES = ("male", "female", "other", "unknown")
V2_0131 = "http://terminology.hl7.org/CodeSystem/v2-0131"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
# Emergency contact relationships: v3-RoleCode code -> (display, Vietnamese)
CONTACT_RELATIONSHIPS: dict[str, tuple[str, str]] = {
    "SPS": ("spouse", "Vợ/chồng"), "MTH": ("mother", "Mẹ"), "FTH": ("father", "Bố"), "CHILD": ("child", "Con"),
    "SIB": ("sibling", "Anh/chị/em"), "GRPRN": ("grandparent", "Ông/bà"), "GRNDCHILD": ("grandchild", "Cháu"),
    "FAMMEMB": ("family member", "Người thân"), "GUARD": ("guardian", "Người giám hộ"),
    "FRND": ("unrelated friend", "Bạn"),
}  # fmt: skip
OLDEST_AGE = 130

_SEPARATORS = re.compile(r"[\s.\-()]")
_MOBILE = re.compile(r"^0[35789]\d{8}$")
_LANDLINE = re.compile(r"^02\d{9}$")
_DMY = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})$")
_MY = re.compile(r"^(\d{1,2})[/.\-](\d{4})$")
_ISO = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


@dataclass(slots=True)
class RegistrationForm:
    """What the receptionist types. Text as typed; `birth_date` a date or text: dd/mm/yyyy, mm/yyyy, yyyy or
    ISO yyyy-mm-dd. `sex` is a FHIR administrative gender (male, female, other, unknown). The emergency
    contact's relationship is a CONTACT_RELATIONSHIPS code."""

    family_name: str = ""
    given_names: str = ""  # middle and given names: "Văn An"
    sex: str = ""
    birth_date: date | str | None = None
    cccd: str = ""
    bhyt: str = ""
    phone: str = ""
    address_line: str = ""  # house number and street, or hamlet
    commune_code: str = ""  # the commune (xã/phường) since 2025, 5 digits
    legacy_address: str = ""  # an address in pre-2025 units, as written on old papers
    contact_name: str = ""
    contact_phone: str = ""
    contact_relationship: str = ""


@dataclass(slots=True)
class _Clean:
    """The form's values, normalised where they could be read."""

    family: str = ""
    given: list[str] = field(default_factory=list)
    sex: str = ""
    birth_date: str | None = None  # FHIR date: yyyy, yyyy-mm or yyyy-mm-dd
    cccd: str | None = None
    bhyt: str | None = None
    phone: str | None = None
    contact_phone: str | None = None


# -- checks -----------------------------------------------------------------------------------------------------
def _name_part(text: str) -> str:
    """NFC, single spaces, and title case when typed all in capitals or all in lower case (ID cards print names
    in capitals)."""
    words = unicodedata.normalize("NFC", text or "").split()
    joined = " ".join(words)
    return joined.title() if joined.isupper() or joined.islower() else joined


def normalise_phone(text: str) -> str | None:
    """A Vietnamese phone number in national form ("0912345678", "02383844000"), or None if it is not one.
    Spaces, dots, dashes and brackets are ignored; +84 / 84 become 0."""
    digits = _SEPARATORS.sub("", text or "")
    if digits.startswith("+84"):
        digits = "0" + digits[3:]
    elif digits.startswith("84") and len(digits) in (11, 12):
        digits = "0" + digits[2:]
    return digits if _MOBILE.match(digits) or _LANDLINE.match(digits) else None


def is_mobile(phone: str) -> bool:
    return bool(_MOBILE.match(phone))


def _birth_date(value: date | str | None) -> tuple[str | None, date | None, bool]:
    """(FHIR date, earliest day it covers, readable) for a typed birth date."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None, True
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return value.isoformat(), value, True
    text = value.strip()
    try:
        if m := _DMY.match(text):
            d = date(int(m.group(3)), int(m.group(2)), int(m.group(1)))
            return d.isoformat(), d, True
        if m := _MY.match(text):
            d = date(int(m.group(2)), int(m.group(1)), 1)
            return f"{d.year:04d}-{d.month:02d}", d, True
        if m := _ISO.match(text):
            year, month, day = m.group(1), m.group(2), m.group(3)
            d = date(int(year), int(month or 1), int(day or 1))
            return text, d, True
    except ValueError:
        pass
    return None, None, False


def _clean(form: RegistrationForm, today: date) -> tuple[_Clean, list[FieldProblem]]:
    c = _Clean()
    out: list[FieldProblem] = []
    c.family = _name_part(form.family_name)
    c.given = _name_part(form.given_names).split()
    if not c.family:
        out.append(problem("name.family.required", "family_name", "Enter the family name (họ)"))
    if not c.given:
        out.append(problem("name.given.required", "given_names", "Enter the middle and given names (tên đệm và tên)"))

    c.sex = (form.sex or "").strip().lower()
    if not c.sex:
        out.append(problem("sex.required", "sex", "Choose the sex"))
    elif c.sex not in SEXES:
        out.append(problem("sex.invalid", "sex", "Sex must be male, female, other or unknown, not {value}",
                           value=form.sex))

    c.birth_date, earliest, readable = _birth_date(form.birth_date)
    if not readable:
        out.append(problem("birth_date.format", "birth_date",
                           "Write the birth date as dd/mm/yyyy (or mm/yyyy, or the year alone), not {value}",
                           value=form.birth_date))
    elif c.birth_date is None:
        out.append(problem("birth_date.required", "birth_date", "Enter the birth date (or at least the year)"))
    elif earliest is not None and earliest > today:
        out.append(problem("birth_date.future", "birth_date", "The birth date {value} is in the future",
                           value=c.birth_date))
    elif earliest is not None and today.year - earliest.year > OLDEST_AGE:
        out.append(problem("birth_date.too-old", "birth_date", "The birth date {value} is more than {years} years ago",
                           value=c.birth_date, years=OLDEST_AGE))

    out += _check_cccd(form.cccd, c, today)
    out += _check_bhyt(form.bhyt, c)

    if (form.phone or "").strip():
        c.phone = normalise_phone(form.phone)
        if c.phone is None:
            out.append(problem("phone.format", "phone",
                               "A phone number is a 10-digit mobile number (09x, 03x, 05x, 07x, 08x) or an 11-digit "
                               "landline (02x), not {value}", value=form.phone))

    if (form.commune_code or "").strip():
        if admin_units.commune(form.commune_code.strip()) is None:
            out.append(problem("address.commune.unknown", "commune_code",
                               "{value} is not a commune (xã/phường) code", value=form.commune_code))
    elif (form.address_line or "").strip():
        out.append(problem("address.commune.required", "commune_code",
                           "Choose the commune (xã/phường) of the address"))

    if (form.contact_phone or "").strip():
        c.contact_phone = normalise_phone(form.contact_phone)
        if c.contact_phone is None:
            out.append(problem("contact.phone.format", "contact_phone",
                               "The contact's phone number is not a Vietnamese phone number: {value}",
                               value=form.contact_phone))
        if not (form.contact_name or "").strip():
            out.append(problem("contact.name.required", "contact_name", "Enter the emergency contact's name"))
    relationship = (form.contact_relationship or "").strip()
    if relationship and relationship not in CONTACT_RELATIONSHIPS:
        out.append(problem("contact.relationship.unknown", "contact_relationship",
                           "{value} is not a known relationship", value=relationship))
    if (form.contact_name or "").strip() and not (form.contact_phone or "").strip():
        out.append(problem("contact.phone.required", "contact_phone", "Enter the emergency contact's phone number"))
    return c, out


def _check_cccd(text: str, c: _Clean, today: date) -> list[FieldProblem]:
    raw = _SEPARATORS.sub("", text or "")
    if not raw:
        return []
    if not (raw.isascii() and raw.isdigit()):
        return [problem("cccd.digits", "cccd", "A CCCD number has digits only, not {value}", value=text)]
    if len(raw) != 12:
        return [problem("cccd.length", "cccd", "A CCCD number has 12 digits; this one has {count}", count=len(raw))]
    if admin_units.legacy_province(raw[1:3]) is None or raw[0] != "0":
        return [problem("cccd.province", "cccd", "The CCCD number {value} does not start with a province code "
                        "(001-096)", value=raw)]
    try:
        cccd = parse_cccd(raw, today)
    except IdentifierError:
        return [problem("cccd.birth-year", "cccd", "The CCCD number {value} encodes a birth year in the future",
                        value=raw)]
    c.cccd = cccd.number
    out = []
    if c.sex in ("male", "female") and c.sex != cccd.sex:
        out.append(problem("cccd.sex-mismatch", "cccd", "The CCCD number encodes the sex {cccd_sex}, the form says "
                           "{sex}: check both", warning=True, cccd_sex=cccd.sex, sex=c.sex))
    if c.birth_date and int(c.birth_date[:4]) != cccd.birth_year:
        out.append(problem("cccd.birth-year-mismatch", "cccd", "The CCCD number encodes the birth year {cccd_year}, "
                           "the form says {year}: check both", warning=True, cccd_year=cccd.birth_year,
                           year=int(c.birth_date[:4])))
    return out


def _check_bhyt(text: str, c: _Clean) -> list[FieldProblem]:
    raw = re.sub(r"\s", "", text or "").upper()
    if not raw:
        return []
    if len(raw) != 15:
        return [problem("bhyt.length", "bhyt", "A BHYT card number has 15 characters; this one has {count}",
                        count=len(raw))]
    try:
        card = parse_bhyt(raw)
    except IdentifierError as e:
        return [problem("bhyt.format", "bhyt", "The BHYT card number {value} is not well formed: {reason}",
                        value=raw, reason=e.message)]
    c.bhyt = card.number
    if card.object_code not in BHYT_OBJECT_CODES:
        return [problem("bhyt.unknown-group", "bhyt", "{code} is not a known BHYT beneficiary group: check the card",
                        warning=True, code=card.object_code)]
    return []


def validate(form: RegistrationForm, *, today: date | None = None) -> list[FieldProblem]:
    """Every problem with the form, errors and warnings, each at its field (empty: all good)."""
    return _clean(form, today or aware(None).date())[1]


# -- the Patient ------------------------------------------------------------------------------------------------
def to_patient(form: RegistrationForm, *, mrn: str | None = None, organization: str | None = None,
               today: date | None = None) -> dict[str, Any]:
    """The FHIR Patient for a valid form (InvalidInput, 422, when it has errors)."""
    c, problems = _clean(form, today or aware(None).date())
    raise_errors(problems)
    identifiers = [fhir_identifier("mrn", mrn)] if mrn else []
    if c.cccd:
        identifiers.append(fhir_identifier("cccd", c.cccd))
    if c.bhyt:
        identifiers.append(fhir_identifier("bhyt", c.bhyt))
    patient: dict[str, Any] = {"resourceType": "Patient"}
    if identifiers:
        patient["identifier"] = identifiers
    patient["active"] = True
    patient["name"] = [{"use": "official", "text": " ".join([c.family, *c.given]), "family": c.family,
                        "given": c.given}]
    if c.phone:
        patient["telecom"] = [{"system": "phone", "value": c.phone, "use": "mobile" if is_mobile(c.phone) else "home"}]
    patient["gender"] = c.sex
    patient["birthDate"] = c.birth_date
    addresses = []
    if form.commune_code.strip():
        addresses.append(admin_units.fhir_address(form.address_line or None, form.commune_code.strip()))
    if form.legacy_address.strip():
        addresses.append({"use": "old", "type": "physical", "text": " ".join(form.legacy_address.split()),
                          "country": "VN"})
    if addresses:
        patient["address"] = addresses
    if form.contact_name.strip():
        patient["contact"] = [_contact(form, c)]
    patient["communication"] = [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "vi",
                                                          "display": "Vietnamese"}], "text": "Tiếng Việt"},
                                 "preferred": True}]
    if organization:
        patient["managingOrganization"] = {"reference": organization}
    return patient


def _contact(form: RegistrationForm, c: _Clean) -> dict[str, Any]:
    words = _name_part(form.contact_name).split()
    relationship: list[dict[str, Any]] = [{"coding": [{"system": V2_0131, "code": "C",
                                                       "display": "Emergency Contact"}], "text": "Người liên hệ"}]
    code = form.contact_relationship.strip()
    if code:
        display, vi = CONTACT_RELATIONSHIPS[code]
        relationship.append({"coding": [{"system": ROLE_CODE, "code": code, "display": display}], "text": vi})
    contact: dict[str, Any] = {"relationship": relationship,
                               "name": {"text": " ".join(words), "family": words[0], "given": words[1:]}}
    if c.contact_phone:
        contact["telecom"] = [{"system": "phone", "value": c.contact_phone,
                               "use": "mobile" if is_mobile(c.contact_phone) else "home"}]
    return contact


def next_mrn(tx: Transaction, today: date) -> str:
    """The next free MRN (year, running number), counted over every patient of the database. Call it inside the
    write transaction that stores the patient: it serialises registrations until that transaction ends."""
    serialise_writers(tx, "patient-registration")
    n = count_all(tx, "Patient", [("identifier", f"{MRN_SYSTEM}|")]) + 1
    while True:
        mrn = f"{today.year % 100:02d}{n:06d}"
        if not count_all(tx, "Patient", [("identifier", f"{MRN_SYSTEM}|{mrn}")]):
            return mrn
        n += 1


# -- duplicates -------------------------------------------------------------------------------------------------
LEVELS = {"certain": 100, "likely": 70, "possible": 40}
REASON_LEVEL = {"cccd": "certain", "bhyt": "certain", "name-birth-date": "likely", "phone-birth-date": "possible"}
REASON_FIELD = {"cccd": "cccd", "bhyt": "bhyt", "name-birth-date": "family_name", "phone-birth-date": "phone"}
REASON_TEXT = {"cccd": "the same CCCD number", "bhyt": "the same BHYT card number",
               "name-birth-date": "the same name and birth date", "phone-birth-date": "the same phone and birth date"}


@dataclass(frozen=True, slots=True)
class Candidate:
    """A patient already registered who may be the same person."""

    patient_id: str
    level: str  # certain | likely | possible
    score: int  # 0..100: the level's score, +10 for each further reason
    reasons: tuple[str, ...]  # REASON_LEVEL keys, strongest first
    name: str
    birth_date: str | None
    gender: str | None
    mrn: str | None

    @property
    def reference(self) -> str:
        return f"Patient/{self.patient_id}"

    def describe(self) -> str:
        """One line in English: who, and why they may be the same person."""
        born = f", born {self.birth_date}" if self.birth_date else ""
        mrn = f", MRN {self.mrn}" if self.mrn else ""
        return (f"{self.reference} ({self.name}{born}{mrn}): {self.level} duplicate, "
                f"{', '.join(REASON_TEXT[r] for r in self.reasons)}")


@dataclass(frozen=True, slots=True)
class _Traits:
    cccd: str | None
    bhyt: str | None
    family: str
    given: tuple[str, ...]
    birth_date: str | None
    phone: str | None
    own_id: str | None


def _identifier(patient: dict[str, Any], system: str) -> str | None:
    return next((i.get("value") for i in patient.get("identifier", []) if i.get("system") == system), None)


def _traits(subject: RegistrationForm | dict[str, Any]) -> _Traits:
    if isinstance(subject, RegistrationForm):
        c, _ = _clean(subject, aware(None).date())
        return _Traits(c.cccd, c.bhyt, c.family, tuple(c.given), c.birth_date, c.phone, None)
    name: dict[str, Any] = next(iter(subject.get("name") or []), {})
    phone = next((t.get("value") for t in subject.get("telecom", []) if t.get("system") == "phone"), None)
    return _Traits(_identifier(subject, CCCD_SYSTEM), _identifier(subject, BHYT_SYSTEM), name.get("family", ""),
                   tuple(name.get("given", [])), subject.get("birthDate"), phone, subject.get("id"))


def _full_name(family: str, given: tuple[str, ...] | list[str]) -> str:
    return fold(" ".join([family, *given]))


def _is_merged(patient: dict[str, Any]) -> bool:
    return patient.get("active") is False and any(link.get("type") == "replaced-by"
                                                  for link in patient.get("link", []))


def find_duplicates(gtx: GuardedTransaction, subject: RegistrationForm | dict[str, Any], limit: int = 5
                    ) -> list[Candidate]:
    """Registered patients (among those the principal may see) who may be the person of a form or Patient, most
    probable first."""
    t = _traits(subject)
    found: dict[str, tuple[dict[str, Any], list[str]]] = {}

    def look(reason: str, query: list[tuple[str, str]], keep: Any = None) -> None:
        for patient in search_all(gtx, "Patient", query)[0]:
            pid = str(patient.get("id"))
            if pid == t.own_id or _is_merged(patient) or (keep is not None and not keep(patient)):
                continue
            found.setdefault(pid, (patient, []))[1].append(reason)

    if t.cccd:
        look("cccd", [("identifier", f"{CCCD_SYSTEM}|{t.cccd}")])
    if t.bhyt:
        look("bhyt", [("identifier", f"{BHYT_SYSTEM}|{t.bhyt}")])
    if t.family and t.given and t.birth_date:
        wanted = _full_name(t.family, t.given)
        look("name-birth-date", [("family", t.family), ("birthdate", t.birth_date)],
             lambda p: any(_full_name(n.get("family", ""), n.get("given", [])) == wanted for n in p.get("name", [])))
    if t.phone and t.birth_date:
        look("phone-birth-date", [("phone", t.phone), ("birthdate", t.birth_date)])

    out = []
    for pid, (patient, reasons) in found.items():
        reasons.sort(key=lambda r: -LEVELS[REASON_LEVEL[r]])
        level = REASON_LEVEL[reasons[0]]
        score = min(100, LEVELS[level] + 10 * (len(reasons) - 1))
        out.append(Candidate(pid, level, score, tuple(reasons), person_name(patient), patient.get("birthDate"),
                             patient.get("gender"), _identifier(patient, MRN_SYSTEM)))
    out.sort(key=lambda c: (-c.score, c.name, c.patient_id))
    return out[:limit]


class DuplicatePatient(Anomaly):
    """Registration refused (409): the person seems to be registered already; `candidates` says as whom."""

    def __init__(self, candidates: list[Candidate]) -> None:
        self.candidates = candidates
        first = candidates[0]
        field_name = REASON_FIELD[first.reasons[0]]
        super().__init__(Category.CONFLICT, f"this person may be registered already: {first.describe()}",
                         location=field_name,
                         problems=tuple(Problem(c.describe(), REASON_FIELD[c.reasons[0]], code="duplicate")
                                        for c in candidates))


@dataclass(frozen=True, slots=True)
class Registration:
    """A registered patient: the stored Patient, its MRN, the form's warnings and the possible duplicates that did
    not stop the registration (to show to the receptionist)."""

    patient: dict[str, Any]
    mrn: str
    warnings: list[FieldProblem]
    possible_duplicates: list[Candidate]

    @property
    def patient_id(self) -> str:
        return str(self.patient["id"])


def register(guarded_repo: GuardedRepository, form: RegistrationForm, *, allow_duplicate: bool = False,
             organization: str | None = None, today: date | None = None) -> Registration:
    """Validate the form (422), refuse a duplicate (409), assign an MRN and create the Patient, in one transaction.

    The managing organization is `organization`, else the principal's own (an account bound to a hospital can
    only register patients of that hospital)."""
    today = today or aware(None).date()
    warnings = raise_errors(validate(form, today=today))
    principal = guarded_repo.principal
    require(principal, "c", "Patient")
    with guarded_repo.transaction() as gtx:
        serialise_writers(gtx.tx, "patient-registration")  # the duplicate check and the MRN, race-free
        patient = to_patient(form, organization=organization or principal.organization, today=today)
        candidates = find_duplicates(gtx, patient)
        blocking = [c for c in candidates if c.level == "certain" or (c.level == "likely" and not allow_duplicate)]
        if blocking:
            raise DuplicatePatient(blocking)
        mrn = next_mrn(gtx.tx, today)
        patient["identifier"] = [fhir_identifier("mrn", mrn), *patient.get("identifier", [])]
        stored = gtx.create(patient)
    return Registration(stored.resource or {}, mrn, warnings, [c for c in candidates if c not in blocking])


__all__ = ["CONTACT_RELATIONSHIPS", "Candidate", "DuplicatePatient", "Registration", "RegistrationForm",
           "find_duplicates", "is_mobile", "next_mrn", "normalise_phone", "register", "to_patient", "validate"]
