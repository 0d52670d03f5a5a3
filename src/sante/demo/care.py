"""The care of the demo patients: outpatient visits, admissions and the clinical data they leave behind.

Each patient gets problems that fit their age and sex, drawn from the morbidity a Vietnamese provincial
hospital sees (hypertension, type 2 diabetes, respiratory infections, pneumonia, gastritis, dengue, hand-foot-
mouth disease, tuberculosis, COPD, asthma, road-traffic injuries, deliveries...). Chronic problems bring regular
follow-up visits with refills (the monthly BHYT pattern); acute ones one visit, sometimes an admission. Every
visit has vital signs consistent with the problem (fever in pneumonia, high blood pressure before treatment),
laboratory results where the problem calls for them (high HbA1c in diabetes, low platelets in dengue, positive
nitrite in a urinary infection), and prescriptions of formulary medications with a full dosage (dose, route,
frequency, duration) and the quantity to dispense; allergies are respected. Children get their Expanded
Programme on Immunization vaccines.

Today's outpatient queue: a few patients have an Encounter (class AMB) today at a clinic, with status
`arrived` (waiting), `triaged` (vital signs taken), `in-progress` (with the doctor) or `finished`, a
statusHistory with the times, and the queue ticket as an Encounter.identifier (system QUEUE_TICKET_SYSTEM, value
"<clinic prefix>-<number>", e.g. "N1-007", numbered per clinic in arrival order; its period is the day).
Admissions (class IMP) carry the location history ward → room → bed (via the emergency department when they
came in that way); the current ones occupy beds, which the hospital marks occupied.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sante.clinical import loinc
from sante.clinical.formulary import route_concept
from sante.demo.hospital import HOSPITAL_ID, Bed, Hospital, ref
from sante.demo.people import PeopleFactory, Person, random_name, random_phone, weighted

QUEUE_TICKET_SYSTEM = "https://sante.health/fhir/sid/queue-ticket"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
DIAGNOSIS_ROLE = "http://terminology.hl7.org/CodeSystem/diagnosis-role"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
CVX = "http://hl7.org/fhir/sid/cvx"
VIETNAM = timezone(timedelta(hours=7))

CURRENT_ADMISSION_SHARE = 0.17  # of patients, in a bed today
QUEUE_SHARE = 0.09  # of patients, in today's outpatient queue
ALLERGY_SHARE = 0.07


# -- the catalogue ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rx:
    """A prescription line: a formulary medication and how to take it."""

    drug: str  # formulary key (see sante.demo.care.FormularyIndex)
    dose: float
    unit: str  # "viên", "gói", "nhát xịt", "lọ", "mg", "ml"
    per_day: int
    days: int
    route: str = "oral"  # a sante.clinical.formulary.ROUTES key: oral | iv | inhalation | im | sc
    note: str = ""  # "sau ăn", "khi sốt trên 38,5 °C"
    as_needed: bool = False
    mg_per_kg: float = 0.0  # children's syrups: the dose follows the weight ...
    mg_per_ml: float = 0.0  # ... at this concentration


@dataclass(frozen=True, slots=True)
class Admission:
    department: str  # department key
    share: float  # of episodes admitted
    los: tuple[int, int]  # length of stay, days
    via_emergency: bool
    icu_share: float = 0.0
    inpatient_rx: tuple[Rx, ...] = ()
    procedure: tuple[str, str] | None = None  # SNOMED procedure done during the stay


@dataclass(frozen=True, slots=True)
class Problem:
    key: str
    icd10: str
    chronic: bool
    ages: tuple[int, int]
    weight: float  # relative frequency among problems that fit
    clinic: str  # adult clinic key; children go to "nhi" unless child_clinic says otherwise
    complaint: str  # the reason for the visit, as the patient says it
    signs: str = ""  # vital-sign pattern: fever, respiratory, hypoxia, hypertension, shock
    labs: tuple[str, ...] = ()  # lab orders (LAB_ORDERS keys)
    lab_share: float = 1.0
    rx: tuple[Rx, ...] = ()
    child_rx: tuple[Rx, ...] | None = None  # for children under 12 when it differs
    admission: Admission | None = None
    sex: str | None = None
    season: tuple[int, ...] = ()  # months when it occurs (dengue in the rainy season)
    child_clinic: str = "nhi"


PARACETAMOL = Rx("paracetamol", 1, "viên", 3, 5, note="khi sốt trên 38,5 °C hoặc đau, cách nhau ít nhất 4 giờ",
                 as_needed=True)
CHILD_PARACETAMOL = Rx("paracetamol-syrup", 5, "ml", 4, 5, note="khi sốt trên 38,5 °C, cách nhau ít nhất 4 giờ",
                       as_needed=True, mg_per_kg=15, mg_per_ml=24)
CEFTRIAXONE = Rx("ceftriaxone", 1, "lọ", 2, 7, route="iv", note="tiêm tĩnh mạch chậm")
ORS = Rx("ors", 1, "gói", 4, 3, note="pha 1 gói với 200 ml nước, uống sau mỗi lần đi ngoài")

PROBLEMS: tuple[Problem, ...] = (
    # chronic
    Problem("hypertension", "I10", True, (35, 95), 30, "tim-mach", "Đau đầu, chóng mặt, huyết áp cao khi đo ở nhà",
            signs="hypertension", labs=("lipid", "renal"), lab_share=0.7,
            rx=(Rx("amlodipine", 1, "viên", 1, 30, note="uống buổi sáng"),)),
    Problem("diabetes", "E11.9", True, (35, 95), 16, "noi-tiet", "Khát nhiều, tiểu nhiều, mệt mỏi",
            labs=("diabetes", "lipid"), rx=(Rx("metformin", 1, "viên", 2, 30, note="uống trong hoặc sau bữa ăn"),)),
    Problem("dyslipidaemia", "E78.5", True, (35, 90), 10, "tim-mach", "Khám sức khỏe, mỡ máu cao",
            labs=("lipid",), rx=(Rx("simvastatin", 1, "viên", 1, 30, note="uống buổi tối"),)),
    Problem("copd", "J44.9", True, (45, 95), 5, "ho-hap", "Ho khạc đờm kéo dài, khó thở khi gắng sức",
            signs="respiratory", rx=(Rx("salbutamol-inhaler", 2, "nhát xịt", 4, 30, route="inhalation",
                                        note="khi khó thở", as_needed=True),
                                     Rx("budesonide-inhaler", 2, "nhát xịt", 2, 30, route="inhalation",
                                        note="súc miệng sau khi xịt")),
            sex="male"),
    # an exacerbation of COPD: only for patients who have it (weight 0: never drawn otherwise)
    Problem("copd-exacerbation", "J44.1", False, (45, 95), 0, "ho-hap", "Khó thở tăng, ho khạc đờm đục",
            signs="hypoxia", labs=("infection",),
            rx=(Rx("amoxicillin-clavulanate", 1, "viên", 2, 7, note="uống đầu bữa ăn"),),
            admission=Admission("noi", 0.6, (5, 10), True, 0.1, (CEFTRIAXONE,))),
    Problem("asthma", "J45.9", True, (5, 80), 5, "ho-hap", "Khò khè, khó thở về đêm", signs="respiratory",
            rx=(Rx("salbutamol-inhaler", 2, "nhát xịt", 4, 30, route="inhalation", note="khi khó thở",
                   as_needed=True),
                Rx("budesonide-inhaler", 1, "nhát xịt", 2, 30, route="inhalation", note="súc miệng sau khi xịt"))),
    Problem("tuberculosis", "A15.0", True, (18, 85), 1.5, "truyen-nhiem", "Ho kéo dài trên 2 tuần, sốt chiều, sụt cân",
            signs="fever", labs=("infection",),
            rx=(Rx("tb-fdc", 3, "viên", 1, 30, note="uống lúc đói, buổi sáng"),)),
    # acute
    Problem("upper-respiratory", "J06.9", False, (0, 95), 22, "noi-2", "Sốt, ho, sổ mũi, đau họng", signs="fever",
            rx=(PARACETAMOL,), child_rx=(CHILD_PARACETAMOL,)),
    Problem("pharyngitis", "J02.9", False, (3, 80), 8, "noi-2", "Đau họng, sốt", signs="fever",
            rx=(Rx("amoxicillin", 1, "viên", 3, 7), PARACETAMOL),
            child_rx=(Rx("amoxicillin-suspension", 5, "ml", 3, 7, mg_per_kg=25, mg_per_ml=50), CHILD_PARACETAMOL)),
    Problem("bronchitis", "J20.9", False, (1, 95), 7, "ho-hap", "Ho có đờm, sốt nhẹ", signs="fever",
            rx=(PARACETAMOL,), child_rx=(CHILD_PARACETAMOL,)),
    Problem("pneumonia", "J18.9", False, (0, 95), 8, "ho-hap", "Sốt cao, ho, khó thở", signs="hypoxia",
            labs=("infection",),
            rx=(Rx("amoxicillin-clavulanate", 1, "viên", 2, 7, note="uống đầu bữa ăn"), PARACETAMOL),
            child_rx=(Rx("amoxicillin-suspension", 7.5, "ml", 3, 7, mg_per_kg=30, mg_per_ml=50), CHILD_PARACETAMOL),
            admission=Admission("noi", 0.5, (5, 10), True, 0.12, (CEFTRIAXONE,))),
    Problem("bronchiolitis", "J21.9", False, (0, 1), 10, "nhi", "Ho, khò khè, bú kém", signs="hypoxia",
            rx=(CHILD_PARACETAMOL,), admission=Admission("nhi", 0.35, (3, 6), True)),
    Problem("hand-foot-mouth", "B08.4", False, (0, 5), 9, "nhi", "Sốt, loét miệng, nổi ban tay chân",
            signs="fever", rx=(CHILD_PARACETAMOL,), admission=Admission("nhi", 0.2, (3, 5), False),
            season=(3, 4, 5, 9, 10, 11)),
    Problem("gastroenteritis", "A09", False, (0, 90), 8, "tieu-hoa", "Tiêu chảy, nôn, đau bụng", signs="fever",
            rx=(ORS,), child_rx=(ORS, Rx("zinc", 1, "viên", 1, 10, note="hòa tan trong nước")),
            admission=Admission("nhi", 0.1, (2, 4), False)),
    Problem("gastritis", "K29.7", False, (16, 90), 10, "tieu-hoa", "Đau thượng vị, ợ chua",
            rx=(Rx("omeprazole", 1, "viên", 2, 28, note="uống trước ăn 30 phút"),)),
    Problem("dengue", "A97.0", False, (3, 80), 9, "truyen-nhiem", "Sốt cao liên tục 3 ngày, đau cơ, mệt",
            signs="fever", labs=("dengue",), rx=(PARACETAMOL, ORS), child_rx=(CHILD_PARACETAMOL, ORS),
            admission=Admission("noi", 0.35, (4, 7), False, 0.05), season=(6, 7, 8, 9, 10, 11)),
    Problem("urinary-infection", "N39.0", False, (16, 90), 6, "noi-1", "Tiểu buốt, tiểu rắt",
            labs=("urine",), rx=(Rx("ciprofloxacin", 1, "viên", 2, 7),), sex="female"),
    Problem("back-pain", "M54.5", False, (25, 90), 6, "noi-1", "Đau thắt lưng",
            rx=(Rx("ibuprofen", 1, "viên", 3, 7, note="uống sau ăn no"), PARACETAMOL)),
    Problem("wrist-fracture", "S52.5", False, (6, 90), 3, "ngoai", "Ngã chống tay, đau sưng cổ tay",
            rx=(PARACETAMOL, Rx("ibuprofen", 1, "viên", 3, 5, note="uống sau ăn no")),
            child_rx=(CHILD_PARACETAMOL,),
            admission=Admission("ngoai", 0.4, (3, 6), True, procedure=("179097002", "Open reduction of fracture "
                                                                             "of radius with internal fixation")),
            child_clinic="ngoai"),
    Problem("tibia-fracture", "S82.2", False, (16, 80), 2, "ngoai", "Tai nạn giao thông, đau, biến dạng cẳng chân",
            rx=(PARACETAMOL,), sex="male",
            admission=Admission("ngoai", 0.95, (5, 12), True, 0.05, (CEFTRIAXONE,),
                                ("447795002", "Open reduction and internal fixation of fracture of tibia"))),
    Problem("concussion", "S06.0", False, (6, 80), 3, "ngoai", "Tai nạn giao thông, đau đầu, buồn nôn",
            rx=(PARACETAMOL,), child_rx=(CHILD_PARACETAMOL,),
            admission=Admission("ngoai", 0.6, (2, 4), True, 0.1), child_clinic="ngoai"),
    Problem("head-wound", "S01", False, (3, 80), 3, "ngoai", "Vết thương vùng đầu chảy máu",
            rx=(Rx("cefalexin", 1, "viên", 2, 5), PARACETAMOL), child_rx=(CHILD_PARACETAMOL,),
            child_clinic="ngoai"),
    Problem("appendicitis", "K35.8", False, (8, 70), 3, "ngoai", "Đau hố chậu phải, sốt, buồn nôn", signs="fever",
            labs=("infection",),
            admission=Admission("ngoai", 1.0, (3, 6), True, 0.0,
                                (CEFTRIAXONE, Rx("metronidazole-iv", 1, "chai", 3, 5, route="iv",
                                                 note="truyền tĩnh mạch 30 phút")),
                                ("80146002", "Appendectomy")),
            child_clinic="ngoai"),
    Problem("delivery", "O80", False, (19, 40), 5, "san", "Thai 39 tuần, đau bụng chuyển dạ", labs=("pregnancy",),
            rx=(Rx("ferrous-folic", 1, "viên", 1, 30, note="uống sau ăn"),), sex="female",
            admission=Admission("san", 1.0, (2, 4), False, 0.0, (Rx("oxytocin", 10, "IU", 1, 1, route="im",
                                note="tiêm bắp ngay sau sổ thai"),), ("177184002", "Normal delivery procedure"))),
    Problem("stroke", "I63.9", False, (50, 95), 2.5, "noi-1", "Yếu nửa người, nói khó, khởi phát đột ngột",
            signs="hypertension", labs=("diabetes", "lipid", "infection"),
            rx=(Rx("aspirin", 1, "viên", 1, 30, note="uống sau ăn"), Rx("atorvastatin", 1, "viên", 1, 30)),
            admission=Admission("noi", 1.0, (7, 14), True, 0.25)),
    Problem("varicella", "B01.9", False, (1, 14), 3, "nhi", "Sốt nhẹ, nổi mụn nước toàn thân", signs="fever",
            rx=(CHILD_PARACETAMOL,)),
)
PROBLEM = {p.key: p for p in PROBLEMS}

# Problem-specific abnormal results, on top of normal values for the rest of each panel.
ABNORMAL: dict[str, dict[str, tuple[float, float] | str]] = {
    "diabetes": {"hba1c": (7.2, 10.8), "glucose-fasting": (7.4, 13.5), "glucose": (9.0, 16.0)},
    "dyslipidaemia": {"cholesterol-total": (5.6, 7.4), "ldl": (3.6, 4.9), "triglycerides": (1.9, 3.6)},
    "hypertension": {"cholesterol-total": (5.0, 6.6), "ldl": (3.0, 4.3)},
    "pneumonia": {"wbc": (12.5, 19.5), "crp": (35.0, 160.0)},
    "appendicitis": {"wbc": (12.0, 17.5), "crp": (20.0, 90.0)},
    "tuberculosis": {"crp": (12.0, 45.0), "hemoglobin": (100.0, 118.0)},
    "stroke": {"glucose": (7.0, 11.0), "cholesterol-total": (5.4, 7.0), "ldl": (3.5, 4.8)},
    "dengue": {"platelets": (28.0, 110.0), "wbc": (2.2, 3.8), "hematocrit": (47.0, 53.0)},
    "urinary-infection": {"urine-leukocytes": "2+", "urine-nitrite": "positive", "urine-blood": "1+"},
    "delivery": {"hemoglobin": (100.0, 118.0)},
}
PANELS: dict[str, tuple[str, ...]] = {  # lab order -> LOINC panel or single tests
    "lipid": ("lipid-panel",),
    "renal": ("creatinine", "urea", "potassium"),
    "diabetes": ("hba1c", "glucose-fasting", "creatinine"),
    "infection": ("cbc", "crp"),
    "dengue": ("cbc",),
    "urine": ("urinalysis",),
    "pregnancy": ("cbc",),
}
DECIMALS = {"wbc": 1, "rbc": 2, "hemoglobin": 0, "hematocrit": 1, "mcv": 0, "mch": 1, "mchc": 0, "platelets": 0,
            "hba1c": 1, "glucose": 1, "glucose-fasting": 1, "creatinine": 0, "urea": 1, "potassium": 1, "crp": 1,
            "cholesterol-total": 1, "ldl": 1, "hdl": 2, "triglycerides": 2, "urine-specific-gravity": 3,
            "urine-ph": 1, "urine-urobilinogen": 1, "sodium": 0, "chloride": 0, "calcium": 2, "co2-total": 0}
QUALITATIVE_NORMAL = {"urine-protein": "negative", "urine-glucose": "negative", "urine-ketones": "negative",
                      "urine-blood": "negative", "urine-leukocytes": "negative", "urine-nitrite": "negative",
                      "urine-bilirubin": "negative"}

# (SNOMED substance, display, category, reaction SNOMED, reaction display, drug keys it forbids)
ALLERGENS = (
    ("764146007", "Penicillin", "medication", "247472004", "Wheal",
     ("amoxicillin", "amoxicillin-suspension", "amoxicillin-clavulanate")),
    ("387458008", "Aspirin", "medication", "271807003", "Eruption of skin", ("aspirin", "ibuprofen")),
    ("387406002", "Sulfonamide", "medication", "271807003", "Eruption of skin", ()),
    ("44027008", "Seafood", "food", "247472004", "Wheal", ()),
    ("260147004", "House dust mite", "environment", "49727002", "Cough", ()),
)
# Substitutes for a drug the patient cannot take.
ALTERNATIVES = {"amoxicillin": "azithromycin", "amoxicillin-clavulanate": "azithromycin",
                "amoxicillin-suspension": "azithromycin-suspension", "ibuprofen": "paracetamol",
                "aspirin": "clopidogrel"}

# Expanded Programme on Immunization (Tiêm chủng mở rộng): (age in days, CVX, display, Vietnamese name, dose)
EPI = (
    (0, "08", "Hep B, adolescent or pediatric", "Viêm gan B sơ sinh", 1),
    (3, "19", "BCG", "Lao (BCG)", 1),
    (60, "102", "DTP-Hib-Hep B", "DPT-VGB-Hib (5 trong 1)", 1),
    (60, "178", "Non-US bivalent oral polio vaccine (types 1, 3)", "Bại liệt uống (bOPV)", 1),
    (90, "102", "DTP-Hib-Hep B", "DPT-VGB-Hib (5 trong 1)", 2),
    (90, "178", "Non-US bivalent oral polio vaccine (types 1, 3)", "Bại liệt uống (bOPV)", 2),
    (120, "102", "DTP-Hib-Hep B", "DPT-VGB-Hib (5 trong 1)", 3),
    (120, "178", "Non-US bivalent oral polio vaccine (types 1, 3)", "Bại liệt uống (bOPV)", 3),
    (150, "10", "IPV", "Bại liệt tiêm (IPV)", 1),
    (270, "05", "measles", "Sởi", 1),
    (365, "39", "Japanese Encephalitis SC", "Viêm não Nhật Bản", 1),
    (380, "39", "Japanese Encephalitis SC", "Viêm não Nhật Bản", 2),
    (540, "04", "M/R", "Sởi – Rubella", 1),
    (540, "01", "DTP", "DPT (bạch hầu, ho gà, uốn ván) nhắc lại", 4),
    (730, "39", "Japanese Encephalitis SC", "Viêm não Nhật Bản", 3),
)

# Sante's drug keys -> (INN as the formulary names it, strength it starts with, dose form)
DRUGS: dict[str, tuple[str, str, str]] = {
    "amlodipine": ("amlodipine", "5 mg", "tablet"),
    "metformin": ("metformin", "500 mg", "tablet"),
    "gliclazide": ("gliclazide", "30 mg", "modified-release-tablet"),
    "simvastatin": ("simvastatin", "20 mg", "tablet"),
    "atorvastatin": ("atorvastatin", "20 mg", "tablet"),
    "aspirin": ("acetylsalicylic acid", "100 mg", "tablet"),
    "clopidogrel": ("clopidogrel", "75 mg", "tablet"),
    "salbutamol-inhaler": ("salbutamol", "100 ug", "inhaler"),
    "budesonide-inhaler": ("budesonide", "200 ug", "inhaler"),
    "tb-fdc": ("ethambutol + isoniazid + pyrazinamide + rifampicin", "275 mg", "tablet"),
    "paracetamol": ("paracetamol", "500 mg", "tablet"),
    "paracetamol-syrup": ("paracetamol", "120 mg/5 mL", "oral-suspension"),
    "amoxicillin": ("amoxicillin", "500 mg", "capsule"),
    "amoxicillin-suspension": ("amoxicillin", "250 mg/5 mL", "oral-suspension"),
    "amoxicillin-clavulanate": ("amoxicillin + clavulanic acid", "875 mg", "tablet"),
    "azithromycin": ("azithromycin", "500 mg", "tablet"),
    "azithromycin-suspension": ("azithromycin", "200 mg/5 mL", "oral-suspension"),
    "cefalexin": ("cefalexin", "500 mg", "capsule"),
    "ceftriaxone": ("ceftriaxone", "1 g", "powder-for-injection"),
    "metronidazole-iv": ("metronidazole", "5 mg/mL", "infusion"),
    "ciprofloxacin": ("ciprofloxacin", "500 mg", "tablet"),
    "ors": ("oral rehydration salts", "", "oral-powder"),
    "zinc": ("zinc sulfate", "20 mg", "dispersible-tablet"),
    "omeprazole": ("omeprazole", "20 mg", "capsule"),
    "ibuprofen": ("ibuprofen", "400 mg", "tablet"),
    "ferrous-folic": ("ferrous sulfate + folic acid", "60 mg", "tablet"),
    "oxytocin": ("oxytocin", "10 IU", "injection"),
}


# -- context ------------------------------------------------------------------------------------------------------


class FormularyIndex:
    """The formulary's Medications by the demo's drug keys (see DRUGS)."""

    def __init__(self, medications: dict[str, dict[str, Any]]) -> None:
        self.by_key = medications  # drug key -> Medication resource (with its id)

    def reference(self, key: str) -> dict[str, str]:
        m = self.by_key[key]
        return ref("Medication", m["id"], medication_name(m))


def formulary() -> tuple[list[dict[str, Any]], FormularyIndex]:
    """Every Medication of the formulary, and those the demo prescribes by drug key."""
    from sante.clinical.formulary import medications, products

    meds = medications()
    by_id = {m["id"]: m for m in meds}
    index = {}
    for key, (name, strength, form) in DRUGS.items():
        product = next((p for p in products() if p.name == name and p.form == form
                        and p.strength.startswith(strength)), None)
        if product is None:
            raise KeyError(f"the formulary has no {name} {strength} {form} (drug {key!r})")
        index[key] = by_id[product.id]
    return meds, FormularyIndex(index)


def medication_name(m: dict[str, Any]) -> str:
    code = m.get("code") or {}
    return code.get("text") or next((c.get("display") for c in code.get("coding", []) if c.get("display")), m["id"])


@dataclass(slots=True)
class PatientRecord:
    index: int
    patient_id: str
    person: Person
    resources: list[dict[str, Any]]
    current_bed: str | None = None
    problems: list[str] = field(default_factory=list)
    queue: list[dict[str, Any]] = field(default_factory=list)  # today's queue Encounters (tickets set later)
    related_person: str | None = None  # id of a parent's RelatedPerson (children)


class CareContext:
    """What every patient's history is written against: the hospital, formulary, time and free beds."""

    def __init__(self, seed: int, now: datetime, hospital: Hospital, formulary: FormularyIndex) -> None:
        self.seed = seed
        self.now = now
        self.today = now.date()
        self.hospital = hospital
        self.formulary = formulary
        self.people = PeopleFactory(self.today)
        self.free_beds: dict[str, list[Bed]] = {}
        for b in hospital.beds:
            self.free_beds.setdefault(b.department, []).append(b)
        self.discharged_today: set[str] = set()

    def take_bed(self, rng: random.Random, department: str) -> Bed | None:
        free = self.free_beds.get(department) or []
        if not free:
            return None
        return free.pop(rng.randrange(len(free)))


def assign_queue_tickets(records: list[PatientRecord], day: date) -> None:
    """Number today's queue Encounters per clinic in arrival order: "<clinic prefix>-<nnn>"."""
    by_clinic: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        for enc in r.queue:
            by_clinic.setdefault(enc["_ticket_prefix"], []).append(enc)
    for prefix, encounters in sorted(by_clinic.items()):
        encounters.sort(key=lambda e: e["period"]["start"])
        for n, enc in enumerate(encounters, 1):
            enc.pop("_ticket_prefix")
            enc["identifier"] = [{"use": "usual", "type": {"text": "Số thứ tự khám"}, "system": QUEUE_TICKET_SYSTEM,
                                  "value": f"{prefix}-{n:03d}",
                                  "period": {"start": day.isoformat(), "end": day.isoformat()}}]


# -- one patient --------------------------------------------------------------------------------------------------


def fhir_time(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


class _Writer:
    """Builds one patient's resources, with ids drawn from the patient's own random source."""

    def __init__(self, ctx: CareContext, index: int) -> None:
        self.ctx = ctx
        self.h = ctx.hospital
        self.rng = random.Random(f"sante-demo:{ctx.seed}:patient:{index}")
        self._ids = random.Random(f"sante-demo:{ctx.seed}:ids:{index}")
        self.out: list[dict[str, Any]] = []
        self.index = index
        self.patient_id = self.new_id()
        self.allergy: tuple[str, ...] = ()  # drug keys the patient must not get
        self.chronic_keys: tuple[str, ...] = ()  # their abnormal results show at every lab order
        self.hypertensive = False
        self.parent: str | None = None  # a child's RelatedPerson id
        self.chronic_conditions: dict[str, dict[str, Any]] = {}  # problem key -> its Condition
        self.weight = 60.0
        self.height = 160.0

    def new_id(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def add(self, resource: dict[str, Any]) -> dict[str, Any]:
        resource["id"] = self.new_id()
        self.out.append(resource)
        return resource

    @property
    def patient(self) -> dict[str, str]:
        return {"reference": f"urn:uuid:{self.patient_id}", "display": self.person.name.text}

    # -- the person -------------------------------------------------------------------------------------------
    def make_patient(self, age: int | None, gender: str | None) -> Person:
        self.person = self.ctx.people.person(self.rng, age, gender)
        p = self.person
        age = p.age(self.ctx.today)
        self.height, self.weight = _body_size(self.rng, age, p.gender, 0.0)
        mrn = f"{(self.ctx.today.year - self.rng.randint(0, 3)) % 100:02d}{self.index + 1:06d}"
        patient: dict[str, Any] = {
            "resourceType": "Patient", "id": self.patient_id, "identifier": p.identifiers(mrn), "active": True,
            "name": [p.name.fhir()],
            "telecom": [{"system": "phone", "value": p.phone, "use": "mobile"}] if p.phone else [],
            "gender": p.gender, "birthDate": p.birth_date.isoformat(), "address": p.addresses(),
            "communication": [{"language": {"coding": [_coding("urn:ietf:bcp:47", "vi", "Vietnamese")],
                                            "text": "Tiếng Việt"}, "preferred": True}],
            "managingOrganization": self.h.organization,
        }
        if not p.phone:
            del patient["telecom"]
        if age >= 18:
            status = weighted(self.rng, (("M", 70), ("S", 15 if age < 35 else 4), ("W", 8 if age > 60 else 1)))
            patient["maritalStatus"] = {"coding": [_coding("http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                                                           status, {"M": "Married", "S": "Never Married",
                                                                    "W": "Widowed"}[status])]}
        self.out.append(patient)
        if age < 16:
            self.parent = self._parent(patient)
        return p

    def _parent(self, patient: dict[str, Any]) -> str:
        """The mother (or father) of a child, as a contact and a RelatedPerson."""
        mother = self.rng.random() < 0.75
        gender = "female" if mother else "male"
        child = self.person
        name = random_name(self.rng, gender, child.birth_date.year - self.rng.randint(22, 35))
        if not mother:  # children take their father's family name
            name = type(name)(child.name.family, name.middle, name.given)
        phone = random_phone(self.rng)
        code = "MTH" if mother else "FTH"
        relationship = {"coding": [_coding("http://terminology.hl7.org/CodeSystem/v3-RoleCode", code,
                                           "mother" if mother else "father")], "text": "Mẹ" if mother else "Bố"}
        patient["contact"] = [{"relationship": [relationship], "name": name.fhir(),
                               "telecom": [{"system": "phone", "value": phone, "use": "mobile"}], "gender": gender}]
        rp = self.add({"resourceType": "RelatedPerson", "active": True, "patient": self.patient,
                       "relationship": [relationship], "name": [name.fhir()],
                       "telecom": [{"system": "phone", "value": phone, "use": "mobile"}], "gender": gender,
                       "address": child.addresses()[:1]})
        return str(rp["id"])

    # -- clinical building blocks -----------------------------------------------------------------------------
    def condition(self, problem: Problem, encounter: dict[str, Any] | None, onset: datetime,
                  resolved: datetime | None, recorder: dict[str, str]) -> dict[str, Any]:
        category = "problem-list-item" if problem.chronic else "encounter-diagnosis"
        cond: dict[str, Any] = {
            "resourceType": "Condition",
            "clinicalStatus": {"coding": [_coding(CONDITION_CLINICAL, *(("resolved", "Resolved") if resolved else
                                                                         ("active", "Active")))]},
            "verificationStatus": {"coding": [_coding(CONDITION_VERIFICATION, "confirmed", "Confirmed")]},
            "category": [{"coding": [_coding(CONDITION_CATEGORY, category, "Problem List Item" if problem.chronic
                                             else "Encounter Diagnosis")]}],
            "code": condition_code(problem.icd10),
            "subject": self.patient,
        }
        if encounter is not None:
            cond["encounter"] = local(encounter)
        cond["onsetDateTime"] = fhir_time(onset)
        if resolved:
            cond["abatementDateTime"] = fhir_time(resolved)
        cond["recordedDate"] = fhir_time(max(onset, _time_of(encounter) if encounter else onset))
        cond["recorder"] = recorder
        return self.add(cond)

    def encounter(self, klass: str, status: str, start: datetime, end: datetime | None, problem_text: str,
                  physician: dict[str, str] | None, locations: list[dict[str, Any]]) -> dict[str, Any]:
        displays = {"AMB": "ambulatory", "IMP": "inpatient encounter"}
        enc: dict[str, Any] = {
            "resourceType": "Encounter", "status": status, "class": _coding(ACT_CODE, klass, displays[klass]),
            "type": [{"coding": [_coding(SNOMED, "11429006", "Consultation")] if klass == "AMB" else
                      [_coding(SNOMED, "32485007", "Hospital admission")],
                      "text": "Khám bệnh ngoại trú" if klass == "AMB" else "Điều trị nội trú"}],
            "subject": self.patient,
        }
        if physician:
            enc["participant"] = [{"type": [{"coding": [_coding(PARTICIPATION, "ATND", "attender")]}],
                                   "individual": physician}]
        enc["period"] = {"start": fhir_time(start), **({"end": fhir_time(end)} if end else {})}
        if end and klass == "IMP":
            days = max(1, (end.date() - start.date()).days)
            enc["length"] = {"value": days, "unit": "ngày", "system": UCUM, "code": "d"}
        enc["reasonCode"] = [{"text": problem_text}]
        enc["location"] = locations
        enc["serviceProvider"] = self.h.organization
        return self.add(enc)

    def vitals(self, problem: Problem | None, encounter: dict[str, Any], when: datetime,
               nurse: dict[str, str] | None, *, severity: float = 1.0, first: bool = False,
               treated: bool = False) -> None:
        """One set of vital signs, shaped by the problem (severity 0..1 fades as the patient recovers)."""
        rng = self.rng
        age = self.person.age(when.date())
        signs = problem.signs if problem else ""
        fever = signs in ("fever", "hypoxia") and severity > 0.3
        temp = round(rng.uniform(38.2, 39.6) if fever else rng.uniform(36.3, 37.2), 1)
        if age < 1:
            hr, rr = rng.randint(110, 150), rng.randint(30, 45)
        elif age < 6:
            hr, rr = rng.randint(90, 125), rng.randint(22, 32)
        elif age < 12:
            hr, rr = rng.randint(75, 110), rng.randint(18, 26)
        else:
            hr, rr = rng.randint(64, 92), rng.randint(14, 19)
        if fever:
            hr += int(10 * (temp - 37))
        spo2 = rng.randint(96, 99)
        if signs == "hypoxia" and severity > 0.3:
            spo2, rr = rng.randint(89, 94), rr + rng.randint(6, 12)
        elif signs == "respiratory" and severity > 0.6:
            spo2, rr = rng.randint(91, 95), rr + rng.randint(3, 8)
        enc_ref = local(encounter)
        t = fhir_time(when)

        def obs(kind: str, value: Any) -> None:
            o = loinc.vital_observation(kind, value, self.patient, enc_ref, when=t)
            if nurse:
                o["performer"] = [nurse]
            self.add(o)

        if age >= 6:
            obs("blood-pressure", self._blood_pressure(age, signs == "hypertension" or self.hypertensive, treated))
        obs("heart-rate", hr)
        obs("body-temperature", temp)
        if signs in ("hypoxia", "respiratory", "fever") or age < 6 or encounter["class"]["code"] == "IMP":
            obs("respiratory-rate", rr)
            obs("spo2", spo2)
        weight = round(self.weight + rng.uniform(-0.6, 0.6), 1)
        obs("body-weight", weight)
        if first:
            obs("body-height", round(self.height, 1 if age < 2 else 0))
            if age >= 18:
                obs("bmi", loinc.bmi(weight, self.height))

    def _blood_pressure(self, age: int, high: bool, treated: bool) -> tuple[int, int]:
        rng = self.rng
        if high and not treated:
            return rng.randint(145, 178), rng.randint(88, 106)
        if high:  # on treatment: mostly controlled
            return rng.randint(124, 148), rng.randint(74, 92)
        base = 100 + min(age, 70) * 0.4
        return int(base + rng.randint(-6, 14)), int(base * 0.62 + rng.randint(-4, 10))

    def labs(self, problem: Problem, encounter: dict[str, Any], when: datetime, technician: dict[str, str]) -> None:
        """The problem's lab orders: Observations with ranges and flags, and a DiagnosticReport per order."""
        rng = self.rng
        abnormal = dict(ABNORMAL.get(problem.key, {}))
        for other in self.chronic_keys:  # a diabetic's HbA1c stays high at every visit
            for k, v in ABNORMAL.get(other, {}).items():
                abnormal.setdefault(k, v)
        collected = when + timedelta(minutes=rng.randint(10, 40))
        issued = collected + timedelta(minutes=rng.randint(45, 150))
        enc_ref = local(encounter)
        for order in problem.labs:
            for test in PANELS[order]:
                term = loinc.term(test)
                members = loinc.panel_members(test) if term.kind == "panel" else [term]
                results = []
                for m in members:
                    value = self._lab_value(m, abnormal.get(m.key))
                    o = loinc.lab_observation(m.code, value, self.patient, enc_ref, when=fhir_time(collected),
                                              sex=self.person.gender if self.person.age(when.date()) >= 16 else None)
                    o["issued"] = fhir_time(issued)
                    o["performer"] = [technician]
                    results.append(self.add(o))
                self.add({
                    "resourceType": "DiagnosticReport", "status": "final",
                    "category": [{"coding": [_coding("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB",
                                                     "Laboratory")]}],
                    "code": {"coding": [_coding(loinc.LOINC_SYSTEM, term.code, term.display)], "text": term.vi},
                    "subject": self.patient, "encounter": enc_ref, "effectiveDateTime": fhir_time(collected),
                    "issued": fhir_time(issued), "performer": [ref("Organization", f"{HOSPITAL_ID}-xet-nghiem",
                                                                  "Khoa Xét nghiệm")],
                    "resultsInterpreter": [technician],
                    "result": [local(r) for r in results],
                })

    def _lab_value(self, t: loinc.LoincTerm, pattern: tuple[float, float] | str | None) -> float | str:
        if isinstance(pattern, str):
            return pattern
        if t.kind == "ordinal":
            return QUALITATIVE_NORMAL.get(t.key, "negative")
        if pattern is None:
            r = t.reference_range(self.person.gender)
            low = r.low if r and r.low is not None else 0.0
            high = r.high if r and r.high is not None else low * 2 or 1.0
            span = high - low
            value = self.rng.uniform(low + 0.15 * span, high - 0.15 * span)
        else:
            value = self.rng.uniform(*pattern)
        decimals = DECIMALS.get(t.key, 1)
        return round(value, decimals) if decimals else float(round(value))

    def prescribe(self, rx: Rx, encounter: dict[str, Any], when: datetime, physician: dict[str, str],
                  reason: dict[str, Any] | None, category: str) -> None:
        drug = rx.drug
        if drug in self.allergy:
            drug = ALTERNATIVES.get(drug, "paracetamol")
        if drug not in self.ctx.formulary.by_key:
            return
        end = when + timedelta(days=rx.days)
        verb = {"oral": "Uống", "inhalation": "Xịt", "iv": "Tiêm/truyền tĩnh mạch", "im": "Tiêm bắp",
                "sc": "Tiêm dưới da"}[rx.route]
        amount = rx.dose
        if rx.mg_per_kg and rx.mg_per_ml:  # by weight, to the half millilitre, at most the adult dose
            amount = min(20.0, max(2.5, round(self.weight * rx.mg_per_kg / rx.mg_per_ml * 2) / 2))
        dose = f"{amount:g} {rx.unit}/lần"
        text = (f"{verb} {dose}, {'tối đa ' if rx.as_needed else ''}{rx.per_day} lần/ngày"
                f"{', ' + rx.note if rx.note else ''}; trong {rx.days} ngày")
        dosage: dict[str, Any] = {
            "sequence": 1, "text": text,
            "timing": {"repeat": {"boundsDuration": {"value": rx.days, "unit": "ngày", "system": UCUM, "code": "d"},
                                  "frequency": rx.per_day, "period": 1, "periodUnit": "d"}},
        }
        if rx.as_needed:
            dosage["asNeededBoolean"] = True
        dosage["route"] = route_concept(rx.route)
        dosage["doseAndRate"] = [{"doseQuantity": _dose_quantity(amount, rx.unit)}]
        total = amount * rx.per_day * rx.days
        quantity: dict[str, Any]
        if rx.unit in ("ml", "nhát xịt"):  # dispensed as whole bottles or inhalers
            per_pack = 60.0 if rx.unit == "ml" else 200.0
            quantity = {"value": max(1, -(-int(total) // int(per_pack))), "unit": "lọ" if rx.unit == "ml" else "bình"}
        elif rx.unit in ("IU",):
            quantity = {"value": 1, "unit": "ống"}
        else:
            quantity = {"value": int(total) if total == int(total) else total, "unit": rx.unit}
        active = end > self.ctx.now and encounter["status"] in ("finished", "in-progress")
        request: dict[str, Any] = {
            "resourceType": "MedicationRequest", "status": "active" if active else "completed", "intent": "order",
            "category": [{"coding": [_coding("http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                                             category, category.title())]}],
            "medicationReference": self.ctx.formulary.reference(drug),
            "subject": self.patient, "encounter": local(encounter),
            "authoredOn": fhir_time(when), "requester": physician,
        }
        if reason is not None:
            request["reasonReference"] = [local(reason)]
        request["courseOfTherapyType"] = {"coding": [_coding(
            "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy",
            *(("continuous", "Continuous long term therapy") if rx.days >= 28 else
              ("acute", "Short course (acute) therapy")))]}
        request["dosageInstruction"] = [dosage]
        request["dispenseRequest"] = {
            "validityPeriod": {"start": when.date().isoformat(), "end": (when + timedelta(days=5)).date().isoformat()},
            "numberOfRepeatsAllowed": 0, "quantity": quantity,
            "expectedSupplyDuration": {"value": rx.days, "unit": "ngày", "system": UCUM, "code": "d"},
        }
        self.add(request)


def local(resource: dict[str, Any]) -> dict[str, str]:
    """A reference to another resource of the same patient's Bundle (by its fullUrl, urn:uuid:<id>)."""
    return {"reference": f"urn:uuid:{resource['id']}"}


def _dose_quantity(dose: float, unit: str) -> dict[str, Any]:
    q: dict[str, Any] = {"value": dose, "unit": unit}
    ucum = {"ml": "mL", "mg": "mg", "g": "g", "IU": "[iU]"}.get(unit)
    if ucum:
        q.update(system=UCUM, code=ucum)
    return q


def _time_of(resource: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(resource["period"]["start"])


def _body_size(rng: random.Random, age: int, gender: str, bmi_shift: float) -> tuple[float, float]:
    """(height cm, weight kg) for an age: rough Vietnamese growth and adult sizes."""
    if age < 1:
        months = rng.randint(1, 11)
        return 50 + 2.2 * months + rng.uniform(-2, 2), 3.2 + 0.6 * months + rng.uniform(-0.4, 0.4)
    if age < 16:
        height = 75 + 12 * min(age - 1, 1) + 6.2 * max(age - 2, 0) + rng.uniform(-5, 5)
        return height, max(9.0, (2 * age + 8 if age <= 10 else 3.1 * age) + rng.uniform(-2, 3))
    height = (165 if gender == "male" else 154) + rng.uniform(-6, 6) - (3 if age > 65 else 0)
    bmi = rng.uniform(18.8, 24.5) + bmi_shift
    return height, bmi * (height / 100) ** 2


def condition_code(icd10: str) -> dict[str, Any]:
    """The Condition.code for an ICD-10 code (sante.clinical.icd10)."""
    from sante.clinical.icd10 import condition_code as code

    return code(icd10)


# -- a patient's history ------------------------------------------------------------------------------------------


def _fits(p: Problem, age: int, gender: str) -> bool:
    return p.ages[0] <= age <= p.ages[1] and p.sex in (None, gender)


# Patients with a fixed profile: the portal account's patient (0) and the child whose parent has an account (1).
PORTAL_PATIENT, PORTAL_CHILD = 0, 1
_PROFILES: dict[int, dict[str, Any]] = {
    PORTAL_PATIENT: {"age": 58, "gender": "female", "chronic": ("hypertension", "diabetes"), "allergy": 0,
                     "admit": False, "queue": True},
    PORTAL_CHILD: {"age": 4, "gender": "male", "chronic": (), "admit": False, "queue": False},
}


def patient_record(ctx: CareContext, index: int) -> PatientRecord:
    """One patient and everything the hospital has recorded about them, deterministic for (seed, index)."""
    profile = _PROFILES.get(index, {})
    w = _Writer(ctx, index)
    person = w.make_patient(profile.get("age"), profile.get("gender"))
    rng = w.rng
    age = person.age(ctx.today)
    record = PatientRecord(index, w.patient_id, person, w.out)
    record.related_person = w.parent

    if "chronic" in profile:
        chronic = [PROBLEM[k] for k in profile["chronic"]]
    else:
        chronic = [p for p in PROBLEMS
                   if p.chronic and _fits(p, age, person.gender) and rng.random() < _chronic_odds(p, age)]
    if PROBLEM["diabetes"] in chronic and PROBLEM["hypertension"] not in chronic and rng.random() < 0.6:
        chronic.append(PROBLEM["hypertension"])  # they often come together
    w.chronic_keys = tuple(p.key for p in chronic)
    w.hypertensive = any(p.key == "hypertension" for p in chronic)
    if w.hypertensive or any(p.key == "diabetes" for p in chronic):
        w.height, w.weight = _body_size(rng, age, person.gender, 2.5)
    acute_pool = [p for p in PROBLEMS if not p.chronic and p.weight and _fits(p, age, person.gender)]
    n_acute = weighted(rng, ((0, 2 if chronic else 0), (1, 6), (2, 3), (3, 1)))
    acute = [weighted(rng, [(p, p.weight) for p in acute_pool]) for _ in range(n_acute)] if acute_pool else []
    if PROBLEM["copd"] in chronic:
        acute_pool.append(dataclasses.replace(PROBLEM["copd-exacerbation"], weight=6))
        if rng.random() < 0.4:
            acute.append(PROBLEM["copd-exacerbation"])

    if "allergy" in profile or rng.random() < ALLERGY_SHARE:
        allergen = ALLERGENS[profile["allergy"]] if "allergy" in profile else rng.choice(ALLERGENS)
        w.allergy = allergen[5]
        _allergy(w, allergen, ctx.now - timedelta(days=rng.randint(100, 2000)))

    tuberculosis = [p for p in chronic if p.key == "tuberculosis"]  # followed at its own clinic
    for course in ([p for p in chronic if p.key != "tuberculosis"], tuberculosis):
        if course:
            _chronic_course(w, course)
    for p in acute:
        _acute_episode(w, p, rng.randint(10, 720), current=False)
    if age < 16:
        _immunizations(w)
    admitted = False
    if profile.get("admit", rng.random() < CURRENT_ADMISSION_SHARE):
        options = [p for p in acute_pool if p.admission]
        if options:
            p = weighted(rng, [(p, p.weight) for p in options])
            record.current_bed = _acute_episode(w, p, 0, current=True)
            admitted = record.current_bed is not None
            acute.append(p)
    if not admitted and profile.get("queue", rng.random() < QUEUE_SHARE):
        record.queue.append(_queue_visit(w, chronic, acute_pool))
    record.problems = [p.key for p in chronic + acute]
    return record


def _chronic_odds(p: Problem, age: int) -> float:
    if p.key == "hypertension":
        return 0.15 if age < 50 else 0.35 if age < 65 else 0.5
    if p.key == "diabetes":
        return 0.07 if age < 50 else 0.16
    if p.key == "dyslipidaemia":
        return 0.12
    if p.key == "copd":
        return 0.03 if age < 60 else 0.08
    if p.key == "asthma":
        return 0.04
    return 0.01  # tuberculosis


def _physician_at(w: _Writer, clinic_key: str) -> dict[str, str]:
    clinic = w.h.clinics[clinic_key]
    staff = [s for s in w.h.staff if s.service == clinic.service]
    return w.rng.choice(staff).reference()


def _staff(w: _Writer, department: str, role: str) -> dict[str, str]:
    return w.rng.choice(w.h.staff_of(department, role)).reference()


def _clinic_for(w: _Writer, p: Problem) -> str:
    if w.person.age(w.ctx.today) < 16 and not p.chronic:
        return p.child_clinic
    return p.clinic


def _visit_time(rng: random.Random, day: date) -> datetime:
    return datetime(day.year, day.month, day.day, rng.randint(7, 10), rng.randrange(60), tzinfo=VIETNAM)


def _outpatient_visit(w: _Writer, clinic_key: str, start: datetime, reason: str,
                      status: str = "finished") -> tuple[dict[str, Any], dict[str, str]]:
    physician = _physician_at(w, clinic_key)
    clinic = w.h.clinics[clinic_key]
    end = start + timedelta(minutes=w.rng.randint(12, 35))
    enc = w.encounter("AMB", status, start, end if status == "finished" else None, reason,
                      physician if status in ("finished", "in-progress") else None,
                      [{"location": ref("Location", clinic.id, clinic.plan.name),
                        "status": {"finished": "completed", "in-progress": "active"}.get(status, "planned")}])
    return enc, physician


def _chronic_course(w: _Writer, problems: list[Problem]) -> None:
    """Chronic problems followed at one clinic: each diagnosed at some visit, then follow-ups every one to three
    months, each with the refills of every problem known by then and the labs that watch them."""
    rng, now = w.rng, w.ctx.now
    first = now - timedelta(days=rng.randint(90, 3 * 365))
    days = [first.date()]
    while True:
        nxt = days[-1] + timedelta(days=rng.choice((28, 30, 30, 60, 90)))
        if nxt >= now.date() - timedelta(days=3):
            break
        days.append(nxt)
    days = [days[0], *days[1:][-5:]]  # the first diagnosis and the latest follow-ups
    # the first problem is found at the first visit, the others at a later one
    found_at = {p.key: 0 if n == 0 else rng.randrange(len(days)) for n, p in enumerate(problems)}
    nurse = _staff(w, "kham-benh", "nurse")
    technician = _staff(w, "xet-nghiem", "lab_technician")
    conditions = w.chronic_conditions
    clinic = problems[0].clinic
    for n, day in enumerate(days):
        start = _visit_time(rng, day)
        new = [p for p in problems if found_at[p.key] == n]
        reason = new[0].complaint if new else "Tái khám định kỳ"
        enc, physician = _outpatient_visit(w, clinic, start, reason)
        w.vitals(new[0] if new else problems[0], enc, start + timedelta(minutes=3), nurse, first=n == 0,
                 treated=n > 0)
        for p in new:
            conditions[p.key] = w.condition(p, enc, start - timedelta(days=rng.randint(3, 60)), None, physician)
        known = [p for p in problems if p.key in conditions]
        for p in known:
            if p.labs and (p in new or n == len(days) - 1) and rng.random() < p.lab_share:
                w.labs(p, enc, start, technician)
        _diagnose(enc, [conditions[p.key] for p in known])
        for p in known:
            for rx in p.rx:
                w.prescribe(rx, enc, start + timedelta(minutes=20), physician, conditions[p.key], "outpatient")


def _acute_episode(w: _Writer, p: Problem, days_ago: int, *, current: bool) -> str | None:
    """A visit for an acute problem, admitted when it calls for it; returns the bed of a current admission."""
    rng, ctx = w.rng, w.ctx
    day = ctx.today - timedelta(days=days_ago)
    if p.season and not current:
        while day.month not in p.season:
            day -= timedelta(days=30)
    age = w.person.age(day)
    admit = p.admission is not None and (current or rng.random() < p.admission.share)
    technician = _staff(w, "xet-nghiem", "lab_technician")
    rx_list = p.child_rx if p.child_rx is not None and age < 12 else p.rx
    if not admit:
        start = _visit_time(rng, day)
        enc, physician = _outpatient_visit(w, _clinic_for(w, p), start, p.complaint)
        w.vitals(p, enc, start + timedelta(minutes=3), _staff(w, "kham-benh", "nurse"), first=True)
        onset, recovered = start - timedelta(days=rng.randint(1, 4)), start + timedelta(days=rng.randint(5, 14))
        cond = w.condition(p, enc, onset, recovered, physician)
        if p.labs and rng.random() < p.lab_share:
            w.labs(p, enc, start, technician)
        _diagnose(enc, [cond])
        for rx in rx_list:
            w.prescribe(rx, enc, start + timedelta(minutes=20), physician, cond, "outpatient")
        return None
    assert p.admission is not None
    adm = p.admission
    department = "nhi" if age < 16 and adm.department in ("noi", "nhi") else adm.department
    if rng.random() < adm.icu_share:
        department = "hstc"
    los = rng.randint(*adm.los)
    if current:
        elapsed = timedelta(hours=rng.randint(2, 20)) if rng.random() < 0.15 else timedelta(
            days=rng.randint(1, max(1, los - 1)), hours=rng.randint(0, 12))
        start = ctx.now - elapsed
        end = None
        bed = ctx.take_bed(rng, department)
        if bed is None:  # the department is full: this one went home already
            current, start = False, ctx.now - timedelta(days=los + rng.randint(3, 30))
            end = start + timedelta(days=los, hours=rng.randint(0, 6))
    else:
        start = _visit_time(rng, day) + timedelta(hours=rng.randint(0, 10))
        end = start + timedelta(days=los, hours=rng.randint(0, 6))
        bed = None
    if bed is None:
        bed = rng.choice(w.h.beds_of(department))
    if end is not None and end.date() == ctx.today and end < ctx.now:
        ctx.discharged_today.add(bed.id)
    physician = _staff(w, department, "physician")
    nurse = _staff(w, department, "nurse")
    locations = []
    in_er = timedelta(hours=rng.randint(2, 5))
    still_in_er = current and adm.via_emergency and ctx.now - start < in_er
    if adm.via_emergency:
        er_bed = ctx.take_bed(rng, "cap-cuu") if still_in_er else rng.choice(w.h.beds_of("cap-cuu"))
        if er_bed is None:
            still_in_er, er_bed = False, rng.choice(w.h.beds_of("cap-cuu"))
        if still_in_er:
            ctx.free_beds.setdefault(department, []).append(bed)  # keep the ward bed free: not yet transferred
            bed = er_bed
        locations += _bed_locations(w, er_bed, start, None if still_in_er else start + in_er,
                                    "active" if still_in_er else "completed")
    if not still_in_er:
        ward_start = start + in_er if adm.via_emergency else start
        locations += _bed_locations(w, bed, ward_start, end, "active" if current else "completed")
    enc = w.encounter("IMP", "in-progress" if current else "finished", start, end, p.complaint, physician, locations)
    enc["hospitalization"] = {
        "admitSource": {"coding": [_coding("http://terminology.hl7.org/CodeSystem/admit-source",
                                           *(("emd", "From accident/emergency department") if adm.via_emergency
                                             else ("outp", "From outpatient department")))]},
    }
    if end:
        enc["hospitalization"]["dischargeDisposition"] = {"coding": [_coding(
            "http://terminology.hl7.org/CodeSystem/discharge-disposition", "home", "Home")], "text": "Ra viện về nhà"}
    cond = w.condition(p, enc, start - timedelta(days=rng.randint(0, 3)), end + timedelta(days=7) if end else None,
                       physician)
    _diagnose(enc, [cond], "AD")
    # vital signs: on admission, then every day or two, and on the last day
    last = end or ctx.now
    t = start + timedelta(minutes=15)
    first = True
    total = max((last - start).total_seconds(), 1.0)
    while t < last:
        severity = 1.0 - (t - start).total_seconds() / total if end else max(0.4, 1.0 - (t - start).days / los)
        w.vitals(p, enc, t, nurse, severity=severity, first=first, treated=True)
        first = False
        t += timedelta(days=1 if (last - t).days < 3 else 2, hours=rng.randint(-2, 2))
    if p.labs:
        w.labs(p, enc, start + timedelta(minutes=40), technician)
    for rx in adm.inpatient_rx:
        w.prescribe(rx, enc, start + timedelta(hours=1), physician, cond, "inpatient")
    if adm.procedure and (end or ctx.now - start > timedelta(hours=6)):
        performed = start + timedelta(hours=rng.randint(2, 6))
        w.add({"resourceType": "Procedure", "status": "completed",
               "code": {"coding": [_coding(SNOMED, *adm.procedure)]}, "subject": w.patient,
               "encounter": local(enc),
               "performedPeriod": {"start": fhir_time(performed),
                                   "end": fhir_time(performed + timedelta(minutes=rng.randint(40, 120)))},
               "performer": [{"actor": physician}], "location": ref("Location", w.h.department_location(department)),
               "reasonReference": [local(cond)]})
    if end:
        for rx in rx_list:
            w.prescribe(rx, enc, end - timedelta(hours=1), physician, cond, "discharge")
    return bed.id if current else None


def _bed_locations(w: _Writer, bed: Bed, start: datetime, end: datetime | None, status: str) -> list[dict[str, Any]]:
    period = {"start": fhir_time(start), **({"end": fhir_time(end)} if end else {})}
    return [{"location": ref("Location", loc, w.h.location_name(loc)), "status": status, "period": period,
             "physicalType": {"coding": [_coding("http://terminology.hl7.org/CodeSystem/location-physical-type",
                                                 kind, display)]}}
            for loc, kind, display in ((bed.ward, "wa", "Ward"), (bed.room, "ro", "Room"), (bed.id, "bd", "Bed"))]


def _diagnose(enc: dict[str, Any], conditions: list[dict[str, Any]], use: str = "billing") -> None:
    """The encounter's diagnoses, the main one first (AD: on admission; billing: what the visit is claimed for)."""
    display = {"AD": "Admission diagnosis", "billing": "Billing"}[use]
    enc["diagnosis"] = [{"condition": local(cond), "use": {"coding": [_coding(DIAGNOSIS_ROLE, use, display)]},
                         "rank": rank} for rank, cond in enumerate(conditions, 1)]


def _queue_visit(w: _Writer, chronic: list[Problem], acute_pool: list[Problem]) -> dict[str, Any]:
    """A visit today: waiting, triaged, with the doctor, or done, by how long ago the patient arrived."""
    rng, now = w.rng, w.ctx.now
    waited = timedelta(minutes=rng.randint(3, 200))
    arrival = now - waited
    if chronic and rng.random() < 0.6:
        p, reason = chronic[0], "Tái khám định kỳ"
    else:
        options = [p for p in acute_pool if not p.admission or p.admission.share < 1]
        p = weighted(rng, [(p, p.weight) for p in options])
        reason = p.complaint
    if waited > timedelta(minutes=120):
        status = "finished"
    elif waited > timedelta(minutes=75):
        status = "in-progress"
    elif waited > timedelta(minutes=25):
        status = "triaged"
    else:
        status = "arrived"
    clinic_key = _clinic_for(w, p)
    enc, physician = _outpatient_visit(w, clinic_key, arrival, reason, status)
    triage = arrival + timedelta(minutes=min(waited.seconds // 60, 15))
    history: list[tuple[str, datetime, datetime | None]] = [("arrived", arrival,
                                                             None if status == "arrived" else triage)]
    if status != "arrived":
        history.append(("triaged", triage, triage + timedelta(minutes=40) if status != "triaged" else None))
        w.vitals(p, enc, triage + timedelta(minutes=2), _staff(w, "kham-benh", "nurse"), first=True,
                 treated=p.chronic)
    if status in ("in-progress", "finished"):
        seen = triage + timedelta(minutes=40)
        history.append(("in-progress", seen, seen + timedelta(minutes=20) if status == "finished" else None))
    enc["statusHistory"] = [{"status": s, "period": {"start": fhir_time(a), **({"end": fhir_time(b)} if b else {})}}
                            for s, a, b in history]
    if status == "finished":
        end = history[-1][2]
        assert end is not None
        enc["period"]["end"] = fhir_time(end)
        if p.chronic:  # a follow-up: the refills of every chronic problem
            treated = [(w.chronic_conditions[c.key], c.rx) for c in chronic if c.key in w.chronic_conditions]
        else:
            cond = w.condition(p, enc, arrival - timedelta(days=rng.randint(1, 3)), None, physician)
            treated = [(cond, p.child_rx if p.child_rx is not None and w.person.age(w.ctx.today) < 12 else p.rx)]
        _diagnose(enc, [cond for cond, _ in treated])
        for cond, rx_list in treated:
            for rx in rx_list:
                w.prescribe(rx, enc, end - timedelta(minutes=5), physician, cond, "outpatient")
    enc["_ticket_prefix"] = w.h.clinics[clinic_key].plan.ticket
    return enc


def _allergy(w: _Writer, allergen: tuple[Any, ...], recorded: datetime) -> None:
    code, display, category, reaction, reaction_display, _drugs = allergen
    w.add({
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {"coding": [_coding("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                                              "active", "Active")]},
        "verificationStatus": {"coding": [_coding(
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "confirmed", "Confirmed")]},
        "type": "allergy", "category": [category], "criticality": "high" if category == "medication" else "low",
        "code": {"coding": [_coding(SNOMED, code, display)], "text": _ALLERGEN_VI[code]},
        "patient": w.patient, "recordedDate": fhir_time(recorded),
        "reaction": [{"manifestation": [{"coding": [_coding(SNOMED, reaction, reaction_display)],
                                         "text": _REACTION_VI[reaction]}]}],
    })


_ALLERGEN_VI = {"764146007": "Penicillin", "387458008": "Aspirin", "387406002": "Sulfamid", "44027008": "Hải sản",
                "260147004": "Mạt bụi nhà"}
_REACTION_VI = {"247472004": "Nổi mề đay", "271807003": "Phát ban", "49727002": "Ho"}


def _immunizations(w: _Writer) -> None:
    """The Expanded Programme on Immunization doses due by today, given at the commune health station."""
    rng, birth = w.rng, w.person.birth_date
    from sante.clinical import admin_units

    commune = admin_units.commune(w.person.commune)
    station = f"Trạm Y tế {commune.name}" if commune else "Trạm Y tế"
    for days, cvx, display, vi, dose in EPI:
        when = birth + timedelta(days=days + (rng.randint(0, 10) if days else 0))
        if when >= w.ctx.today or rng.random() < 0.04:  # not due yet, or missed
            continue
        w.add({"resourceType": "Immunization", "status": "completed",
               "vaccineCode": {"coding": [_coding(CVX, cvx, display)], "text": vi}, "patient": w.patient,
               "occurrenceDateTime": when.isoformat(), "primarySource": False,
               "reportOrigin": {"text": "Sổ tiêm chủng"}, "location": {"display": station},
               "lotNumber": f"{cvx}{rng.randint(1000, 9999)}{chr(65 + rng.randrange(26))}",
               "protocolApplied": [{"series": "Tiêm chủng mở rộng", "doseNumberPositiveInt": dose}]})


def records(ctx: CareContext, count: int) -> Iterator[PatientRecord]:
    """The patients 0..count-1, in order."""
    for i in range(count):
        yield patient_record(ctx, i)

