"""Sante's user accounts: password (argon2id), role, the FHIR resource the user is (Practitioner, Patient,
RelatedPerson), optional TOTP second factor, and lock-out after repeated failures."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
from sqlalchemy import Connection, Engine, insert, select, update

from sante.anomaly import Anomaly, Category, incorrect
from sante.auth.passwords import hash_password, needs_rehash, verify_password
from sante.auth.roles import ROLES
from sante.store.repository import Transaction, write_transaction
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
    related_patient: str | None = None  # for a related person: whom their RelatedPerson record grants them
    launch_patient: str | None = None  # for staff: the patient picked for an app's launch (SMART launch/patient)

    @property
    def patient(self) -> str | None:
        """The patient id in this user's launch context: a patient user is that patient; a related person sees
        the patient their RelatedPerson record names, while that record is active and in its period."""
        if self.role == "patient" and self.fhir_user and self.fhir_user.startswith("Patient/"):
            return self.fhir_user.split("/", 1)[1]
        if self.role == "related_person":
            return self.related_patient
        if self.role != "patient":
            return self.launch_patient
        return None


def related_patient(conn: Connection, fhir_user: str | None, today: str | None = None) -> str | None:
    """The patient a RelatedPerson (fhir_user 'RelatedPerson/ID') gives access to: RelatedPerson.patient, while the
    record exists, is not deleted, is not `active: false` and today is within its `period`; None otherwise."""
    if not fhir_user or not fhir_user.startswith("RelatedPerson/"):
        return None
    stored = Transaction(conn, for_update=False).current("RelatedPerson", fhir_user.split("/", 1)[1])
    resource = stored.resource if stored is not None and not stored.deleted else None
    if not resource or resource.get("active") is False:
        return None
    today = today or _now().date().isoformat()
    period = resource.get("period") or {}
    if (period.get("start") and period["start"][:10] > today) or (period.get("end") and period["end"][:10] < today):
        return None
    ref = (resource.get("patient") or {}).get("reference") or ""
    rtype, _, rid = ref.rpartition("/")
    return rid if rtype.endswith("Patient") and rid else None


def _user(row: object, conn: Connection | None = None) -> User:
    m = row._mapping  # type: ignore[attr-defined]
    if m["role"] == "related_person" and conn is not None:
        return User(m["username"], m["role"], m["fhir_user"], m["organization"], bool(m["disabled"]),
                    bool(m["totp_secret"]), m["locked_until"], related_patient(conn, m["fhir_user"]))
    return User(m["username"], m["role"], m["fhir_user"], m["organization"], bool(m["disabled"]),
                m["totp_secret"] is not None, m["locked_until"])


class AuthenticationFailed(Anomaly):
    def __init__(self, message: str = "unknown user or wrong password") -> None:
        super().__init__(Category.UNAUTHORIZED, message)


class SecondFactorNeeded(AuthenticationFailed):
    """The password is right and the account has a second factor, but no code was given: the sign-in page asks
    for it (verify_second_factor) instead of counting a failure."""

    def __init__(self) -> None:
        super().__init__("the password is right; the one-time code is missing")


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
        if role == "related_person" and not (fhir_user or "").startswith("RelatedPerson/"):
            raise incorrect("a related person's account is linked to their RelatedPerson record "
                            "(--fhir-user RelatedPerson/ID), which names the patient and the period", "fhir-user")
        try:
            hashed = hash_password(password)
        except ValueError as e:
            raise incorrect(str(e), "password") from None
        with write_transaction(self.engine) as conn:
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
            return _user(row, conn)

    def _resolved(self, row: object) -> User:
        if row._mapping["role"] != "related_person":  # type: ignore[attr-defined]
            return _user(row)
        with self.engine.connect() as conn:
            return _user(row, conn)

    def list(self) -> list[User]:
        with self.engine.connect() as conn:
            return [_user(r, conn) for r in conn.execute(select(users).order_by(users.c.username)).all()]

    def set_disabled(self, username: str, disabled: bool = True) -> User:
        with write_transaction(self.engine) as conn:
            n = conn.execute(update(users).where(users.c.username == username).values(disabled=disabled)).rowcount
        if not n:
            raise Anomaly(Category.NOT_FOUND, f"no user {username!r}")
        return self.get(username)

    def set_password(self, username: str, password: str) -> None:
        try:
            hashed = hash_password(password)
        except ValueError as e:
            raise incorrect(str(e), "password") from None
        with write_transaction(self.engine) as conn:
            n = conn.execute(update(users).where(users.c.username == username).values(
                password_hash=hashed, failed_logins=0, locked_until=None)).rowcount
        if not n:
            raise Anomaly(Category.NOT_FOUND, f"no user {username!r}")

    def enable_totp(self, username: str) -> str:
        """Turn on the second factor; returns the provisioning URI to show as a QR code."""
        secret = pyotp.random_base32()
        with write_transaction(self.engine) as conn:
            n = conn.execute(update(users).where(users.c.username == username).values(totp_secret=secret)).rowcount
        if not n:
            raise Anomaly(Category.NOT_FOUND, f"no user {username!r}")
        return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name="Sante")

    def authenticate(self, username: str, password: str, totp_code: str | None = None, *,
                     ask_second_factor: bool = False) -> User:
        """The user, when the password (and second factor, if enabled) is right; AuthenticationFailed otherwise.
        Five failures in a row lock the account for fifteen minutes; the same message answers every failure, so
        an attacker learns nothing about which usernames exist. With ask_second_factor, a right password without
        the code of an account that has one raises SecondFactorNeeded (not counted as a failure) rather than
        failing: the sign-in page then asks for the code alone."""
        now = _now()
        with write_transaction(self.engine) as conn:  # the failure count is committed before the failure is reported
            row = conn.execute(select(users).where(users.c.username == username)).first()
            if row is None:
                verify_password(None, password)  # spend the same time as for a real user
                raise AuthenticationFailed()
            m = row._mapping
            if m["locked_until"] and m["locked_until"] > now.isoformat():
                raise AuthenticationFailed("account locked after repeated failures; try again later")
            ok = verify_password(m["password_hash"], password) and not m["disabled"]
            if ok and m["totp_secret"]:
                if not totp_code and ask_second_factor:
                    raise SecondFactorNeeded()
                ok = bool(totp_code) and pyotp.TOTP(m["totp_secret"]).verify(totp_code or "", valid_window=1)
            failure = self._settle(conn, username, m["failed_logins"], ok, now)
            if ok and needs_rehash(m["password_hash"]):
                conn.execute(update(users).where(users.c.username == username).values(
                    password_hash=hash_password(password)))
        if failure:
            raise AuthenticationFailed(failure)
        return self._resolved(row)

    def verify_second_factor(self, username: str, totp_code: str) -> User:
        """The second step of a sign-in whose password was accepted moments before (the caller proves that, e.g.
        with a signed, short-lived token): the one-time code alone. A wrong code counts towards the lock-out like
        a wrong password."""
        now = _now()
        with write_transaction(self.engine) as conn:
            row = conn.execute(select(users).where(users.c.username == username)).first()
            if row is None:
                raise AuthenticationFailed()
            m = row._mapping
            if m["locked_until"] and m["locked_until"] > now.isoformat():
                raise AuthenticationFailed("account locked after repeated failures; try again later")
            ok = bool(m["totp_secret"]) and not m["disabled"] and bool(totp_code) \
                and pyotp.TOTP(m["totp_secret"]).verify(totp_code, valid_window=1)
            failure = self._settle(conn, username, m["failed_logins"], ok, now)
        if failure:
            raise AuthenticationFailed(failure)
        return self._resolved(row)

    @staticmethod
    def _settle(conn: Any, username: str, failed_logins: int, ok: bool, now: datetime) -> str | None:
        """Record the outcome of one sign-in attempt: a success clears the failure count, the fifth failure in a
        row locks the account. Returns the failure message, None on success."""
        if ok:
            conn.execute(update(users).where(users.c.username == username).values(failed_logins=0, locked_until=None))
            return None
        failures = failed_logins + 1
        locked = (now + timedelta(minutes=LOCK_MINUTES)).isoformat() if failures >= MAX_FAILURES else None
        conn.execute(update(users).where(users.c.username == username).values(
            failed_logins=0 if locked else failures, locked_until=locked))
        return "unknown user or wrong password"


__all__ = ["AuthenticationFailed", "SecondFactorNeeded", "User", "UserStore"]
