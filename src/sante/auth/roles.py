"""Roles and what each may do, per resource type and interaction (c r u d s).

Resource types fall in three groups: *patient data* (the Patient compartment's types, plus types that carry
patient data without being in it, such as Binary, Bundle and Task), *reference data* (organisations,
practitioners, locations, medications, questionnaires, terminology: readable by every signed-in user) and the
audit trail (AuditEvent: admins only; it is written by the server, never through the API).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from sante.fhir.model import patient_compartment, r4

ROLES = (
    "admin", "receptionist", "nurse", "physician", "pharmacist", "lab_technician", "radiologist", "manager",
    "public_health", "patient", "related_person", "system",
)

# Not in the Patient compartment, yet able to hold a patient's data.
_PATIENT_DATA_OUTSIDE_COMPARTMENT = {
    "Binary", "Bundle", "Task", "Linkage", "Contract", "MessageHeader", "GuidanceResponse", "VerificationResult",
    "EnrollmentResponse", "PaymentNotice", "PaymentReconciliation", "Subscription",
}


@cache
def compartment_types() -> frozenset[str]:
    return frozenset(r["code"] for r in patient_compartment().get("resource", ()) if r.get("param"))


@cache
def patient_data_types() -> frozenset[str]:
    return (compartment_types() | _PATIENT_DATA_OUTSIDE_COMPARTMENT) - {"AuditEvent"}


@cache
def reference_types() -> frozenset[str]:
    return frozenset(r4().resource_types) - patient_data_types() - {"AuditEvent"}


CLINICAL_WRITE = {
    "Condition", "Observation", "MedicationRequest", "ServiceRequest", "DiagnosticReport", "Procedure",
    "Composition", "DocumentReference", "AllergyIntolerance", "Encounter", "CarePlan", "CareTeam",
    "ClinicalImpression", "Immunization", "Goal", "Flag", "FamilyMemberHistory", "RiskAssessment",
    "DetectedIssue", "Communication", "CommunicationRequest", "Task", "Provenance", "Specimen", "Media",
    "NutritionOrder", "DeviceRequest", "EpisodeOfCare", "QuestionnaireResponse", "Consent", "Binary",
    "MedicationStatement", "ImagingStudy", "List",
}


@dataclass(frozen=True, slots=True)
class RolePolicy:
    read_patient_data: bool  # r and s on patient data
    write: frozenset[str]  # types the role may create and update (patient data or reference data)
    delete: bool  # may delete what it may write
    export: bool  # Bulk Data $export
    admin: bool = False  # everything, including the audit trail and user management


def _policy(read: bool, write: set[str] | frozenset[str], *, delete: bool = False, export: bool = False,
            admin: bool = False) -> RolePolicy:
    return RolePolicy(read, frozenset(write), delete, export, admin)


@cache
def role_policy(role: str) -> RolePolicy:
    everything = frozenset(r4().resource_types) - {"AuditEvent"}
    policies = {
        "admin": _policy(True, everything, delete=True, export=True, admin=True),
        "system": _policy(True, everything, delete=True, export=True),
        "receptionist": _policy(False, {"Patient", "RelatedPerson", "Appointment", "AppointmentResponse",
                                        "Encounter", "Coverage", "Schedule", "Slot", "EpisodeOfCare"}),
        # Nurses write nursing notes (Composition) and mark beds cleaned or closed (Location.operationalStatus).
        "nurse": _policy(True, {"Observation", "MedicationAdministration", "Encounter", "Flag", "Communication",
                                "DocumentReference", "QuestionnaireResponse", "Task", "AllergyIntolerance",
                                "Procedure", "Specimen", "Provenance", "Binary", "Media", "CarePlan",
                                "Composition", "Location"}),
        "physician": _policy(True, CLINICAL_WRITE | {"Patient", "RelatedPerson", "Appointment"}),
        # Pharmacists keep the stock: receipts and counts are SupplyDeliveries (sante.clinical.pharmacy).
        "pharmacist": _policy(True, {"MedicationDispense", "MedicationRequest", "Medication", "MedicationKnowledge",
                                     "DetectedIssue", "Communication", "Provenance", "SupplyDelivery",
                                     "SupplyRequest"}),
        "lab_technician": _policy(True, {"Specimen", "Observation", "DiagnosticReport", "ServiceRequest", "Task",
                                         "Provenance", "Binary", "Media"}),
        "radiologist": _policy(True, {"ImagingStudy", "DiagnosticReport", "Observation", "Media", "Binary",
                                      "Provenance", "Task", "ServiceRequest"}),
        "manager": _policy(False, {"Organization", "Location", "HealthcareService", "Schedule", "Slot",
                                   "PractitionerRole", "Practitioner", "Measure", "MeasureReport"}),
        "public_health": _policy(False, {"Measure", "MeasureReport", "Library"}, export=True),
        # Patients and related persons: their own compartment only (enforced by the policy, not the role).
        "patient": _policy(True, {"QuestionnaireResponse", "Observation", "Appointment", "Communication",
                                  "Consent", "DocumentReference"}),
        "related_person": _policy(True, {"QuestionnaireResponse", "Communication", "Appointment"}),
    }
    if role not in policies:
        raise KeyError(role)
    return policies[role]


def role_allows(role: str, rtype: str, op: str) -> bool:
    """Whether the role alone permits `op` (c r u d s) on `rtype` (the patient restriction comes on top)."""
    p = role_policy(role)
    if rtype == "AuditEvent":
        return p.admin and op in "rs"
    if op in "rs":
        return rtype in reference_types() or p.read_patient_data or rtype in p.write
    if op in "cu":
        return rtype in p.write
    return op == "d" and p.delete and rtype in p.write


__all__ = ["ROLES", "RolePolicy", "compartment_types", "patient_data_types", "reference_types", "role_allows",
           "role_policy"]
