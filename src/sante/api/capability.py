"""The CapabilityStatement: states exactly the interactions this server implements, no more."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sante import __version__
from sante.fhir.model import r4

# Grown as the server grows; a test checks each listed interaction really answers.
TYPE_INTERACTIONS = ("read", "vread", "update", "delete", "history-instance", "history-type", "create")
SYSTEM_INTERACTIONS = ("history-system",)


@lru_cache(maxsize=4)
def _resources() -> tuple[dict[str, Any], ...]:
    return tuple(
        {
            "type": t,
            "interaction": [{"code": c} for c in TYPE_INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": False,
            "conditionalUpdate": False,
            "conditionalDelete": "not-supported",
        }
        for t in sorted(r4().resource_types)
    )


def capability_statement(base_url: str) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "kind": "instance",
        "software": {"name": "Sante", "version": __version__},
        "implementation": {"description": "Sante FHIR R4 server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "resource": list(_resources()),
                "interaction": [{"code": c} for c in SYSTEM_INTERACTIONS],
            }
        ],
    }
