"""Alembic, configured in code: no alembic.ini to find, works from any working directory.

Every function takes the SQLAlchemy ``Engine`` of the store (``Store.engine``); this module never
imports storage.engine, so the two don't form an import circle (checked in tests/test_layers.py).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from storage.errors import StorageError

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Apply the migrations up to ``revision``; returns the revision the store is at."""
    try:
        if revision == "head" and current_revision(engine) == head_revision():
            return head_revision()
        command.upgrade(alembic_config(engine), revision)
        return current_revision(engine) or "base"
    except SQLAlchemyError as e:
        shown = engine.url.render_as_string(hide_password=True)
        reason = str(getattr(e, "orig", e))
        if engine.dialect.name == "sqlite" and "file is not a database" in reason:
            reason += f" ({engine.url.database} is not a SQLite file: move it aside, or point store.url elsewhere)"
        raise StorageError(f"{shown}: can't migrate the store: {reason}", url=shown) from e


def downgrade(engine: Engine, revision: str = "base") -> str:
    command.downgrade(alembic_config(engine), revision)
    return current_revision(engine) or "base"
