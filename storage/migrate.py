"""Alembic, configured in code: no alembic.ini to find, works from any working directory.

Every function takes the SQLAlchemy ``Engine`` of the store (``Store.engine``); this module never
imports storage.engine, so the two don't form an import circle (checked in tests/test_layers.py).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import SQLAlchemyError

from storage.errors import StorageError, describe_database_error

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


def _sqlite_file(engine: Engine) -> Path | None:
    database = engine.url.database
    return Path(database) if engine.dialect.name == "sqlite" and database not in (None, "", ":memory:") else None


def _foreign(shown: str, tables: set[str]) -> StorageError | None:
    if not tables or "alembic_version" in tables:
        return None
    listed = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
    return StorageError(
        f"{shown}: not a plora store (it holds other tables: {listed}); "
        "point store.url at your plora store, or at an empty database for a new one",
        url=shown,
    )


def check_sqlite_file(engine: Engine) -> None:
    """Refuse, before anything connects (connecting switches the file to WAL, a write), to turn a
    SQLite file that isn't a plora store into one: a 0-byte file (a failed copy, a ``touch``) or
    another application's database. A file that doesn't exist yet becomes a new store."""
    file = _sqlite_file(engine)
    if file is None:
        return
    shown = engine.url.render_as_string(hide_password=True)
    for path in (file.parent, file):
        if path.exists() and not os.access(path, os.W_OK):
            read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
            raise StorageError(
                f"{shown}: {path} is {'read-only' if read_only else 'not writable'}: SQLite writes the store "
                f"and its journal ({file.name}-wal, -shm) there; make it writable, or move the store",
                url=shown,
            )
    if not file.is_file():
        return
    if file.stat().st_size == 0:
        raise StorageError(
            f"{shown}: {file} is an empty file (0 bytes), not a plora store: if it should hold your store, "
            "restore it from a backup; to start a new store here, delete the file",
            url=shown,
        )
    try:
        with contextlib.closing(sqlite3.connect(f"{file.as_uri()}?mode=ro", uri=True)) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error:
        return  # not SQLite, damaged, locked: the store's own connection says so, with its advice
    foreign = _foreign(shown, tables)
    if foreign is not None:
        raise foreign


def check_not_foreign(engine: Engine) -> None:
    """A database with tables but no plora schema is another application's: refused. An empty one
    becomes a new store."""
    foreign = _foreign(engine.url.render_as_string(hide_password=True), set(inspect(engine).get_table_names()))
    if foreign is not None:
        raise foreign


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Apply the migrations up to ``revision``; returns the revision the store is at. Refuses a
    0-byte file or another application's database (``check_not_foreign``)."""
    check_sqlite_file(engine)
    try:
        at = current_revision(engine)
        if revision == "head" and at == head_revision():
            return head_revision()
        if at is None:
            check_not_foreign(engine)
        try:
            command.upgrade(alembic_config(engine), revision)
        except CommandError as e:
            shown = engine.url.render_as_string(hide_password=True)
            raise StorageError(
                f"{shown}: the store's schema is at revision {at!r}, which this plora doesn't know "
                f"(written by a newer plora?): {e}",
                url=shown,
            ) from e
        return current_revision(engine) or "base"
    except SQLAlchemyError as e:
        shown = engine.url.render_as_string(hide_password=True)
        sqlite_file = engine.url.database if engine.dialect.name == "sqlite" else None
        raise describe_database_error(e, shown, sqlite_file, "can't migrate the store: ") from e


def downgrade(engine: Engine, revision: str = "base") -> str:
    command.downgrade(alembic_config(engine), revision)
    return current_revision(engine) or "base"
