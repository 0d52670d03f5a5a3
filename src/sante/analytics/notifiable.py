"""Viet Nam's notifiable infectious diseases (bệnh truyền nhiễm phải báo cáo, Circular 54/2015/TT-BYT) as ICD-10
code ranges, with their names in Vietnamese, English and French.

A disease matches a diagnosis when the diagnosis' code starts with one of its prefixes: "A90" covers A90 and
A90.x, "B08.4" covers B08.4 only. Dengue lists A97 too: ICD-10 2016 moved dengue there from A90–A91, and both
are in use in Vietnamese hospitals.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10"


@dataclass(frozen=True, slots=True)
class Disease:
    key: str  # a stable slug: the filters' and the alerts' name of the disease
    prefixes: tuple[str, ...]  # ICD-10 codes (dotted) a diagnosis' code starts with
    vi: str
    en: str
    fr: str
    seasonal: bool = False  # a yearly cycle worth modelling (dengue in the rainy season, HFMD)

    def name(self, lang: str) -> str:
        return {"vi": self.vi, "fr": self.fr}.get(lang, self.en)

    @property
    def codes_text(self) -> str:
        """The ICD-10 codes as a person reads them: "A90, A91, A97"."""
        return ", ".join(self.prefixes)

    def matches(self, code: str) -> bool:
        return any(code == p or code.startswith(p if "." in p else p + ".") for p in self.prefixes)


DISEASES: tuple[Disease, ...] = (
    Disease("dengue", ("A90", "A91", "A97"), "Sốt xuất huyết Dengue", "Dengue fever", "Dengue", seasonal=True),
    Disease("hfmd", ("B08.4",), "Tay chân miệng", "Hand, foot and mouth disease", "Syndrome pieds-mains-bouche",
            seasonal=True),
    Disease("measles", ("B05",), "Sởi", "Measles", "Rougeole", seasonal=True),
    Disease("influenza", ("J09", "J10", "J11"), "Cúm", "Influenza", "Grippe", seasonal=True),
    Disease("covid19", ("U07.1",), "COVID-19", "COVID-19", "COVID-19"),
    Disease("tuberculosis", ("A15", "A16", "A17", "A18", "A19"), "Lao", "Tuberculosis", "Tuberculose"),
    Disease("diarrhoea", ("A09",), "Tiêu chảy cấp", "Acute diarrhoea", "Diarrhée aiguë", seasonal=True),
    Disease("cholera", ("A00",), "Tả", "Cholera", "Choléra"),
    Disease("typhoid", ("A01",), "Thương hàn", "Typhoid and paratyphoid fever", "Fièvres typhoïde et paratyphoïde"),
    Disease("hepatitis", ("B15", "B16", "B17", "B18", "B19"), "Viêm gan vi rút", "Viral hepatitis",
            "Hépatites virales"),
    Disease("rabies", ("A82",), "Dại", "Rabies", "Rage"),
    Disease("meningococcal", ("A39",), "Bệnh do não mô cầu", "Meningococcal infection",
            "Infection à méningocoques"),
    Disease("japanese-encephalitis", ("A83.0",), "Viêm não Nhật Bản", "Japanese encephalitis",
            "Encéphalite japonaise", seasonal=True),
    Disease("diphtheria", ("A36",), "Bạch hầu", "Diphtheria", "Diphtérie"),
    Disease("pertussis", ("A37",), "Ho gà", "Whooping cough", "Coqueluche"),
    Disease("tetanus", ("A33", "A34", "A35"), "Uốn ván", "Tetanus", "Tétanos"),
    Disease("malaria", ("B50", "B51", "B52", "B53", "B54"), "Sốt rét", "Malaria", "Paludisme"),
    Disease("mumps", ("B26",), "Quai bị", "Mumps", "Oreillons"),
    Disease("rubella", ("B06",), "Rubella", "Rubella", "Rubéole"),
    Disease("varicella", ("B01",), "Thủy đậu", "Varicella", "Varicelle"),
    Disease("leptospirosis", ("A27",), "Bệnh do Leptospira", "Leptospirosis", "Leptospirose"),
    Disease("anthrax", ("A22",), "Than", "Anthrax", "Charbon"),
    Disease("plague", ("A20",), "Dịch hạch", "Plague", "Peste"),
    Disease("poliomyelitis", ("A80",), "Bại liệt", "Poliomyelitis", "Poliomyélite"),
    Disease("mpox", ("B04",), "Đậu mùa khỉ", "Mpox", "Mpox"),
)


@cache
def _by_key() -> dict[str, Disease]:
    return {d.key: d for d in DISEASES}


def disease(key: str) -> Disease | None:
    """The notifiable disease of a key ("dengue"), or None."""
    return _by_key().get(key)


@cache
def disease_of(code: str) -> Disease | None:
    """The notifiable disease an ICD-10 code (dotted: "A91", "B08.4") falls under, or None."""
    normal = code.strip().upper()
    return next((d for d in DISEASES if d.matches(normal)), None)


__all__ = ["DISEASES", "ICD10_SYSTEM", "Disease", "disease", "disease_of"]
