"""SMART on FHIR scopes (v2 `patient/Observation.rs`, with the v1 forms `read`/`write`/`*` accepted).

A scope grants interactions (c create, r read, u update, d delete, s search) on one resource type or all of
them (`*`), in a context: `patient/` (only inside the patient in context), `user/` (whatever the user may
see) or `system/` (a machine client acting for itself). Granular scopes with a query (`?category=...`) are
refused rather than widened: a scope Sante cannot enforce exactly grants nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sante.anomaly import incorrect

INTERACTIONS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE_RE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.([a-z*]+)$")
# Scopes that carry no data access but are legal to ask for.
OTHER_SCOPES = {"openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter", "offline_access",
                "online_access"}


@dataclass(frozen=True, slots=True)
class Grant:
    context: str  # patient | user | system
    rtype: str  # a resource type or "*"
    ops: frozenset[str]


def parse_grant(scope: str) -> Grant | None:
    """The grant a scope carries, None for a non-data scope; a malformed data scope is a 400."""
    if scope in OTHER_SCOPES:
        return None
    m = _SCOPE_RE.match(scope)
    if not m:
        raise incorrect(f"{scope!r} is not a SMART scope (such as patient/Observation.rs or user/*.cruds)", "scope")
    context, rtype, perms = m.groups()
    if perms in _V1:
        ops = _V1[perms]
    else:
        if any(c not in INTERACTIONS for c in perms) or list(perms) != sorted(perms, key=INTERACTIONS.index) \
                or len(set(perms)) != len(perms):
            raise incorrect(f"{scope!r}: permissions are a subset of c r u d s, in that order", "scope")
        ops = perms
    return Grant(context, rtype, frozenset(ops))


@dataclass(frozen=True, slots=True)
class Scopes:
    """A parsed scope string."""

    text: str
    grants: tuple[Grant, ...]

    @classmethod
    def parse(cls, text: str) -> Scopes:
        parts = text.split()
        grants = tuple(g for g in (parse_grant(p) for p in parts) if g is not None)
        return cls(" ".join(parts), grants)

    def contexts_for(self, rtype: str, op: str) -> set[str]:
        """The contexts (patient/user/system) in which the scopes grant `op` on `rtype`."""
        return {g.context for g in self.grants if op in g.ops and g.rtype in ("*", rtype)}

    def has(self, name: str) -> bool:
        return name in self.text.split()


__all__ = ["Grant", "Scopes", "parse_grant"]
