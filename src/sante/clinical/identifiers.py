"""Vietnamese patient identifiers: the citizen ID (CCCD), the health-insurance card (BHYT) and the hospital MRN.

CCCD (căn cước công dân, 12 digits; Decree 137/2015/NĐ-CP art. 7, province codes per Circular 59/2021/TT-BCA):
3 digits of the province where the birth was registered (the 63 pre-2025 province codes, "001".."096"), 1 digit
for century and sex, 2 digits of the birth year, 6 serial digits. Century/sex digit: 0/1 = 1900s male/female,
2/3 = 2000s, 4/5 = 2100s, 6/7 = 2200s, 8/9 = 2300s (the decree's 24th century; a digit is "impossible" when the
birth year it encodes lies in the future).

BHYT card number (15 characters; Decision 1351/QĐ-BHXH): 2 letters for the beneficiary group, 1 digit benefit
level (1-5), 2 digits for the issuing province, 10 digits of the social-insurance number (mã số BHXH).

FHIR Identifier.type (HL7 v2 table 0203, http://terminology.hl7.org/CodeSystem/v2-0203), chosen as:
  * CCCD → "NI" (National unique individual identifier): a lifelong, nation-wide number for the person.
  * BHYT → "SN" (Subscriber Number): the number the insurer (Vietnam Social Security) gives the insured person,
    the same value that goes into Coverage.subscriberId. ("MC", Medicare number, is tied to other countries'
    schemes; "MB", member number, is for insured persons who are not the subscriber.)
  * MRN → "MR" (Medical record number).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from sante.clinical import admin_units

CCCD_SYSTEM = "https://sante.health/fhir/sid/cccd"
BHYT_SYSTEM = "https://sante.health/fhir/sid/bhyt"
MRN_SYSTEM = "https://sante.health/fhir/sid/mrn"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"

IdentifierKind = Literal["cccd", "bhyt", "mrn"]


class IdentifierError(ValueError):
    """A malformed identifier; the message says what is wrong, in English."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- CCCD ---------------------------------------------------------------------------------------------------------

# century/sex digit -> (first year of the century, sex)
_CENTURY_SEX: dict[str, tuple[int, str]] = {
    "0": (1900, "male"), "1": (1900, "female"),
    "2": (2000, "male"), "3": (2000, "female"),
    "4": (2100, "male"), "5": (2100, "female"),
    "6": (2200, "male"), "7": (2200, "female"),
    "8": (2300, "male"), "9": (2300, "female"),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Cccd:
    """A parsed citizen ID number."""

    number: str  # the 12 digits
    province_code: str  # 3 digits, province of birth registration (pre-2025 code)
    sex: str  # "male" | "female"
    birth_year: int
    serial: str  # 6 digits

    @property
    def province_name(self) -> str:
        """Name of the (pre-2025) province of birth registration."""
        p = admin_units.legacy_province(self.province_code[1:])
        return p.name if p else ""


def _digits_only(text: str) -> str:
    return re.sub(r"[\s.\-]", "", text)


def parse_cccd(text: str, today: date | None = None) -> Cccd:
    """Parse a 12-digit CCCD (spaces, dots and dashes between digits are ignored); IdentifierError if invalid."""
    number = _digits_only(text or "")
    if number and not (number.isascii() and number.isdigit()):
        raise IdentifierError(f"CCCD must contain only digits, got {text!r}")
    if len(number) != 12:
        raise IdentifierError(f"CCCD must have 12 digits, got {len(number)}")
    province_code, century_digit, yy, serial = number[:3], number[3], number[4:6], number[6:]
    if province_code[0] != "0" or admin_units.legacy_province(province_code[1:]) is None:
        raise IdentifierError(f"CCCD province code {province_code} is not a province code (001-096)")
    century, sex = _CENTURY_SEX[century_digit]
    birth_year = century + int(yy)
    this_year = (today or date.today()).year
    if birth_year > this_year:
        raise IdentifierError(
            f"CCCD century/sex digit {century_digit} with year digits {yy} gives birth year {birth_year}, "
            "which is in the future"
        )
    return Cccd(number, province_code, sex, birth_year, serial)


def check_cccd_against(cccd: Cccd | str, birth_date: date | str | None, gender: str | None) -> list[str]:
    """Warnings where the sex or birth year encoded in a CCCD disagree with the patient's record.

    `birth_date` is a date or a FHIR date string ("1985", "1985-03", "1985-03-12"); `gender` a FHIR
    administrative gender. Nothing is said about values that are missing, "other" or "unknown".
    """
    c = parse_cccd(cccd) if isinstance(cccd, str) else cccd
    warnings: list[str] = []
    if gender in ("male", "female") and gender != c.sex:
        warnings.append(f"CCCD {c.number} encodes sex {c.sex}, but the patient's gender is {gender}")
    year: int | None = None
    if isinstance(birth_date, date):
        year = birth_date.year
    elif isinstance(birth_date, str) and re.match(r"^\d{4}", birth_date):
        year = int(birth_date[:4])
    if year is not None and year != c.birth_year:
        warnings.append(f"CCCD {c.number} encodes birth year {c.birth_year}, but the patient was born in {year}")
    return warnings


# -- BHYT ---------------------------------------------------------------------------------------------------------

# Beneficiary-group codes (2 letters) of the BHYT card number. A label is None where the project could not
# confirm it; such a code is still recognised as known.
BHYT_OBJECT_CODES: dict[str, str | None] = {
    # paid by employee and employer
    "DN": "Người lao động làm việc trong doanh nghiệp",
    "HX": "Người lao động làm việc trong hợp tác xã, liên hiệp hợp tác xã",
    "CH": "Người lao động làm việc trong cơ quan nhà nước, đơn vị sự nghiệp, tổ chức chính trị, tổ chức chính trị - xã hội",
    "NN": "Người lao động làm việc trong cơ quan, tổ chức nước ngoài, tổ chức quốc tế tại Việt Nam",
    "TK": "Người lao động làm việc trong các cơ quan, tổ chức khác",
    "HC": "Cán bộ, công chức, viên chức",
    "XK": "Người hoạt động không chuyên trách ở xã, phường, thị trấn",
    # paid by the social-insurance fund
    "HT": "Người hưởng lương hưu, trợ cấp mất sức lao động hằng tháng",
    "TB": "Người hưởng trợ cấp tai nạn lao động, bệnh nghề nghiệp hằng tháng",
    "NO": "Người lao động nghỉ việc hưởng chế độ ốm đau dài ngày",
    "CT": "Người từ đủ 80 tuổi trở lên hưởng trợ cấp tuất hằng tháng",
    "XB": "Cán bộ xã, phường, thị trấn đã nghỉ việc hưởng trợ cấp bảo hiểm xã hội hằng tháng",
    "TN": "Người hưởng trợ cấp thất nghiệp",
    "CS": "Công nhân cao su nghỉ việc hưởng trợ cấp hằng tháng",
    # paid by the state budget
    "QN": "Sĩ quan, quân nhân chuyên nghiệp, hạ sĩ quan, binh sĩ quân đội",
    "CA": "Sĩ quan, hạ sĩ quan, chiến sĩ công an nhân dân",
    "CY": "Người làm công tác cơ yếu",
    "XN": "Cán bộ xã, phường, thị trấn đã nghỉ việc hưởng trợ cấp hằng tháng từ ngân sách nhà nước",
    "MS": "Người đã thôi hưởng trợ cấp mất sức lao động, hưởng trợ cấp hằng tháng từ ngân sách nhà nước",
    "HD": "Đại biểu Quốc hội, đại biểu Hội đồng nhân dân các cấp đương nhiệm",
    "TE": "Trẻ em dưới 6 tuổi",
    "CC": "Người có công với cách mạng",
    "CK": None,
    "CB": "Cựu chiến binh",
    "KC": "Người trực tiếp tham gia kháng chiến",
    "HN": "Người thuộc hộ gia đình nghèo",
    "DT": "Người dân tộc thiểu số sinh sống tại vùng có điều kiện kinh tế - xã hội khó khăn",
    "DK": "Người sinh sống tại vùng có điều kiện kinh tế - xã hội đặc biệt khó khăn",
    "XD": "Người sinh sống tại xã đảo, huyện đảo",
    "BT": "Người hưởng trợ cấp bảo trợ xã hội hằng tháng",
    "TS": "Thân nhân của liệt sĩ",
    "TC": "Thân nhân của người có công với cách mạng",
    "TQ": "Thân nhân của quân nhân",
    "TA": "Thân nhân của công an nhân dân",
    "TY": "Thân nhân của người làm công tác cơ yếu",
    "HG": "Người đã hiến bộ phận cơ thể người",
    "LS": "Người nước ngoài học tập tại Việt Nam được cấp học bổng từ ngân sách nhà nước",
    "PV": "Người phục vụ người có công với cách mạng",
    # state-budget support
    "CN": "Người thuộc hộ gia đình cận nghèo",
    "HS": "Học sinh",
    "SV": "Sinh viên",
    "GB": "Người thuộc hộ gia đình nông, lâm, ngư, diêm nghiệp có mức sống trung bình",
    # household
    "GD": "Người tham gia theo hộ gia đình",
    "TL": None,
    "XV": None,
}

# Benefit level (3rd character): what the fund pays, per Decision 1351/QĐ-BHXH.
BHYT_BENEFIT_LEVELS: dict[int, dict[str, Any]] = {
    1: {"percent": 100, "capped": False, "out_of_list": False,
        "en": "100% of covered costs, without the caps on certain drugs, supplies and services",
        "vi": "100% chi phí trong phạm vi, không giới hạn tỷ lệ thanh toán thuốc, vật tư, dịch vụ kỹ thuật"},
    2: {"percent": 100, "capped": True, "out_of_list": False,
        "en": "100% of covered costs, with the caps on certain drugs, supplies and services",
        "vi": "100% chi phí trong phạm vi, có giới hạn tỷ lệ thanh toán một số thuốc, vật tư, dịch vụ kỹ thuật"},
    3: {"percent": 95, "capped": True, "out_of_list": False,
        "en": "95% of covered costs, with caps", "vi": "95% chi phí trong phạm vi, có giới hạn tỷ lệ thanh toán"},
    4: {"percent": 80, "capped": True, "out_of_list": False,
        "en": "80% of covered costs, with caps", "vi": "80% chi phí trong phạm vi, có giới hạn tỷ lệ thanh toán"},
    5: {"percent": 100, "capped": False, "out_of_list": True,
        "en": "100% of costs, including those outside the covered list, and transport",
        "vi": "100% chi phí, kể cả chi phí ngoài phạm vi được hưởng BHYT và chi phí vận chuyển"},
}  # fmt: skip

_BHYT = re.compile(r"^([A-Z]{2})([1-5])(\d{2})(\d{10})$")


@dataclass(frozen=True, slots=True)
class Bhyt:
    """A parsed health-insurance card number, with warnings for codes that are well formed but unknown."""

    number: str  # 15 characters, upper case
    object_code: str
    benefit_level: int
    province_code: str  # 2 digits, issuing province (pre-2025 numbering)
    social_insurance_number: str  # 10 digits
    warnings: tuple[str, ...] = ()

    @property
    def object_label(self) -> str | None:
        return BHYT_OBJECT_CODES.get(self.object_code)

    @property
    def benefit(self) -> dict[str, Any]:
        return BHYT_BENEFIT_LEVELS[self.benefit_level]


def parse_bhyt(text: str) -> Bhyt:
    """Parse a 15-character BHYT card number (surrounding space and lower case tolerated); IdentifierError if not."""
    number = (text or "").strip().upper()
    if len(number) != 15:
        raise IdentifierError(f"BHYT card number must have 15 characters, got {len(number)}")
    m = _BHYT.match(number)
    if m is None:
        if not re.match(r"^[A-Z]{2}", number):
            raise IdentifierError("BHYT card number must start with 2 letters (the beneficiary group)")
        if number[2] not in "12345":
            raise IdentifierError(f"BHYT benefit level (3rd character) must be 1-5, got {number[2]!r}")
        raise IdentifierError("BHYT card number must end with 12 digits (province code and social-insurance number)")
    obj, level, prov, ssn = m.groups()
    warnings = []
    if obj not in BHYT_OBJECT_CODES:
        warnings.append(f"unknown BHYT beneficiary group {obj}")
    if admin_units.legacy_province(prov) is None:
        warnings.append(f"BHYT province code {prov} is not a province code")
    return Bhyt(number, obj, int(level), prov, ssn, tuple(warnings))


# -- FHIR ---------------------------------------------------------------------------------------------------------

_KINDS: dict[str, tuple[str, str, str, str, str]] = {
    # kind: (system, use, v2-0203 code, display, text)
    "cccd": (CCCD_SYSTEM, "official", "NI", "National unique individual identifier", "Căn cước công dân"),
    "bhyt": (BHYT_SYSTEM, "secondary", "SN", "Subscriber Number", "Thẻ bảo hiểm y tế"),
    "mrn": (MRN_SYSTEM, "usual", "MR", "Medical record number", "Mã hồ sơ bệnh án"),
}


def normalise(kind: IdentifierKind, value: str) -> str:
    """The canonical form of an identifier value, validated (IdentifierError) for CCCD and BHYT."""
    if kind == "cccd":
        return parse_cccd(value).number
    if kind == "bhyt":
        return parse_bhyt(value).number
    if kind == "mrn":
        mrn = (value or "").strip()
        if not mrn:
            raise IdentifierError("MRN must not be empty")
        return mrn
    raise IdentifierError(f"unknown identifier kind {kind!r} (expected cccd, bhyt or mrn)")


def fhir_identifier(kind: IdentifierKind, value: str) -> dict[str, Any]:
    """A FHIR Identifier for a CCCD, BHYT card or hospital MRN; the value is validated and normalised."""
    normalised = normalise(kind, value)
    system, use, code, display, text = _KINDS[kind]
    return {
        "use": use,
        "type": {"coding": [{"system": V2_0203, "code": code, "display": display}], "text": text},
        "system": system,
        "value": normalised,
    }
