"""Merging two records of the same patient, with the semantics of FHIR R5's Patient `$merge` on R4 resources.

The *source* is the duplicate that goes, the *target* the record that stays:
- the source gets `active: false` and a `link` of type `replaced-by` to the target;
- the target gets a `link` of type `replaces` to the source, and the source's identifiers it lacks: a CCCD or
  BHYT number as it was (they name the person), the source's MRN with use `old` (it named the other record);
- every resource that references the source Patient is updated to reference the target (a new version each:
  the history keeps who it belonged to before). They are found through the search index, over every reference
  search parameter of every resource type (`_revinclude=Type:*`), so the patient compartment is covered and more
  (a RelatedPerson, a Group, another Patient's link). A reference pinned to a version (`Patient/1/_history/2`)
  is history and stays; so do Provenance resources, the record of what was done at the time. A signed version
  is changed as a correction with the merge's reason (sante.clinical.signing); its signature still verifies
  over the signed version.
All in one transaction: nothing is half-merged. `preview=True` computes the same changes and writes nothing.

Who may merge: a principal that may update Patient resources (a receptionist, a physician, an administrator)
and may see both patients. Re-pointing a record to the target is part of the merge the principal is allowed
to do: it does not also need the right to write each record's type (a receptionist may not write Observations),
but each record must be one the principal may see, and each is named on the request's audit event.
Refused: merging a patient into itself, into an inactive or merged patient, or a patient already merged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sante.auth.guarded import GuardedRepository, GuardedTransaction, guarded_update
from sante.auth.policy import require, require_visible
from sante.clinical.forms import refuse
from sante.clinical.identifiers import MRN_SYSTEM
from sante.clinical.service_support import person_name, ref
from sante.fhir.model import r4
from sante.store.search import param_defs, parse_search, run_search

NOT_MOVED = frozenset({"Patient", "Provenance", "AuditEvent"})  # links between patients are the merge's own


@dataclass(slots=True)
class MergeResult:
    """What a merge changed (or, for a preview, would change)."""

    source: dict[str, Any]  # the source Patient after the merge
    target: dict[str, Any]  # the target Patient after the merge
    moved: list[str] = field(default_factory=list)  # Type/id of every record re-pointed to the target
    identifiers_added: list[dict[str, Any]] = field(default_factory=list)
    preview: bool = False


@cache
def referencing_types() -> tuple[str, ...]:
    """Resource types with a reference search parameter that can point at a Patient (from the R4 definitions)."""
    out = []
    for rtype in sorted(r4().resource_types):
        if rtype in NOT_MOVED:
            continue
        if any(d.type == "reference" and (not d.targets or "Patient" in d.targets) for d in param_defs(rtype).values()):
            out.append(rtype)
    return tuple(out)


def records_referencing(gtx: GuardedTransaction, patient_id: str) -> list[dict[str, Any]]:
    """Every current resource whose indexed references include Patient/patient_id (but the NOT_MOVED types)."""
    query = [("_id", patient_id), *(("_revinclude", f"{t}:*") for t in referencing_types())]
    result = run_search(gtx.tx, parse_search("Patient", query, strict=True))
    return [m.resource for m in result.included if m.resource is not None and m.type not in NOT_MOVED]


def _is_source_ref(value: Any, source_id: str) -> bool:
    if not isinstance(value, str):
        return False
    return value == f"Patient/{source_id}" or value.endswith(f"/Patient/{source_id}")


def repoint(node: Any, source_id: str, target: dict[str, Any]) -> bool:
    """Replace every Reference to Patient/source_id inside node by one to the target (and its display);
    True when something changed."""
    changed = False
    if isinstance(node, dict):
        if _is_source_ref(node.get("reference"), source_id):
            node["reference"] = f"Patient/{target['id']}"
            if "display" in node:
                node["display"] = person_name(target) or node["display"]
            changed = True
        for key, value in node.items():
            if key != "reference":
                changed = repoint(value, source_id, target) or changed
    elif isinstance(node, list):
        for item in node:
            changed = repoint(item, source_id, target) or changed
    return changed


def _merged_into(patient: dict[str, Any]) -> str | None:
    return next((link.get("other", {}).get("reference") for link in patient.get("link", [])
                 if link.get("type") == "replaced-by"), None)


def _check(source: dict[str, Any], target: dict[str, Any]) -> None:
    if source["id"] == target["id"]:
        raise refuse("merge.same-patient", "target-patient", "A patient cannot be merged into itself")
    if (into := _merged_into(target)) is not None:
        raise refuse("merge.target-merged", "target-patient",
                     "Patient/{id} was merged into {into}: merge into that one instead", id=target["id"], into=into)
    if target.get("active") is False:
        raise refuse("merge.target-inactive", "target-patient", "Patient/{id} is inactive: it cannot be the target",
                     id=target["id"])
    if (into := _merged_into(source)) is not None:
        raise refuse("merge.source-merged", "source-patient", "Patient/{id} was already merged into {into}",
                     id=source["id"], into=into)


def _key(identifier: dict[str, Any]) -> tuple[Any, Any]:
    return identifier.get("system"), identifier.get("value")


def _plan(gtx: GuardedTransaction, source_id: str, target_id: str) -> tuple[MergeResult, list[tuple[dict, int]]]:
    require(gtx.principal, "u", "Patient")
    src = gtx.read("Patient", source_id.removeprefix("Patient/"))
    tgt = gtx.read("Patient", target_id.removeprefix("Patient/"))
    source, target = src.resource or {}, tgt.resource or {}
    _check(source, target)
    have = {_key(i) for i in target.get("identifier", [])}
    added = []
    for identifier in source.get("identifier", []):
        if _key(identifier) in have or not identifier.get("value"):
            continue
        copy = {**identifier, "use": "old"} if identifier.get("system") == MRN_SYSTEM else dict(identifier)
        added.append(copy)
        have.add(_key(identifier))
    target["identifier"] = [*target.get("identifier", []), *added]
    target["link"] = [*target.get("link", []), {"other": ref("Patient", source["id"], person_name(source) or None),
                                                 "type": "replaces"}]
    source["active"] = False
    source["link"] = [*source.get("link", []), {"other": ref("Patient", target["id"], person_name(target) or None),
                                                "type": "replaced-by"}]
    moves = []
    for record in records_referencing(gtx, source["id"]):
        require_visible(gtx.tx.conn, gtx.principal, record["resourceType"], record["id"])  # preview or not
        version = int(record.get("meta", {}).get("versionId", 0))
        if repoint(record, source["id"], target):
            moves.append((record, version))
    result = MergeResult(source, target, [f"{r['resourceType']}/{r['id']}" for r, _ in moves], added)
    return result, moves


def merge(guarded_repo: GuardedRepository, source_id: str, target_id: str, *, reason: str,
          preview: bool = False) -> MergeResult:
    """Merge Patient source_id into Patient target_id (see the module's docstring), in one transaction; with
    preview=True nothing is written and the result says what would change. The reason is recorded on the
    corrections of signed records."""
    if not (reason or "").strip():
        raise refuse("merge.reason.required", "reason", "Say why these two records are merged")
    if preview:
        with guarded_repo.reader() as gtx:
            result, _ = _plan(gtx, source_id, target_id)
            result.preview = True
            return result
    with guarded_repo.transaction() as gtx:
        result, moves = _plan(gtx, source_id, target_id)
        stored_target = gtx.update(result.target, if_match=int(result.target["meta"]["versionId"]))
        stored_source = gtx.update(result.source, if_match=int(result.source["meta"]["versionId"]))
        # Who corrects a signed record: the user's own resource, else (a system client) its organization.
        agent = gtx.principal.fhir_user or gtx.principal.organization
        for record, version in moves:
            guarded_update(gtx.tx, gtx.principal, record, record["id"], version, existing=True, reason=reason.strip(),
                           agent=agent)
        if gtx.event is not None:
            gtx.event.patient = result.target["id"]
            gtx.event.entities.extend(r for r in result.moved if r not in gtx.event.entities)
            gtx.event.description = (f"Patient/{result.source['id']} merged into Patient/{result.target['id']}: "
                                     f"{len(result.moved)} records moved; {reason.strip()}")
        result.target, result.source = stored_target.resource or {}, stored_source.resource or {}
    return result


__all__ = ["MergeResult", "merge", "records_referencing", "referencing_types", "repoint"]
