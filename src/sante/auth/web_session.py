"""Browser sign-in for the authorization endpoint: server-side sessions behind a signed cookie, CSRF tokens for the
login and logout forms, and a per-address limit on failed attempts.

The session cookie is `<id>.<HMAC-SHA256(key, id)>`: the id is 256 random bits, the key lives in the data
directory (`secrets/session.key`), and the database keeps only SHA-256(id) with the user and the expiry. A forged
or altered cookie is refused before the database is asked; a stolen database yields no usable cookie; logging out
deletes the row, so the cookie is dead everywhere at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from sqlalchemy import Engine, delete, insert, select

from sante.auth.principal import Principal
from sante.auth.scopes import Scopes
from sante.auth.users import User
from sante.store.repository import write_transaction
from sante.store.schema import oauth_sessions

SESSION_COOKIE = "sante_session"
CSRF_COOKIE = "sante_csrf"
SESSION_LIFETIME = 8 * 3600  # one working shift
LAUNCH_COOKIE = "sante_launch"
LAUNCH_PICK_LIFETIME = 600  # seconds between picking a patient and the app's authorization
SECOND_STEP_SECONDS = 300  # to type the one-time code once the password was accepted


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class Signer:
    """HMAC-SHA256 signatures under one key, for cookies and form tokens."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def sign(self, purpose: str, value: str) -> str:
        mac = hmac.new(self.key, f"{purpose}|{value}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def check(self, purpose: str, value: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign(purpose, value), signature)

    # -- login form: double-submit CSRF token (a random nonce in a cookie, the nonce and its MAC in the form) --
    def new_csrf(self) -> tuple[str, str]:
        """(cookie value, form value)."""
        nonce = secrets.token_urlsafe(24)
        return nonce, f"{nonce}.{self.sign('csrf', nonce)}"

    def check_csrf(self, cookie: str | None, form_value: str | None) -> bool:
        if not cookie or not form_value or "." not in form_value:
            return False
        nonce, _, mac = form_value.rpartition(".")
        return hmac.compare_digest(nonce, cookie) and self.check("csrf", nonce, mac)

    # -- sign-in in two steps: the password was accepted, the one-time code comes next --
    def password_accepted(self, username: str, now: float) -> str:
        """A form token saying that `username`'s password was right, good for SECOND_STEP_SECONDS."""
        value = f"{int(now) + SECOND_STEP_SECONDS}:{username}"
        return f"{value}.{self.sign('second-step', value)}"

    def accepted_username(self, token: str | None, now: float) -> str | None:
        """The username of a live password_accepted token, None for an expired, altered or forged one."""
        value, _, mac = (token or "").rpartition(".")
        expires, _, username = value.partition(":")
        if not (value and expires.isdigit() and username and self.check("second-step", value, mac)):
            return None
        return username if int(expires) > now else None

    # -- the patient picked for an app's launch: a short-lived cookie bound to the user and the app --
    def launch_pick(self, username: str, client_id: str, patient: str, expires: int) -> str:
        value = f"{username}|{client_id}|{patient}|{expires}"
        return f"{base64.urlsafe_b64encode(value.encode()).decode()}.{self.sign('launch', value)}"

    def read_launch_pick(self, cookie: str | None, username: str, client_id: str, now: float) -> str | None:
        """The patient picked by this user for this app, while the pick is fresh; None otherwise."""
        if not cookie or "." not in cookie:
            return None
        encoded, _, mac = cookie.rpartition(".")
        try:
            value = base64.urlsafe_b64decode(encoded.encode()).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        if not self.check("launch", value, mac):
            return None
        parts = value.split("|")
        if len(parts) != 4 or parts[0] != username or parts[1] != client_id or not parts[3].isdigit():
            return None
        return parts[2] if int(parts[3]) > now else None

    # -- the sign-out form and every form of the web app's pages: a token bound to the session --
    def session_csrf(self, cookie: str) -> str:
        return self.sign("logout", cookie)

    def check_session_csrf(self, cookie: str | None, token: str | None) -> bool:
        return bool(cookie) and bool(token) and self.check("logout", cookie or "", token or "")


class LoginSessions:
    """Who is signed in to the authorization server, by session cookie."""

    def __init__(self, engine: Engine, signer: Signer, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.signer = signer
        self.clock = clock

    def create(self, username: str) -> str:
        """A new session; returns the cookie value."""
        sid = secrets.token_urlsafe(32)
        now = int(self.clock())
        with write_transaction(self.engine) as conn:
            conn.execute(delete(oauth_sessions).where(oauth_sessions.c.expires < now))
            conn.execute(insert(oauth_sessions).values(session_hash=sha256_hex(sid), username=username, auth_time=now,
                                                       expires=now + SESSION_LIFETIME))
        return f"{sid}.{self.signer.sign('session', sid)}"

    def _sid(self, cookie: str | None) -> str | None:
        if not cookie or "." not in cookie:
            return None
        sid, _, mac = cookie.rpartition(".")
        return sid if self.signer.check("session", sid, mac) else None

    def lookup(self, cookie: str | None) -> tuple[str, int] | None:
        """(username, time of sign-in) of a live session."""
        sid = self._sid(cookie)
        if sid is None:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(oauth_sessions.c.username, oauth_sessions.c.auth_time, oauth_sessions.c.expires)
                               .where(oauth_sessions.c.session_hash == sha256_hex(sid))).first()
        if row is None or row[2] <= int(self.clock()):
            return None
        return row[0], row[1]

    def end(self, cookie: str | None) -> None:
        sid = self._sid(cookie)
        if sid is not None:
            with write_transaction(self.engine) as conn:
                conn.execute(delete(oauth_sessions).where(oauth_sessions.c.session_hash == sha256_hex(sid)))


def safe_next(value: str | None) -> str:
    """A local path to send the browser to after signing in (or switching language); anything else (another
    site, a scheme, a control character) is dropped."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return ""
    if any(ord(ch) < 0x20 or ch == "\\" for ch in value):
        return ""
    return value


def session_principal(user: User) -> Principal:
    """Who a browser signed in as `user` is to the authorization rules: everything the user's role allows
    (`user/*.cruds`), narrowed by their organization, or, for a patient, their own record (`patient/*.cruds`)."""
    scopes = Scopes.parse("patient/*.cruds" if user.patient else "user/*.cruds")
    return Principal(subject=user.username, role=user.role, scopes=scopes, fhir_user=user.fhir_user,
                     patient=user.patient, organization=user.organization)


class FailureLimit:
    """A sliding window per key (a client address): more than `limit` failures within `window` seconds and
    further attempts are refused until the oldest failure leaves the window. In memory, per server process."""

    def __init__(self, limit: int = 10, window: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> deque[float] | None:
        hits = self._hits.get(key)
        if hits is None:
            return None
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if not hits:
            del self._hits[key]
            return None
        return hits

    def retry_after(self, key: str) -> int | None:
        """Seconds to wait when the key is over its limit, None when it may try."""
        with self._lock:
            now = self.clock()
            hits = self._live(key, now)
            if hits is None or len(hits) < self.limit:
                return None
            return max(1, math.ceil(hits[0] + self.window - now))

    def fail(self, key: str) -> None:
        with self._lock:
            now = self.clock()
            hits = self._live(key, now)
            if hits is None:
                hits = self._hits[key] = deque()
            hits.append(now)
            self._hits.move_to_end(key)
            while len(self._hits) > self.max_keys:
                self._hits.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._hits.clear()


__all__ = ["CSRF_COOKIE", "SESSION_COOKIE", "SESSION_LIFETIME", "FailureLimit", "LoginSessions", "Signer",
           "safe_next", "session_principal", "sha256_hex"]
