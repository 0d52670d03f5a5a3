"""Who is making a request: the authenticated user or client, their role, scopes and patient context."""

from __future__ import annotations

from dataclasses import dataclass

from sante.auth.scopes import Scopes


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str  # a username, or a client id for machine clients
    role: str
    scopes: Scopes
    fhir_user: str | None = None  # Practitioner/1, Patient/2, RelatedPerson/3
    patient: str | None = None  # the patient in context: the only patient this principal may see
    organization: str | None = None
    token_id: str | None = None
    break_glass: str | None = None  # the reason, while an emergency override is active


__all__ = ["Principal"]
