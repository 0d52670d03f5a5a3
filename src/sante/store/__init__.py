"""The clinical data repository: one interface over SQLite (embedded default) and PostgreSQL (production)."""

from sante.store.repository import Repository, StoredResource, Transaction, open_repository

__all__ = ["Repository", "StoredResource", "Transaction", "open_repository"]
