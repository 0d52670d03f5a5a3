"""Sante: an open-source smart-hospital platform on HL7 FHIR R4."""

__version__ = "0.1.0"
