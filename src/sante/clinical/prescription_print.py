"""The printable prescription (đơn thuốc): an A5 page in Vietnamese, as the patient takes it to the pharmacy.

It follows the Ministry of Health's outpatient prescription form (Circular 52/2017/TT-BYT as amended by
04/2022/TT-BYT): the hospital, the patient (name, age — in months, with a parent's name, under 72 months —,
sex, address, BHYT card number, medical record number), the diagnosis, each drug with its strength and form,
the quantity to dispense and how to take it, the advice, the date and the prescribing physician.

Rendered with fpdf2 and the DejaVu Sans font (full Vietnamese coverage; Debian's fonts-dejavu-core, found as the
discharge summary finds it: sante.clinical.discharge_pdf.font_paths), embedded as a subset so the text can be
searched and copied.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sante.anomaly import Anomaly, Category
from sante.auth.guarded import GuardedTransaction
from sante.clinical.admin_units import describe_address
from sante.clinical.discharge_pdf import font_paths
from sante.clinical.identifiers import BHYT_SYSTEM, MRN_SYSTEM
from sante.clinical.service_support import concept_text, local_day, parse_time, person_name, read_at, ref_id, search_all

A5 = (148, 210)  # mm, ISO 216
SEX_VI = {"male": "Nam", "female": "Nữ", "other": "Khác", "unknown": "Không rõ"}
ADVICE = "Uống thuốc đúng theo đơn. Tái khám khi hết thuốc hoặc khi có dấu hiệu bất thường."
FOOTER = "Khám lại xin mang theo đơn này."


def _identifier(patient: dict[str, Any], system: str) -> str:
    return next((i.get("value", "") for i in patient.get("identifier", []) if i.get("system") == system), "")


def age_text(birth_date: str | None, on: date) -> str:
    """The age as a prescription writes it: years, or months under 72 months ("18 tháng tuổi")."""
    parts = (birth_date or "").split("-")
    if not parts[0].isdigit():
        return ""
    year, month, day = int(parts[0]), int(parts[1]) if len(parts) > 1 else 1, int(parts[2]) if len(parts) > 2 else 1
    months = (on.year - year) * 12 + on.month - month - (on.day < day)
    return f"{months} tháng tuổi" if months < 72 else f"{months // 12} tuổi"


def _guardian(patient: dict[str, Any]) -> str:
    for contact in patient.get("contact", []):
        name = contact.get("name") or {}
        text = name.get("text") or " ".join([name.get("family", ""), *name.get("given", [])]).strip()
        if text:
            return text
    return ""


def _requests(gtx: GuardedTransaction, encounter_id: str | None, ids: list[str] | None) -> list[dict[str, Any]]:
    if ids:
        return [read_at(gtx, "MedicationRequest", rid, "medication_request_ids") for rid in ids]
    found, _ = search_all(gtx, "MedicationRequest", [("encounter", f"Encounter/{encounter_id}")])
    found.sort(key=lambda r: (r.get("authoredOn", ""), r.get("meta", {}).get("lastUpdated", "")))  # as written
    return [r for r in found if r.get("status") not in ("cancelled", "entered-in-error", "draft")]


def _diagnoses(gtx: GuardedTransaction, encounter: dict[str, Any]) -> list[str]:
    out = []
    for d in sorted(encounter.get("diagnosis", []), key=lambda d: d.get("rank", 99)):
        cid = ref_id(d.get("condition"), "Condition")
        if cid is None:
            continue
        code = read_at(gtx, "Condition", cid, "diagnosis").get("code") or {}
        icd = next((c.get("code") for c in code.get("coding", []) if c.get("code")), "")
        out.append(f"{icd} – {concept_text(code)}" if icd else concept_text(code))
    return out


def _number(value: Any) -> str:
    return f"{value:g}".replace(".", ",") if isinstance(value, (int, float)) else str(value or "")


def prescription_pdf(gtx: GuardedTransaction, encounter_id: str | None = None, *,
                     medication_request_ids: list[str] | None = None) -> bytes:
    """The prescription of a visit (its active prescriptions), or of the given MedicationRequests, as a PDF."""
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    requests = _requests(gtx, encounter_id, medication_request_ids)
    if not requests:
        raise Anomaly(Category.NOT_FOUND, "there is no prescription to print", location="encounter")
    encounter_id = encounter_id or ref_id(requests[0].get("encounter"), "Encounter")
    encounter = read_at(gtx, "Encounter", encounter_id, "encounter") if encounter_id else {}
    patient = read_at(gtx, "Patient", ref_id(requests[0].get("subject"), "Patient") or "", "patient")
    org_id = ref_id(encounter.get("serviceProvider") or patient.get("managingOrganization"), "Organization")
    hospital = read_at(gtx, "Organization", org_id, "encounter") if org_id else {}
    doctor_id = ref_id(requests[0].get("requester"), "Practitioner")
    doctor = read_at(gtx, "Practitioner", doctor_id, "prescriber") if doctor_id else {}
    written = parse_time(requests[0].get("authoredOn")) or datetime.now()
    day = local_day(written)

    pdf = FPDF(orientation="P", unit="mm", format=A5)
    pdf.set_margins(10, 8, 10)
    pdf.set_auto_page_break(True, 12)
    regular, bold = font_paths()
    pdf.add_font("DejaVu", "", str(regular))
    pdf.add_font("DejaVu", "B", str(bold))
    pdf.set_title("Đơn thuốc")
    pdf.set_creator("Sante")
    pdf.add_page()
    width = pdf.epw

    def line(text: str, size: float = 9, bold: bool = False, align: str = "L", height: float = 4.6) -> None:
        pdf.set_font("DejaVu", "B" if bold else "", size)
        pdf.multi_cell(width, height, text, align=align, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    line((hospital.get("name") or "").upper(), 10, bold=True)
    address = next(iter(hospital.get("address", [])), None)
    phone = next((t.get("value") for t in hospital.get("telecom", []) if t.get("system") == "phone"), "")
    if address or phone:
        line(", ".join(p for p in (describe_address(address) if address else "", f"ĐT: {phone}" if phone else "")
                       if p), 8)
    line(f"Mã người bệnh: {_identifier(patient, MRN_SYSTEM)}", 8, align="R")
    pdf.ln(2)
    line("ĐƠN THUỐC", 15, bold=True, align="C", height=8)
    pdf.ln(1)
    age = age_text(patient.get("birthDate"), day)
    line(f"Họ tên: {person_name(patient).upper()}    Tuổi: {age}    "
         f"Giới tính: {SEX_VI.get(patient.get('gender', ''), '')}")
    if "tháng tuổi" in age and _guardian(patient):
        line(f"Họ tên bố hoặc mẹ (người giám hộ): {_guardian(patient)}")
    home = next((a for a in patient.get("address", []) if a.get("use") != "old"), None)
    line(f"Địa chỉ: {describe_address(home) if home else ''}")
    line(f"Số thẻ bảo hiểm y tế: {_identifier(patient, BHYT_SYSTEM) or 'không có'}")
    line(f"Chẩn đoán: {'; '.join(_diagnoses(gtx, encounter)) if encounter else ''}")
    pdf.ln(2)
    line("Thuốc điều trị:", bold=True)
    for n, request in enumerate(requests, 1):
        name = (request.get("medicationReference") or {}).get("display") or concept_text(
            request.get("medicationCodeableConcept"))
        quantity = (request.get("dispenseRequest") or {}).get("quantity") or {}
        dosage: dict[str, Any] = next(iter(request.get("dosageInstruction") or []), {})
        pdf.set_font("DejaVu", "B", 9)
        qty = f"SL: {_number(quantity.get('value'))} {quantity.get('unit', '')}".strip()
        pdf.cell(width - 32, 5, f"{n}. {name}", new_x=XPos.RIGHT, new_y=YPos.TOP)
        pdf.cell(32, 5, qty, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_x(pdf.l_margin + 5)
        pdf.set_font("DejaVu", "", 9)
        pdf.multi_cell(width - 5, 4.6, dosage.get("text", ""), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    line(f"Lời dặn: {ADVICE}", 8.5)
    pdf.ln(3)
    right = pdf.l_margin + width / 2
    for text, strong, size in ((f"Ngày {day.day:02d} tháng {day.month:02d} năm {day.year}", False, 9),
                               ("Bác sĩ khám bệnh", True, 9), ("(Ký, ghi rõ họ tên)", False, 8)):
        pdf.set_x(right)
        pdf.set_font("DejaVu", "B" if strong else "", size)
        pdf.cell(width / 2, 5, text, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(12)
    pdf.set_x(right)
    pdf.set_font("DejaVu", "B", 9)
    pdf.cell(width / 2, 5, person_name(doctor), align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)
    line(FOOTER, 8)
    return bytes(pdf.output())


__all__ = ["age_text", "prescription_pdf"]
