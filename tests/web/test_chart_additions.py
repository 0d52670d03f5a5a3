"""The chart's additions without a browser: the allergy list and its form, the problem list (add with ICD-10
search, resolve), immunizations, documents (upload, list, open) and laboratory trends — each write through the
guarded repository in one transaction, refused by role and organization, its errors next to its fields."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest

from sante.api import create_app
from sante.store import open_repository
from tests.web.activity_seed import glucose_results
from tests.web.conftest import csrf_of, sign_in
from tests.web.seed import AN, seed

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """The web seed, with three earlier glucose results for Nguyễn Văn An (one of them high)."""
    data_dir: Path = tmp_path_factory.mktemp("chart-additions")
    repo = open_repository(f"sqlite:///{data_dir / 'sante.db'}")
    app = create_app(repo, data_dir=data_dir)
    seed(repo, app.state.security.users)
    with repo.transaction() as tx:
        for resource in glucose_results():
            tx.update(resource, resource["id"])
    yield app
    repo.close()


def _repo(app):
    return app.state.repository


def _all(app, rtype: str) -> list[dict]:
    with _repo(app).reader() as tx:
        rows = tx.conn.exec_driver_sql("SELECT content FROM resources WHERE type = ? AND NOT deleted", (rtype,))
        return [orjson.loads(r[0]) for r in rows]


def _chart(b, lang: str | None = None) -> tuple[str, str]:
    r = b.get(f"/patients/{AN}")
    assert r.status_code == 200
    return r.text, csrf_of(r.text)


def _section(html: str, key: str) -> str:
    return html.split(f'id="{key}"')[1].split("</section>")[0]


def test_the_chart_shows_allergies_immunizations_documents_and_lab_trends(clinic):
    html, _ = _chart(sign_in(clinic, "lan"))
    allergies = _section(html, "allergies")
    assert "Dị ứng và không dung nạp" in allergies and "Penicillin" in allergies and "Phát ban" in allergies
    assert "Nguy cơ cao" in allergies and "Thêm dị ứng" in allergies
    assert "Chưa ghi nhận tiêm chủng nào." in _section(html, "immunizations")
    assert "Chưa có tài liệu nào." in _section(html, "documents")
    labs = html.split('id="labs-title"')[1].split("</section>")[0]
    trend = next(t for t in labs.split('<li class="lab-trend')[1:] if "Glucose máu" in t)
    assert "Glucose máu" in trend and 'class="band"' in trend  # the reference range shaded
    assert trend.count("<circle") == 4 and trend.count("dot-flagged") == 2  # 7.9 and 8.2 above 6.1
    assert "4 kết quả từ" in trend and "2 kết quả ngoài khoảng tham chiếu" in trend


def test_adding_an_allergy(clinic):
    b = sign_in(clinic, "hoa", lang="en")  # nurses record allergies
    _, csrf = _chart(b)
    r = b.post(f"/patients/{AN}/allergies", data={"csrf": csrf, "substance": "seafood", "category": "food",
                                                  "reaction": "Hives", "severity": "moderate", "criticality": "low",
                                                  "note": "after shrimp"})
    assert r.status_code == 303 and r.headers["location"] == f"/patients/{AN}#allergies"
    stored = next(a for a in _all(clinic, "AllergyIntolerance") if a["code"].get("text") == "Seafood")
    assert stored["code"]["coding"][0] == {"system": "http://snomed.info/sct", "code": "44027008",
                                           "display": "Seafood"}
    assert stored["reaction"][0]["manifestation"][0]["coding"][0]["code"] == "247472004"
    assert stored["reaction"][0]["severity"] == "moderate" and stored["criticality"] == "low"
    assert stored["patient"] == {"reference": f"Patient/{AN}"} and stored["category"] == ["food"]
    html = b.get(f"/patients/{AN}").text
    assert "Seafood" in _section(html, "allergies") and "Seafood" in html.split('class="banner-safety"')[1][:2000]


def test_allergy_errors_are_shown_next_to_their_fields_and_nothing_is_saved(clinic):
    b = sign_in(clinic, "lan")
    _, csrf = _chart(b)
    before = len(_all(clinic, "AllergyIntolerance"))
    r = b.post(f"/patients/{AN}/allergies", data={"csrf": csrf, "substance": " ", "severity": "severe",
                                                  "reaction": "", "criticality": "", "note": "kept"})
    assert r.status_code == 422 and len(_all(clinic, "AllergyIntolerance")) == before
    form = _section(r.text, "allergies")
    assert "<details class=\"add-form\" open>" in form and "kept</textarea>" in form
    assert re.search(r'id="allergy-substance"[^>]*aria-invalid="true"[^>]*autofocus', form)
    assert 'id="allergy-substance-error">Nhập tên chất gây dị ứng.</p>' in form
    assert 'id="allergy-criticality-error">Chọn mức độ nguy hiểm.</p>' in form
    assert 'id="allergy-reaction-error">Mô tả phản ứng để ghi mức độ nặng.</p>' in form
    assert '<option value="severe" selected>' in form


def test_problems_added_with_icd10_search_and_resolved(clinic):
    b = sign_in(clinic, "lan", lang="en")
    options = b.get("/chart/icd10", params={"code": "pneumonia"}).text
    assert '<option value="J18.9 – Pneumonia, unspecified"></option>' in options
    assert "J18" in sign_in(clinic, "lan").get("/chart/icd10", params={"code": "viem phoi"}).text
    _, csrf = _chart(b)
    r = b.post(f"/patients/{AN}/problems", data={"csrf": csrf, "code": "J18.9 – Pneumonia, unspecified",
                                                "onset": "2026-11-01", "note": ""})
    assert r.status_code == 303 and r.headers["location"] == f"/patients/{AN}#problems"
    condition = next(c for c in _all(clinic, "Condition") if c["code"]["coding"][0]["code"] == "J18.9")
    assert condition["category"][0]["coding"][0]["code"] == "problem-list-item"
    assert condition["clinicalStatus"]["coding"][0]["code"] == "active" and condition["onsetDateTime"] == "2026-11-01"
    problems = _section(b.get(f"/patients/{AN}").text, "problems")
    assert "J18.9" in problems and f'/problems/{condition["id"]}/resolve' in problems

    r = b.post(f"/patients/{AN}/problems/{condition['id']}/resolve", data={"csrf": csrf, "version": "7"})
    assert r.status_code == 409 and "This record was changed" in r.text  # someone else's change is not overwritten
    r = b.post(f"/patients/{AN}/problems/{condition['id']}/resolve", data={"csrf": csrf, "version": "1"})
    assert r.status_code == 303
    resolved = next(c for c in _all(clinic, "Condition") if c["id"] == condition["id"])
    assert resolved["clinicalStatus"]["coding"][0]["code"] == "resolved" and "abatementDateTime" in resolved
    assert "J18.9" not in _section(b.get(f"/patients/{AN}").text, "problems")


def test_problem_errors(clinic):
    b = sign_in(clinic, "lan", lang="fr")
    _, csrf = _chart(b)
    tomorrow = (datetime.now() + timedelta(days=2)).date().isoformat()
    r = b.post(f"/patients/{AN}/problems", data={"csrf": csrf, "code": "pneumonia", "onset": tomorrow})
    assert r.status_code == 422
    form = _section(r.text, "problems")
    assert "pneumonia n’est pas un code CIM-10." in form and "La date ne peut pas être dans le futur." in form
    assert 'value="pneumonia"' in form


def test_recording_an_immunization_and_its_errors(clinic):
    b = sign_in(clinic, "lan", lang="en")
    _, csrf = _chart(b)
    r = b.post(f"/patients/{AN}/immunizations", data={"csrf": csrf, "vaccine": "influenza", "given": "2026-10-05",
                                                     "dose": "1", "lot": "FLU-2026-A", "note": ""})
    assert r.status_code == 303 and r.headers["location"] == f"/patients/{AN}#immunizations"
    immunization = _all(clinic, "Immunization")[0]
    assert immunization["vaccineCode"]["coding"][0] == {"system": "http://hl7.org/fhir/sid/cvx", "code": "88",
                                                        "display": "influenza, unspecified formulation"}
    assert immunization["protocolApplied"] == [{"doseNumberPositiveInt": 1}] and immunization["primarySource"]
    section = _section(b.get(f"/patients/{AN}").text, "immunizations")
    assert "Influenza" in section and "5 Oct 2026" in section and "FLU-2026-A" in section
    r = b.post(f"/patients/{AN}/immunizations", data={"csrf": csrf, "vaccine": "bcg", "given": "1980-01-01",
                                                     "dose": "0"})
    form = _section(r.text, "immunizations")
    assert r.status_code == 422 and "The date is before the patient&#39;s birth." in form
    assert "The dose is a number from 1 to 20." in form and len(_all(clinic, "Immunization")) == 1


def test_documents_are_uploaded_listed_and_opened(clinic):
    b = sign_in(clinic, "lan", lang="en")
    _, csrf = _chart(b)
    htmx = {"X-CSRF-Token": csrf, "HX-Request": "true"}
    r = b.post(f"/patients/{AN}/documents", headers=htmx, data={"title": "Kết quả CT ngực", "kind": "imaging"},
               files={"file": ("ct scan.pdf", PDF, "application/pdf")})
    assert r.status_code == 200 and "The document was added." in _section(r.text, "documents")  # htmx: in place
    document = _all(clinic, "DocumentReference")[0]
    attachment = document["content"][0]["attachment"]
    assert attachment["contentType"] == "application/pdf" and attachment["size"] == len(PDF)
    assert attachment["url"].startswith("Binary/") and attachment["title"] == "ct scan.pdf"
    assert document["type"]["coding"][0]["code"] == "18748-4" and document["subject"]["reference"] == f"Patient/{AN}"
    section = _section(b.get(f"/patients/{AN}").text, "documents")
    assert "Kết quả CT ngực" in section and "Imaging report or image" in section and "PDF" in section
    opened = b.get(f"/patients/{AN}/documents/{document['id']}")
    assert opened.status_code == 200 and opened.content == PDF
    assert opened.headers["content-type"] == "application/pdf" and opened.headers["x-content-type-options"] == "nosniff"
    assert "inline" in opened.headers["content-disposition"] and opened.headers["cache-control"] == "no-store"
    event = orjson.loads(clinic.state.security.audit.search(username="lan", count=1)[0][1])
    assert any(e["what"]["reference"] == f"Patient/{AN}" for e in event["entity"])


def test_a_document_must_be_a_pdf_or_an_image_and_the_upload_needs_the_csrf_header(clinic):
    b = sign_in(clinic, "lan", lang="en")
    _, csrf = _chart(b)
    before = len(_all(clinic, "Binary"))
    r = b.post(f"/patients/{AN}/documents", headers={"X-CSRF-Token": csrf},
               data={"title": "", "kind": "other", "csrf": csrf},
               files={"file": ("evil.pdf", b"<html><script>alert(1)</script>", "application/pdf")})
    assert r.status_code == 422 and len(_all(clinic, "Binary")) == before
    form = _section(r.text, "documents")
    assert "Only PDF, JPEG and PNG files can be added." in form and "Give the document a title." in form
    r = b.post(f"/patients/{AN}/documents", data={"title": "x", "kind": "other", "csrf": csrf},
               files={"file": ("a.png", PNG, "image/png")})
    assert r.status_code == 403  # multipart without the header: the gate reads no CSRF field there
    r = b.post(f"/patients/{AN}/documents", headers={"X-CSRF-Token": csrf}, data={"title": "Ảnh", "kind": "other"},
               files={"file": ("photo", PNG, "application/octet-stream")})
    assert r.status_code == 303  # the type comes from the bytes
    stored = next(d for d in _all(clinic, "DocumentReference") if d["description"] == "Ảnh")
    assert stored["content"][0]["attachment"]["contentType"] == "image/png"
    assert stored["content"][0]["attachment"]["title"] == "photo.png"


def test_roles_and_organizations_apply_to_the_forms(clinic):
    nurse = sign_in(clinic, "hoa")
    html, csrf = _chart(nurse)
    assert "Thêm dị ứng" in html and "Thêm bệnh lý" not in html and "Ghi nhận tiêm chủng" not in html
    r = nurse.post(f"/patients/{AN}/problems", data={"csrf": csrf, "code": "I10"})
    assert r.status_code == 403
    r = nurse.post(f"/patients/{AN}/immunizations", data={"csrf": csrf, "vaccine": "bcg", "given": "2026-01-01"})
    assert r.status_code == 403
    reception = _chart(sign_in(clinic, "thu"))[0]
    assert 'id="allergies"' not in reception and 'id="documents"' not in reception
    manager = sign_in(clinic, "minh")
    assert manager.get(f"/patients/{AN}").status_code == 403
    other = sign_in(clinic, "hue")  # a nurse of another hospital: An is not theirs
    home = other.get("/")
    r = other.post(f"/patients/{AN}/allergies", data={"csrf": csrf_of(home.text), "substance": "Aspirin",
                                                      "criticality": "high"})
    assert r.status_code == 404
    document = _all(clinic, "DocumentReference")
    if document:
        assert other.get(f"/patients/{AN}/documents/{document[0]['id']}").status_code == 404
    assert sign_in(clinic, "thu").get("/chart/icd10", params={"code": "I10"}).status_code == 403
