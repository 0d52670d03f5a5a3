"""The CapabilityStatement: states exactly the interactions this server implements, no more."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sante import __version__
from sante.fhir.model import r4

# Grown as the server grows: list only what is implemented and covered by tests/api.
TYPE_INTERACTIONS = (
    "read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type",
)
SYSTEM_INTERACTIONS = ("transaction", "batch", "history-system")


_SEARCH_PARAM_DOCS = {
    "_text": "Words of the narrative: each word starts a word of it (accent- and case-insensitive); comma = OR",
    "_content": "Words of any text in the resource, narrative included (not ids, references, URIs or dates): each "
                "word starts a word of it (accent- and case-insensitive); comma = OR",
}


def _search_params(rtype: str) -> list[dict[str, str]]:
    from sante.store.search import param_defs

    return [{"name": code, "type": d.type, **({"documentation": _SEARCH_PARAM_DOCS[code]}
                                              if code in _SEARCH_PARAM_DOCS else {})}
            for code, d in sorted(param_defs(rtype).items()) if d.type != "special"]


def _type_operations(rtype: str) -> list[tuple[str, str]]:
    ops = [("validate", "Resource-validate"), ("meta", "Resource-meta")]
    if rtype == "Patient":
        ops += [("everything", "Patient-everything"), ("export", "Patient-export")]
    if rtype == "Group":
        ops.append(("export", "Group-export"))
    return ops


@lru_cache(maxsize=4)
def _resources() -> tuple[dict[str, Any], ...]:
    return tuple(
        {
            "type": t,
            "interaction": [{"code": c} for c in TYPE_INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "referencePolicy": ["literal", "logical", "local"],
            "searchInclude": ["*"],
            "searchRevInclude": ["*"],
            "searchParam": _search_params(t),
            "operation": [{"name": n, "definition": f"http://hl7.org/fhir/OperationDefinition/{d}"}
                          for n, d in _type_operations(t)],
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
                "operation": [{"name": "export", "definition": "http://hl7.org/fhir/OperationDefinition/export"}],
                "security": _security(base_url),
            }
        ],
    }


def _security(base_url: str) -> dict[str, Any]:
    """SMART on FHIR: every interaction but this statement needs an OAuth2 bearer token."""
    root = base_url.removesuffix("/fhir")
    return {
        "cors": False,
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                 "code": "SMART-on-FHIR"}], "text": "OAuth2 with SMART on FHIR v2 scopes"}],
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [{"url": "authorize", "valueUri": f"{root}/auth/authorize"},
                          {"url": "token", "valueUri": f"{root}/auth/token"},
                          {"url": "introspect", "valueUri": f"{root}/auth/introspect"},
                          {"url": "revoke", "valueUri": f"{root}/auth/revoke"}],
        }],
        "description": "Bearer tokens from /auth/token (SMART App Launch, Backend Services), from `sante token`, or "
                       "from the hospital's OpenID Connect provider. Role, scopes and patient context decide what "
                       "each request may read and write; every access is audited.",
    }
