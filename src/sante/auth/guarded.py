"""The repository as one principal may use it: every read, search and write passes the same authorization rules
as the FHIR API (sante.auth.policy: scopes, role, the patients the principal may see), and what it touched (the
patient, the resources) is named on the request's audit event.

The web app's pages reach clinical data through `GuardedRepository` only; the API's handlers use the same
functions (`search_visible`, `guarded_update`, `check_written_visible`, `SignedChange`, `record_read`,
`record_search`), so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from sante.anomaly import Anomaly
from sante.auth.audit import Event
from sante.auth.policy import forbidden, may_see, require, require_visible, row_filter, visible_ids
from sante.auth.principal import Principal
from sante.auth.roles import patient_data_types
from sante.clinical.signing import check_update_allowed, record_correction
from sante.store import Repository, StoredResource, Transaction
from sante.store.search import SearchResult, parse_search, run_search

PATIENT_PARAMS = ("patient", "subject", "beneficiary")
Query = list[tuple[str, str]]


# -- the checks, shared with the FHIR API (sante.api.app) ------------------------------------------------------------
def visible_included(conn: Any, principal: Principal, included: list[StoredResource]) -> list[StoredResource]:
    """Included resources the principal may read: whole types its scopes or role exclude are dropped, and
    rows outside its patients (patient context, organization) too. No leak through _include/_revinclude."""
    by_type: dict[str, list[str]] = {}
    for m in included:
        by_type.setdefault(m.type, []).append(m.id)
    allowed: set[tuple[str, str]] = set()
    for rtype, ids in by_type.items():
        try:
            require(principal, "r", rtype)
        except Anomaly:
            continue
        allowed.update((rtype, i) for i in visible_ids(conn, principal, rtype, ids))
    return [m for m in included if (m.type, m.id) in allowed]


def search_visible(tx: Transaction, principal: Principal, req: Any) -> SearchResult:
    """Run a parsed search (sante.store.search.SearchRequest) over the rows the principal may see, its included
    resources filtered the same way. The caller has checked that the principal may search the type."""
    req.restriction = row_filter(principal, req.rtype, "r", "s")
    result = run_search(tx, req)
    if result.included:
        result.included = visible_included(tx.conn, principal, result.included)
    return result


def check_written_visible(conn: Any, principal: Principal, rtype: str, rid: str) -> None:
    """A restricted principal may only write inside what it may see (its patient, its organization)."""
    if row_filter(principal, rtype) is not None and not may_see(conn, principal, rtype, rid):
        raise forbidden(f"{rtype}/{rid} would be outside the patients this account may write for")


class SignedChange:
    """A change to a signed version needs a reason and leaves a Provenance of the correction, written in the same
    transaction as the change (sante.clinical.signing)."""

    def __init__(self, tx: Transaction, principal: Principal, rtype: str, rid: str, reason: str | None,
                 agent: str | None = None) -> None:
        self.reason, self.agent = reason, agent
        self.signed = check_update_allowed(tx, rtype, rid, reason)
        self.tx, self.principal, self.rtype, self.rid = tx, principal, rtype, rid

    def done(self, stored: StoredResource | None) -> None:
        if self.signed is not None and stored is not None:
            record_correction(self.tx, self.rtype, self.rid, stored.version, self.signed, self.reason or "",
                              self.agent or self.principal.fhir_user or self.principal.subject)


def guarded_update(tx: Transaction, principal: Principal, resource: dict[str, Any], rid: str, if_match: int | None,
                   *, existing: bool, reason: str | None = None, agent: str | None = None
                   ) -> tuple[StoredResource, bool]:
    """An update with every check: the old version visible (or, when the update creates, the right to create),
    a reason for changing a signed version, and the new version inside what the principal may write. The caller
    has checked that the principal may update the type."""
    rtype = resource["resourceType"]
    if existing:
        require_visible(tx.conn, principal, rtype, rid)
    else:
        require(principal, "c", rtype)  # update-as-create is a create
    signed = SignedChange(tx, principal, rtype, rid, reason, agent)
    result = tx.update(resource, rid, if_match=if_match)
    check_written_visible(tx.conn, principal, rtype, rid)
    signed.done(result[0])
    return result


def _subject_patient(resource: dict[str, Any] | None) -> str | None:
    if not resource:
        return None
    if resource.get("resourceType") == "Patient":
        return resource.get("id")
    for key in PATIENT_PARAMS:
        value = resource.get(key)
        ref = value.get("reference", "") if isinstance(value, dict) else ""
        if isinstance(ref, str) and ref.startswith("Patient/"):
            return ref.removeprefix("Patient/")
    return None


def record_read(event: Event | None, stored: StoredResource) -> None:
    """Name the patient whose data was read (for 'who saw this patient's record' audit queries)."""
    if event is None or event.patient or stored.type not in patient_data_types():
        return
    if stored.type == "Patient":
        event.patient = stored.id
        return
    try:
        body = orjson.loads(stored.content or b"{}")
    except orjson.JSONDecodeError:
        return
    event.patient = _subject_patient(body if isinstance(body, dict) else None)


def record_search(event: Event | None, rtype: str, query: Query, compartment: tuple[str, str] | None,
                  matches: list[StoredResource]) -> None:
    """Name the patient a search was about (its compartment, its patient parameter, or its one Patient match)
    and the resources it returned."""
    if event is None:
        return
    if compartment and compartment[0] == "Patient":
        event.patient = compartment[1]
    elif rtype == "Patient" and len(matches) == 1:
        event.patient = matches[0].id
    elif event.patient is None:
        for name, value in query:
            if name.split(":")[0] in PATIENT_PARAMS and value.count(",") == 0:
                ref = value.removeprefix("Patient/")
                if "/" not in ref and "?" not in ref:
                    event.patient = ref
                    break
    event.entities.extend(f"{m.type}/{m.id}" for m in matches[:50])


def _note(event: Event | None, stored: StoredResource) -> None:
    if event is None:
        return
    ref = f"{stored.type}/{stored.id}"
    if ref not in event.entities:
        event.entities.append(ref)
    if event.patient is None:
        event.patient = _subject_patient(stored.resource) if stored.type in patient_data_types() else None


# -- the guarded repository --------------------------------------------------------------------------------------------
class GuardedTransaction:
    """One repository transaction seen through a principal's rights."""

    def __init__(self, tx: Transaction, principal: Principal, event: Event | None) -> None:
        self.tx = tx
        self.principal = principal
        self.event = event

    def read(self, rtype: str, rid: str) -> StoredResource:
        """The current version; 403 when the principal may not read the type, 404 when it may not see this one
        (or it does not exist, or was deleted)."""
        require(self.principal, "r", rtype)
        require_visible(self.tx.conn, self.principal, rtype, rid)
        stored = self.tx.read(rtype, rid)
        _note(self.event, stored)
        return stored

    def search(self, rtype: str, query: Query | dict[str, str], *, compartment: tuple[str, str] | None = None
               ) -> SearchResult:
        """A FHIR search (the API's parameters, strictly parsed) over what the principal may see, included
        resources filtered too."""
        items = list(query.items()) if isinstance(query, dict) else list(query)
        require(self.principal, "s", rtype)
        if compartment is not None:
            require_visible(self.tx.conn, self.principal, *compartment)
        req = parse_search(rtype, items, strict=True, compartment=compartment)
        result = search_visible(self.tx, self.principal, req)
        record_search(self.event, rtype, items, compartment, result.matches)
        return result

    def create(self, resource: dict[str, Any]) -> StoredResource:
        """A new resource (the server assigns its id); 403 when the principal may not create it, or would create
        it outside the patients it may write for."""
        rtype = str(resource.get("resourceType"))
        require(self.principal, "c", rtype)
        stored = self.tx.create({k: v for k, v in resource.items() if k != "id"})
        check_written_visible(self.tx.conn, self.principal, rtype, stored.id)
        _note(self.event, stored)
        return stored

    def update(self, resource: dict[str, Any], *, if_match: int | None = None, reason: str | None = None
               ) -> StoredResource:
        """A new version of resource (its `id` names it); `reason` is needed to change a signed version."""
        rtype, rid = str(resource.get("resourceType")), str(resource.get("id") or "")
        require(self.principal, "u", rtype)
        existing = self.tx.current(rtype, rid) is not None
        stored, _ = guarded_update(self.tx, self.principal, resource, rid, if_match, existing=existing,
                                   reason=reason)
        _note(self.event, stored)
        return stored


class GuardedRepository:
    """The repository as one principal may use it, recording what it touched on the request's audit event.

    `reader()` and `transaction()` give a GuardedTransaction for several operations in one database
    transaction (a page reads everything it shows in one); `read`, `search`, `create` and `update` each run
    in a transaction of their own."""

    def __init__(self, repo: Repository, principal: Principal, event: Event | None = None) -> None:
        self.repo = repo
        self.principal = principal
        self.event = event

    @contextmanager
    def reader(self) -> Iterator[GuardedTransaction]:
        with self.repo.reader() as tx:
            yield GuardedTransaction(tx, self.principal, self.event)

    @contextmanager
    def transaction(self) -> Iterator[GuardedTransaction]:
        with self.repo.transaction() as tx:
            yield GuardedTransaction(tx, self.principal, self.event)

    def read(self, rtype: str, rid: str) -> StoredResource:
        with self.reader() as g:
            return g.read(rtype, rid)

    def search(self, rtype: str, query: Query | dict[str, str], *, compartment: tuple[str, str] | None = None
               ) -> SearchResult:
        with self.reader() as g:
            return g.search(rtype, query, compartment=compartment)

    def create(self, resource: dict[str, Any]) -> StoredResource:
        with self.transaction() as g:
            return g.create(resource)

    def update(self, resource: dict[str, Any], *, if_match: int | None = None, reason: str | None = None
               ) -> StoredResource:
        with self.transaction() as g:
            return g.update(resource, if_match=if_match, reason=reason)


__all__ = ["GuardedRepository", "GuardedTransaction", "SignedChange", "check_written_visible", "guarded_update",
           "record_read", "record_search", "search_visible", "visible_included"]
