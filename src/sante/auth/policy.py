"""Authorization decisions: may this principal do this interaction on this type, and which resources may it
see. Three layers, all of which must allow:

1. the token's SMART scopes (`patient/Observation.rs` grants read and search of Observations, in the patient
   context only);
2. the user's role (`sante.auth.roles`);
3. a row restriction on patient data: a patient-context principal sees only its patient's compartment; staff
   bound to an organization see only the patients that organization manages (`Patient.managingOrganization`)
   and their compartments, unless an emergency override (break-the-glass) is active.

A resource the principal may not see is reported as not found (404), never as forbidden, so that its existence
does not leak; an interaction the principal may not perform at all is a 403.
"""

from __future__ import annotations

from typing import Any

from sante.anomaly import Anomaly, Category
from sante.auth.principal import Principal
from sante.auth.roles import compartment_types, patient_data_types, role_allows
from sante.fhir.model import patient_compartment
from sante.store.search_sql import Sql

OPS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


def forbidden(message: str) -> Anomaly:
    return Anomaly(Category.FORBIDDEN, message)


def require(principal: Principal, op: str, rtype: str) -> None:
    """403 unless the scopes and the role both permit `op` (c r u d s) on `rtype`."""
    contexts = principal.scopes.contexts_for(rtype, op)
    if not contexts:
        raise forbidden(f"the token's scopes do not allow {OPS[op]} on {rtype}")
    if principal.role in ("patient", "related_person") and not principal.patient:
        raise forbidden("this account has no patient in context")
    if contexts == {"patient"} and not principal.patient:
        raise forbidden(f"patient/ scopes need a patient in context to {OPS[op]} {rtype}")
    if not role_allows(principal.role, rtype, op):
        raise forbidden(f"the role {principal.role} may not {OPS[op]} {rtype}")
    if restricted_patient(principal, rtype, op) is not None and rtype not in compartment_types() \
            and rtype in patient_data_types():
        raise forbidden(f"{rtype} is not available in a patient's context")


def restricted_patient(principal: Principal, rtype: str, op: str = "r") -> str | None:
    """The one patient whose data this principal is confined to, if any."""
    if principal.role in ("patient", "related_person"):
        return principal.patient
    if principal.patient and principal.scopes.contexts_for(rtype, op) == {"patient"}:
        return principal.patient
    return None


def _compartment_params(rtype: str) -> list[str]:
    return next((r.get("param", []) for r in patient_compartment()["resource"] if r["code"] == rtype), [])


def _patients_of(patient_sql: str, params: list[object], alias: str, rtype: str) -> Sql:
    """Rows of rtype (alias) belonging to the patients selected by patient_sql."""
    if rtype == "Patient":
        return Sql(f"{alias}.id IN ({patient_sql})", params)
    cparams = _compartment_params(rtype)
    if not cparams:
        return Sql("1 = 0")
    return Sql(f"{alias}.id IN (SELECT c.res_id FROM idx_reference c WHERE c.res_type = ? AND c.param IN "
               f"({', '.join('?' * len(cparams))}) AND c.target_type = 'Patient' AND c.target_id IN ({patient_sql}))",
               [rtype, *cparams, *params])


def row_filter(principal: Principal, rtype: str, alias: str = "r", op: str = "r") -> Sql | None:
    """SQL restricting rows of rtype to what the principal may see; None when it sees all of them."""
    if rtype not in patient_data_types():
        return None
    pid = restricted_patient(principal, rtype, op)
    if pid is not None:
        return _patients_of("?", [pid], alias, rtype)
    if principal.organization and principal.role not in ("admin", "system") and not principal.break_glass:
        if rtype not in compartment_types():
            return None
        org = principal.organization.removeprefix("Organization/")
        return _organization_rows(alias, rtype, org)
    return None


# The organizations of one facility (one `?`: the user's organization): its topmost partOf ancestor and everything
# under it. A user bound to a department sees what the hospital manages or treats, and the reverse.
# (CROSS JOIN: the few partOf rows drive, the recursive row is probed. Joined the other way, SQLite built a Bloom
# filter over the whole of idx_reference at every step of the recursion: 15 ms a query at 2,000 patients.)
_FACILITY = (
    "(WITH RECURSIVE up(id) AS (SELECT CAST(? AS VARCHAR(64)) UNION SELECT op.target_id FROM idx_reference op "
    "CROSS JOIN up WHERE op.res_id = up.id AND op.res_type = 'Organization' AND op.param = 'partof' "
    "AND op.target_type = 'Organization'), "
    "down(id) AS (SELECT id FROM up UNION SELECT oc.res_id FROM idx_reference oc CROSS JOIN down "
    "WHERE oc.target_id = down.id AND oc.res_type = 'Organization' AND oc.param = 'partof' "
    "AND oc.target_type = 'Organization') "
    "SELECT id FROM down)"
)


def facility_organizations(conn: Any, organization: str) -> list[str]:
    """The ids of the organizations of the facility an organization belongs to (the tree `_FACILITY` walks, the
    same the row filter uses): for aggregates over a facility's own activity (sante.clinical.statistics)."""
    sql = f"SELECT id FROM {_FACILITY} facility"
    org = organization.removeprefix("Organization/")
    if conn.dialect.name != "sqlite":
        sql = sql.replace("?", "%s")
    return sorted({str(r[0]) for r in conn.exec_driver_sql(sql, (org,))})


def _patient_visible_to_org(patient_col: str) -> str:
    """SQL (one `?`: the organization id, three times) true when the patient in patient_col is one the
    organization's facility may see: it manages the patient or has treated them (an Encounter it provided), and
    no active Consent of the patient denies it."""
    return (
        f"((EXISTS (SELECT 1 FROM idx_reference mo WHERE mo.res_type = 'Patient' AND mo.res_id = {patient_col} "
        f"AND mo.param = 'organization' AND mo.target_type = 'Organization' AND mo.target_id IN {_FACILITY}) "
        f"OR EXISTS (SELECT 1 FROM idx_reference es JOIN idx_reference sp ON sp.res_type = 'Encounter' "
        f"AND sp.res_id = es.res_id AND sp.param = 'service-provider' AND sp.target_type = 'Organization' "
        f"AND sp.target_id IN {_FACILITY} WHERE es.res_type = 'Encounter' AND es.param = 'subject' "
        f"AND es.target_type = 'Patient' AND es.target_id = {patient_col})) "
        f"AND NOT EXISTS (SELECT 1 FROM idx_reference cp "
        f"JOIN idx_reference ca ON ca.res_type = 'Consent' AND ca.res_id = cp.res_id AND ca.param = 'actor' "
        f"AND ca.target_type = 'Organization' AND ca.target_id IN {_FACILITY} "
        f"JOIN idx_token cs ON cs.res_type = 'Consent' AND cs.res_id = cp.res_id AND cs.param = 'status' "
        f"AND cs.code = 'active' "
        f"JOIN idx_token ct ON ct.res_type = 'Consent' AND ct.res_id = cp.res_id AND ct.param = 'provision-type' "
        f"AND ct.code = 'deny' "
        f"WHERE cp.res_type = 'Consent' AND cp.param = 'patient' AND cp.target_type = 'Patient' "
        f"AND cp.target_id = {patient_col}))"
    )


def _organization_rows(alias: str, rtype: str, org: str) -> Sql:
    """Rows of rtype an organization-bound user may see: those of patients their facility may see, and those
    about no patient at all (a pharmacy's stock receipt, an Observation of a device or a group)."""
    if rtype == "Patient":
        return Sql(_patient_visible_to_org(f"{alias}.id"), [org, org, org])
    cparams = _compartment_params(rtype)
    if not cparams:
        return Sql("1 = 0")
    marks = ", ".join("?" * len(cparams))
    return Sql(f"(EXISTS (SELECT 1 FROM idx_reference c WHERE c.res_type = ? AND c.res_id = {alias}.id AND c.param "
               f"IN ({marks}) AND c.target_type = 'Patient' AND {_patient_visible_to_org('c.target_id')}) "
               f"OR NOT EXISTS (SELECT 1 FROM idx_reference n WHERE n.res_type = ? AND n.res_id = {alias}.id "
               f"AND n.param IN ({marks}) AND n.target_type = 'Patient'))",
               [rtype, *cparams, org, org, org, rtype, *cparams])


def visible_ids(conn: object, principal: Principal, rtype: str, ids: list[str]) -> set[str]:
    """Which of these ids of rtype the principal may see (one query)."""
    if not ids:
        return set()
    restriction = row_filter(principal, rtype, "r")
    if restriction is None:
        return set(ids)
    sql = (f"SELECT r.id FROM resources r WHERE r.type = ? AND r.id IN ({', '.join('?' * len(ids))}) "
           f"AND {restriction.text}")
    params = [rtype, *ids, *restriction.params]
    if conn.dialect.name != "sqlite":  # type: ignore[attr-defined]
        sql = sql.replace("?", "%s")
    return {r[0] for r in conn.exec_driver_sql(sql, tuple(params))}  # type: ignore[attr-defined]


def may_see(conn: object, principal: Principal, rtype: str, rid: str) -> bool:
    return rid in visible_ids(conn, principal, rtype, [rid])


def require_visible(conn: object, principal: Principal, rtype: str, rid: str) -> None:
    """404 for a resource outside what the principal may see: its existence does not leak."""
    if row_filter(principal, rtype) is not None and not may_see(conn, principal, rtype, rid):
        raise Anomaly(Category.NOT_FOUND, f"{rtype}/{rid} is not known")


def require_visible_in(repo: Any, principal: Principal, rtype: str, rid: str) -> None:
    """require_visible in a read transaction of its own, opened only when the principal is restricted."""
    if row_filter(principal, rtype) is not None:
        with repo.reader() as tx:
            require_visible(tx.conn, principal, rtype, rid)


__all__ = ["facility_organizations", "forbidden", "may_see", "require", "require_visible", "require_visible_in", "restricted_patient",
           "row_filter", "visible_ids"]
