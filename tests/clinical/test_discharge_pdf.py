"""The printable discharge summary (sante.clinical.discharge_pdf): Vietnamese text in a Unicode font, A4, and a
clear error when the font is missing."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest

from sante.anomaly import Anomaly, Category
from sante.clinical import discharge_pdf
from sante.clinical.discharge_pdf import DischargeDocument, SignatureLine, render
from sante.clinical.service_support import VIETNAM

ADMITTED = datetime(2026, 3, 10, 9, 0, tzinfo=VIETNAM)


def document(**changes) -> DischargeDocument:
    values = dict(hospital="Bệnh viện Đa khoa Sante", department="Khoa Nội", patient="Nguyễn Thị Hằng",
                  birth_date="1958-12-01", gender="female", identifiers=[("Số thẻ BHYT", "GD4404012345678")],
                  admitted=ADMITTED, discharged=ADMITTED + timedelta(days=3), length_days=3, bed="Giường 201-1",
                  disposition="Chuyển cơ sở khám chữa bệnh khác", title="Tóm tắt bệnh án ra viện",
                  sections=[("Lý do vào viện", ["Đau ngực trái"]), ("Quá trình điều trị", ["Ổn định"] * 80)],
                  authors=["BS. Hoàng Minh"],
                  signatures=[SignatureLine("BS. Hoàng Minh", "2026-03-13T02:00:00+00:00", True, True)])
    values.update(changes)
    return DischargeDocument(**values)


def test_the_pdf_is_a4_vietnamese_and_says_what_became_of_the_signature():
    pypdf = pytest.importorskip("pypdf")
    reader = pypdf.PdfReader(io.BytesIO(render(document())))
    assert len(reader.pages) >= 2  # a long course runs onto the next page
    text = "\n".join(p.extract_text() for p in reader.pages)
    for expected in ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Nguyễn Thị Hằng", "01/12/1958", "Nữ", "GD4404012345678",
                     "09 giờ 00, ngày 10/03/2026", "Chuyển cơ sở khám chữa bệnh khác",
                     "Chữ ký số hợp lệ – văn bản đã sửa sau khi ký", "Ngày 13 tháng 03 năm 2026", "Trang 2/"):
        assert expected in text, expected
    unsigned = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(render(document(
        signatures=[])))).pages)
    assert "Chưa ký số" in unsigned
    forged = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(render(document(
        signatures=[SignatureLine("?", "2026-03-13T02:00:00+00:00", False, False)])))).pages)
    assert "KHÔNG hợp lệ" in forged


def test_a_missing_font_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(discharge_pdf, "FONT_DIR", tmp_path)
    with pytest.raises(Anomaly) as e:
        render(document())
    assert e.value.category == Category.FAULT and "fonts-dejavu-core" in e.value.message
