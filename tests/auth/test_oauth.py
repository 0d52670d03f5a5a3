"""The OAuth2 / OpenID Connect authorization server: SMART App Launch (authorization code + PKCE, refresh tokens,
id_token), SMART Backend Services (client credentials with a signed JWT assertion), introspection, revocation,
discovery, sign-in (CSRF, lock-out, rate limit) and the audit trail of it all."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import secrets
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from sante.api import create_app
from sante.auth.clients import ClientStore, narrow_scopes
from sante.auth.users import MAX_FAILURES
from sante.cli import main
from tests.support.api import client_for

BASE = "https://testserver"
REDIRECT = "https://growth.example/callback"
PASSWORD = "correct horse battery"
APP_SCOPES = "openid fhirUser profile launch/patient offline_access online_access patient/*.rs user/*.rs"


@pytest.fixture
def app(repo, tmp_path):
    app = create_app(repo, data_dir=tmp_path)
    admin = client_for(app, role="admin", scopes="user/*.cruds", subject="root")
    data = [{"resourceType": "Patient", "id": pid, "name": [{"family": family}]}
            for pid, family in (("p1", "Nguyễn"), ("p2", "Trần"))]
    data += [{"resourceType": "Observation", "id": f"{pid}-o", "status": "final", "code": {"text": "pulse"},
              "subject": {"reference": f"Patient/{pid}"}} for pid in ("p1", "p2")]
    for res in data:
        assert admin.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res).status_code == 201
    users = app.state.security.users
    users.add("an", PASSWORD, "patient", fhir_user="Patient/p1")
    users.add("lan", PASSWORD, "physician", fhir_user="Practitioner/7")
    clients = ClientStore(repo.engine)
    clients.add("growth", "Growth chart", redirect_uris=[REDIRECT], scopes=APP_SCOPES, auth_method="none")
    clients.add("other", "Another app", redirect_uris=["https://other.example/cb"], scopes="patient/*.rs",
                auth_method="none")
    return app


def browser(app) -> TestClient:
    # The sign-in page speaks Vietnamese unless the browser asks for another language: these tests read English.
    return TestClient(app, base_url=BASE, raise_server_exceptions=False, follow_redirects=False,
                      headers={"Accept-Language": "en"})


def bearer(app, token: str) -> TestClient:
    return TestClient(app, base_url=BASE, raise_server_exceptions=False,
                      headers={"Authorization": f"Bearer {token}"})


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def sign_in(b: TestClient, username: str, password: str = PASSWORD, next_path: str = "", totp: str = ""):
    form = b.get("/login", params={"next": next_path} if next_path else None)
    assert form.status_code == 200 and "Sign in" in form.text
    return b.post("/login", data={"username": username, "password": password, "totp": totp,
                                  "csrf": csrf_of(form.text), "next": next_path})


def authorize_params(challenge: str, **extra) -> dict:
    return {"response_type": "code", "client_id": "growth", "redirect_uri": REDIRECT, "scope": APP_SCOPES,
            "state": "st-1", "code_challenge": challenge, "code_challenge_method": "S256", "aud": f"{BASE}/fhir",
            "nonce": "n-0S6", **extra}


def get_code(b: TestClient, username: str = "an", **extra) -> tuple[str, str]:
    """Run the browser part: authorize, sign in, come back; returns (code, verifier)."""
    verifier, challenge = pkce()
    r = b.get("/auth/authorize", params=authorize_params(challenge, **extra))
    if r.status_code == 303:  # not signed in yet
        assert r.headers["location"].startswith("/login?next=")
        next_path = parse_qs(urlsplit(r.headers["location"]).query)["next"][0]
        assert next_path.startswith("/auth/authorize?")
        r = sign_in(b, username, next_path=next_path)
        assert r.status_code == 303 and r.headers["location"] == next_path
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "secure" in cookie
        r = b.get(next_path)
    assert r.status_code == 302, r.text
    location = urlsplit(r.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["st-1"]
    return query["code"][0], verifier


def exchange(b: TestClient, code: str, verifier: str, **extra):
    return b.post("/auth/token", data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                       "client_id": "growth", "code_verifier": verifier, **extra})


def test_authorization_code_flow_with_pkce(app):
    b = browser(app)
    code, verifier = get_code(b)
    r = exchange(b, code, verifier)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    tok = r.json()
    assert tok["token_type"] == "Bearer" and tok["expires_in"] == 3600 and tok["patient"] == "p1"
    assert set(tok["scope"].split()) == set(APP_SCOPES.split())
    assert tok["refresh_token"] and tok["id_token"]
    api = bearer(app, tok["access_token"])
    assert api.get("/fhir/Patient/p1").json()["name"][0]["family"] == "Nguyễn"
    assert api.get("/fhir/Observation/p1-o").status_code == 200
    assert api.get("/fhir/Patient/p2").status_code == 404  # not their record
    assert api.get("/fhir/Observation/p2-o").status_code == 404
    principal = app.state.security.tokens.authenticate(tok["access_token"])
    assert principal.role == "patient" and principal.patient == "p1" and principal.fhir_user == "Patient/p1"

    # The id_token verifies against the published keys and names the user.
    keys = KeySet.import_key_set(b.get("/auth/jwks").json())
    claims = jwt.decode(tok["id_token"], keys, algorithms=["RS256"]).claims
    assert claims["iss"] == BASE and claims["aud"] == "growth" and claims["sub"] == "an"
    assert claims["nonce"] == "n-0S6" and claims["fhirUser"] == f"{BASE}/fhir/Patient/p1"
    assert claims["exp"] > time.time() and claims["at_hash"]


def test_staff_user_without_launch_patient_gets_no_patient_context(app):
    b = browser(app)
    scope = " ".join(w for w in APP_SCOPES.split() if w != "launch/patient")
    code, verifier = get_code(b, username="lan", scope=scope)
    tok = exchange(b, code, verifier).json()
    assert "patient" not in tok and "launch/patient" not in tok["scope"].split()
    api = bearer(app, tok["access_token"])
    assert api.get("/fhir/Patient/p2").status_code == 200  # a physician, with user/*.rs
    assert api.post("/fhir/Observation", json={"resourceType": "Observation", "status": "final",
                                                "code": {"text": "x"}}).status_code == 403  # read-only scopes


def test_staff_pick_the_patient_an_app_launches_with(app, repo):
    """SMART standalone launch by a physician: the app asks for launch/patient, the physician picks the patient
    among those they may see, and patient/ scopes then confine the app to that patient."""
    ClientStore(repo.engine).add("chart-app", "A chart app", redirect_uris=[REDIRECT], auth_method="none",
                                 scopes="openid launch/patient patient/*.rs")
    b = browser(app)
    b.headers["accept-language"] = "en"
    verifier, challenge = pkce()
    params = authorize_params(challenge, client_id="chart-app", scope="openid launch/patient patient/*.rs")
    r = b.get("/auth/authorize", params=params)
    next_path = parse_qs(urlsplit(r.headers["location"]).query)["next"][0]
    assert sign_in(b, "lan", next_path=next_path).status_code == 303
    r = b.get(next_path)
    assert r.status_code == 303 and r.headers["location"].startswith("/launch/patient?")
    picker = r.headers["location"]
    page = b.get(picker + "&q=nguyen")
    assert page.status_code == 200 and "Choose the patient" in page.text and 'value="p1"' in page.text
    assert 'value="p2"' not in page.text  # Trần does not match
    form = {"csrf": csrf_of(page.text), "patient": "p1", "client": "chart-app", "next": next_path}
    assert b.post("/launch/patient", data={**form, "csrf": "forged"}).status_code == 403
    assert b.post("/launch/patient", data={**form, "next": "https://evil.example/"}).status_code == 400
    assert b.post("/launch/patient", data={**form, "patient": "nobody"}).status_code == 404
    r = b.post("/launch/patient", data=form)
    assert r.status_code == 303 and r.headers["location"] == next_path
    r = b.get(next_path)
    assert r.status_code == 302, r.text
    code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
    tok = exchange(b, code, verifier, client_id="chart-app").json()
    assert tok["patient"] == "p1" and "launch/patient" in tok["scope"].split()
    api = bearer(app, tok["access_token"])
    assert api.get("/fhir/Observation/p1-o").status_code == 200
    assert api.get("/fhir/Observation/p2-o").status_code == 404  # patient/ scopes: only the picked patient
    principal = app.state.security.tokens.authenticate(tok["access_token"])
    assert principal.role == "physician" and principal.patient == "p1"
    # The pick is for this app only: another app asking for launch/patient is sent to the picker again.
    _, challenge2 = pkce()
    r = b.get("/auth/authorize", params=authorize_params(challenge2))
    assert r.status_code == 303 and r.headers["location"].startswith("/launch/patient?")


def test_related_person_sees_the_patient_their_record_names_while_it_is_in_force(app):
    """A mother signs in for her child: her RelatedPerson record (active, in its period) is the grant."""
    admin = client_for(app, role="admin", scopes="user/*.cruds", subject="root")
    rp = {"resourceType": "RelatedPerson", "id": "rp1", "active": True, "patient": {"reference": "Patient/p1"},
          "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                                        "code": "MTH"}]}],
          "name": [{"family": "Lê", "given": ["Thị", "Hoa"]}], "period": {"start": "2020-01-01"}}
    assert admin.put("/fhir/RelatedPerson/rp1", json=rp).status_code == 201
    users = app.state.security.users
    users.add("hoa", PASSWORD, "related_person", fhir_user="RelatedPerson/rp1")
    assert users.get("hoa").patient == "p1"
    b = browser(app)
    code, verifier = get_code(b, username="hoa")
    tok = exchange(b, code, verifier).json()
    assert tok["patient"] == "p1" and "launch/patient" in tok["scope"].split()
    api = bearer(app, tok["access_token"])
    assert api.get("/fhir/Patient/p1").status_code == 200
    assert api.get("/fhir/Observation/p1-o").status_code == 200
    assert api.get("/fhir/Patient/p2").status_code == 404
    assert api.get("/fhir/Observation?subject=Patient/p2").json().get("total", 0) == 0

    # The grant ends (the record is made inactive, or its period is over): no more patient context.
    for change in ({"active": False}, {"period": {"start": "2020-01-01", "end": "2021-01-01"}}):
        assert admin.put("/fhir/RelatedPerson/rp1", json={**rp, **change}).status_code == 200
        assert users.get("hoa").patient is None
        b = browser(app)
        code, verifier = get_code(b, username="hoa")
        tok = exchange(b, code, verifier).json()
        assert "patient" not in tok
        assert bearer(app, tok["access_token"]).get("/fhir/Patient/p1").status_code in (401, 403)


def test_a_related_person_account_must_name_a_related_person(app):
    from sante.anomaly import Anomaly

    with pytest.raises(Anomaly, match="RelatedPerson"):
        app.state.security.users.add("xuan", PASSWORD, "related_person", fhir_user="Patient/p1")


def test_wrong_pkce_verifier_is_refused(app):
    b = browser(app)
    code, _ = get_code(b)
    r = exchange(b, code, pkce()[0])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    code, _ = get_code(b)
    r = b.post("/auth/token", data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                    "client_id": "growth"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"  # no verifier at all


def test_public_client_must_use_pkce(app):
    b = browser(app)
    sign_in(b, "an")
    params = authorize_params("x")
    del params["code_challenge"], params["code_challenge_method"]
    r = b.get("/auth/authorize", params=params)
    assert r.status_code == 302
    assert parse_qs(urlsplit(r.headers["location"]).query)["error"] == ["invalid_request"]
    _, challenge = pkce()
    r = b.get("/auth/authorize", params=authorize_params(challenge, code_challenge_method="plain"))
    assert parse_qs(urlsplit(r.headers["location"]).query)["error"] == ["invalid_request"]


def test_code_is_single_use(app):
    b = browser(app)
    code, verifier = get_code(b)
    first = exchange(b, code, verifier)
    assert first.status_code == 200
    again = exchange(b, code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # The replay revoked what the first exchange produced.
    tokens = app.state.security.tokens
    tokens._revoked_at = 0.0  # skip the two-second revocation cache
    assert bearer(app, first.json()["access_token"]).get("/fhir/Patient/p1").status_code == 401
    r = b.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"],
                                    "client_id": "growth"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_code_is_bound_to_client_and_redirect_uri(app):
    b = browser(app)
    code, verifier = get_code(b)
    r = exchange(b, code, verifier, redirect_uri="https://growth.example/elsewhere")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    code, verifier = get_code(b)
    r = exchange(b, code, verifier, client_id="other")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    # An unregistered redirect URI is refused on the spot, never redirected to.
    _, challenge = pkce()
    r = b.get("/auth/authorize", params=authorize_params(challenge, redirect_uri="https://evil.example/cb"))
    assert r.status_code == 400 and "location" not in r.headers and r.json()["error"] == "invalid_request"
    r = b.get("/auth/authorize", params=authorize_params(challenge, client_id="nobody"))
    assert r.status_code == 400 and r.json()["error"] == "invalid_client"


def test_aud_and_prompt_none(app):
    b = browser(app)
    _, challenge = pkce()
    r = b.get("/auth/authorize", params=authorize_params(challenge, prompt="none"))
    assert r.status_code == 302
    assert parse_qs(urlsplit(r.headers["location"]).query)["error"] == ["login_required"]
    sign_in(b, "an")
    r = b.get("/auth/authorize", params=authorize_params(challenge, aud="https://elsewhere.example/fhir"))
    assert parse_qs(urlsplit(r.headers["location"]).query)["error"] == ["invalid_request"]


def test_refresh_tokens_rotate(app):
    b = browser(app)
    code, verifier = get_code(b)
    first = exchange(b, code, verifier).json()
    r = b.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                                    "client_id": "growth"})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]
    assert bearer(app, second["access_token"]).get("/fhir/Patient/p1").status_code == 200
    # Narrower scopes may be asked; wider ones may not.
    r = b.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": second["refresh_token"],
                                    "client_id": "growth", "scope": "patient/*.rs user/*.cruds"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    # The old one is spent; presenting it again revokes the whole grant, the newest refresh token included.
    r = b.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                                    "client_id": "growth"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = b.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": second["refresh_token"],
                                    "client_id": "growth"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_no_refresh_token_without_offline_or_online_access(app):
    b = browser(app)
    code, verifier = get_code(b, scope="openid patient/*.rs launch/patient")
    tok = exchange(b, code, verifier).json()
    assert "refresh_token" not in tok and tok["scope"] == "openid patient/*.rs launch/patient"


def test_confidential_web_app_with_a_secret(app, repo):
    secret = secrets.token_urlsafe(32)
    ClientStore(repo.engine).add("portal", "Staff portal", redirect_uris=[REDIRECT], scopes="openid user/*.rs",
                                 auth_method="client_secret_post", secret=secret)
    b = browser(app)
    sign_in(b, "lan")
    r = b.get("/auth/authorize", params={"response_type": "code", "client_id": "portal", "redirect_uri": REDIRECT,
                                         "scope": "openid user/*.rs", "state": "st-1"})  # PKCE optional here
    assert r.status_code == 302
    code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": "portal"}
    assert b.post("/auth/token", data=form).json()["error"] == "invalid_client"  # no secret: refused
    r = b.get("/auth/authorize", params={"response_type": "code", "client_id": "portal", "redirect_uri": REDIRECT,
                                         "scope": "openid user/*.rs"})
    form["code"] = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
    r = b.post("/auth/token", data={**form, "client_secret": secret})
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "openid user/*.rs" and "refresh_token" not in r.json()
    assert bearer(app, r.json()["access_token"]).get("/fhir/Patient/p2").status_code == 200


def test_login_with_second_factor(app):
    import pyotp

    secret = pyotp.parse_uri(app.state.security.users.enable_totp("lan")).secret
    b = browser(app)
    assert sign_in(b, "lan").status_code == 401  # the code is missing
    assert sign_in(b, "lan", totp=pyotp.TOTP(secret).now()).status_code == 303


# -- backend services -----------------------------------------------------------------------------------------
def _key(alg: str):
    if alg == "ES384":
        private = ec.generate_private_key(ec.SECP384R1())
        cls = ECKey
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cls = RSAKey
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    key = cls.import_key(pem)
    kid = key.thumbprint()
    return key, {**key.as_dict(private=False), "kid": kid, "alg": alg}


def assertion(key, alg: str, client_id: str = "backend", **claims) -> str:
    now = int(time.time())
    body = {"iss": client_id, "sub": client_id, "aud": f"{BASE}/auth/token", "exp": now + 240,
            "jti": uuid.uuid4().hex, **claims}
    return jwt.encode({"alg": alg, "kid": key.thumbprint(), "typ": "JWT"}, body, key, algorithms=[alg])


def backend_token(b: TestClient, signed: str, scope: str = "system/*.rs"):
    return b.post("/auth/token", data={
        "grant_type": "client_credentials", "scope": scope,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": signed})


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_backend_services_with_signed_assertion(app, repo, alg):
    key, public = _key(alg)
    ClientStore(repo.engine).add("backend", "Lab interface", scopes="system/*.rs", auth_method="private_key_jwt",
                                 jwks={"keys": [public]})
    b = browser(app)
    r = backend_token(b, assertion(key, alg), scope="system/*.rs system/*.cruds patient/*.rs")
    assert r.status_code == 200, r.text
    tok = r.json()
    assert tok["scope"] == "system/*.rs" and "refresh_token" not in tok
    api = bearer(app, tok["access_token"])
    assert api.get("/fhir/Patient/p2").status_code == 200
    assert len(api.get("/fhir/Patient").json()["entry"]) == 2
    assert api.put("/fhir/Patient/p3", json={"resourceType": "Patient", "id": "p3"}).status_code == 403
    principal = app.state.security.tokens.authenticate(tok["access_token"])
    assert principal.role == "system" and principal.subject == "backend"


def test_bad_assertions_are_refused(app, repo):
    key, public = _key("ES384")
    ClientStore(repo.engine).add("backend", "Lab interface", scopes="system/*.rs", auth_method="private_key_jwt",
                                 jwks={"keys": [public]})
    b = browser(app)
    stranger, _ = _key("ES384")
    now = int(time.time())
    bad = {
        "signature": assertion(stranger, "ES384"),
        "expired": assertion(key, "ES384", exp=now - 120),
        "too long": assertion(key, "ES384", exp=now + 3600),
        "audience": assertion(key, "ES384", aud="https://elsewhere.example/token"),
        "unknown client": assertion(key, "ES384", client_id="nobody"),
    }
    for why, signed in bad.items():
        r = backend_token(b, signed)
        assert r.status_code in (400, 401) and r.json()["error"] == "invalid_client", (why, r.text)
    once = assertion(key, "ES384")
    assert backend_token(b, once).status_code == 200
    replay = backend_token(b, once)
    assert replay.status_code in (400, 401) and replay.json()["error"] == "invalid_client"
    r = backend_token(b, assertion(key, "ES384"), scope="patient/*.rs")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


def test_backend_services_with_client_secret(app, repo):
    secret = secrets.token_urlsafe(32)
    ClientStore(repo.engine).add("etl", "Nightly ETL", scopes="system/Observation.rs", auth_method="client_secret_basic",
                                 secret=secret)
    b = browser(app)
    r = b.post("/auth/token", data={"grant_type": "client_credentials", "scope": "system/*.rs"}, auth=("etl", secret))
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "system/Observation.rs"  # narrowed to the registration
    api = bearer(app, r.json()["access_token"])
    assert api.get("/fhir/Observation/p1-o").status_code == 200
    assert api.get("/fhir/Patient/p1").status_code == 403
    r = b.post("/auth/token", data={"grant_type": "client_credentials", "scope": "system/*.rs"},
               auth=("etl", "wrong" * 10))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


# -- introspection and revocation ---------------------------------------------------------------------------------
@pytest.fixture
def backend(app, repo):
    key, public = _key("ES384")
    ClientStore(repo.engine).add("backend", "Lab interface", scopes="system/*.rs", auth_method="private_key_jwt",
                                 jwks={"keys": [public]})
    b = browser(app)

    def call(path: str, **data):
        return b.post(path, data={"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                                  "client_assertion": assertion(key, "ES384"), **data})

    return call


def test_introspection(app, backend):
    tok = backend("/auth/token", grant_type="client_credentials", scope="system/*.rs").json()["access_token"]
    r = backend("/auth/introspect", token=tok)
    assert r.status_code == 200
    body = r.json()
    assert body["active"] is True and body["client_id"] == "backend" and body["scope"] == "system/*.rs"
    assert body["exp"] > time.time() and body["sub"] == "backend"
    assert backend("/auth/introspect", token="not-a-token").json() == {"active": False}
    other = client_for(app).headers["Authorization"].split()[1]  # a token not issued to this client
    assert backend("/auth/introspect", token=other).json() == {"active": False}
    assert backend("/auth/revoke", token=tok).status_code == 200
    assert backend("/auth/introspect", token=tok).json() == {"active": False}
    r = browser(app).post("/auth/introspect", data={"token": tok})
    assert r.status_code == 401  # introspection needs client authentication


def test_revocation_stops_tokens(app, backend):
    tok = backend("/auth/token", grant_type="client_credentials", scope="system/*.rs").json()["access_token"]
    assert bearer(app, tok).get("/fhir/Patient/p1").status_code == 200
    assert backend("/auth/revoke", token=tok, token_type_hint="access_token").status_code == 200
    assert bearer(app, tok).get("/fhir/Patient/p1").status_code == 401
    # Another server process sees it within two seconds (its revocation list is refreshed from the database).
    tokens = app.state.security.tokens
    tokens._revoked = set()
    tokens._revoked_at = 0.0
    assert bearer(app, tok).get("/fhir/Patient/p1").status_code == 401
    assert backend("/auth/revoke", token="unknown-token").status_code == 200  # RFC 7009: no error for unknown


def test_revoking_a_refresh_token(app):
    b = browser(app)
    code, verifier = get_code(b)
    tok = exchange(b, code, verifier).json()
    assert b.post("/auth/revoke", data={"token": tok["refresh_token"], "client_id": "growth"}).status_code == 200
    r = b.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"],
                                    "client_id": "growth"})
    assert r.json()["error"] == "invalid_grant"
    assert b.post("/auth/revoke", data={"token": tok["access_token"], "client_id": "growth"}).status_code == 200
    assert bearer(app, tok["access_token"]).get("/fhir/Patient/p1").status_code == 401


# -- discovery ------------------------------------------------------------------------------------------------------
def test_discovery_documents(app):
    b = TestClient(app, base_url=BASE)
    smart = b.get("/.well-known/smart-configuration")
    assert smart.status_code == 200 and smart.json() == b.get("/fhir/.well-known/smart-configuration").json()
    doc = smart.json()
    assert doc["authorization_endpoint"] == f"{BASE}/auth/authorize"
    assert doc["token_endpoint"] == f"{BASE}/auth/token"
    assert doc["introspection_endpoint"] == f"{BASE}/auth/introspect"
    assert doc["revocation_endpoint"] == f"{BASE}/auth/revoke"
    assert doc["jwks_uri"] == f"{BASE}/auth/jwks" and doc["issuer"] == BASE
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert {"private_key_jwt", "client_secret_basic", "none"} <= set(doc["token_endpoint_auth_methods_supported"])
    assert set(doc["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert {"launch-standalone", "client-public", "client-confidential-symmetric", "client-confidential-asymmetric",
            "context-standalone-patient", "permission-v2", "sso-openid-connect", "permission-patient",
            "permission-user"} <= set(doc["capabilities"])
    oidc = b.get("/.well-known/openid-configuration").json()
    assert oidc["issuer"] == BASE and oidc["jwks_uri"] == f"{BASE}/auth/jwks"
    assert oidc["id_token_signing_alg_values_supported"] == ["RS256"] and oidc["response_types_supported"] == ["code"]
    keys = b.get("/auth/jwks").json()["keys"]
    assert len(keys) == 1 and keys[0]["kty"] == "RSA" and "d" not in keys[0] and keys[0]["kid"]


# -- sign-in ----------------------------------------------------------------------------------------------------------
def test_login_needs_csrf_and_sets_a_session(app):
    b = browser(app)
    b.get("/login")
    r = b.post("/login", data={"username": "an", "password": PASSWORD, "csrf": "forged.token"})
    assert r.status_code == 400 and "sante_session" not in r.headers.get("set-cookie", "")
    r = sign_in(b, "an", next_path="https://evil.example/")  # not a local path: ignored, the home page instead
    assert r.status_code == 303 and r.headers["location"] == "/"
    page = b.get("/login")
    assert "Signed in as <b>an</b>" in page.text
    # Signing out ends the session: the authorization endpoint asks to sign in again.
    assert b.post("/logout", data={"csrf": "wrong"}).status_code == 400
    assert b.post("/logout", data={"csrf": csrf_of(page.text)}).status_code == 303
    _, challenge = pkce()
    r = b.get("/auth/authorize", params=authorize_params(challenge))
    assert r.status_code == 303 and r.headers["location"].startswith("/login?")


def test_a_forged_session_cookie_is_refused(app):
    b = browser(app)
    b.cookies.set("sante_session", "abc.def", domain="testserver")
    _, challenge = pkce()
    r = b.get("/auth/authorize", params=authorize_params(challenge))
    assert r.status_code == 303 and r.headers["location"].startswith("/login?")


def test_login_lockout(app):
    b = browser(app)
    for _ in range(MAX_FAILURES):
        r = sign_in(b, "an", password="wrong wrong wrong")
        assert r.status_code == 401 and "Wrong username or password" in r.text
    r = sign_in(b, "an")  # the right password, but the account is locked for a while
    assert r.status_code == 401 and "Wrong username or password" in r.text
    assert "sante_session" not in r.headers.get("set-cookie", "")


def test_login_rate_limit_per_address(app):
    b = browser(app)
    for _ in range(10):
        assert sign_in(b, "nobody", password="wrong wrong wrong").status_code == 401
    r = sign_in(b, "lan")
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    app.state.oauth_limits[0].clear()
    assert sign_in(b, "lan").status_code == 303


def test_token_rate_limit_per_address(app):
    b = browser(app)
    for _ in range(10):
        r = b.post("/auth/token", data={"grant_type": "authorization_code", "code": "guess", "client_id": "growth",
                                        "redirect_uri": REDIRECT, "code_verifier": "x" * 43})
        assert r.status_code == 400
    r = b.post("/auth/token", data={"grant_type": "client_credentials"})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


def test_sign_ins_and_tokens_are_audited(app):
    b = browser(app)
    sign_in(b, "an", password="wrong wrong wrong")
    code, verifier = get_code(b)
    exchange(b, code, verifier)
    log = app.state.security.audit
    logins = [orjson.loads(e) for _, e in log.search(subtype="login")]
    assert [e["outcome"] for e in logins] == ["0", "4"]  # newest first: the success, then the failure
    assert all(e["agent"][0]["altId"] == "an" for e in logins)
    tokens = [orjson.loads(e) for _, e in log.search(subtype="token")]
    assert len(tokens) == 1 and tokens[0]["outcome"] == "0"
    assert tokens[0]["agent"][0]["altId"] == "an" and "growth" in tokens[0]["outcomeDesc"]
    assert tokens[0]["entity"][0]["what"]["reference"] == "Patient/p1"
    assert log.verify().ok


# -- scopes and the command line ------------------------------------------------------------------------------------
@pytest.mark.parametrize("requested,allowed,granted", [
    ("patient/*.rs", "patient/*.rs", "patient/*.rs"),
    ("patient/Observation.rs", "patient/*.rs", "patient/Observation.rs"),
    ("patient/*.cruds", "patient/*.rs", "patient/*.rs"),
    ("patient/*.rs", "patient/Observation.rs patient/Patient.r", "patient/Observation.rs patient/Patient.r"),
    ("user/*.cruds openid", "patient/*.cruds openid", "openid"),
    ("system/*.read", "system/*.rs", "system/*.read"),
    ("launch/patient offline_access", "launch/patient", "launch/patient"),
])
def test_scope_narrowing(requested, allowed, granted):
    assert narrow_scopes(requested, allowed) == granted


def test_client_command_line(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("SANTE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SANTE_DATABASE_URL", raising=False)
    assert main(["client", "add", "growth", "--name", "Growth chart", "--redirect-uri", REDIRECT,
                 "--scopes", "openid launch/patient patient/*.rs", "--public"]) == 0
    secret = secrets.token_urlsafe(32)
    monkeypatch.setattr("sys.stdin", io.StringIO(secret + "\n"))
    assert main(["client", "add", "etl", "--name", "Nightly ETL", "--scopes", "system/*.rs", "--secret-stdin"]) == 0
    _, public = _key("ES384")
    (tmp_path / "jwks.json").write_bytes(orjson.dumps({"keys": [public]}))
    assert main(["client", "add", "lab", "--name", "Lab", "--scopes", "system/*.rs", "--jwks",
                 str(tmp_path / "jwks.json")]) == 0
    assert main(["client", "add", "bad", "--name", "Bad", "--scopes", "patient/*.zz", "--public",
                 "--redirect-uri", REDIRECT]) == 2
    assert main(["client", "add", "bad", "--name", "Bad", "--scopes", "openid", "--public",
                 "--redirect-uri", "http://evil.example/cb"]) == 2  # plain http off the loopback
    assert main(["client", "disable", "etl"]) == 0
    capsys.readouterr()
    assert main(["client", "list"]) == 0
    out = capsys.readouterr().out
    assert "growth\tGrowth chart\tnone\tauthorization_code refresh_token\t" in out
    assert "etl\tNightly ETL\tclient_secret_basic\tclient_credentials\tsystem/*.rs\tsystem\tdisabled" in out
    assert "lab\tLab\tprivate_key_jwt\tclient_credentials\tsystem/*.rs\tsystem\tactive" in out
    assert secret not in out
