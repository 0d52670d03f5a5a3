"""FHIR R4 structure: the type model from the official definitions, validation and format conversion."""
