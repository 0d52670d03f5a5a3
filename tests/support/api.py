"""A test client for the FHIR API that carries a bearer token (every API request needs one)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from sante.api import create_app


def api_client(repo, data_dir: Path, *, role: str = "system", scopes: str = "system/*.cruds",
               patient: str | None = None, organization: str | None = None, fhir_user: str | None = None,
               subject: str = "test-client") -> TestClient:
    app = create_app(repo, data_dir=data_dir)
    return client_for(app, role=role, scopes=scopes, patient=patient, organization=organization,
                      fhir_user=fhir_user, subject=subject)


def client_for(app, *, role: str = "system", scopes: str = "system/*.cruds", patient: str | None = None,
               organization: str | None = None, fhir_user: str | None = None, subject: str = "test-client"
               ) -> TestClient:
    """Another client of the same app, with its own token."""
    issued = app.state.security.tokens.issue(subject=subject, role=role, scopes=scopes, patient=patient,
                                             organization=organization, fhir_user=fhir_user)
    return TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {issued.token}"})
