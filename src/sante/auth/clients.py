"""Registered client apps (OAuth2 clients) and the SMART scopes they may be granted.

A client is registered by an operator (`sante client add`); there is no dynamic registration. Each client has
one way to authenticate at the token endpoint:

- `none`: a public app (a browser or mobile app that cannot keep a secret); it must use PKCE;
- `client_secret_basic` / `client_secret_post`: a confidential app with a shared secret (kept as an argon2id
  hash, never in clear);
- `private_key_jwt`: a confidential app that signs a short-lived JWT with its private key (SMART Backend
  Services); the server keeps only the public keys (a JWK Set).

Scopes granted are the requested scopes narrowed to what the client is registered for: `patient/*.rs` asked by
a client registered for `patient/Observation.rs` becomes `patient/Observation.rs`; a scope outside the
registration is dropped.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
from authlib.oauth2.rfc6749 import ClientMixin
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import Engine, insert, select, update

from sante.anomaly import Anomaly, Category, incorrect
from sante.auth.passwords import hash_password, verify_password
from sante.auth.roles import ROLES
from sante.auth.scopes import INTERACTIONS, Grant, parse_grant
from sante.store.repository import write_transaction
from sante.store.schema import oauth_clients

AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post", "private_key_jwt")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
ASSERTION_ALGS = ("RS384", "ES384")  # SMART Backend Services
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_.:@-]{2,64}$")
MIN_SECRET_LENGTH = 32


def _ops(ops: frozenset[str]) -> str:
    return "".join(c for c in INTERACTIONS if c in ops)


def _narrow_one(scope: str, grant: Grant, allowed: list[tuple[str, Grant]]) -> list[str]:
    """The parts of one data scope that the allowed scopes cover."""
    pieces: list[str] = []
    for text, a in allowed:
        if a.context != grant.context or (a.rtype != "*" and grant.rtype not in ("*", a.rtype)):
            continue
        rtype = grant.rtype if a.rtype == "*" else a.rtype
        ops = grant.ops & a.ops
        if not ops:
            continue
        if rtype == grant.rtype and ops == grant.ops:
            return [scope]  # wholly covered: keep the scope as asked (v1 forms included)
        pieces.append(text if (rtype == a.rtype and ops == a.ops) else f"{grant.context}/{rtype}.{_ops(ops)}")
    return pieces


def narrow_scopes(requested: str, allowed: str) -> str:
    """`requested` ∩ `allowed`: each requested scope kept when an allowed scope covers it, narrowed to the part
    that is covered otherwise (resource type and interactions), dropped when nothing covers it. A malformed
    requested scope raises (400)."""
    allowed_list = allowed.split()
    allowed_grants = [(s, g) for s in allowed_list if (g := parse_grant(s)) is not None]
    out: list[str] = []
    for scope in requested.split():
        grant = parse_grant(scope)
        if grant is None:
            found = [scope] if scope in allowed_list else []
        elif scope in allowed_list:
            found = [scope]
        else:
            found = _narrow_one(scope, grant, allowed_grants)
        out.extend(s for s in found if s not in out)
    return " ".join(out)


def check_redirect_uri(uri: str) -> str:
    """A redirect URI a client may register: https, http on the loopback only (RFC 8252 native apps), or a
    private-use scheme with a dot (com.example.app:/callback); never a fragment."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        raise incorrect(f"{uri!r} is not a URL", "redirect-uri") from None
    if parts.fragment or "#" in uri:
        raise incorrect(f"{uri!r}: a redirect URI has no fragment", "redirect-uri")
    scheme = parts.scheme.lower()
    if scheme == "https" and parts.hostname:
        return uri
    if scheme == "http" and parts.hostname:
        host = parts.hostname
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return uri
        raise incorrect(f"{uri!r}: plain http is allowed on the loopback only (use https)", "redirect-uri")
    if "." in scheme and scheme not in ("javascript", "data", "file", "vbscript"):
        return uri
    raise incorrect(f"{uri!r} is not an https URL, a loopback http URL or an app scheme (com.example.app:/cb)",
                    "redirect-uri")


def public_jwks(data: Any) -> dict[str, Any]:
    """The public keys of a JWK Set (or of one JWK) for private_key_jwt: RSA (RS384) or EC P-384 (ES384)."""
    if isinstance(data, dict) and "keys" not in data:
        data = {"keys": [data]}
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or not data["keys"]:
        raise incorrect("the JWK Set must be {\"keys\": [...]} with at least one key", "jwks")
    keys = []
    for k in data["keys"]:
        if not isinstance(k, dict):
            raise incorrect("each JWK is a JSON object", "jwks")
        if "d" in k:
            raise incorrect("the JWK Set holds a private key: register the public key only", "jwks")
        if k.get("kty") not in ("RSA", "EC") or (k.get("kty") == "EC" and k.get("crv") != "P-384"):
            raise incorrect("keys are RSA (RS384) or EC P-384 (ES384)", "jwks")
        if k.get("alg") and k["alg"] not in ASSERTION_ALGS:
            raise incorrect(f"key algorithm {k['alg']!r}: RS384 or ES384", "jwks")
        keys.append(k)
    try:
        KeySet.import_key_set({"keys": keys})
    except (JoseError, ValueError, TypeError) as e:
        raise incorrect(f"the JWK Set cannot be read: {e}", "jwks") from None
    return {"keys": keys}


@dataclass(frozen=True)
class Client(ClientMixin):
    """A registered client app, in the shape Authlib asks for."""

    client_id: str
    name: str
    secret_hash: str | None
    redirect_uris: tuple[str, ...]
    scopes: str
    grant_types: tuple[str, ...]
    auth_method: str
    jwks: dict[str, Any] | None
    role: str
    created: str
    disabled: bool

    @property
    def public(self) -> bool:
        return self.auth_method == "none"

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        if not scope:
            return None
        granted = narrow_scopes(scope, self.scopes)
        return granted or None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact match, as OAuth 2.1 asks

    def check_client_secret(self, client_secret: str) -> bool:
        return self.secret_hash is not None and verify_password(self.secret_hash, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


def _client(row: Any) -> Client:
    m = row._mapping
    return Client(m["client_id"], m["name"], m["secret_hash"], tuple(orjson.loads(m["redirect_uris"])), m["scopes"],
                  tuple(m["grant_types"].split()), m["token_endpoint_auth_method"],
                  orjson.loads(m["jwks"]) if m["jwks"] else None, m["role"], m["created"], bool(m["disabled"]))


class ClientStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, client_id: str, name: str, *, redirect_uris: list[str] | tuple[str, ...] = (), scopes: str,
            auth_method: str, secret: str | None = None, jwks: Any = None, role: str = "system",
            grant_types: list[str] | None = None) -> Client:
        if not CLIENT_ID_RE.match(client_id):
            raise incorrect(f"{client_id!r} is not a valid client id (2-64 of letters, digits, _ . : @ -)",
                            "client-id")
        if not name.strip():
            raise incorrect("a client needs a name (shown to operators and in the audit trail)", "name")
        if auth_method not in AUTH_METHODS:
            raise incorrect(f"{auth_method!r}: the authentication method is one of {', '.join(AUTH_METHODS)}",
                            "auth-method")
        if role not in ROLES or role in ("patient", "related_person"):
            raise incorrect(f"{role!r} is not a role for a client app", "role")
        uris = [check_redirect_uri(u) for u in redirect_uris]
        granted = narrow_scopes(scopes, scopes)  # parses every scope: a malformed one is refused here
        if not granted:
            raise incorrect("a client needs at least one scope", "scopes")
        secret_hash = None
        if auth_method.startswith("client_secret"):
            if not secret or len(secret) < MIN_SECRET_LENGTH:
                raise incorrect(f"a client secret needs at least {MIN_SECRET_LENGTH} characters "
                                "(e.g. openssl rand -base64 32)", "secret")
            secret_hash = hash_password(secret)
        elif secret:
            raise incorrect(f"a {auth_method} client has no secret", "secret")
        key_set = None
        if auth_method == "private_key_jwt":
            if jwks is None:
                raise incorrect("a private_key_jwt client needs its public keys (a JWK Set)", "jwks")
            key_set = public_jwks(jwks)
        elif jwks is not None:
            raise incorrect("public keys are for private_key_jwt clients only", "jwks")
        has_system = any(s.startswith("system/") for s in granted.split())
        if grant_types is None:
            grant_types = []
            if uris:
                grant_types += ["authorization_code", "refresh_token"]
            if auth_method != "none" and has_system:
                grant_types.append("client_credentials")
        for g in grant_types:
            if g not in GRANT_TYPES:
                raise incorrect(f"{g!r}: grant types are {', '.join(GRANT_TYPES)}", "grant-types")
        if not grant_types:
            raise incorrect("the client could use no grant: give it redirect URIs (apps used by people) or "
                            "system/ scopes and a secret or keys (backend services)", "grant-types")
        if "authorization_code" in grant_types and not uris:
            raise incorrect("an app that signs people in needs at least one redirect URI", "redirect-uri")
        if "client_credentials" in grant_types and auth_method == "none":
            raise incorrect("a public client cannot use client credentials", "grant-types")
        with write_transaction(self.engine) as conn:
            if conn.execute(select(oauth_clients.c.client_id).where(oauth_clients.c.client_id == client_id)).first():
                raise Anomaly(Category.CONFLICT, f"client {client_id!r} already exists")
            conn.execute(insert(oauth_clients).values(
                client_id=client_id, name=name.strip(), secret_hash=secret_hash, redirect_uris=orjson.dumps(uris).decode(),
                scopes=granted, grant_types=" ".join(dict.fromkeys(grant_types)), token_endpoint_auth_method=auth_method,
                jwks=orjson.dumps(key_set).decode() if key_set else None, role=role,
                created=datetime.now(UTC).isoformat(timespec="seconds"), disabled=False))
        client = self.get(client_id)
        assert client is not None
        return client

    def get(self, client_id: str) -> Client | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(oauth_clients).where(oauth_clients.c.client_id == client_id)).first()
        return _client(row) if row is not None else None

    def list(self) -> list[Client]:
        with self.engine.connect() as conn:
            return [_client(r) for r in conn.execute(select(oauth_clients).order_by(oauth_clients.c.client_id))]

    def set_disabled(self, client_id: str, disabled: bool = True) -> Client:
        with write_transaction(self.engine) as conn:
            n = conn.execute(update(oauth_clients).where(oauth_clients.c.client_id == client_id)
                             .values(disabled=disabled)).rowcount
        if not n:
            raise Anomaly(Category.NOT_FOUND, f"no client {client_id!r}")
        client = self.get(client_id)
        assert client is not None
        return client


__all__ = ["ASSERTION_ALGS", "AUTH_METHODS", "GRANT_TYPES", "Client", "ClientStore", "check_redirect_uri",
           "narrow_scopes", "public_jwks"]
