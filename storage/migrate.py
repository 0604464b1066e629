"""Alembic, configured in code: no alembic.ini to find, works from any working directory."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError

from storage.engine import StorageError, Store

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(store: Store) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = store.engine
    return config


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def current_revision(store: Store) -> str | None:
    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(store: Store, revision: str = "head") -> str:
    try:
        if revision == "head" and current_revision(store) == head_revision():
            return head_revision()
        command.upgrade(alembic_config(store), revision)
        return current_revision(store) or "base"
    except SQLAlchemyError as e:
        raise StorageError(f"{store.display_url}: can't migrate the store: {getattr(e, 'orig', e)}") from e


def downgrade(store: Store, revision: str = "base") -> str:
    command.downgrade(alembic_config(store), revision)
    return current_revision(store) or "base"
