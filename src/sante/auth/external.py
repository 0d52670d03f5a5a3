"""Tokens from a hospital's own identity provider (Keycloak, or any OpenID Connect issuer).

Configured with `SANTE_OIDC_ISSUER` (the issuer URL; its discovery document gives the JWKS address) and
optionally `SANTE_OIDC_AUDIENCE` (the `aud` the tokens must carry). Signatures are checked against the issuer's
published keys (RS256/RS384/ES256/ES384/PS256), refetched when a token names an unknown key (at most once a
minute). Claims map to a Sante principal: the role from `sante_role`, or the first Sante role found in Keycloak's
`realm_access.roles`; `scope` (or `scp`), `fhirUser`, `patient` and `organization` as they are.
"""

from __future__ import annotations

import os
import time
import urllib.request
from typing import Any

import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from sante.anomaly import Anomaly, Category
from sante.auth.principal import Principal
from sante.auth.roles import ROLES
from sante.auth.scopes import Scopes

ALGORITHMS = ["RS256", "RS384", "ES256", "ES384", "PS256"]


def _unauthorized(message: str) -> Anomaly:
    return Anomaly(Category.UNAUTHORIZED, message)


def _fetch_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return orjson.loads(resp.read())


class ExternalIssuer:
    def __init__(self, issuer: str, audience: str | None = None) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self._keys: KeySet | None = None
        self._fetched = 0.0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ExternalIssuer | None:
        env = os.environ if environ is None else environ
        issuer = env.get("SANTE_OIDC_ISSUER")
        return cls(issuer, env.get("SANTE_OIDC_AUDIENCE") or None) if issuer else None

    def _load_keys(self) -> KeySet:
        discovery = _fetch_json(f"{self.issuer}/.well-known/openid-configuration")
        if discovery.get("issuer", "").rstrip("/") != self.issuer:
            raise _unauthorized("the identity provider's discovery document names another issuer")
        self._keys = KeySet.import_key_set(_fetch_json(discovery["jwks_uri"]))
        self._fetched = time.monotonic()
        return self._keys

    def _decode(self, token: str) -> dict[str, Any]:
        keys = self._keys
        if keys is None:
            keys = self._load_keys()
        try:
            return dict(jwt.decode(token, keys, algorithms=ALGORITHMS).claims)
        except (JoseError, ValueError) as e:
            if time.monotonic() - self._fetched > 60:  # the issuer may have rotated its keys
                try:
                    return dict(jwt.decode(token, self._load_keys(), algorithms=ALGORITHMS).claims)
                except (JoseError, ValueError):
                    pass
            raise _unauthorized(f"the bearer token's signature is not the identity provider's ({type(e).__name__})"
                                ) from None

    def authenticate(self, token: str, now: float | None = None) -> tuple[Principal, int]:
        try:
            claims = self._decode(token)
        except OSError as e:
            raise _unauthorized(f"the identity provider cannot be reached: {e}") from None
        now = time.time() if now is None else now
        if str(claims.get("iss", "")).rstrip("/") != self.issuer:
            raise _unauthorized("the bearer token comes from another issuer")
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= now:
            raise _unauthorized("the bearer token has expired")
        if self.audience is not None:
            aud = claims.get("aud")
            auds = aud if isinstance(aud, list) else [aud]
            if self.audience not in auds:
                raise _unauthorized(f"the bearer token is not meant for {self.audience}")
        role = claims.get("sante_role")
        if role is None:
            realm = claims.get("realm_access") or {}
            role = next((r for r in realm.get("roles", []) if r in ROLES and r != "system"), None)
        if role not in ROLES:
            raise _unauthorized("the token carries no Sante role (claim sante_role or realm_access.roles)")
        patient = claims.get("patient")
        if role == "patient" and not patient:
            fhir_user = str(claims.get("fhirUser", ""))
            patient = fhir_user.split("/", 1)[1] if fhir_user.startswith("Patient/") else None
            if not patient:
                raise _unauthorized("a patient's token must name the patient (claim patient or fhirUser)")
        scope = claims.get("scope") or " ".join(claims.get("scp") or [])
        try:
            scopes = Scopes.parse(scope)
        except Anomaly as e:
            raise _unauthorized(f"the token's scopes are not SMART scopes: {e.message}") from None
        principal = Principal(subject=str(claims.get("preferred_username") or claims.get("sub", "")), role=role,
                              scopes=scopes, fhir_user=claims.get("fhirUser"), patient=patient,
                              organization=claims.get("organization"), token_id=claims.get("jti"))
        return principal, exp


__all__ = ["ExternalIssuer"]
