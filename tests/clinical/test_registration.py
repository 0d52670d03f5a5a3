"""Registration at the reception desk and the merge of duplicate records (sante.clinical.registration,
sante.clinical.merge, POST /fhir/Patient/$merge), on both backends."""

from __future__ import annotations

import threading
from datetime import date

import pytest

from sante.anomaly import Anomaly, Category
from sante.auth import ca
from sante.auth.guarded import GuardedRepository
from sante.clinical import merge as merging
from sante.clinical import signing
from sante.clinical.forms import InvalidInput
from sante.clinical.identifiers import BHYT_SYSTEM, CCCD_SYSTEM, MRN_SYSTEM
from sante.clinical.registration import (
    DuplicatePatient,
    RegistrationForm,
    find_duplicates,
    normalise_phone,
    register,
    to_patient,
    validate,
)
from tests.support.api import api_client
from tests.support.outpatient import HOSPITAL, PHYSICIAN, build_hospital, staff

TODAY = date(2026, 11, 23)


def form(**changes) -> RegistrationForm:
    base = RegistrationForm(family_name="NGUYỄN", given_names="văn an", sex="male", birth_date="12/03/1985",
                            cccd="040085001234", bhyt="DN4404012345678", phone="+84 912 345 678",
                            address_line="Số 5, đường Lê Lợi", commune_code="16681", contact_name="Trần Thị Bình",
                            contact_phone="0987.654.321", contact_relationship="SPS")
    for k, v in changes.items():
        setattr(base, k, v)
    return base


# -- the form ---------------------------------------------------------------------------------------------------
def test_a_good_form_has_no_problem():
    assert validate(form(), today=TODAY) == []


@pytest.mark.parametrize(("changes", "key", "field"), [
    ({"family_name": " "}, "name.family.required", "family_name"),
    ({"given_names": ""}, "name.given.required", "given_names"),
    ({"sex": ""}, "sex.required", "sex"),
    ({"sex": "nam"}, "sex.invalid", "sex"),
    ({"birth_date": None}, "birth_date.required", "birth_date"),
    ({"birth_date": "31/02/1985"}, "birth_date.format", "birth_date"),
    ({"birth_date": "hôm qua"}, "birth_date.format", "birth_date"),
    ({"birth_date": "01/12/2026", "cccd": ""}, "birth_date.future", "birth_date"),
    ({"birth_date": date(1880, 1, 1), "cccd": ""}, "birth_date.too-old", "birth_date"),
    ({"cccd": "04008500123"}, "cccd.length", "cccd"),
    ({"cccd": "04008500123A"}, "cccd.digits", "cccd"),
    ({"cccd": "999085001234"}, "cccd.province", "cccd"),
    ({"cccd": "040885001234"}, "cccd.birth-year", "cccd"),  # digit 8: the 2300s
    ({"bhyt": "DN440401234567"}, "bhyt.length", "bhyt"),
    ({"bhyt": "DN9404012345678"}, "bhyt.format", "bhyt"),
    ({"phone": "012345"}, "phone.format", "phone"),
    ({"phone": "0112345678"}, "phone.format", "phone"),
    ({"commune_code": "99999"}, "address.commune.unknown", "commune_code"),
    ({"commune_code": ""}, "address.commune.required", "commune_code"),
    ({"contact_phone": "12"}, "contact.phone.format", "contact_phone"),
    ({"contact_name": ""}, "contact.name.required", "contact_name"),
    ({"contact_phone": ""}, "contact.phone.required", "contact_phone"),
    ({"contact_relationship": "BOSS"}, "contact.relationship.unknown", "contact_relationship"),
])
def test_each_field_has_its_message(changes, key, field):
    problems = validate(form(**changes), today=TODAY)
    assert [(p.key, p.field, p.severity) for p in problems] == [(key, field, "error")]
    p = problems[0]
    assert p.text and "{" not in p.text  # the English text, its placeholders filled
    assert p.text == p.template.format(**p.params)


def test_a_cccd_that_disagrees_is_a_warning_not_an_error():
    problems = validate(form(sex="female", birth_date="1986"), today=TODAY)
    assert [(p.key, p.severity) for p in problems] == [("cccd.sex-mismatch", "warning"),
                                                       ("cccd.birth-year-mismatch", "warning")]
    assert "1985" in problems[1].text and "1986" in problems[1].text


def test_phones_are_read_in_their_vietnamese_forms():
    assert normalise_phone("0912 345 678") == normalise_phone("+84912345678") == normalise_phone("84-912-345-678") \
        == "0912345678"
    assert normalise_phone("(0238) 3844.000") == "02383844000"
    assert normalise_phone("0412345678") is None


def test_the_patient_resource():
    p = to_patient(form(legacy_address="Xóm 3, xã Nghi Phú, TP Vinh"), mrn="26000001",
                   organization=f"Organization/{HOSPITAL}", today=TODAY)
    assert p["name"] == [{"use": "official", "text": "Nguyễn Văn An", "family": "Nguyễn", "given": ["Văn", "An"]}]
    assert [(i["system"], i["value"]) for i in p["identifier"]] == [
        (MRN_SYSTEM, "26000001"), (CCCD_SYSTEM, "040085001234"), (BHYT_SYSTEM, "DN4404012345678")]
    assert p["gender"] == "male" and p["birthDate"] == "1985-03-12" and p["active"] is True
    assert p["telecom"] == [{"system": "phone", "value": "0912345678", "use": "mobile"}]
    home, old = p["address"]
    assert home["city"] == "Phường Thành Vinh" and home["line"] == ["Số 5, đường Lê Lợi"]
    assert old == {"use": "old", "type": "physical", "text": "Xóm 3, xã Nghi Phú, TP Vinh", "country": "VN"}
    contact = p["contact"][0]
    assert contact["name"]["text"] == "Trần Thị Bình" and contact["telecom"][0]["value"] == "0987654321"
    assert [c["coding"][0]["code"] for c in contact["relationship"]] == ["C", "SPS"]
    assert p["managingOrganization"] == {"reference": f"Organization/{HOSPITAL}"}
    assert to_patient(form(birth_date="1950", cccd=""), today=TODAY)["birthDate"] == "1950"
    with pytest.raises(InvalidInput) as e:
        to_patient(form(phone="12"), today=TODAY)
    assert e.value.category is Category.UNPROCESSABLE and e.value.location == "phone"
    assert e.value.field_problems[0].key == "phone.format"


# -- registering ------------------------------------------------------------------------------------------------
@pytest.fixture
def hospital(repo):
    build_hospital(repo)
    return repo


@pytest.fixture
def reception(hospital) -> GuardedRepository:
    return GuardedRepository(hospital, staff("receptionist"))


def test_registration_assigns_running_mrns(reception):
    first = register(reception, form(), today=TODAY)
    second = register(reception, form(family_name="Lê", given_names="Thị Hoa", sex="female", birth_date="1990",
                                      cccd="", bhyt="", phone="0987000111", contact_name="", contact_phone=""),
                      today=TODAY)
    assert (first.mrn, second.mrn) == ("26000001", "26000002")
    stored = reception.read("Patient", first.patient_id).resource
    assert stored["identifier"][0] == {**stored["identifier"][0], "system": MRN_SYSTEM, "value": "26000001"}
    assert stored["managingOrganization"] == {"reference": f"Organization/{HOSPITAL}"}
    assert first.warnings == [] and first.possible_duplicates == []


def test_a_likely_duplicate_is_refused_then_allowed(reception):
    register(reception, form(), today=TODAY)
    again = form(family_name="Nguyen", given_names="Van An", cccd="", bhyt="", phone="")  # typed without accents
    with pytest.raises(DuplicatePatient) as e:
        register(reception, again, today=TODAY)
    assert e.value.category is Category.CONFLICT and e.value.location == "family_name"
    [candidate] = e.value.candidates
    assert candidate.level == "likely" and candidate.reasons == ("name-birth-date",)
    assert candidate.name == "Nguyễn Văn An" and candidate.mrn == "26000001"
    registered = register(reception, again, allow_duplicate=True, today=TODAY)
    assert registered.mrn == "26000002"


def test_the_same_cccd_is_a_certain_duplicate(reception):
    first = register(reception, form(), today=TODAY)
    other = form(family_name="Hoàng", given_names="Minh", birth_date="02/02/1985", bhyt="", phone="")
    for allow in (False, True):
        with pytest.raises(DuplicatePatient) as e:
            register(reception, other, allow_duplicate=allow, today=TODAY)
        assert e.value.location == "cccd"
        assert [(c.patient_id, c.level, c.score) for c in e.value.candidates] == [(first.patient_id, "certain", 100)]


def test_the_same_phone_and_birth_date_is_only_possible(reception):
    first = register(reception, form(), today=TODAY)
    sister = form(given_names="Thị Lan", sex="female", cccd="", bhyt="", contact_name="", contact_phone="")
    registered = register(reception, sister, today=TODAY)
    assert [(c.patient_id, c.level, c.reasons) for c in registered.possible_duplicates] == [
        (first.patient_id, "possible", ("phone-birth-date",))]
    with reception.reader() as g:
        found = find_duplicates(g, reception.read("Patient", registered.patient_id).resource)
    assert [c.patient_id for c in found] == [first.patient_id]  # not itself


def test_only_those_who_may_create_patients_register(hospital):
    nurse = GuardedRepository(hospital, staff("nurse"))
    with pytest.raises(Anomaly) as e:
        register(nurse, form(), today=TODAY)
    assert e.value.category is Category.FORBIDDEN


# -- merging ----------------------------------------------------------------------------------------------------
def _records_of(repo, pid: str) -> dict[str, str]:
    """Clinical records of a patient, as another system would have written them."""
    subject = {"reference": f"Patient/{pid}", "display": "Nguyễn Văn An"}
    with repo.transaction() as tx:
        enc = tx.create({"resourceType": "Encounter", "status": "finished", "subject": subject,
                         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}})
        obs = tx.create({"resourceType": "Observation", "status": "final", "code": {"text": "Mạch"},
                         "subject": subject, "encounter": {"reference": f"Encounter/{enc.id}"},
                         "valueQuantity": {"value": 80, "unit": "/min"}})
        cond = tx.create({"resourceType": "Condition", "code": {"text": "Tăng huyết áp"}, "subject": subject,
                          "encounter": {"reference": f"Encounter/{enc.id}"}})
        rx = tx.create({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                        "medicationReference": {"reference": "Medication/eml-amlodipine-5mg-tablet"},
                        "subject": subject, "reasonReference": [{"reference": f"Condition/{cond.id}"}]})
        rp = tx.create({"resourceType": "RelatedPerson", "patient": {"reference": f"Patient/{pid}"}})
    return {"Encounter": enc.id, "Observation": obs.id, "Condition": cond.id, "MedicationRequest": rx.id,
            "RelatedPerson": rp.id}


@pytest.fixture
def twins(reception):
    """(source id, target id, the source's records): the same man registered twice."""
    target = register(reception, form(cccd="", phone=""), today=TODAY)
    source = register(reception, form(bhyt="", family_name="Nguyen", given_names="Van An", phone="0912000111"),
                      allow_duplicate=True, today=TODAY)
    return source.patient_id, target.patient_id, _records_of(reception.repo, source.patient_id)


def test_merge_moves_every_reference_and_keeps_history(hospital, reception, twins):
    source, target, records = twins
    result = merging.merge(reception, source, target, reason="Đăng ký trùng")
    assert not result.preview
    assert sorted(result.moved) == sorted(f"{t}/{i}" for t, i in records.items())
    for rtype, rid in records.items():
        now = hospital.read(rtype, rid)
        assert now.version == 2
        body = now.resource
        ref = body.get("subject") or body.get("patient")
        assert ref["reference"] == f"Patient/{target}"
        before = hospital.vread(rtype, rid, 1).resource
        assert (before.get("subject") or before.get("patient"))["reference"] == f"Patient/{source}"
    assert hospital.read("Observation", records["Observation"]).resource["subject"]["display"] == "Nguyễn Văn An"

    src = hospital.read("Patient", source).resource
    tgt = hospital.read("Patient", target).resource
    assert src["active"] is False and src["link"] == [{"other": {"reference": f"Patient/{target}",
                                                                 "display": "Nguyễn Văn An"}, "type": "replaced-by"}]
    assert tgt["link"][0]["type"] == "replaces" and tgt["link"][0]["other"]["reference"] == f"Patient/{source}"
    ids = {(i["system"], i["value"]): i["use"] for i in tgt["identifier"]}
    assert ids[(CCCD_SYSTEM, "040085001234")] == "official"  # the person's number, as it was
    assert ids[(MRN_SYSTEM, "26000002")] == "old"  # the other record's number
    assert ids[(MRN_SYSTEM, "26000001")] == "usual"
    with reception.reader() as g:  # a merged record is no longer offered as a duplicate
        assert [c.patient_id for c in find_duplicates(g, form(), limit=5)] == [target]


def test_merge_preview_writes_nothing(hospital, reception, twins):
    source, target, records = twins
    result = merging.merge(reception, source, target, reason="Đăng ký trùng", preview=True)
    assert result.preview and len(result.moved) == len(records)
    assert result.source["active"] is False and result.target["link"][0]["type"] == "replaces"
    assert hospital.read("Patient", source).version == 1
    assert all(hospital.read(t, i).version == 1 for t, i in records.items())


def test_merge_refusals(hospital, reception, twins):
    source, target, _ = twins

    def refused(call) -> Anomaly:
        with pytest.raises(Anomaly) as e:
            call()
        return e.value

    e = refused(lambda: merging.merge(reception, target, target, reason="x"))
    assert e.category is Category.UNPROCESSABLE and e.location == "target-patient"
    assert refused(lambda: merging.merge(reception, source, target, reason=" ")).location == "reason"
    nurse = GuardedRepository(hospital, staff("nurse"))
    assert refused(lambda: merging.merge(nurse, source, target, reason="x")).category is Category.FORBIDDEN
    elsewhere = GuardedRepository(hospital, staff("receptionist", organization="Organization/other"))
    assert refused(lambda: merging.merge(elsewhere, source, target, reason="x")).category is Category.NOT_FOUND

    merging.merge(reception, source, target, reason="Đăng ký trùng")
    third = register(reception, form(family_name="Lê", given_names="Văn Tám", cccd="", bhyt="", phone=""),
                     today=TODAY).patient_id
    e = refused(lambda: merging.merge(reception, third, source, reason="x"))  # into a merged record
    assert e.location == "target-patient" and f"Patient/{target}" in e.message
    e = refused(lambda: merging.merge(reception, source, third, reason="x"))  # merged already
    assert e.location == "source-patient"
    assert hospital.read("Patient", third).version == 1  # nothing half-done


def _merge_params(source: str, target: str, *, preview: bool = False, result: dict | None = None) -> dict:
    params = [{"name": "source-patient", "valueReference": {"reference": f"Patient/{source}"}},
              {"name": "target-patient", "valueReference": {"reference": f"Patient/{target}"}}]
    if preview:
        params.append({"name": "preview", "valueBoolean": True})
    if result is not None:
        params.append({"name": "result-patient", "resource": result})
    return {"resourceType": "Parameters", "parameter": params}


def test_merge_over_http(hospital, twins, tmp_path):
    source, target, records = twins
    client = api_client(hospital, tmp_path / "data")
    r = client.post("/fhir/Patient/$merge", json=_merge_params(source, target, preview=True))
    assert r.status_code == 200, r.text
    out = {p["name"]: p["resource"] for p in r.json()["parameter"]}
    assert out["input"]["resourceType"] == "Parameters"
    issues = [i["diagnostics"] for i in out["outcome"]["issue"]]
    assert "would be merged" in issues[0] and len(issues) == 1 + len(records)
    assert out["result"]["id"] == target and out["result"]["meta"]["versionId"] == "1"  # not written
    assert client.get(f"/fhir/Patient/{source}").json()["active"] is True

    r = client.post("/fhir/Patient/$merge", json=_merge_params(source, target, result={"resourceType": "Patient",
                                                                                       "id": source}))
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["result-patient"]

    r = client.post("/fhir/Patient/$merge", json=_merge_params(source, target))
    assert r.status_code == 200, r.text
    out = {p["name"]: p["resource"] for p in r.json()["parameter"]}
    assert out["result"]["meta"]["versionId"] == "2" and out["result"]["link"][0]["type"] == "replaces"
    assert client.get(f"/fhir/Patient/{source}").json()["active"] is False
    obs = client.get(f"/fhir/Observation/{records['Observation']}").json()
    assert obs["subject"]["reference"] == f"Patient/{target}"
    r = client.post("/fhir/Patient/$merge", json=_merge_params(source, target))
    assert r.status_code == 422 and r.json()["issue"][0]["expression"] == ["source-patient"]

    nurse = api_client(hospital, tmp_path / "data", role="nurse", scopes="user/*.cruds")
    assert nurse.post("/fhir/Patient/$merge", json=_merge_params(target, source)).status_code == 403
    for bad in ({"resourceType": "Patient"}, {"resourceType": "Parameters", "parameter": "x"},
                {"resourceType": "Parameters", "parameter": [{"name": "source-patient", "valueReference": "x"}]},
                {"resourceType": "Parameters", "parameter": [
                    {"name": "source-patient-identifier", "valueIdentifier": {"system": CCCD_SYSTEM,
                                                                              "value": "040085001234"}},
                    {"name": "target-patient", "valueReference": {"reference": f"Patient/{target}"}}]}):
        r = client.post("/fhir/Patient/$merge", json=bad)
        assert r.status_code == 400, (bad, r.text)  # the last: that CCCD is on both records now

    admin = api_client(hospital, tmp_path / "data", role="admin", scopes="user/*.cruds")
    events = admin.get("/fhir/AuditEvent", params={"subtype": "operation"}).json()
    merged = [e["resource"] for e in events.get("entry", [])
              if e["resource"].get("outcomeDesc", "").startswith(f"Patient/{source} merged into Patient/{target}")]
    assert len(merged) == 1, "the merge leaves one audit event, naming the patient and what it moved"
    named = {e["what"]["reference"] for e in merged[0]["entity"] if "what" in e}
    assert f"Patient/{target}" in named and f"Observation/{records['Observation']}" in named


def test_concurrent_registrations_never_share_an_mrn(reception):
    people = [form(family_name="Đỗ", given_names=f"Văn {name}", cccd="", bhyt="", phone="", contact_name="",
                   contact_phone="") for name in ("Một", "Hai", "Ba", "Bốn", "Năm", "Sáu")]
    mrns: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(people))

    def desk_work(f: RegistrationForm) -> None:
        try:
            start.wait()
            mrns.append(register(reception, f, today=TODAY).mrn)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=desk_work, args=(f,)) for f in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(mrns) == [f"26{n:06d}" for n in range(1, 7)]


def test_merge_corrects_a_signed_record_with_the_reason(hospital, reception, twins, tmp_path, monkeypatch):
    monkeypatch.delenv(ca.PASSPHRASE_ENV, raising=False)
    source, target, _ = twins
    ca_dir = tmp_path / "ca"
    ca.init_ca(ca_dir, "Sante Hospital CA")
    ca.issue(ca_dir, f"Practitioner/{PHYSICIAN}", "BS. Trần Minh Đức")
    note = hospital.create({"resourceType": "Composition", "status": "final", "type": {"text": "Phiếu khám"},
                            "subject": {"reference": f"Patient/{source}"}, "date": "2026-11-20",
                            "author": [{"reference": f"Practitioner/{PHYSICIAN}"}], "title": "Phiếu khám"})
    prov = signing.sign(hospital, "Composition", note.id, f"Practitioner/{PHYSICIAN}",
                        *ca.load_signer(ca_dir, f"Practitioner/{PHYSICIAN}"))
    result = merging.merge(reception, source, target, reason="Đăng ký trùng")
    assert f"Composition/{note.id}" in result.moved
    assert hospital.read("Composition", note.id).resource["subject"]["reference"] == f"Patient/{target}"
    report = signing.verify(hospital, prov["id"], ca_dir=ca_dir)
    assert report.valid and report.changed  # the signed version still verifies; the record has changed since
    assert [(c["version"], c["reason"]) for c in report.corrections] == [(2, "Đăng ký trùng")]
