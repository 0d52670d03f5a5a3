"""Break-the-glass: an emergency override of the organization boundary (and, later, of a patient's consent
restrictions), asked for with a reason, granted for a limited time, and flagged on every audit event made under
it so that it is reviewed."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, insert, select

from sante.anomaly import incorrect
from sante.store.repository import write_transaction
from sante.store.schema import break_glass

ALLOWED_ROLES = ("physician", "nurse", "pharmacist", "lab_technician", "radiologist")
MAX_MINUTES = 240


class BreakGlass:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cache: dict[str, tuple[float, str | None]] = {}

    def grant(self, username: str, role: str, reason: str, minutes: int = 60, patient: str | None = None) -> dict:
        if role not in ALLOWED_ROLES:
            raise incorrect(f"the role {role} may not break the glass (clinical roles only)", "role")
        reason = (reason or "").strip()
        if len(reason) < 10:
            raise incorrect("break-the-glass needs a reason of at least 10 characters", "reason")
        if not 1 <= minutes <= MAX_MINUTES:
            raise incorrect(f"minutes must be between 1 and {MAX_MINUTES}", "minutes")
        now = datetime.now(UTC)
        row = {"id": uuid.uuid4().hex, "username": username, "patient": patient, "reason": reason,
               "granted": now.isoformat(timespec="seconds"),
               "expires": (now + timedelta(minutes=minutes)).isoformat(timespec="seconds")}
        with write_transaction(self.engine) as conn:
            conn.execute(insert(break_glass).values(**row))
        self._cache.pop(username, None)
        return row

    def active(self, username: str) -> str | None:
        """The reason of the user's active override, if any (looked up at most every two seconds)."""
        now = time.monotonic()
        hit = self._cache.get(username)
        if hit is not None and now - hit[0] < 2.0:
            return hit[1]
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        with self.engine.connect() as conn:
            row = conn.execute(select(break_glass.c.reason).where(break_glass.c.username == username,
                                                                  break_glass.c.expires > stamp)
                               .order_by(break_glass.c.expires.desc())).first()
        reason = row[0] if row else None
        self._cache[username] = (now, reason)
        return reason


__all__ = ["ALLOWED_ROLES", "BreakGlass"]
