"""Signed records on both backends: sign, verify, tampering, foreign certificates, immutability and
corrections; the $sign / $verify-signature operations; the `sante ca|sign|verify` commands."""

from __future__ import annotations

import base64
import json

import orjson
import pytest
from sqlalchemy import text

from sante.anomaly import Anomaly, Category
from sante.api.app import create_app
from sante.api.signing_routes import correction_from_request
from sante.auth import ca
from sante.cli import main
from sante.clinical import signing
from tests.support.api import client_for

REPORT = {
    "resourceType": "DiagnosticReport",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2", "display": "CBC panel"}],
             "text": "Tổng phân tích tế bào máu"},
    "conclusion": "Bình thường",
}


@pytest.fixture(autouse=True)
def _no_passphrase(monkeypatch):
    monkeypatch.delenv(ca.PASSPHRASE_ENV, raising=False)


@pytest.fixture
def ca_dir(tmp_path):
    d = tmp_path / "data" / "ca"
    ca.init_ca(d, "Sante Hospital CA")
    return d


def practitioner(repo, family: str = "Nguyễn", given: str = "An") -> str:
    stored = repo.create({"resourceType": "Practitioner", "name": [{"family": family, "given": [given],
                                                                    "prefix": ["BS."]}]})
    return f"Practitioner/{stored.id}"


def signer(ca_dir, ref: str, name: str = "BS. Nguyễn An"):
    ca.issue(ca_dir, ref, name)
    return ca.load_signer(ca_dir, ref)


@pytest.fixture
def signed(repo, ca_dir):
    """(report id, practitioner ref, Provenance) for a DiagnosticReport signed at version 2."""
    ref = practitioner(repo)
    rid = repo.create(REPORT).id
    repo.update({**REPORT, "id": rid, "conclusion": "Bình thường, không thiếu máu"}, rid)
    key, chain = signer(ca_dir, ref)
    return rid, ref, signing.sign(repo, "DiagnosticReport", rid, ref, key, chain)


def test_sign_records_a_provenance_with_a_jws(repo, signed, ca_dir):
    rid, ref, prov = signed
    assert prov["resourceType"] == "Provenance" and prov["meta"]["versionId"] == "1"
    assert prov["target"] == [{"reference": f"DiagnosticReport/{rid}/_history/2"}]
    assert prov["agent"][0]["who"] == {"reference": ref, "display": "BS. An Nguyễn"}
    sig = prov["signature"][0]
    assert sig["type"][0]["code"] == "1.2.840.10065.1.12.1.1" and sig["sigFormat"] == "application/jose"
    assert sig["who"]["reference"] == ref and sig["when"] == prov["recorded"]
    jws = base64.b64decode(sig["data"]).decode()
    _, payload, _ = jws.split(".")
    assert payload == ""  # detached: the content is the stored version, not a copy
    assert repo.read("Provenance", prov["id"]).resource == prov

    report = signing.verify(repo, prov["id"], ca_dir=ca_dir)
    assert report.ok and report.valid and report.problems == []
    assert report.signer == ref and report.signer_name == "BS. Nguyễn An"
    assert report.target == f"DiagnosticReport/{rid}/_history/2" and report.when == prov["recorded"]
    assert (report.signed_version, report.current_version, report.changed) == (2, 2, False)
    assert signing.is_signed(repo, "DiagnosticReport", rid, 2)
    assert not signing.is_signed(repo, "DiagnosticReport", rid, 1)
    assert signing.verify(repo, f"Provenance/{prov['id']}", ca_dir=ca_dir).ok


def test_canonical_json_is_sorted_and_compact():
    assert signing.canonical({"b": 1, "a": {"d": [2, {"z": 1, "y": "é"}], "c": None}}) == \
        '{"a":{"c":null,"d":[2,{"y":"é","z":1}]},"b":1}'.encode()


def test_a_new_version_is_reported_as_changed(repo, signed, ca_dir):
    rid, _, prov = signed
    repo.update({**REPORT, "id": rid, "conclusion": "Thiếu máu nhẹ"}, rid)
    report = signing.verify(repo, prov["id"], ca_dir=ca_dir)
    assert report.valid and report.changed and not report.ok and report.current_version == 3
    params = report.to_parameters()
    values = {p["name"]: p.get("valueBoolean") for p in params["parameter"]}
    assert values["valid"] is True and values["unchanged"] is False
    repo.delete("DiagnosticReport", rid)
    report = signing.verify(repo, prov["id"], ca_dir=ca_dir)
    assert report.valid and report.changed and report.current_version is None


def test_a_tampered_signature_is_invalid(repo, signed, ca_dir):
    _, _, prov = signed
    jws = base64.b64decode(prov["signature"][0]["data"]).decode()
    head, _, sig = jws.split(".")
    forged = f"{head}..{sig[:10]}{'A' if sig[10] != 'A' else 'B'}{sig[11:]}"
    prov["signature"][0]["data"] = base64.b64encode(forged.encode()).decode()
    repo.update(prov, prov["id"])
    report = signing.verify(repo, prov["id"], ca_dir=ca_dir)
    assert not report.signature_valid and not report.ok
    assert report.chain_valid  # the certificate itself is still the hospital's
    assert any("not valid for" in p for p in report.problems)

    prov["signature"][0]["data"] = base64.b64encode(b"not a jws").decode()
    repo.update(prov, prov["id"])
    assert "cannot be read" in signing.verify(repo, prov["id"], ca_dir=ca_dir).problems[0]


def test_content_altered_in_the_database_breaks_the_signature(repo, signed, ca_dir):
    rid, _, prov = signed
    stored = repo.vread("DiagnosticReport", rid, 2)
    altered = stored.content.replace("không thiếu máu".encode(), "thiếu máu nặng".encode())
    with repo.engine.begin() as conn:
        conn.execute(text("UPDATE resource_history SET content = :c WHERE type = 'DiagnosticReport' AND id = :i "
                          "AND version = 2"), {"c": altered, "i": rid})
        conn.execute(text("UPDATE resources SET content = :c WHERE type = 'DiagnosticReport' AND id = :i"),
                     {"c": altered, "i": rid})
    report = signing.verify(repo, prov["id"], ca_dir=ca_dir)
    assert not report.signature_valid and not report.changed and not report.ok
    assert any("does not match the content" in p for p in report.problems)


def test_a_certificate_from_another_ca_is_not_trusted(repo, tmp_path, ca_dir):
    ref = practitioner(repo)
    rid = repo.create(REPORT).id
    rogue = tmp_path / "rogue-ca"
    ca.init_ca(rogue, "Sante Hospital CA")  # same name, another key
    key, chain = signer(rogue, ref)
    prov = signing.sign(repo, "DiagnosticReport", rid, ref, key, chain)
    report = signing.verify(repo, prov["id"], ca_dir=ca_dir)
    assert report.signature_valid and not report.chain_valid and not report.valid
    assert any("not issued by the hospital CA" in p for p in report.problems)
    assert signing.verify(repo, prov["id"], ca_dir=rogue).valid


def test_the_signer_must_be_the_certificate_holder(repo, ca_dir):
    alice, bob = practitioner(repo, "A", "Alice"), practitioner(repo, "B", "Bob")
    rid = repo.create(REPORT).id
    key, chain = signer(ca_dir, alice)
    with pytest.raises(Anomaly) as e:
        signing.sign(repo, "DiagnosticReport", rid, bob, key, chain)
    assert e.value.category == Category.FORBIDDEN
    # A Provenance edited to name someone else is caught by verify.
    prov = signing.sign(repo, "DiagnosticReport", rid, alice, key, chain)
    prov["signature"][0]["who"] = {"reference": bob}
    repo.update(prov, prov["id"])
    report = signing.verify(repo, prov["id"], ca_dir=ca_dir)
    assert report.signature_valid and report.chain_valid and not report.valid
    assert any("issued to" in p for p in report.problems)


def test_what_can_be_signed_and_by_whom(repo, ca_dir):
    ref = practitioner(repo)
    key, chain = signer(ca_dir, ref)
    patient = repo.create({"resourceType": "Patient"}).id
    with pytest.raises(Anomaly) as e:
        signing.sign(repo, "Patient", patient, ref, key, chain)
    assert e.value.category == Category.INCORRECT and "DiagnosticReport" in e.value.message
    with pytest.raises(Anomaly) as e:
        signing.sign(repo, "DiagnosticReport", "nope", ref, key, chain)
    assert e.value.category == Category.NOT_FOUND
    ghost = "Practitioner/ghost"
    gkey, gchain = signer(ca_dir, ghost)
    rid = repo.create(REPORT).id
    with pytest.raises(Anomaly) as e:
        signing.sign(repo, "DiagnosticReport", rid, ghost, gkey, gchain)
    assert e.value.category == Category.NOT_FOUND and "Practitioner/ghost" in e.value.message

    mr = repo.create({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                      "medicationCodeableConcept": {"text": "Paracetamol 500mg"},
                      "subject": {"reference": f"Patient/{patient}"}}).id
    assert signing.verify(repo, signing.sign(repo, "MedicationRequest", mr, ref, key, chain)["id"],
                          ca_dir=ca_dir).ok
    # Once per practitioner and version; a second practitioner may co-sign.
    with pytest.raises(Anomaly) as e:
        signing.sign(repo, "MedicationRequest", mr, ref, key, chain)
    assert e.value.category == Category.CONFLICT
    other = practitioner(repo, "Lê", "Bình")
    okey, ochain = signer(ca_dir, other, "BS. Lê Bình")
    assert signing.verify(repo, signing.sign(repo, "MedicationRequest", mr, other, okey, ochain)["id"],
                          ca_dir=ca_dir).ok
    assert len(signing.signatures(repo, "MedicationRequest", mr)) == 2


def test_signed_versions_are_immutable_corrections_need_a_reason(repo, signed, ca_dir):
    rid, ref, prov = signed
    with pytest.raises(Anomaly) as e:
        signing.check_update_allowed(repo, "DiagnosticReport", rid, None)
    assert e.value.category == Category.CONFLICT and e.value.category.status == 409
    assert prov["id"] in e.value.message
    with pytest.raises(Anomaly):
        signing.check_update_allowed(repo, "DiagnosticReport", rid, "   ")
    assert signing.check_update_allowed(repo, "DiagnosticReport", rid, "wrong patient") == 2
    assert signing.check_update_allowed(repo, "Patient", "x", None) is None
    with pytest.raises(Anomaly) as e:  # the signature itself never changes
        signing.check_update_allowed(repo, "Provenance", prov["id"], "any reason")
    assert e.value.category == Category.CONFLICT

    with pytest.raises(Anomaly) as e:
        signing.correct(repo, "DiagnosticReport", rid, {**REPORT, "status": "corrected"}, "", ref)
    assert e.value.category == Category.INCORRECT
    corrected = {**REPORT, "status": "corrected", "conclusion": "Thiếu máu nhẹ"}
    stored, correction = signing.correct(repo, "DiagnosticReport", rid, corrected, "kết quả nhập nhầm", ref)
    assert stored.version == 3 and stored.resource["status"] == "corrected"
    assert correction["target"] == [{"reference": f"DiagnosticReport/{rid}/_history/3"}]
    assert correction["reason"] == [{"text": "kết quả nhập nhầm"}]
    assert correction["activity"]["coding"][0]["code"] == "UPDATE"
    assert correction["entity"] == [{"role": "revision",
                                     "what": {"reference": f"DiagnosticReport/{rid}/_history/2"}}]

    # The signed version stays readable, and still verifies; the report names the correction.
    assert repo.vread("DiagnosticReport", rid, 2).resource["conclusion"] == "Bình thường, không thiếu máu"
    report = signing.verify(repo, prov["id"], ca_dir=ca_dir)
    assert report.valid and report.changed and report.current_version == 3
    assert report.corrections == [{"version": 3, "reason": "kết quả nhập nhầm", "who": ref,
                                   "recorded": correction["recorded"]}]
    assert "kết quả nhập nhầm" in report.to_text()
    # The correction is not signed yet: it may change freely until it is.
    assert signing.check_update_allowed(repo, "DiagnosticReport", rid, None) is None


def test_check_and_correction_inside_the_callers_transaction(repo, signed):
    rid, ref, _ = signed
    with repo.transaction() as tx:
        version = signing.check_update_allowed(tx, "DiagnosticReport", rid, "typo")
        stored, _ = tx.update({**REPORT, "id": rid, "status": "amended"}, rid, if_match=version)
        prov = signing.record_correction(tx, "DiagnosticReport", rid, stored.version, version, "typo", ref)
    assert repo.read("Provenance", prov["id"]).resource["reason"] == [{"text": "typo"}]


# -- the API ----------------------------------------------------------------------------------------------------
@pytest.fixture
def app(repo, tmp_path):
    data_dir = tmp_path / "data"
    return create_app(repo, data_dir)  # registers $sign and $verify-signature


@pytest.fixture
def client(app):
    return client_for(app)  # a system client: it names the practitioner


def sign_params(ref: str) -> dict:
    return {"resourceType": "Parameters", "parameter": [{"name": "practitioner", "valueReference": {"reference": ref}}]}


def test_sign_and_verify_over_http(repo, ca_dir, client):
    ref = practitioner(repo)
    ca.issue(ca_dir, ref, "BS. Nguyễn An")
    rid = repo.create(REPORT).id
    r = client.post(f"/fhir/DiagnosticReport/{rid}/$sign", json=sign_params(ref))
    assert r.status_code == 201, r.text
    prov = r.json()
    assert prov["resourceType"] == "Provenance" and r.headers["location"].endswith(f"/Provenance/{prov['id']}/_history/1")
    assert prov["target"][0]["reference"] == f"DiagnosticReport/{rid}/_history/1"

    v = client.get(f"/fhir/Provenance/{prov['id']}/$verify-signature")
    assert v.status_code == 200, v.text
    params = {p["name"]: p for p in v.json()["parameter"]}
    assert params["valid"]["valueBoolean"] and params["unchanged"]["valueBoolean"]
    assert params["signer"]["valueReference"] == {"reference": ref, "display": "BS. Nguyễn An"}
    assert params["outcome"]["resource"]["issue"][0]["severity"] == "information"

    repo.update({**REPORT, "id": rid, "status": "amended"}, rid)
    params = {p["name"]: p for p in client.get(f"/fhir/Provenance/{prov['id']}/$verify-signature").json()["parameter"]}
    assert params["valid"]["valueBoolean"] and not params["unchanged"]["valueBoolean"]
    assert params["currentVersion"]["valueInteger"] == 2
    # The ordinary routes still work beside the operations.
    assert client.get(f"/fhir/Provenance/{prov['id']}").json()["id"] == prov["id"]
    assert client.get("/fhir/Patient/x/Observation").status_code in (200, 404)


@pytest.mark.parametrize("path,body,status,needle", [
    ("/fhir/Patient/{rid}/$sign", "params", 400, "cannot be signed"),
    ("/fhir/DiagnosticReport/{rid}/$sign", {"resourceType": "Parameters"}, 400, "practitioner"),
    ("/fhir/DiagnosticReport/{rid}/$sign", {"resourceType": "Patient"}, 400, "Parameters"),
    ("/fhir/DiagnosticReport/nope/$sign", "params", 404, "not known"),
    ("/fhir/DiagnosticReport/{rid}/$sign", "unissued", 404, "sante ca issue"),
])
def test_sign_errors_are_operation_outcomes(repo, ca_dir, client, path, body, status, needle):
    ref = practitioner(repo)
    ca.issue(ca_dir, ref, "BS. An")
    rid = repo.create(REPORT).id
    if body == "params":
        body = sign_params(ref)
    elif body == "unissued":
        body = sign_params(practitioner(repo, "Khác", "Người"))
    r = client.post(path.format(rid=rid), json=body)
    assert r.status_code == status, r.text
    issue = r.json()["issue"][0]
    assert r.json()["resourceType"] == "OperationOutcome" and needle in issue["diagnostics"]


def test_a_practitioner_signs_only_as_themselves(repo, ca_dir, app):
    me, other = practitioner(repo), practitioner(repo, "Lê", "Bình")
    ca.issue(ca_dir, me, "BS. Nguyễn An")
    ca.issue(ca_dir, other, "BS. Lê Bình")
    rid = repo.create(REPORT).id
    doctor = client_for(app, role="physician", scopes="user/*.cruds", fhir_user=me, subject="an")
    r = doctor.post(f"/fhir/DiagnosticReport/{rid}/$sign", json=sign_params(other))
    assert r.status_code == 403 and "only as themselves" in r.json()["issue"][0]["diagnostics"]
    r = doctor.post(f"/fhir/DiagnosticReport/{rid}/$sign")  # no parameter: the signed-in practitioner
    assert r.status_code == 201, r.text
    assert r.json()["signature"][0]["who"]["reference"] == me
    assert doctor.get(f"/fhir/Provenance/{r.json()['id']}/$verify-signature").status_code == 200

    for role, fhir_user in (("receptionist", me), ("nurse", None), ("admin", None)):
        c = client_for(app, role=role, scopes="user/*.cruds", fhir_user=fhir_user, subject=role)
        r = c.post(f"/fhir/DiagnosticReport/{rid}/$sign", json=sign_params(other))
        assert r.status_code == 403, (role, r.text)
    no_token = client_for(app)
    no_token.headers.pop("Authorization")
    assert no_token.post(f"/fhir/DiagnosticReport/{rid}/$sign", json=sign_params(other)).status_code == 401
    assert no_token.get("/fhir/Provenance/x/$verify-signature").status_code == 401


def test_verify_over_http_of_an_unsigned_or_unknown_provenance(repo, ca_dir, client):
    rid = repo.create(REPORT).id
    plain = repo.create({"resourceType": "Provenance", "target": [{"reference": f"DiagnosticReport/{rid}"}],
                         "recorded": "2024-05-01T00:00:00Z",
                         "agent": [{"who": {"reference": practitioner(repo)}}]}).id
    r = client.get(f"/fhir/Provenance/{plain}/$verify-signature")
    params = {p["name"]: p for p in r.json()["parameter"]}
    assert r.status_code == 200 and params["valid"]["valueBoolean"] is False
    assert "no application/jose signature" in params["outcome"]["resource"]["issue"][0]["diagnostics"]
    r = client.get("/fhir/Provenance/nope/$verify-signature")
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"


def test_correction_reason_from_the_x_provenance_header():
    class FakeRequest:
        def __init__(self, headers):
            self.headers = headers

    header = orjson.dumps({"resourceType": "Provenance", "reason": [{"text": "sai liều"}],
                           "agent": [{"who": {"reference": "Practitioner/1"}}]}).decode()
    assert correction_from_request(FakeRequest({"X-Provenance": header})) == ("sai liều", "Practitioner/1")
    assert correction_from_request(FakeRequest({})) == (None, None)
    with pytest.raises(Anomaly):
        correction_from_request(FakeRequest({"X-Provenance": "{not json"}))


# -- the command line -------------------------------------------------------------------------------------------
def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_round_trip(capsys, tmp_path, monkeypatch, database_url):
    from sante.store import open_repository

    monkeypatch.setenv("SANTE_DATA_DIR", str(tmp_path / "cli-data"))
    monkeypatch.setenv("SANTE_DATABASE_URL", database_url)
    code, out, err = run(capsys, "ca", "init", "--name", "Bệnh viện Sante CA")
    assert code == 0 and "CN=Bệnh viện Sante CA" in out and "NOT encrypted" in out, err
    code, _, err = run(capsys, "ca", "init")
    assert code == 2 and "already exists" in err and err.count("\n") == 1

    repo = open_repository(database_url)
    try:
        ref = practitioner(repo)
        rid = repo.create(REPORT).id
        code, out, err = run(capsys, "ca", "issue", ref, "--name", "BS. Nguyễn An")
        assert code == 0 and ref in out, err
        code, out, err = run(capsys, "sign", f"DiagnosticReport/{rid}", "--practitioner", ref)
        assert code == 0, err
        pid = out.split(":")[0].removeprefix("Provenance/")
        code, out, err = run(capsys, "verify", pid)
        assert code == 0 and "VALID, unchanged" in out and "BS. Nguyễn An" in out, out + err

        repo.update({**REPORT, "id": rid, "status": "amended"}, rid)
        code, out, _ = run(capsys, "verify", f"Provenance/{pid}")
        assert code == 1 and "changed since" in out and "now version 2" in out
    finally:
        repo.close()

    for argv, needle in [
        (("verify", "nope"), "not known"),
        (("sign", "DiagnosticReport", "--practitioner", ref), "TYPE/ID"),
        (("sign", f"Patient/{rid}", "--practitioner", ref), "cannot be signed"),
        (("sign", f"DiagnosticReport/{rid}", "--practitioner", "Practitioner/none"), "sante ca issue"),
        (("ca", "issue", "Patient/1", "--name", "X"), "not a Practitioner reference"),
        (("ca", "import", str(tmp_path / "missing.pem"), str(tmp_path / "missing.key")), "no such file"),
    ]:
        code, _, err = run(capsys, *argv)
        assert code == 2 and needle in err and err.startswith("sante: ") and err.count("\n") == 1, err


def test_cli_import(capsys, tmp_path, monkeypatch):
    src = tmp_path / "elsewhere"
    ca.init_ca(src, "Imported CA")
    monkeypatch.setenv("SANTE_DATA_DIR", str(tmp_path / "cli-data"))
    code, out, err = run(capsys, "ca", "import", str(src / "ca.crt"), str(src / "ca.key"))
    assert code == 0 and "CN=Imported CA" in out, err
    assert ca.hospital_ca(tmp_path / "cli-data" / "ca") == ca.hospital_ca(src)


def test_signed_versions_are_guarded_over_http(repo, signed, client):
    rid, ref, _ = signed
    changed = {**REPORT, "id": rid, "conclusion": "Thiếu máu nhẹ"}
    r = client.put(f"/fhir/DiagnosticReport/{rid}", json=changed)
    assert r.status_code == 409 and r.json()["resourceType"] == "OperationOutcome"
    assert client.delete(f"/fhir/DiagnosticReport/{rid}").status_code == 409
    patch = [{"op": "replace", "path": "/conclusion", "value": "x"}]
    assert client.patch(f"/fhir/DiagnosticReport/{rid}", json=patch,
                        headers={"Content-Type": "application/json-patch+json"}).status_code == 409
    header = json.dumps({"resourceType": "Provenance", "reason": [{"text": "sai kết luận"}],
                         "agent": [{"who": {"reference": ref}}]})  # ASCII: non-ASCII as \\u escapes
    r = client.put(f"/fhir/DiagnosticReport/{rid}", json=changed, headers={"X-Provenance": header})
    assert r.status_code == 200 and r.json()["meta"]["versionId"] == "3"
    assert client.get(f"/fhir/DiagnosticReport/{rid}/_history/2").json()["conclusion"] == "Bình thường, không thiếu máu"
    provs = client.get("/fhir/Provenance", params={"target": f"DiagnosticReport/{rid}/_history/3"}).json()
    reasons = [e["resource"]["reason"][0]["text"] for e in provs.get("entry", []) if "reason" in e["resource"]]
    assert reasons == ["sai kết luận"]


def test_a_correction_by_an_account_linked_to_no_practitioner_names_its_username(repo, signed):
    """An administrator (no FHIR resource behind the account) corrects a signed record through a page-like
    guarded update: the correction's Provenance names the username as an identifier, not a broken reference."""
    from sante.auth.guarded import GuardedRepository
    from sante.auth.principal import Principal
    from sante.auth.scopes import Scopes

    rid, _, _ = signed
    admin = Principal("root", "admin", Scopes.parse("user/*.cruds"))
    changed = {**REPORT, "id": rid, "conclusion": "Thiếu máu nhẹ"}
    guarded = GuardedRepository(repo, admin)
    guarded.update(changed, reason="sửa lỗi đánh máy")
    found = guarded.search("Provenance", [("target", f"DiagnosticReport/{rid}/_history/3")])
    provenances = [p.resource for p in found.matches]
    (correction,) = [p for p in provenances if p.get("reason")]
    assert correction["agent"][0]["who"] == {"identifier": {"system": signing.USERNAME_SYSTEM, "value": "root"},
                                             "display": "root"}
