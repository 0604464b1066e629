"""The plora store: typed SQLAlchemy 2 models, the engine, Alembic migrations and queries."""

from storage.engine import StorageError, Store

__all__ = ["StorageError", "Store"]
