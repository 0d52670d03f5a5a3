"""The FHIR R4 REST API (FastAPI): request parsing and responses only; storage and rules live inward."""

from sante.api.app import create_app

__all__ = ["create_app"]
