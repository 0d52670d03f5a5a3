"""Every role x representative resource types x read/search/create/update/delete, over HTTP, on both backends.

The expectations are written out here by hand (not derived from sante.auth.roles), so a change of policy must
change this table too."""

from __future__ import annotations

import pytest

from tests.support.api import api_client, client_for

TYPES = ("Patient", "Observation", "MedicationRequest", "Organization", "AuditEvent")
EXPECTED = {  # role -> allowed operations (c r u d s) per type, in TYPES order
    "admin":          ("cruds", "cruds", "cruds", "cruds", "rs"),
    "system":         ("cruds", "cruds", "cruds", "cruds", ""),
    "receptionist":   ("crus", "", "", "rs", ""),
    "nurse":          ("rs", "crus", "rs", "rs", ""),
    "physician":      ("crus", "crus", "crus", "rs", ""),
    "pharmacist":     ("rs", "rs", "crus", "rs", ""),
    "lab_technician": ("rs", "crus", "rs", "rs", ""),
    "radiologist":    ("rs", "crus", "rs", "rs", ""),
    "manager":        ("", "", "", "crus", ""),
    "public_health":  ("", "", "", "rs", ""),
    "patient":        ("rs", "crus", "rs", "rs", ""),
}


def _patient(pid: str, org: str) -> dict:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": pid}],
            "managingOrganization": {"reference": f"Organization/{org}"}}


def _obs(oid: str | None, pid: str) -> dict:
    o = {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
         "subject": {"reference": f"Patient/{pid}"}, "valueQuantity": {"value": 70, "unit": "/min"}}
    return {**o, "id": oid} if oid else o


def _mr(mid: str | None, pid: str) -> dict:
    m = {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
         "medicationCodeableConcept": {"text": "paracetamol"}, "subject": {"reference": f"Patient/{pid}"}}
    return {**m, "id": mid} if mid else m


def _org(oid: str | None) -> dict:
    o = {"resourceType": "Organization", "name": "Bệnh viện Bạch Mai"}
    return {**o, "id": oid} if oid else o


def _new(rtype: str, rid: str | None) -> dict:
    return {"Patient": lambda: {**_patient(rid or "x", "org1"), **({} if rid else {"id": None})},
            "Observation": lambda: _obs(rid, "p1"), "MedicationRequest": lambda: _mr(rid, "p1"),
            "Organization": lambda: _org(rid), "AuditEvent": lambda: {"resourceType": "AuditEvent"}}[rtype]()


def _body(rtype: str, rid: str | None) -> dict:
    b = _new(rtype, rid)
    if rid is None:
        b.pop("id", None)
    return b


@pytest.fixture
def admin(repo, tmp_path):
    c = api_client(repo, tmp_path, role="admin", scopes="user/*.cruds", subject="root")
    for res in (_org("org1"), _org("org2"), _patient("p1", "org1"), _patient("p2", "org2"), _obs("o1", "p1"),
                _obs("o2", "p2"), _mr("m1", "p1")):
        assert c.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res).status_code == 201
    return c


def _try(admin, c, rtype: str, op: str, n: int) -> int:
    existing = {"Patient": "p1", "Observation": "o1", "MedicationRequest": "m1", "Organization": "org1",
                "AuditEvent": "1"}[rtype]
    if op == "r":
        return c.get(f"/fhir/{rtype}/{existing}").status_code
    if op == "s":
        return c.get(f"/fhir/{rtype}", params={"_count": "5"}).status_code
    if op == "c":
        return c.post(f"/fhir/{rtype}", json=_body(rtype, None)).status_code
    if op == "u":
        return c.put(f"/fhir/{rtype}/{existing}", json=_body(rtype, existing)).status_code
    # delete: a fresh resource made by the admin for this attempt
    rid = f"del{n}"
    if rtype != "AuditEvent":
        assert admin.put(f"/fhir/{rtype}/{rid}", json=_body(rtype, rid)).status_code == 201
    return c.delete(f"/fhir/{rtype}/{rid}").status_code


def test_role_matrix(admin):
    app = admin.app
    wrong = []
    n = 0
    for role, allowed in EXPECTED.items():
        if role == "patient":
            c = client_for(app, role=role, scopes="patient/*.cruds", patient="p1", fhir_user="Patient/p1")
        elif role == "system":
            c = client_for(app, role=role, scopes="system/*.cruds")
        else:
            c = client_for(app, role=role, scopes="user/*.cruds", fhir_user="Practitioner/x")
        for rtype, ops in zip(TYPES, allowed, strict=True):
            for op in "cruds":
                n += 1
                status = _try(admin, c, rtype, op, n)
                ok = status < 300
                if rtype == "AuditEvent" and op in "cud":
                    ok = False
                    if status not in (403, 405):
                        wrong.append(f"{role} {op} {rtype}: {status}, expected 403/405")
                    continue
                if ok != (op in ops):
                    wrong.append(f"{role} {op} {rtype}: {status}, expected {'allowed' if op in ops else 'refused'}")
                elif not ok and status not in (403, 404):
                    wrong.append(f"{role} {op} {rtype}: refused with {status}, expected 403/404")
    assert not wrong, "\n".join(wrong)


def test_scopes_narrow_the_role(admin):
    c = client_for(admin.app, role="physician", scopes="user/Observation.rs", fhir_user="Practitioner/x")
    assert c.get("/fhir/Observation/o1").status_code == 200
    assert c.get("/fhir/Observation").status_code == 200
    assert c.post("/fhir/Observation", json=_obs(None, "p1")).status_code == 403  # the scope lacks c
    assert c.get("/fhir/Patient/p1").status_code == 403  # no scope for Patient at all
    c1 = client_for(admin.app, role="physician", scopes="user/Observation.read", fhir_user="Practitioner/x")
    assert c1.get("/fhir/Observation/o1").status_code == 200  # SMART v1 form
    assert c1.delete("/fhir/Observation/o1").status_code == 403
