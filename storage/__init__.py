"""The plora store: typed SQLAlchemy 2 models, the engine, Alembic migrations and queries."""

from storage.engine import Store
from storage.errors import StorageError

__all__ = ["StorageError", "Store"]
