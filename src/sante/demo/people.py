"""Synthetic Vietnamese people: names, birth dates, citizen IDs, insurance cards, phones and addresses.

Family names follow their real frequencies (Nguyễn about 38%, then Trần, Lê, Phạm, Hoàng/Huỳnh, Phan, Vũ/Võ,
...); middle names depend on sex and generation (Văn and Thị are the rule for older people, rarer for the
young); a name is written in Vietnamese order, family name first. The CCCD encodes the province where the birth
was registered (a pre-2025 province code), the century and sex, and the birth year; most people, not all, hold a
health-insurance (BHYT) card whose beneficiary group fits their age. Addresses are on real communes after the
2025 reform, weighted toward the hospital's province; some people also keep their pre-2025 (three-level)
address, as older records do.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from typing import Any, TypeVar

from sante.clinical import admin_units
from sante.clinical.identifiers import fhir_identifier
from sante.clinical.reference_data import read_csv

T = TypeVar("T")

# Share of the population in percent (census-based estimates); the rest goes to rarer names below.
FAMILY_NAMES: tuple[tuple[str, float], ...] = (
    ("Nguyễn", 38.4), ("Trần", 12.1), ("Lê", 9.5), ("Phạm", 7.0), ("Hoàng", 3.1), ("Huỳnh", 2.0), ("Phan", 4.5),
    ("Vũ", 2.2), ("Võ", 1.7), ("Đặng", 2.1), ("Bùi", 2.0), ("Đỗ", 1.4), ("Hồ", 1.3), ("Ngô", 1.3), ("Dương", 1.0),
    ("Lý", 0.5), ("Đinh", 0.6), ("Trương", 0.6), ("Đào", 0.5), ("Cao", 0.4), ("Mai", 0.4), ("Hà", 0.4),
    ("Lương", 0.4), ("Lâm", 0.3), ("Tạ", 0.2), ("Chu", 0.2), ("Thái", 0.2), ("Kiều", 0.1), ("Lưu", 0.2),
    ("Trịnh", 0.3), ("Tô", 0.1), ("Nghiêm", 0.1), ("Văn", 0.1), ("Quách", 0.1),
)  # fmt: skip

# Middle names: (name, weight) for people born before 1980 ("older") and since ("younger").
MIDDLE_NAMES: dict[tuple[str, str], tuple[tuple[str, float], ...]] = {
    ("male", "older"): (("Văn", 60), ("Đức", 8), ("Hữu", 7), ("Xuân", 5), ("Công", 5), ("Đình", 6), ("Quang", 4),
                        ("Ngọc", 3), ("Bá", 2)),
    ("male", "younger"): (("Văn", 22), ("Minh", 14), ("Đức", 10), ("Quang", 8), ("Hữu", 6), ("Gia", 6),
                          ("Hoàng", 6), ("Anh", 5), ("Tuấn", 5), ("Thành", 5), ("Bảo", 5), ("Trung", 4),
                          ("Đình", 4)),
    ("female", "older"): (("Thị", 80), ("Ngọc", 5), ("Thu", 4), ("Kim", 4), ("Hồng", 4), ("Thanh", 3)),
    ("female", "younger"): (("Thị", 30), ("Ngọc", 12), ("Thu", 8), ("Thanh", 8), ("Phương", 7), ("Bảo", 6),
                            ("Khánh", 6), ("Minh", 6), ("Thùy", 6), ("Diệu", 4), ("Hải", 4), ("Mai", 3)),
}  # fmt: skip

GIVEN_NAMES: dict[str, tuple[str, ...]] = {
    "male": ("An", "Anh", "Bảo", "Bình", "Cường", "Dũng", "Duy", "Đạt", "Đức", "Giang", "Hải", "Hiếu", "Hoàng",
             "Hùng", "Hưng", "Huy", "Khang", "Khoa", "Kiên", "Lâm", "Long", "Lộc", "Mạnh", "Minh", "Nam", "Nghĩa",
             "Phong", "Phúc", "Quân", "Quang", "Sơn", "Tài", "Thắng", "Thành", "Thịnh", "Toàn", "Trung", "Tuấn",
             "Tùng", "Việt", "Vinh", "Vũ"),
    "female": ("An", "Anh", "Châu", "Chi", "Dung", "Giang", "Hà", "Hạnh", "Hằng", "Hiền", "Hoa", "Hồng", "Hương",
               "Huyền", "Lan", "Liên", "Linh", "Loan", "Mai", "My", "Nga", "Ngân", "Ngọc", "Nhi", "Nhung", "Oanh",
               "Phương", "Quỳnh", "Tâm", "Thảo", "Thu", "Thủy", "Trâm", "Trang", "Tuyết", "Vân", "Vy", "Yến"),
}  # fmt: skip

# Mobile prefixes of the four networks (10-digit numbers since the 2018 renumbering).
MOBILE_PREFIXES = (
    "086", "096", "097", "098", "032", "033", "034", "035", "036", "037", "038", "039",  # Viettel
    "088", "091", "094", "081", "082", "083", "084", "085",  # VinaPhone
    "089", "090", "093", "070", "076", "077", "078", "079",  # MobiFone
    "092", "056", "058",  # Vietnamobile
)  # fmt: skip

STREETS = ("Lê Lợi", "Trần Phú", "Quang Trung", "Nguyễn Du", "Lê Duẩn", "Phan Bội Châu", "Hồ Tùng Mậu",
           "Nguyễn Văn Cừ", "Lê Hồng Phong", "Trường Chinh", "Nguyễn Thị Minh Khai", "Hà Huy Tập", "Lê Mao",
           "Phong Định Cảng", "Nguyễn Sỹ Sách", "Herman Gmeiner", "Đinh Công Tráng", "Mai Hắc Đế")
HAMLETS = ("Đông", "Tây", "Nam", "Bắc", "Trung", "Thượng", "Hạ", "Yên Hòa", "Tân Lập", "Phú Hòa", "Đồng Tâm")

HOSPITAL_PROVINCE = "40"  # Tỉnh Nghệ An (the same code before and after 2025)
# Where patients live: the hospital's province, its neighbours, then anywhere.
HOME_PROVINCES = (("40", 85.0), ("42", 7.0), ("38", 4.0))
OTHER_PROVINCES_WEIGHT = 4.0
LEGACY_ADDRESS_SHARE = 0.25
BHYT_SHARE = 0.88  # health-insurance coverage is about 93% nationally; some patients come without a card

TZ = "+07:00"


def weighted(rng: random.Random, items: Sequence[tuple[T, float]]) -> T:
    """One of the items, chosen by weight."""
    return rng.choices([i for i, _ in items], weights=[w for _, w in items])[0]


@dataclass(frozen=True, slots=True)
class Name:
    family: str
    middle: str
    given: str

    @property
    def text(self) -> str:
        """In Vietnamese order: family, middle, given."""
        return " ".join(p for p in (self.family, self.middle, self.given) if p)

    def fhir(self) -> dict[str, Any]:
        """A HumanName: family, then middle and given names in order, and the whole name as text."""
        return {"use": "official", "text": self.text, "family": self.family,
                "given": [p for p in (self.middle, self.given) if p]}


def random_name(rng: random.Random, gender: str, birth_year: int) -> Name:
    family = weighted(rng, FAMILY_NAMES)
    middle = weighted(rng, MIDDLE_NAMES[(gender, "older" if birth_year < 1980 else "younger")])
    given = rng.choice(GIVEN_NAMES[gender])
    return Name(family, middle, given)


def random_phone(rng: random.Random) -> str:
    return rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10_000_000):07d}"


@dataclass(frozen=True, slots=True)
class Person:
    name: Name
    gender: str  # FHIR administrative gender: male | female
    birth_date: date
    birth_province: str  # 2-digit pre-2025 code of the province where the birth was registered
    cccd: str
    bhyt: str | None
    phone: str | None
    commune: str  # 5-digit code of the commune lived in (since 2025)
    line: str  # house number and street, or hamlet
    legacy_ward: str | None  # the pre-2025 ward of the same address, when the record still carries it

    def age(self, today: date) -> int:
        return today.year - self.birth_date.year - ((today.month, today.day) < (self.birth_date.month,
                                                                                 self.birth_date.day))

    def addresses(self) -> list[dict[str, Any]]:
        """Today's two-level address, and the same place in pre-2025 units (use old) when recorded."""
        out = [admin_units.fhir_address(self.line, self.commune)]
        if self.legacy_ward:
            old = admin_units.fhir_legacy_address(self.line, self.legacy_ward, use="old")
            old["period"] = {"end": "2025-06-30"}
            out.append(old)
        return out

    def identifiers(self, mrn: str | None = None) -> list[dict[str, Any]]:
        out = [fhir_identifier("mrn", mrn)] if mrn else []
        out.append(fhir_identifier("cccd", self.cccd))
        if self.bhyt:
            out.append(fhir_identifier("bhyt", self.bhyt))
        return out


def birth_date_for_age(today: date, age: int, rng: random.Random) -> date:
    """A birth date on which someone is `age` years old today."""
    try:
        earliest = today.replace(year=today.year - age - 1) + timedelta(days=1)
    except ValueError:  # 29 February
        earliest = date(today.year - age - 1, 3, 1)
    return min(today, earliest + timedelta(days=rng.randrange(365)))


def cccd_century_sex_digit(gender: str, birth_year: int) -> str:
    """The CCCD's 4th digit: 0/1 for men/women born in the 1900s, 2/3 in the 2000s, and so on."""
    century = (birth_year - 1900) // 100
    return str(2 * century + (1 if gender == "female" else 0))


@cache
def _legacy_wards_by_commune(province: str) -> dict[str, tuple[str, ...]]:
    """Today's commune code -> the pre-2025 ward codes that became (part of) it, for one province."""
    old_provinces = [p.code for p in admin_units.legacy_provinces()
                     if (new := admin_units.legacy_province_to_province(p.code)) and new.code == province]
    out: dict[str, list[str]] = {}
    for row in read_csv("vn-admin/legacy_wards.csv.gz"):
        if row["province_code"] in old_provinces:
            for c in admin_units.legacy_ward_to_commune(row["code"]):
                out.setdefault(c.code, []).append(row["code"])
    return {k: tuple(v) for k, v in out.items()}


@cache
def _legacy_codes_of(province: str) -> tuple[str, ...]:
    """The pre-2025 province codes that are part of a province today."""
    return tuple(p.code for p in admin_units.legacy_provinces()
                 if (new := admin_units.legacy_province_to_province(p.code)) and new.code == province)


class PeopleFactory:
    """Makes people from one random source; CCCD and BHYT numbers are unique within the factory."""

    def __init__(self, today: date) -> None:
        self.today = today
        self._cccds: set[str] = set()
        self._bhyts: set[str] = set()
        self._provinces = [p.code for p in admin_units.provinces()]

    def person(self, rng: random.Random, age: int | None = None, gender: str | None = None) -> Person:
        gender = gender or ("female" if rng.random() < 0.52 else "male")
        age = self.random_age(rng) if age is None else age
        birth = birth_date_for_age(self.today, age, rng)
        name = random_name(rng, gender, birth.year)
        province = self._home_province(rng)
        commune = self._commune(rng, province)
        line = self._line(rng, commune)
        legacy = None
        if rng.random() < LEGACY_ADDRESS_SHARE:
            wards = _legacy_wards_by_commune(province).get(commune.code)
            legacy = rng.choice(wards) if wards else None
        # Most were born where they live; the birth is registered under the pre-2025 province.
        if rng.random() < 0.85:
            birth_province = rng.choice(_legacy_codes_of(province))
        else:
            birth_province = rng.choice(admin_units.legacy_provinces()).code
        cccd = self._cccd(rng, birth_province, gender, birth.year)
        insured = rng.random() < BHYT_SHARE or age < 6  # children under six are insured by law
        bhyt = self._bhyt(rng, age, rng.choice(_legacy_codes_of(province))) if insured else None
        phone = random_phone(rng) if age >= 14 else None
        return Person(name, gender, birth, birth_province, cccd, bhyt, phone, commune.code, line, legacy)

    def random_age(self, rng: random.Random) -> int:
        """Ages of people seen at a general hospital: children and the elderly more than young adults."""
        band = weighted(rng, (((0, 5), 10), ((6, 15), 9), ((16, 39), 24), ((40, 59), 27), ((60, 90), 30)))
        return rng.randint(*band)

    def _home_province(self, rng: random.Random) -> str:
        if rng.random() * 100 < OTHER_PROVINCES_WEIGHT:
            return rng.choice(self._provinces)
        return weighted(rng, HOME_PROVINCES)

    def _commune(self, rng: random.Random, province: str) -> admin_units.Commune:
        communes = admin_units.communes(province)
        if province == HOSPITAL_PROVINCE:
            # The city wards around the hospital send more patients than remote communes.
            wards = [c for c in communes if c.type == "Phường"]
            if wards and rng.random() < 0.4:
                return rng.choice(wards)
        return rng.choice(communes)

    def _line(self, rng: random.Random, commune: admin_units.Commune) -> str:
        if commune.type == "Phường":
            if rng.random() < 0.3:
                return f"Số {rng.randint(1, 60)}, ngõ {rng.randint(2, 120)}, đường {rng.choice(STREETS)}"
            return f"Số {rng.randint(1, 300)}, đường {rng.choice(STREETS)}"
        if rng.random() < 0.6:
            return f"Xóm {rng.randint(1, 15)}"
        return f"Thôn {rng.choice(HAMLETS)}"

    def _cccd(self, rng: random.Random, birth_province: str, gender: str, birth_year: int) -> str:
        head = f"0{birth_province}{cccd_century_sex_digit(gender, birth_year)}{birth_year % 100:02d}"
        while True:
            number = head + f"{rng.randrange(1_000_000):06d}"
            if number not in self._cccds:
                self._cccds.add(number)
                return number

    def _bhyt(self, rng: random.Random, age: int, province: str) -> str:
        """A card number: beneficiary group and benefit level by age, issuing province, social-insurance no."""
        if age < 6:
            group = "TE1"
        elif age < 18:
            group = "HS4"
        elif age < 23 and rng.random() < 0.5:
            group = "SV4"
        elif age >= 60:
            group = weighted(rng, (("HT3", 45), ("GD4", 20), ("CB2", 10), ("CC1", 5), ("BT2", 10), ("HN2", 5),
                                   ("CN3", 5)))
        else:
            group = weighted(rng, (("DN4", 40), ("GD4", 25), ("HC4", 15), ("HN2", 8), ("CN3", 7), ("DT2", 5)))
        while True:
            number = f"{group}{province}{province}{rng.randrange(100_000_000):08d}"
            if number not in self._bhyts:
                self._bhyts.add(number)
                return number
