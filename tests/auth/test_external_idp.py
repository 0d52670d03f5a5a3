"""Tokens from a hospital's own OpenID Connect provider, served here by a real HTTP server on loopback that
publishes a discovery document and a JWKS, as Keycloak does."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from sante.api import create_app
from sante.api.security import Security
from sante.auth.external import ExternalIssuer


@pytest.fixture
def idp():
    key = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})
    state = {"jwks": KeySet([key]).as_dict(private=False)}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            base = f"http://127.0.0.1:{self.server.server_address[1]}/realms/h"
            docs = {"/realms/h/.well-known/openid-configuration": {"issuer": base, "jwks_uri": f"{base}/certs"},
                    "/realms/h/certs": state["jwks"]}
            body = orjson.dumps(docs.get(self.path, {}))
            self.send_response(200 if self.path in docs else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    issuer = f"http://127.0.0.1:{server.server_address[1]}/realms/h"
    yield issuer, key
    server.shutdown()


def _token(key, issuer, **claims):
    now = int(time.time())
    body = {"iss": issuer, "sub": "u-1", "preferred_username": "dr.hoa", "exp": now + 300, "iat": now,
            "aud": "sante", "scope": "openid user/*.rs", "realm_access": {"roles": ["offline_access", "physician"]},
            "fhirUser": "Practitioner/hoa", **claims}
    return jwt.encode({"alg": "RS256", "kid": key.kid}, body, key)


def test_tokens_from_the_hospital_identity_provider(repo, tmp_path, idp):
    issuer, key = idp
    sec = Security.for_repository(repo, tmp_path)
    sec.tokens.external = ExternalIssuer(issuer, audience="sante")
    app = create_app(repo, data_dir=tmp_path, security=sec)
    own = sec.tokens.issue(subject="root", role="admin", scopes="user/*.cruds").token
    TestClient(app).put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"},
                        headers={"Authorization": f"Bearer {own}"})  # Sante's own tokens still work
    client = TestClient(app, raise_server_exceptions=False)

    def get(token, url="/fhir/Patient/p1"):
        return client.get(url, headers={"Authorization": f"Bearer {token}"})

    assert get(_token(key, issuer)).status_code == 200
    assert get(_token(key, issuer)).status_code == 200  # cached
    assert get(_token(key, issuer, scope="user/Observation.rs")).status_code == 403  # scopes apply
    assert get(_token(key, issuer, aud="another-app")).status_code == 401
    assert get(_token(key, issuer, exp=int(time.time()) - 5)).status_code == 401
    assert get(_token(key, issuer, realm_access={"roles": ["offline_access"]})).status_code == 401  # no role
    stranger = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    assert get(_token(stranger, issuer)).status_code == 401  # right kid, wrong key
    assert get(_token(key, issuer + "-other")).status_code == 401
    patient = _token(key, issuer, realm_access={"roles": ["patient"]}, fhirUser="Patient/p2", scope="patient/*.rs")
    assert get(patient).status_code == 404  # a patient of the provider sees only Patient/p2
    events = sec.audit.search(username="dr.hoa")
    assert any(b"physician" in content for _, content in events)
