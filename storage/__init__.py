"""The plora store: typed SQLAlchemy 2 models, the engine, Alembic migrations and queries."""

from storage.engine import Store, StorageError

__all__ = ["Store", "StorageError"]
