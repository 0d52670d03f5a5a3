"""User accounts, passwords, second factor, lock-out, SMART scopes and the operator's command line."""

from __future__ import annotations

import io

import pyotp
import pytest
from sqlalchemy import select

from sante.anomaly import Anomaly
from sante.auth.scopes import Scopes
from sante.auth.users import MAX_FAILURES, AuthenticationFailed, UserStore
from sante.cli import main
from sante.store.schema import users


@pytest.fixture
def store(repo):
    return UserStore(repo.engine)


def test_passwords_are_argon2_and_checked(store, repo):
    store.add("lan", "a long passphrase", "physician", fhir_user="Practitioner/7")
    with repo.engine.connect() as conn:
        stored = conn.execute(select(users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and "a long passphrase" not in stored
    assert store.authenticate("lan", "a long passphrase").fhir_user == "Practitioner/7"
    with pytest.raises(AuthenticationFailed):
        store.authenticate("lan", "a wrong passphrase")
    with pytest.raises(AuthenticationFailed) as unknown:
        store.authenticate("nobody", "a long passphrase")
    assert "unknown user or wrong password" in unknown.value.message  # the same answer either way


def test_bad_accounts_are_refused(store):
    with pytest.raises(Anomaly, match="at least 10"):
        store.add("x1", "short", "nurse")
    with pytest.raises(Anomaly, match="not a user role"):
        store.add("x2", "long enough password", "wizard")
    with pytest.raises(Anomaly, match="linked to a Patient"):
        store.add("x3", "long enough password", "patient", fhir_user="Practitioner/1")
    store.add("x4", "long enough password", "nurse")
    with pytest.raises(Anomaly, match="already exists"):
        store.add("x4", "long enough password", "nurse")


def test_repeated_failures_lock_the_account(store):
    store.add("binh", "correct horse battery", "nurse")
    for _ in range(MAX_FAILURES):
        with pytest.raises(AuthenticationFailed):
            store.authenticate("binh", "wrong wrong wrong")
    with pytest.raises(AuthenticationFailed, match="locked"):
        store.authenticate("binh", "correct horse battery")  # even the right password, for a while
    store.set_password("binh", "a brand new password")  # an administrator's reset unlocks
    assert store.authenticate("binh", "a brand new password").username == "binh"


def test_disabled_users_cannot_sign_in(store):
    store.add("chi", "correct horse battery", "pharmacist")
    store.set_disabled("chi")
    with pytest.raises(AuthenticationFailed):
        store.authenticate("chi", "correct horse battery")
    store.set_disabled("chi", False)
    assert store.authenticate("chi", "correct horse battery").role == "pharmacist"


def test_totp_second_factor(store):
    store.add("dung", "correct horse battery", "physician")
    uri = store.enable_totp("dung")
    secret = pyotp.parse_uri(uri).secret
    with pytest.raises(AuthenticationFailed):
        store.authenticate("dung", "correct horse battery")  # the code is missing
    with pytest.raises(AuthenticationFailed):
        store.authenticate("dung", "correct horse battery", "000000" if pyotp.TOTP(secret).now() != "000000"
                           else "111111")
    assert store.authenticate("dung", "correct horse battery", pyotp.TOTP(secret).now()).username == "dung"


@pytest.mark.parametrize("text,rtype,op,contexts", [
    ("patient/Observation.rs", "Observation", "r", {"patient"}),
    ("patient/Observation.rs", "Observation", "c", set()),
    ("user/*.cruds", "Encounter", "d", {"user"}),
    ("system/*.read", "Patient", "s", {"system"}),
    ("system/*.read", "Patient", "u", set()),
    ("user/Patient.write patient/*.rs openid fhirUser launch/patient", "Patient", "u", {"user"}),
    ("user/Patient.write patient/*.rs", "Patient", "r", {"patient"}),
])
def test_smart_scopes(text, rtype, op, contexts):
    assert Scopes.parse(text).contexts_for(rtype, op) == contexts


@pytest.mark.parametrize("bad", ["patient/Observation.sr", "user/observation.rs", "patient/*.xyz",
                                 "clinic/*.rs", "patient/Observation.rs?category=vital-signs"])
def test_malformed_scopes_are_refused(bad):
    with pytest.raises(Anomaly):
        Scopes.parse(bad)


def test_command_line_accounts_tokens_and_audit(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("SANTE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SANTE_DATABASE_URL", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    assert main(["user", "add", "lan", "--role", "physician", "--fhir-user", "Practitioner/7",
                 "--password-stdin"]) == 0
    assert main(["user", "list"]) == 0
    out = capsys.readouterr().out
    assert "lan\tphysician\tPractitioner/7\t-\tactive" in out
    assert main(["token", "--scopes", "system/*.cruds"]) == 0
    captured = capsys.readouterr()
    token = captured.out.strip().splitlines()[-1]
    assert token.count(".") == 2 and "system/*.cruds" in captured.err
    from sante.api.security import Security
    from sante.store import open_repository

    sec = Security.for_repository(open_repository(f"sqlite:///{tmp_path / 'sante.db'}"), tmp_path)
    assert sec.tokens.authenticate(token).role == "system"
    assert main(["token", "--scopes", "patient/*.rs", "--patient", "p1", "--role", "patient"]) == 0
    ptoken = capsys.readouterr().out.strip().splitlines()[-1]
    assert sec.tokens.authenticate(ptoken).patient == "p1"
    assert main(["token", "--scopes", "patient/*.zz"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sante: ") and err.count("\n") == 1
    assert main(["user", "disable", "lan"]) == 0
    assert main(["token", "--scopes", "user/*.rs", "--user", "lan"]) == 2
    capsys.readouterr()
    assert main(["audit", "verify"]) == 0
    assert "audit trail intact: 4 events" in capsys.readouterr().out  # user add, two tokens, disable
    events = [e for _, e in sec.audit.search(count=10)]
    assert any(b'"token"' in e for e in events)  # issuing a token is itself audited
    with sec.audit.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_log SET username = 'x', content = replace(content, 'os:', 'xx:') "
                             "WHERE seq = 2")
    assert main(["audit", "verify"]) == 1
    assert "BROKEN at event 2" in capsys.readouterr().out
