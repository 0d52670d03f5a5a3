"""The starter formulary: products from the WHO Model List of Essential Medicines (23rd list, 2023, core list).

Data: `data/formulary/who-eml-2023.tsv`, written by the project (see its README): one row per product (INN,
strength, dose form) with its ATC code, route and, where the spelling differs, its Vietnamese name. Each product
becomes a FHIR R4 Medication (`medications()`) with a stable id `eml-<slug>`, the ATC code, the dose form
(HL7 v3 orderableDrugForm where that code system has one) and each ingredient's strength as a Ratio of UCUM
quantities: per tablet/capsule/vial as `{tablet}` etc., a percentage as g per 100 mL (or per 100 g for creams,
ointments and gels).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from sante.clinical.reference_data import read_csv
from sante.store.index_values import fold

ATC_SYSTEM = "http://www.whocc.no/atc"
UCUM_SYSTEM = "http://unitsofmeasure.org"
FORM_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm"
ROUTE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration"

# form key -> (v3 orderableDrugForm code or None, English, Vietnamese, unit of one piece for per-piece strengths)
FORMS: dict[str, tuple[str | None, str, str, str]] = {
    "tablet": ("TAB", "Tablet", "Viên nén", "{tablet}"),
    "chewable-tablet": ("CHEWTAB", "Chewable Tablet", "Viên nhai", "{tablet}"),
    "dispersible-tablet": (None, "Dispersible tablet", "Viên phân tán", "{tablet}"),
    "enteric-tablet": ("ECTAB", "Enteric Coated Tablet", "Viên bao tan trong ruột", "{tablet}"),
    "modified-release-tablet": ("ERTAB", "Extended Release Tablet", "Viên giải phóng kéo dài", "{tablet}"),
    "sublingual-tablet": ("SLTAB", "Sublingual Tablet", "Viên ngậm dưới lưỡi", "{tablet}"),
    "vaginal-tablet": ("VAGTAB", "Vaginal Tablet", "Viên đặt âm đạo", "{tablet}"),
    "capsule": ("CAP", "Capsule", "Viên nang", "{capsule}"),
    "chewing-gum": ("GUM", "ChewingGum", "Kẹo cao su", "{piece}"),
    "oral-solution": ("ORALSOL", "Oral Solution", "Dung dịch uống", "{dose}"),
    "oral-suspension": ("ORSUSP", "Oral Suspension", "Hỗn dịch uống", "{dose}"),
    "oral-drops": ("ORDROP", "Oral Drops", "Dung dịch nhỏ giọt uống", "{dose}"),
    "oral-powder": ("POWD", "Powder", "Thuốc bột uống", "{sachet}"),
    "granules": ("GRAN", "Granules", "Thuốc cốm", "{sachet}"),
    "injection": (None, "Injection", "Thuốc tiêm", "{vial}"),
    "powder-for-injection": (None, "Powder for injection", "Bột pha tiêm", "{vial}"),
    "infusion": ("IVSOL", "Intravenous Solution", "Dung dịch tiêm truyền", "{dose}"),
    "implant": (None, "Implant", "Que cấy", "{implant}"),
    "inhaler": ("MDINHL", "Metered Dose Inhaler", "Bình xịt định liều", "{actuation}"),
    "dry-powder-inhaler": ("INHLPWD", "Inhalant Powder", "Bột hít", "{actuation}"),
    "nebuliser-solution": ("INHLSOL", "Inhalant Solution", "Dung dịch khí dung", "{dose}"),
    "inhalation-gas": ("GASINHL", "Gas for Inhalation", "Khí dùng để hít", "{dose}"),
    "inhalation-liquid": (None, "Inhalation vapour, liquid", "Chất lỏng gây mê đường hô hấp", "{dose}"),
    "intratracheal-suspension": (None, "Intratracheal suspension", "Hỗn dịch bơm nội khí quản", "{dose}"),
    "cream": ("CRM", "Cream", "Kem bôi da", "{dose}"),
    "vaginal-cream": ("VAGCRM", "Vaginal Cream", "Kem bôi âm đạo", "{dose}"),
    "ointment": ("OINT", "Ointment", "Thuốc mỡ", "{dose}"),
    "gel": ("GEL", "Gel", "Gel", "{dose}"),
    "lotion": ("LTN", "Lotion", "Dung dịch dùng ngoài (lotion)", "{dose}"),
    "shampoo": ("SHMP", "Shampoo", "Dầu gội", "{dose}"),
    "topical-solution": ("TOPSOL", "Topical Solution", "Dung dịch dùng ngoài", "{dose}"),
    "eye-drops": ("OPDROP", "Ophthalmic Drops", "Thuốc nhỏ mắt", "{dose}"),
    "eye-ointment": ("OPOINT", "Ophthalmic Ointment", "Thuốc mỡ tra mắt", "{dose}"),
    "ear-drops": ("OTDROP", "Otic Drops", "Thuốc nhỏ tai", "{dose}"),
    "nasal-spray": ("NASSPRY", "Nasal Spray", "Thuốc xịt mũi", "{actuation}"),
    "suppository": ("RECSUPP", "Rectal Suppository", "Viên đặt trực tràng", "{suppository}"),
    "rectal-solution": ("RECSOL", "Rectal Solution", "Dung dịch thụt trực tràng", "{dose}"),
    "patch": ("TPATCH", "Transdermal Patch", "Miếng dán qua da", "{patch}"),
}
_SEMISOLID = {"cream", "vaginal-cream", "ointment", "gel", "eye-ointment"}

# route key -> (v3 RouteOfAdministration code or None, English, Vietnamese)
ROUTES: dict[str, tuple[str | None, str, str]] = {
    "oral": ("PO", "Swallow, oral", "Uống"),
    "sublingual": ("SL", "Dissolve, sublingual", "Ngậm dưới lưỡi"),
    "iv": ("IV", "Infusion, intravenous", "Tiêm/truyền tĩnh mạch"),
    "im": ("IM", "Injection, intramuscular", "Tiêm bắp"),
    "sc": ("SQ", "Injection, subcutaneous", "Tiêm dưới da"),
    "intrathecal": ("ITINJ", "Injection, intrathecal", "Tiêm tủy sống"),
    "infiltration": (None, "Local infiltration", "Gây tê thấm"),
    "intratracheal": (None, "Intratracheal", "Bơm nội khí quản"),
    "inhalation": ("IPINHL", "Inhalation, respiratory", "Hít/khí dung"),
    "topical": ("TOPICAL", "Topical", "Dùng ngoài"),
    "ophthalmic": ("OPTHALTA", "Topical application, ophthalmic", "Nhỏ/tra mắt"),
    "otic": ("OT", "Instillation, otic", "Nhỏ tai"),
    "nasal": ("NASAL", "Topical application, nasal", "Xịt mũi"),
    "rectal": ("PR", "Insertion, rectal", "Đặt/thụt trực tràng"),
    "vaginal": ("VAGINSI", "Insertion, vaginal", "Đặt âm đạo"),
    "transdermal": ("TRNSDERM", "Transdermal", "Dán qua da"),
}

_UCUM = {"IU": "[iU]", "ug": "ug", "mg": "mg", "g": "g", "mL": "mL", "L": "L", "h": "h"}
_UNIT_DISPLAY = {"[iU]": "IU", "ug": "µg"}
_AMOUNT = re.compile(r"^(\d+(?:\.\d+)?)\s*(%|[A-Za-z]+)(?:/(\d+(?:\.\d+)?)?\s*(\{[a-z]+\}|[A-Za-z]+))?$")
_ATC_QUERY = re.compile(r"^[A-Z](\d{2}([A-Z]([A-Z](\d{1,2})?)?)?)?$")


@dataclass(frozen=True, slots=True)
class Strength:
    """Amount of one ingredient: numerator per denominator (UCUM codes)."""

    numerator: float
    numerator_unit: str
    denominator: float
    denominator_unit: str
    text: str  # as written: "500 mg", "125 mg/5 mL", "5%"


@dataclass(frozen=True, slots=True)
class Ingredient:
    name: str  # INN
    strength: Strength | None


@dataclass(frozen=True, slots=True)
class Product:
    """One formulary product: a medicine in one strength and dose form."""

    id: str  # "eml-amoxicillin-500mg-capsule"
    name: str  # product name, usually the INN ("amoxicillin + clavulanic acid")
    vi: str | None  # Vietnamese name where its spelling differs
    ingredients: tuple[Ingredient, ...]
    atc: str
    strength: str  # as written: "500 mg + 125 mg"
    form: str  # a FORMS key
    route: str  # a ROUTES key
    section: str  # EML section, e.g. "6.2.1 Antibacterials, Access group"

    @property
    def label(self) -> str:
        """Name, strength and form, in the Vietnamese spelling: "Amoxicilin 500 mg, viên nang"."""
        name = self.vi or self.name
        parts = [name[:1].upper() + name[1:]]
        if self.strength:
            parts.append(self.strength.replace("ug", "µg").replace(" {actuation}", " liều"))
        return f"{' '.join(parts)}, {FORMS[self.form][2].lower()}"


def _number(text: str) -> float:
    value = float(text)
    return int(value) if value.is_integer() else value


def _strength(text: str, form: str) -> Strength:
    m = _AMOUNT.match(text.strip())
    if m is None:
        raise ValueError(f"unreadable strength {text!r}")
    value, unit, per_value, per_unit = m.groups()
    if unit == "%":
        denominator_unit = "g" if form in _SEMISOLID else "mL"
        return Strength(_number(value), "g", 100, denominator_unit, text)
    numerator_unit = _UCUM[unit]
    if per_unit is None:
        return Strength(_number(value), numerator_unit, 1, FORMS[form][3], text)
    per_unit = per_unit if per_unit.startswith("{") else _UCUM[per_unit]
    return Strength(_number(value), numerator_unit, _number(per_value or "1"), per_unit, text)


def _slug(*parts: str) -> str:
    text = "-".join(fold(p).replace("%", "pct").replace("{actuation}", "dose") for p in parts if p)
    text = re.sub(r"(\d) (?=[a-z])", r"\1", text)  # "500 mg" -> "500mg"
    slug = re.sub(r"[^a-z0-9.]+", "-", text).strip("-")
    if len(slug) > 56:  # FHIR ids are at most 64 characters: shorten, keeping it unique and stable
        digest = hashlib.sha1(slug.encode()).hexdigest()[:6]
        slug = f"{slug[:49].rstrip('-.')}-{digest}"
    return slug


@cache
def _products() -> tuple[Product, ...]:
    out = []
    for r in read_csv("formulary/who-eml-2023.tsv", delimiter="\t"):
        names = [n.strip() for n in r["ingredients"].split(" + ")]
        amounts = [s.strip() for s in r["strength"].split(" + ")] if r["strength"] else []
        if amounts and len(amounts) != len(names):
            raise ValueError(f"{r['name']}: {len(names)} ingredients but {len(amounts)} strengths")
        ingredients = tuple(
            Ingredient(n, _strength(amounts[i], r["form"]) if amounts else None) for i, n in enumerate(names)
        )
        pid = "eml-" + _slug(r["name"], r["strength"], r["form"])
        out.append(Product(pid, r["name"], r["vi"] or None, ingredients, r["atc"], r["strength"], r["form"],
                           r["route"], r["section"]))  # fmt: skip
    return tuple(out)


@cache
def _by_id() -> dict[str, Product]:
    return {p.id: p for p in _products()}


def products() -> list[Product]:
    """All products, in the order of the list's sections."""
    return list(_products())


def product(product_id: str) -> Product | None:
    """The product with this id ("eml-...") or None."""
    return _by_id().get(product_id)


def search(query: str, limit: int = 20) -> list[Product]:
    """Products matching a name (INN or Vietnamese, accent- and case-insensitive; every word must start a word
    of the name) or an ATC code prefix ("J01C"). Ranked: ATC or whole-name matches, then name prefixes, then
    word matches; within a rank in list order."""
    q = fold(query)
    if not q or limit <= 0:
        return []
    atc = q.upper().replace(" ", "")
    is_atc = _ATC_QUERY.match(atc) is not None
    tokens = q.split(" ")
    ranked: list[tuple[int, int, Product]] = []
    for i, p in enumerate(_products()):
        names = [fold(n) for n in (p.name, p.vi or "", *(x.name for x in p.ingredients)) if n]
        if is_atc and p.atc.startswith(atc):
            rank = 0 if p.atc == atc else 1
        elif q in names:
            rank = 0
        elif any(n.startswith(q) for n in names):
            rank = 1
        elif all(any(w.startswith(t) for n in names for w in re.split(r"[ ,()+-]+", n)) for t in tokens):
            rank = 2
        else:
            continue
        ranked.append((rank, i, p))
    ranked.sort(key=lambda t: t[:2])
    return [t[2] for t in ranked[:limit]]


# -- FHIR ---------------------------------------------------------------------------------------------------------


def _quantity(value: float, unit: str) -> dict[str, Any]:
    display = _UNIT_DISPLAY.get(unit) or unit.strip("{}")
    return {"value": value, "unit": display, "system": UCUM_SYSTEM, "code": unit}


def form_concept(form: str) -> dict[str, Any]:
    """CodeableConcept for a dose form key (v3 orderableDrugForm coding where one exists; Vietnamese text)."""
    code, english, vietnamese, _ = FORMS[form]
    concept: dict[str, Any] = {}
    if code:
        concept["coding"] = [{"system": FORM_SYSTEM, "code": code, "display": english}]
    concept["text"] = vietnamese
    return concept


def route_concept(route: str) -> dict[str, Any]:
    """CodeableConcept for a route key, for Dosage.route (v3 RouteOfAdministration where one exists)."""
    code, english, vietnamese = ROUTES[route]
    concept: dict[str, Any] = {}
    if code:
        concept["coding"] = [{"system": ROUTE_SYSTEM, "code": code, "display": english}]
    concept["text"] = vietnamese
    return concept


def to_medication(p: Product) -> dict[str, Any]:
    """The FHIR R4 Medication for a product."""
    ingredients = []
    for ing in p.ingredients:
        entry: dict[str, Any] = {"itemCodeableConcept": {"text": ing.name}, "isActive": True}
        if ing.strength is not None:
            s = ing.strength
            entry["strength"] = {
                "numerator": _quantity(s.numerator, s.numerator_unit),
                "denominator": _quantity(s.denominator, s.denominator_unit),
            }
        ingredients.append(entry)
    return {
        "resourceType": "Medication",
        "id": p.id,
        # no display: the ATC index's own names ("amoxicillin and beta-lactamase inhibitor") are not copied
        "code": {"coding": [{"system": ATC_SYSTEM, "code": p.atc}], "text": p.label},
        "status": "active",
        "form": form_concept(p.form),
        "ingredient": ingredients,
    }


def medications() -> list[dict[str, Any]]:
    """Every product as a FHIR R4 Medication resource (fresh dicts: callers may modify them)."""
    return [to_medication(p) for p in _products()]


def medication(product_id: str) -> dict[str, Any] | None:
    """The Medication for one product id, or None."""
    p = product(product_id)
    return to_medication(p) if p else None
