"""Clinical workflows over the record and the clinical reference data they use.

Workflows: signing and correcting signed records (sante.clinical.signing); the outpatient day (registration
and merge of duplicates, queue, visit, prescription_print; docs/outpatient.md). Reference data, pure Python, packaged
under data/: Vietnamese identifiers (identifiers), administrative units (admin_units), the starter formulary
(formulary), ICD-10 diagnoses (icd10), and vital signs and laboratory tests (loinc).
"""
