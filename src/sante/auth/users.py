"""Sante's user accounts: password (argon2id), role, the FHIR resource the user is (Practitioner, Patient,
RelatedPerson), optional TOTP second factor, and lock-out after repeated failures."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyotp
from sqlalchemy import Engine, insert, select, update

from sante.anomaly import Anomaly, Category, incorrect
from sante.auth.passwords import hash_password, needs_rehash, verify_password
from sante.auth.roles import ROLES
from sante.store.schema import users

MAX_FAILURES = 5
LOCK_MINUTES = 15
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")
REFERENCE_RE = re.compile(r"^(Practitioner|PractitionerRole|Patient|RelatedPerson|Device)/[A-Za-z0-9\-.]{1,64}$")


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class User:
    username: str
    role: str
    fhir_user: str | None
    organization: str | None
    disabled: bool
    totp: bool
    locked_until: str | None

    @property
    def patient(self) -> str | None:
        """The patient id a patient user is (their launch context)."""
        if self.role == "patient" and self.fhir_user and self.fhir_user.startswith("Patient/"):
            return self.fhir_user.split("/", 1)[1]
        return None


def _user(row: object) -> User:
    m = row._mapping  # type: ignore[attr-defined]
    return User(m["username"], m["role"], m["fhir_user"], m["organization"], bool(m["disabled"]),
                m["totp_secret"] is not None, m["locked_until"])


class AuthenticationFailed(Anomaly):
    def __init__(self, message: str = "unknown user or wrong password") -> None:
        super().__init__(Category.UNAUTHORIZED, message)


class UserStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, username: str, password: str, role: str, *, fhir_user: str | None = None,
            organization: str | None = None) -> User:
        if not USERNAME_RE.match(username):
            raise incorrect(f"{username!r} is not a valid username (2-64 of letters, digits, _ . @ -)", "username")
        if role not in ROLES or role == "system":
            raise incorrect(f"{role!r} is not a user role (one of {', '.join(r for r in ROLES if r != 'system')})",
                            "role")
        if fhir_user is not None and not REFERENCE_RE.match(fhir_user):
            raise incorrect(f"{fhir_user!r} is not a reference such as Practitioner/123 or Patient/456", "fhir-user")
        if role in ("patient", "related_person") and not fhir_user:
            raise incorrect(f"a {role} user must be linked to their resource (--fhir-user Patient/ID)", "fhir-user")
        if role == "patient" and not (fhir_user or "").startswith("Patient/"):
            raise incorrect("a patient user is linked to a Patient (--fhir-user Patient/ID)", "fhir-user")
        try:
            hashed = hash_password(password)
        except ValueError as e:
            raise incorrect(str(e), "password") from None
        with self.engine.begin() as conn:
            if conn.execute(select(users.c.username).where(users.c.username == username)).first():
                raise Anomaly(Category.CONFLICT, f"user {username!r} already exists")
            conn.execute(insert(users).values(
                username=username, password_hash=hashed, role=role, fhir_user=fhir_user, organization=organization,
                disabled=False, failed_logins=0, created=_now().isoformat(timespec="seconds")))
        return self.get(username)

    def get(self, username: str) -> User:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.username == username)).first()
        if row is None:
            raise Anomaly(Category.NOT_FOUND, f"no user {username!r}")
        return _user(row)

    def list(self) -> list[User]:
        with self.engine.connect() as conn:
            return [_user(r) for r in conn.execute(select(users).order_by(users.c.username))]

    def set_disabled(self, username: str, disabled: bool = True) -> User:
        with self.engine.begin() as conn:
            n = conn.execute(update(users).where(users.c.username == username).values(disabled=disabled)).rowcount
        if not n:
            raise Anomaly(Category.NOT_FOUND, f"no user {username!r}")
        return self.get(username)

    def set_password(self, username: str, password: str) -> None:
        try:
            hashed = hash_password(password)
        except ValueError as e:
            raise incorrect(str(e), "password") from None
        with self.engine.begin() as conn:
            n = conn.execute(update(users).where(users.c.username == username).values(
                password_hash=hashed, failed_logins=0, locked_until=None)).rowcount
        if not n:
            raise Anomaly(Category.NOT_FOUND, f"no user {username!r}")

    def enable_totp(self, username: str) -> str:
        """Turn on the second factor; returns the provisioning URI to show as a QR code."""
        secret = pyotp.random_base32()
        with self.engine.begin() as conn:
            n = conn.execute(update(users).where(users.c.username == username).values(totp_secret=secret)).rowcount
        if not n:
            raise Anomaly(Category.NOT_FOUND, f"no user {username!r}")
        return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name="Sante")

    def authenticate(self, username: str, password: str, totp_code: str | None = None) -> User:
        """The user, when the password (and second factor, if enabled) is right; AuthenticationFailed otherwise.
        Five failures in a row lock the account for fifteen minutes; the same message answers every failure, so
        an attacker learns nothing about which usernames exist."""
        now = _now()
        failure: str | None = None
        with self.engine.begin() as conn:  # the failure count is committed before the failure is reported
            row = conn.execute(select(users).where(users.c.username == username)).first()
            if row is None:
                verify_password(None, password)  # spend the same time as for a real user
                raise AuthenticationFailed()
            m = row._mapping
            if m["locked_until"] and m["locked_until"] > now.isoformat():
                raise AuthenticationFailed("account locked after repeated failures; try again later")
            ok = verify_password(m["password_hash"], password) and not m["disabled"]
            if ok and m["totp_secret"]:
                ok = bool(totp_code) and pyotp.TOTP(m["totp_secret"]).verify(totp_code or "", valid_window=1)
            if not ok:
                failures = m["failed_logins"] + 1
                locked = (now + timedelta(minutes=LOCK_MINUTES)).isoformat() if failures >= MAX_FAILURES else None
                conn.execute(update(users).where(users.c.username == username).values(
                    failed_logins=0 if locked else failures, locked_until=locked))
                failure = "unknown user or wrong password"
            else:
                values: dict[str, object] = {"failed_logins": 0, "locked_until": None}
                if needs_rehash(m["password_hash"]):
                    values["password_hash"] = hash_password(password)
                conn.execute(update(users).where(users.c.username == username).values(**values))
        if failure:
            raise AuthenticationFailed(failure)
        return _user(row)


__all__ = ["AuthenticationFailed", "User", "UserStore"]
