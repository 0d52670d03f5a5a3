"""The patient banner of the pages about one patient outside the chart (a stay on the ward, a prescription at the
pharmacy): who they are, their allergies and active alerts, read in the caller's transaction with the same rules
as the chart (sante.web.chart), the sections the role may not read left out."""

from __future__ import annotations

from sante.auth.guarded import GuardedTransaction
from sante.web.chart import Banner, allergies_of, concept_text
from sante.web.i18n import Formats
from sante.web.patients import summarize
from sante.web.render import may


def load_banner(g: GuardedTransaction, pid: str, fmt: Formats) -> Banner:
    """The banner of a patient the principal may see (else the read's 404 or 403)."""
    patient = g.read("Patient", pid).resource or {}
    ref = f"Patient/{pid}"
    allergies = alerts = None
    if may(g.principal, "s", "AllergyIntolerance"):
        allergies = allergies_of([m.resource or {} for m in g.search(
            "AllergyIntolerance", [("patient", ref), ("_count", "100")]).matches])
    if may(g.principal, "s", "Flag"):
        flags = [m.resource or {} for m in g.search("Flag", [("patient", ref), ("_count", "50")]).matches]
        alerts = [t for t in (concept_text(f.get("code")) for f in flags if f.get("status") == "active") if t]
    return Banner(summarize(patient, fmt), allergies, alerts)


__all__ = ["load_banner"]
