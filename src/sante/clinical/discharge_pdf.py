"""The printable discharge summary: an A4 PDF in Vietnamese (fpdf2), with the hospital's header, the patient,
the dates and length of stay, the summary's sections, the signer and whether the digital signature verifies.

Vietnamese needs a Unicode TrueType font: Debian's fonts-dejavu-core (DejaVu Sans, under FONT_DIR). Without it
rendering fails with a clear message rather than printing boxes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from sante.anomaly import Anomaly, Category
from sante.clinical.service_support import VIETNAM

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_REGULAR = "DejaVuSans.ttf"
FONT_BOLD = "DejaVuSans-Bold.ttf"
_GENDER = {"male": "Nam", "female": "Nữ", "other": "Khác", "unknown": "Không rõ"}


@dataclass(frozen=True, slots=True)
class SignatureLine:
    signer: str
    when: str  # FHIR instant
    valid: bool  # the signature verifies and its certificate is the hospital's
    changed: bool  # the summary was changed after it was signed


@dataclass(frozen=True, slots=True)
class DischargeDocument:
    hospital: str
    department: str
    patient: str
    birth_date: str
    gender: str
    identifiers: list[tuple[str, str]]  # (what, value)
    admitted: datetime | None
    discharged: datetime | None
    length_days: int | None
    bed: str
    disposition: str
    title: str
    sections: list[tuple[str, list[str]]]  # (title, lines)
    authors: list[str]
    signatures: list[SignatureLine] = field(default_factory=list)


def font_paths() -> tuple[Path, Path]:
    """(regular, bold) DejaVu Sans; a FAULT anomaly naming the package to install when the font is absent."""
    regular, bold = FONT_DIR / FONT_REGULAR, FONT_DIR / FONT_BOLD
    if not regular.is_file():
        raise Anomaly(Category.FAULT, f"the PDF font {regular} is missing: install Debian's fonts-dejavu-core "
                                      "(apt-get install fonts-dejavu-core)")
    return regular, bold if bold.is_file() else regular


def _when(t: datetime | None) -> str:
    return t.astimezone(VIETNAM).strftime("%H giờ %M, ngày %d/%m/%Y") if t else "—"


def _date(text: str) -> str:
    parts = text.split("-")
    return "/".join(reversed(parts)) if len(parts) == 3 else text or "—"


def _signature_status(s: SignatureLine) -> str:
    if not s.valid:
        return "Chữ ký số KHÔNG hợp lệ"
    if s.changed:
        return "Chữ ký số hợp lệ – văn bản đã sửa sau khi ký"
    return "Đã ký số – chữ ký hợp lệ, văn bản không thay đổi"


class _Page(FPDF):
    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("DejaVu", size=8)
        self.cell(0, 6, f"Trang {self.page_no()}/{{nb}}", align="C")


def render(doc: DischargeDocument) -> bytes:
    """The PDF's bytes."""
    regular, bold = font_paths()
    pdf = _Page(orientation="P", unit="mm", format="A4")
    pdf.set_margins(18, 15, 18)
    pdf.set_auto_page_break(True, margin=18)
    pdf.add_font("DejaVu", "", str(regular))
    pdf.add_font("DejaVu", "B", str(bold))
    pdf.set_title(f"{doc.title} – {doc.patient}")
    pdf.set_creator("Sante")
    pdf.set_lang("vi")
    pdf.add_page()
    width = pdf.epw

    # the header: the hospital on the left, the national motto on the right
    top = pdf.get_y()
    pdf.set_font("DejaVu", "B", 10)
    pdf.multi_cell(width * 0.45, 5, doc.hospital.upper() or " ", align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if doc.department:
        pdf.set_font("DejaVu", "", 9)
        pdf.multi_cell(width * 0.45, 5, doc.department, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    left_bottom = pdf.get_y()
    pdf.set_xy(pdf.l_margin + width * 0.45, top)
    pdf.set_font("DejaVu", "B", 10)
    pdf.cell(width * 0.55, 5, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", align="C", new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.cell(width * 0.55, 5, "Độc lập – Tự do – Hạnh phúc", align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_y(max(left_bottom, pdf.get_y()) + 6)

    pdf.set_font("DejaVu", "B", 15)
    pdf.cell(0, 9, doc.title.upper(), align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)

    pdf.set_font("DejaVu", "", 10.5)
    facts = [
        ("Họ và tên người bệnh", doc.patient or "—"),
        ("Ngày sinh", _date(doc.birth_date)),
        ("Giới tính", _GENDER.get(doc.gender, doc.gender or "—")),
        *[(what or "Mã định danh", value) for what, value in doc.identifiers],
        ("Khoa điều trị", doc.department or "—"),
        ("Giường", doc.bed or "—"),
        ("Vào viện lúc", _when(doc.admitted)),
        ("Ra viện lúc", _when(doc.discharged)),
        ("Số ngày điều trị", str(doc.length_days) if doc.length_days is not None else "—"),
        ("Tình trạng ra viện", doc.disposition or "—"),
    ]
    for label, value in facts:
        pdf.set_font("DejaVu", "B", 10.5)
        pdf.cell(52, 6.5, f"{label}:")
        pdf.set_font("DejaVu", "", 10.5)
        pdf.multi_cell(0, 6.5, value, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)

    for title, lines in doc.sections:
        pdf.set_font("DejaVu", "B", 11.5)
        pdf.multi_cell(0, 7, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font("DejaVu", "", 10.5)
        bullets = len(lines) > 1
        for line in lines or ["—"]:
            pdf.multi_cell(0, 6, f"• {line}" if bullets else line, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(2)

    # the signature block, on the right
    pdf.ln(4)
    column = width * 0.6
    x = pdf.l_margin + width - column
    day = doc.discharged.astimezone(VIETNAM) if doc.discharged else None
    pdf.set_x(x)
    pdf.set_font("DejaVu", "", 10.5)
    dated = f"Ngày {day:%d} tháng {day:%m} năm {day:%Y}" if day else "Ngày … tháng … năm …"
    pdf.cell(column, 6, dated, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_x(x)
    pdf.set_font("DejaVu", "B", 10.5)
    pdf.cell(column, 6, "BÁC SĨ ĐIỀU TRỊ", align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)
    pdf.set_font("DejaVu", "", 9.5)
    if not doc.signatures:
        pdf.set_x(x)
        pdf.multi_cell(column, 5, "Chưa ký số", align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    for s in doc.signatures:
        signed = datetime.fromisoformat(s.when).astimezone(VIETNAM) if s.when else None
        for text in (_signature_status(s), f"Ký lúc {_when(signed)}" if signed else ""):
            if text:
                pdf.set_x(x)
                pdf.multi_cell(column, 5, text, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    pdf.set_font("DejaVu", "B", 10.5)
    for name in doc.authors or [s.signer for s in doc.signatures]:
        pdf.set_x(x)
        pdf.cell(column, 6, name, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())


__all__ = ["FONT_DIR", "DischargeDocument", "SignatureLine", "font_paths", "render"]
