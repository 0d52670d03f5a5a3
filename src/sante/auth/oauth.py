"""Sante's OAuth2 / OpenID Connect authorization server (SMART App Launch 2 and SMART Backend Services), built on
Authlib's RFC implementations with a small adapter for Starlette requests.

Grants:

- authorization code with PKCE (S256; required of public clients), for apps used by people: the user signs in
  on `/login` (see `sante.api.oauth_routes`), the code is bound to the client, the redirect URI and the code
  challenge, lives two minutes and is single-use (a replayed code revokes what it was exchanged for);
- refresh token (issued when `offline_access` or `online_access` is granted), rotated on every use: the old
  one stops working, and presenting a used one revokes every refresh token of that grant;
- client credentials for backend services, the client authenticating with a JWT assertion signed by its
  registered key (`private_key_jwt`, RS384 or ES384, `exp` at most five minutes ahead, each `jti` used once) or
  with a client secret.

Access tokens are Sante's own (`TokenService.issue`, HS256, one hour), so the API accepts them as any other;
their role, fhirUser, organization and patient come from the user account (or the client's registered role for
client credentials). Refresh tokens are opaque random strings stored as SHA-256 hashes. With `openid`, an
id_token signed RS256 by a key kept in the data directory (published at `/auth/jwks`) comes too.
"""

from __future__ import annotations

import base64
import contextvars
import dataclasses
import hashlib
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import orjson
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeGrant,
    AuthorizationCodeMixin,
    AuthorizationServer,
    ClientCredentialsGrant,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    JsonPayload,
    JsonRequest,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
    RefreshTokenGrant,
    TokenMixin,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core.errors import LoginRequiredError
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from sante.anomaly import Anomaly
from sante.auth.clients import ASSERTION_ALGS, Client, ClientStore, narrow_scopes
from sante.auth.scopes import parse_grant
from sante.auth.secrets import load_or_create
from sante.auth.tokens import TokenService
from sante.auth.users import User, UserStore
from sante.auth.web_session import SESSION_LIFETIME, sha256_hex
from sante.store.repository import write_transaction
from sante.store.schema import oauth_assertions, oauth_codes, oauth_refresh, revoked_tokens

ACCESS_LIFETIME = 3600
CODE_LIFETIME = 120
ID_TOKEN_LIFETIME = 3600
REFRESH_LIFETIME = {"offline_access": 30 * 24 * 3600, "online_access": SESSION_LIFETIME}
ASSERTION_MAX_LIFETIME = 300  # SMART Backend Services: exp no more than five minutes in the future
REFRESH_SCOPES = ("offline_access", "online_access")
SCOPES_SUPPORTED = ("openid", "fhirUser", "profile", "launch/patient", "offline_access", "online_access",
                    "patient/*.rs", "patient/*.cruds", "user/*.rs", "user/*.cruds", "system/*.rs", "system/*.cruds")
GRANT_TYPES_SUPPORTED = ("authorization_code", "refresh_token", "client_credentials")
AUTH_METHODS_SUPPORTED = ("private_key_jwt", "client_secret_basic", "client_secret_post", "none")
SMART_CAPABILITIES = ("launch-standalone", "client-public", "client-confidential-symmetric",
                      "client-confidential-asymmetric", "context-standalone-patient", "permission-v1", "permission-v2",
                      "permission-patient", "permission-user", "permission-offline", "permission-online",
                      "sso-openid-connect")

# The public base URL (https://host) of the request being served: issuer, audiences and fhirUser URLs.
_BASE: contextvars.ContextVar[str] = contextvars.ContextVar("sante_oauth_base", default="")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _new_rsa_pem() -> bytes:
    return RSAKey.generate_key(2048, private=True).as_pem(private=True)


# -- the Starlette adapter ------------------------------------------------------------------------------------
class StarlettePayload(OAuth2Payload):
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for k, v in pairs:
            self._datalist[k].append(v)
        self._data = {k: v[0] for k, v in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class StarletteOAuth2Request(OAuth2Request):
    """An OAuth2Request over a Starlette request whose form body the route has read already (the body is read
    asynchronously; Authlib is synchronous): GET parameters come from the query, POST ones from the form."""

    def __init__(self, request: Request, form: list[tuple[str, str]]) -> None:
        super().__init__(method=request.method, uri=str(request.url), headers=request.headers)
        query = request.query_params.multi_items()
        self._args = {k: v for k, v in reversed(query)}
        self._form = {k: v for k, v in reversed(form)}
        self.payload = StarlettePayload(form if request.method == "POST" else query)
        self.sante_claims: dict[str, Any] | None = None  # the access token issued, for the audit trail
        self.sante_auth_time: int | None = None

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class StarletteJsonPayload(JsonPayload):
    def __init__(self, data: Any) -> None:
        self._data = data

    @property
    def data(self) -> Any:
        return self._data


class StarletteJsonRequest(JsonRequest):
    def __init__(self, request: Request, body: bytes) -> None:
        super().__init__(request.method, str(request.url), request.headers)
        try:
            data = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            data = {}
        self.payload = StarletteJsonPayload(data)


# -- stored codes and tokens -----------------------------------------------------------------------------------
@dataclass
class StoredCode(AuthorizationCodeMixin):
    code_hash: str
    client_id: str
    username: str
    scope: str
    redirect_uri: str
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    patient: str | None
    auth_time: int

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass
class RefreshRecord(TokenMixin):
    token_hash: str
    family: str
    client_id: str
    username: str
    scope: str
    patient: str | None
    expires: int
    revoked: bool
    kind: str = "refresh_token"

    def check_client(self, client: Client) -> bool:
        return self.client_id == client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return max(0, self.expires - int(time.time()))

    def is_expired(self) -> bool:
        return self.expires <= int(time.time())

    def is_revoked(self) -> bool:
        return self.revoked


@dataclass
class AccessRecord(TokenMixin):
    token: str
    claims: dict[str, Any]
    active: bool
    kind: str = "access_token"

    def check_client(self, client: Client) -> bool:
        return self.claims.get("client_id") == client.client_id

    def get_scope(self) -> str:
        return str(self.claims.get("scope", ""))

    def get_expires_in(self) -> int:
        return max(0, int(self.claims.get("exp", 0)) - int(time.time()))

    def is_expired(self) -> bool:
        return not self.active

    def is_revoked(self) -> bool:
        return not self.active


# -- client authentication by signed JWT (RFC 7523, SMART Backend Services) ----------------------------------
class PrivateKeyJwt(JWTBearerClientAssertion):
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, server: SanteAuthorizationServer) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self.server = server

    def get_audiences(self) -> list[str]:
        return [f"{self.server.base()}/auth/token"]

    def resolve_client_public_key(self, client: Client) -> KeySet:
        if not client.jwks:
            raise InvalidClientError(description="the client has no registered public keys")
        return KeySet.import_key_set(client.jwks)

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=list(ASSERTION_ALGS))
        except (JoseError, ValueError, TypeError) as e:
            raise InvalidClientError(description=f"the client assertion does not verify ({type(e).__name__}; "
                                                 f"signed by a registered key with RS384 or ES384?)") from None
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims: Any) -> None:
        exp = claims.get("exp")
        if not isinstance(exp, int):
            raise InvalidClientError(description="the client assertion needs an exp (epoch seconds)")
        if exp > int(self.server.clock()) + ASSERTION_MAX_LIFETIME + self.leeway:
            raise InvalidClientError(description="the client assertion's exp is more than five minutes ahead")
        super().verify_claims(claims)

    def validate_jti(self, claims: Any, jti: Any) -> bool:
        if not isinstance(jti, str) or not jti or len(jti) > 255:
            return False
        now = int(self.server.clock())
        try:
            with write_transaction(self.server.engine) as conn:
                conn.execute(delete(oauth_assertions).where(oauth_assertions.c.expires < now - 600))
                conn.execute(insert(oauth_assertions).values(client_id=str(claims["sub"]), jti=jti,
                                                             expires=int(claims["exp"])))
        except IntegrityError:
            return False  # seen before: a replay
        return True


# -- grants --------------------------------------------------------------------------------------------------
_ALL_AUTH = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


class Pkce(CodeChallenge):
    """RFC 7636 with S256 only (SMART 2); a public client must use it."""

    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        client: Client = grant.request.client
        if client.public and not data.get("code_challenge"):
            raise InvalidRequestError("a public client must use PKCE: code_challenge with code_challenge_method=S256")
        if data.get("code_challenge") and data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)


def with_launch_patient(user: User | None, patient: str | None) -> User | None:
    """A staff user with the patient they picked for an app's launch (kept with the code and refresh token);
    patients and related persons keep the patient their account gives them."""
    if user is None or not patient or user.role in ("patient", "related_person"):
        return user
    return dataclasses.replace(user, launch_patient=patient)


class CodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = _ALL_AUTH
    server: SanteAuthorizationServer

    def save_authorization_code(self, code: str, request: StarletteOAuth2Request) -> None:
        user: User = request.user
        client: Client = request.client
        scope = self.server.user_scope(request.scope or "", user, client)
        data = request.payload.data
        now = int(self.server.clock())
        with write_transaction(self.server.engine) as conn:
            conn.execute(delete(oauth_codes).where(oauth_codes.c.expires < now - 3600))
            conn.execute(insert(oauth_codes).values(
                code_hash=sha256_hex(code), client_id=client.client_id, username=user.username, scope=scope,
                redirect_uri=request.payload.redirect_uri or "", code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"), nonce=data.get("nonce"),
                patient=user.patient if "launch/patient" in scope.split() else None,
                auth_time=request.sante_auth_time or now, expires=now + CODE_LIFETIME, used=False))

    def query_authorization_code(self, code: str, client: Client) -> StoredCode | None:
        """The code, claimed for this exchange: a code is good for one attempt. A code presented again revokes
        what its first exchange produced (RFC 6749 §4.1.2)."""
        h = sha256_hex(code)
        c = oauth_codes.c
        with write_transaction(self.server.engine) as conn:
            row = conn.execute(select(oauth_codes).where(c.code_hash == h, c.client_id == client.client_id)).first()
            if row is None:
                return None
            m = row._mapping
            claimed = conn.execute(update(oauth_codes).where(c.code_hash == h, c.used.is_(False))
                                   .values(used=True)).rowcount == 1
            if not claimed:
                self.server.revoke_code_grant(conn, h, m["token_jti"])
                return None
        if m["expires"] <= int(self.server.clock()):
            return None
        return StoredCode(h, m["client_id"], m["username"], m["scope"], m["redirect_uri"], m["code_challenge"],
                          m["code_challenge_method"], m["nonce"], m["patient"], m["auth_time"])

    def delete_authorization_code(self, authorization_code: StoredCode) -> None:
        pass  # claimed (used = true) when it was looked up

    def authenticate_user(self, authorization_code: StoredCode) -> User | None:
        return with_launch_patient(self.server.active_user(authorization_code.username), authorization_code.patient)


class RefreshGrant(RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = _ALL_AUTH
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation
    server: SanteAuthorizationServer

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshRecord | None:
        rec = self.server.find_refresh(refresh_token)
        if rec is None:
            return None
        if rec.revoked:  # a used (or revoked) token presented again: the grant may be stolen, end all of it
            self.server.revoke_refresh_family(rec.family)
            return None
        if rec.is_expired():
            return None
        return rec

    def validate_token_request(self) -> None:
        super().validate_token_request()
        rec: RefreshRecord = self.request.refresh_token
        with write_transaction(self.server.engine) as conn:  # claim it: of two concurrent uses, one wins
            won = conn.execute(update(oauth_refresh).where(oauth_refresh.c.token_hash == rec.token_hash,
                                                           oauth_refresh.c.revoked.is_(False))
                               .values(revoked=True)).rowcount == 1
        if not won:
            self.server.revoke_refresh_family(rec.family)
            raise InvalidGrantError("the refresh token has been used already")

    def authenticate_user(self, refresh_token: RefreshRecord) -> User:
        user = with_launch_patient(self.server.active_user(refresh_token.username), refresh_token.patient)
        if user is None:
            raise InvalidGrantError("the user account is disabled or gone")
        return user

    def revoke_old_credential(self, refresh_token: RefreshRecord) -> None:
        pass  # claimed (revoked) in validate_token_request


class BackendGrant(ClientCredentialsGrant):
    """Client credentials for backend services: system/ scopes only, no refresh token."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["private_key_jwt", "client_secret_basic", "client_secret_post"]

    def validate_token_request(self) -> None:
        super().validate_token_request()
        requested = self.request.payload.scope
        if not requested:
            raise InvalidScopeError("ask for the system/ scopes needed, such as scope=system/*.rs")
        allowed = self.client.get_allowed_scope(requested) or ""
        granted = " ".join(s for s in allowed.split() if s.startswith("system/"))
        if not granted:
            raise InvalidScopeError("none of the requested scopes is granted to this client")
        self.request.scope = granted

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        token = self.generate_token(scope=self.request.scope, include_refresh_token=False)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


# -- introspection and revocation -----------------------------------------------------------------------------
class _TokenLookup:
    server: SanteAuthorizationServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> AccessRecord | RefreshRecord | None:
        if token_type_hint != "refresh_token":
            found = self.server.find_access(token_string)
            if found is not None or token_type_hint == "access_token":
                return found
        return self.server.find_refresh(token_string)


class Introspection(_TokenLookup, IntrospectionEndpoint):
    """RFC 7662: a confidential client may introspect the tokens issued to it."""

    CLIENT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic", "client_secret_post", "private_key_jwt"]

    def check_permission(self, token: Any, client: Client, request: Any) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: AccessRecord | RefreshRecord) -> dict[str, Any]:
        if isinstance(token, AccessRecord):
            c = token.claims
            body = {"active": True, "token_type": "Bearer", "scope": c.get("scope", ""), "client_id": c.get("client_id"),
                    "sub": c.get("sub"), "username": c.get("sub"), "iss": c.get("iss"), "exp": c.get("exp"),
                    "iat": c.get("iat"), "jti": c.get("jti"), "role": c.get("role")}
            for name in ("patient", "fhirUser"):
                if c.get(name):
                    body[name] = c[name]
            return body
        body = {"active": True, "token_type": "refresh_token", "scope": token.scope, "client_id": token.client_id,
                "sub": token.username, "username": token.username, "exp": token.expires}
        if token.patient:
            body["patient"] = token.patient
        return body


class Revocation(_TokenLookup, RevocationEndpoint):
    """RFC 7009: a client revokes its own access or refresh tokens (a refresh token takes its whole grant)."""

    CLIENT_AUTH_METHODS = _ALL_AUTH

    def revoke_token(self, token: AccessRecord | RefreshRecord, request: Any) -> None:
        if isinstance(token, AccessRecord):
            self.server.tokens.revoke(token.token)
        else:
            self.server.revoke_refresh_family(token.family)


# -- the server ------------------------------------------------------------------------------------------------
class SanteAuthorizationServer(AuthorizationServer):
    def __init__(self, engine: Engine, tokens: TokenService, users: UserStore, clients: ClientStore, data_dir: Path,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.engine = engine
        self.tokens = tokens
        self.users = users
        self.clients = clients
        self.data_dir = data_dir
        self.clock = clock
        self._key: RSAKey | None = None
        self._key_lock = threading.Lock()
        self.register_token_generator("default", self._generate_token)
        self.register_client_auth_method("private_key_jwt", PrivateKeyJwt(self))
        self.register_grant(CodeGrant, [Pkce(required=True)])
        self.register_grant(RefreshGrant)
        self.register_grant(BackendGrant)
        self.register_endpoint(Introspection)
        self.register_endpoint(Revocation)

    # -- framework adapter --
    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        made = StarletteOAuth2Request(request, getattr(request.state, "oauth_form", []))
        request.state.oauth_request = made
        return made

    def create_json_request(self, request: Any) -> JsonRequest:
        return StarletteJsonRequest(request, getattr(request.state, "oauth_body", b""))

    def handle_response(self, status_code: int, payload: Any, headers: Any) -> Response:
        content = orjson.dumps(payload) if isinstance(payload, dict) else (payload or b"")
        return Response(content, status_code=status_code, headers=dict(headers or ()))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass  # the routes audit from the request once the response is made

    def base(self) -> str:
        base = _BASE.get()
        if not base:
            raise RuntimeError("the public base URL is not set: call through SanteAuthorizationServer.run")
        return base

    def run(self, base: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call fn with `base` as the public base URL, turning an OAuth2 error raised outside Authlib's own
        handling (such as plain http to a non-loopback host) into its response."""
        mark = _BASE.set(base.rstrip("/"))
        try:
            return fn(*args, **kwargs)
        except OAuth2Error as e:
            return self.handle_error_response(None, e)
        finally:
            _BASE.reset(mark)

    # -- clients, users, scopes --
    def query_client(self, client_id: str) -> Client | None:
        if not isinstance(client_id, str) or not client_id:
            return None
        client = self.clients.get(client_id)
        return None if client is None or client.disabled else client

    def validate_requested_scope(self, scope: str | None) -> None:
        if not scope:
            return
        if len(scope) > 4000:
            raise InvalidScopeError("the scope is too long")
        for s in scope.split():
            try:
                parse_grant(s)
            except Anomaly as e:
                raise InvalidScopeError(e.message) from None

    def active_user(self, username: str) -> User | None:
        try:
            user = self.users.get(username)
        except Anomaly:
            return None
        return None if user.disabled else user

    @staticmethod
    def user_scope(scope: str, user: User, client: Client) -> str:
        """What a signed-in user's app gets of the scopes its client may have: no system/ scopes (those are for
        backend services), launch/patient only with a patient in context (a patient, a related person, or staff
        who picked one), fhirUser only for a
        user linked to a FHIR resource, refresh scopes only for a client allowed refresh tokens."""
        out = []
        for s in scope.split():
            if s.startswith("system/") or s in ("launch", "launch/encounter"):
                continue
            if (s == "launch/patient" and not user.patient) or (s == "fhirUser" and not user.fhir_user):
                continue
            if s in REFRESH_SCOPES and not client.check_grant_type("refresh_token"):
                continue
            out.append(s)
        return " ".join(out)

    # -- tokens --
    def _generate_token(self, grant_type: str, client: Client, user: User | None = None, scope: str | None = None,
                        expires_in: int | None = None, include_refresh_token: bool = True) -> dict[str, Any]:
        scope = scope or ""
        extra = {"client_id": client.client_id}
        if user is None:
            issued = self.tokens.issue(subject=client.client_id, role=client.role, scopes=scope,
                                       lifetime=ACCESS_LIFETIME, extra=extra)
        else:
            issued = self.tokens.issue(subject=user.username, role=user.role, scopes=scope, fhir_user=user.fhir_user,
                                       patient=user.patient, organization=user.organization, lifetime=ACCESS_LIFETIME,
                                       extra=extra)
        token: dict[str, Any] = {"token_type": "Bearer", "access_token": issued.token, "expires_in": ACCESS_LIFETIME,
                                 "scope": scope}
        words = scope.split()
        if user is not None and user.patient and "launch/patient" in words:
            token["patient"] = user.patient
        if include_refresh_token and user is not None and client.check_grant_type("refresh_token") \
                and any(s in words for s in REFRESH_SCOPES):
            token["refresh_token"] = generate_token(48)
        return token

    def save_token(self, token: dict[str, Any], request: StarletteOAuth2Request) -> None:
        claims = self.tokens.decode(token["access_token"])
        request.sante_claims = claims
        user: User | None = request.user
        client: Client = request.client
        code: StoredCode | None = request.authorization_code
        previous: RefreshRecord | None = request.refresh_token
        now = int(self.clock())
        with write_transaction(self.engine) as conn:
            if code is not None:
                conn.execute(update(oauth_codes).where(oauth_codes.c.code_hash == code.code_hash)
                             .values(token_jti=claims["jti"]))
            if "refresh_token" in token and user is not None:
                words = token["scope"].split()
                lifetime = max(REFRESH_LIFETIME[s] for s in REFRESH_SCOPES if s in words)
                family = previous.family if previous else code.code_hash if code else uuid.uuid4().hex
                conn.execute(delete(oauth_refresh).where(oauth_refresh.c.expires < now - 86400))
                conn.execute(insert(oauth_refresh).values(
                    token_hash=sha256_hex(token["refresh_token"]), family=family, client_id=client.client_id,
                    username=user.username, scope=token["scope"], patient=claims.get("patient"),
                    expires=now + lifetime, revoked=False))
        if user is not None and "openid" in token["scope"].split():
            token["id_token"] = self.id_token(user, client, token, nonce=code.nonce if code else None,
                                              auth_time=code.auth_time if code else None)

    def find_access(self, token: str) -> AccessRecord | None:
        try:
            claims = self.tokens.decode(token)
        except Anomaly:
            return None
        return AccessRecord(token, claims, self.tokens.is_active(token) is not None)

    def find_refresh(self, token: str) -> RefreshRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(oauth_refresh).where(oauth_refresh.c.token_hash == sha256_hex(token))).first()
        if row is None:
            return None
        m = row._mapping
        return RefreshRecord(m["token_hash"], m["family"], m["client_id"], m["username"], m["scope"], m["patient"],
                             m["expires"], bool(m["revoked"]))

    def revoke_refresh_family(self, family: str) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(update(oauth_refresh).where(oauth_refresh.c.family == family).values(revoked=True))

    def revoke_code_grant(self, conn: Any, code_hash: str, jti: str | None) -> None:
        """A code used twice: revoke the access token and the refresh tokens its first exchange produced."""
        conn.execute(update(oauth_refresh).where(oauth_refresh.c.family == code_hash).values(revoked=True))
        if jti:
            conn.execute(delete(revoked_tokens).where(revoked_tokens.c.jti == jti))
            conn.execute(insert(revoked_tokens).values(jti=jti, expires=int(self.clock()) + ACCESS_LIFETIME))

    # -- OpenID Connect --
    @property
    def signing_key(self) -> RSAKey:
        with self._key_lock:
            if self._key is None:
                self._key = RSAKey.import_key(load_or_create(self.data_dir, "oidc-rs256", make=_new_rsa_pem))
            return self._key

    def jwks(self) -> dict[str, Any]:
        key = self.signing_key
        return {"keys": [{**key.as_dict(private=False), "kid": key.thumbprint(), "alg": "RS256", "use": "sig"}]}

    def id_token(self, user: User, client: Client, token: dict[str, Any], *, nonce: str | None,
                 auth_time: int | None) -> str:
        now = int(self.clock())
        base = self.base()
        digest = hashlib.sha256(token["access_token"].encode("ascii")).digest()
        claims: dict[str, Any] = {"iss": base, "sub": user.username, "aud": client.client_id, "iat": now,
                                  "exp": now + ID_TOKEN_LIFETIME, "auth_time": auth_time or now,
                                  "at_hash": _b64(digest[:16])}
        if nonce:
            claims["nonce"] = nonce
        words = token["scope"].split()
        if "fhirUser" in words and user.fhir_user:
            claims["fhirUser"] = f"{base}/fhir/{user.fhir_user}"
        if "profile" in words:
            claims["preferred_username"] = user.username
        key = self.signing_key
        return jwt.encode({"alg": "RS256", "typ": "JWT", "kid": key.thumbprint()}, claims, key, algorithms=["RS256"])

    # -- the authorization endpoint --
    def authorization_response(self, request: Request, user: User | None, auth_time: int | None,
                               login_url: str, picked_patient: str | None = None, picker_url: str | None = None
                               ) -> Response:
        """Validate the request (client, redirect URI, scope, PKCE, aud) and then: send an anonymous browser to
        sign in; send staff whose app asks for launch/patient to pick a patient (picker_url) unless they have
        (picked_patient); or issue the code to the signed-in user. Registered clients are pre-approved: no
        consent page."""
        try:
            grant = self.get_consent_grant(request, end_user=user)
        except OAuth2Error as e:
            return self.handle_error_response(None, e)
        oreq: StarletteOAuth2Request = grant.request  # type: ignore[assignment]
        data = oreq.payload.data
        state = data.get("state")
        aud = data.get("aud")
        if aud is not None and aud.rstrip("/") != f"{self.base()}/fhir":
            return self.handle_error_response(oreq, InvalidRequestError(
                f"aud must be this server's FHIR base URL, {self.base()}/fhir", redirect_uri=grant.redirect_uri,
                state=state))
        if user is None:
            if "none" in (data.get("prompt") or "").split():
                return self.handle_error_response(oreq, LoginRequiredError(redirect_uri=grant.redirect_uri,
                                                                           state=state))
            return RedirectResponse(login_url, status_code=303)
        oreq.sante_auth_time = auth_time
        wants_patient = "launch/patient" in narrow_scopes(data.get("scope") or "", grant.client.scopes).split()
        if wants_patient and user.role not in ("patient", "related_person") and picker_url is not None:
            if not picked_patient:
                return RedirectResponse(picker_url, status_code=303)
            user = with_launch_patient(user, picked_patient)
        return self.create_authorization_response(request=oreq, grant_user=user, grant=grant)

    # -- discovery --
    def _common_configuration(self) -> dict[str, Any]:
        """What the SMART and the OpenID Connect discovery documents both say."""
        base = self.base()
        return {
            "issuer": base,
            "jwks_uri": f"{base}/auth/jwks",
            "authorization_endpoint": f"{base}/auth/authorize",
            "token_endpoint": f"{base}/auth/token",
            "introspection_endpoint": f"{base}/auth/introspect",
            "revocation_endpoint": f"{base}/auth/revoke",
            "grant_types_supported": list(GRANT_TYPES_SUPPORTED),
            "response_types_supported": ["code"],
            "scopes_supported": list(SCOPES_SUPPORTED),
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS_SUPPORTED),
            "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        }

    def smart_configuration(self) -> dict[str, Any]:
        return {**self._common_configuration(), "capabilities": list(SMART_CAPABILITIES)}

    def openid_configuration(self) -> dict[str, Any]:
        return {
            **self._common_configuration(),
            "response_modes_supported": ["query"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "fhirUser",
                                 "preferred_username"],
            "prompt_values_supported": ["none"],
        }

__all__ = ["ACCESS_LIFETIME", "CODE_LIFETIME", "SMART_CAPABILITIES", "SanteAuthorizationServer",
           "StarletteOAuth2Request"]
