"""Clinical workflows over the record: signing and correcting signed records (sante.clinical.signing)."""
