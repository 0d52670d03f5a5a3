"""Bearer tokens: JWTs (HS256) signed with a key kept in the data directory, or tokens from an external OpenID
Connect issuer (Keycloak and the like) checked against its published keys.

Verified claims are cached per token string (a token is checked with its signature once, then costs a dict
look-up); revocation is checked on every request against a set refreshed from the database every two seconds,
so a revoked token stops working everywhere within that time.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from sqlalchemy import Engine, delete, insert, select

from sante.anomaly import Anomaly, Category
from sante.auth.principal import Principal
from sante.auth.roles import ROLES
from sante.auth.scopes import Scopes
from sante.store.repository import write_transaction
from sante.store.schema import revoked_tokens

ISSUER = "sante"
DEFAULT_LIFETIME = 3600
CACHE_SIZE = 20000


def unauthorized(message: str) -> Anomaly:
    return Anomaly(Category.UNAUTHORIZED, message)


@dataclass(frozen=True, slots=True)
class Issued:
    token: str
    claims: dict[str, Any]


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    role = claims.get("role")
    if role not in ROLES:
        raise unauthorized(f"the token's role {role!r} is not one of Sante's roles")
    scopes = Scopes.parse(claims.get("scope", ""))
    patient = claims.get("patient")
    if role == "patient" and not patient:
        raise unauthorized("a patient's token must carry the patient's id")
    return Principal(subject=str(claims.get("sub", "")), role=role, scopes=scopes, fhir_user=claims.get("fhirUser"),
                     patient=patient, organization=claims.get("org"), token_id=claims.get("jti"))


def _issuer_of(token: str) -> str | None:
    """The unverified `iss` of a JWT: only to choose which keys to verify it with."""
    try:
        payload = token.split(".")[1]
        return orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))).get("iss")
    except (IndexError, ValueError, AttributeError):
        return None


class TokenService:
    """Issues and checks Sante's own access tokens."""

    def __init__(self, secret: bytes, engine: Engine, clock: Callable[[], float] = time.time,
                 external: Any = None) -> None:
        self._key = OctKey.import_key(secret)
        self.external = external  # an ExternalIssuer whose tokens are accepted too
        self._engine = engine
        self._clock = clock
        self._cache: OrderedDict[str, tuple[Principal, int]] = OrderedDict()
        self._revoked: set[str] = set()
        self._revoked_at = 0.0

    def issue(self, *, subject: str, role: str, scopes: str, fhir_user: str | None = None,
              patient: str | None = None, organization: str | None = None, lifetime: int = DEFAULT_LIFETIME,
              extra: dict[str, Any] | None = None) -> Issued:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        Scopes.parse(scopes)  # refuse malformed scopes at issue time
        now = int(self._clock())
        claims: dict[str, Any] = {"iss": ISSUER, "sub": subject, "role": role, "scope": scopes, "iat": now,
                                  "exp": now + lifetime, "jti": uuid.uuid4().hex}
        for name, value in (("fhirUser", fhir_user), ("patient", patient), ("org", organization)):
            if value:
                claims[name] = value
        claims.update(extra or {})
        return Issued(jwt.encode({"alg": "HS256", "typ": "JWT"}, claims, self._key), claims)

    def decode(self, token: str) -> dict[str, Any]:
        """The claims of a token signed by this server, whatever its expiry (for introspection)."""
        try:
            return dict(jwt.decode(token, self._key, algorithms=["HS256"]).claims)
        except (JoseError, ValueError) as e:
            raise unauthorized(f"the bearer token is not valid ({type(e).__name__})") from None

    def authenticate(self, token: str) -> Principal:
        now = self._clock()
        hit = self._cache.get(token)
        if hit is None:
            if self.external is not None and _issuer_of(token) not in (ISSUER, None):
                hit = self.external.authenticate(token, now)
            else:
                claims = self.decode(token)
                if claims.get("iss") != ISSUER or not isinstance(claims.get("exp"), int):
                    raise unauthorized("the bearer token was not issued by this server")
                hit = (principal_from_claims(claims), claims["exp"])
            self._cache[token] = hit
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        principal, exp = hit
        if now >= exp:
            self._cache.pop(token, None)
            raise unauthorized("the bearer token has expired")
        if principal.token_id in self._revoked_set(now):
            raise unauthorized("the bearer token has been revoked")
        return principal

    def revoke(self, token: str) -> bool:
        """Revoke a token of this server (idempotent); False when it is not one of ours."""
        try:
            claims = self.decode(token)
        except Anomaly:
            return False
        jti, exp = claims.get("jti"), claims.get("exp")
        if not jti:
            return False
        with write_transaction(self._engine) as conn:
            conn.execute(delete(revoked_tokens).where(revoked_tokens.c.jti == jti))
            conn.execute(insert(revoked_tokens).values(jti=jti, expires=int(exp or 0)))
        self._revoked.add(jti)
        self._cache.pop(token, None)
        return True

    def is_active(self, token: str) -> dict[str, Any] | None:
        """Introspection: the claims of an active token, None otherwise."""
        try:
            self.authenticate(token)
        except Anomaly:
            return None
        return self.decode(token)

    def _revoked_set(self, now: float) -> set[str]:
        if now - self._revoked_at > 2.0:
            with self._engine.connect() as conn:
                rows = conn.execute(select(revoked_tokens.c.jti).where(revoked_tokens.c.expires > int(now)))
                self._revoked = {r[0] for r in rows}
            self._revoked_at = now
        return self._revoked


__all__ = ["Issued", "TokenService", "principal_from_claims", "unauthorized"]
