"""Engine and sessions. SQLite gets WAL, foreign keys, a busy timeout and immediate write
transactions, so concurrent plora processes wait for each other instead of failing with
"database is locked". On PostgreSQL each write transaction first takes one transaction-level
advisory lock, so writers take turns there too: a read-then-write unit of work never loses an
update to another process (tested on both). Other SQLAlchemy URLs work as they are."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, TextClause, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, IntegrityError, ProgrammingError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from storage.errors import StorageError, describe_database_error

BUSY_TIMEOUT_MS = 60_000
_IMMEDIATE = "plora_immediate"
# PostgreSQL: the one advisory lock (per database) that plora's write transactions take in turn
WRITE_LOCK_KEY = 0x706C6F7261  # "plora"
_PG_WRITE_LOCK = text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=WRITE_LOCK_KEY)


def resolve_url(url: str, home: Path) -> str:
    """Make a relative SQLite path relative to the home folder; other URLs pass through."""
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise StorageError(f"store.url: {url!r} is not a database URL ({e})") from e
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return url
    path = Path(parsed.database).expanduser()
    if not path.is_absolute():
        path = home / path
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # a folder name in another encoding (surrogate escapes)
        shown = str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise StorageError(
            f"store.url: the store path {shown} is not valid UTF-8, which SQLite needs; "
            "use a home folder (or store.url) whose name is UTF-8"
        ) from None
    return parsed.set(database=str(path)).render_as_string(hide_password=False)


def _is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Store:
    """The store of one plora home: ``read()`` and ``write()`` give sessions in a transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine = create_engine(url, connect_args=self._connect_args(url))
        except (ArgumentError, ImportError) as e:
            shown = make_url(url).render_as_string()
            raise StorageError(f"store.url: can't open {shown}: {e}", url=shown) from e
        if _is_sqlite(self.engine):
            database = self.engine.url.database
            if database not in (None, "", ":memory:"):
                try:
                    Path(database).parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise StorageError(
                        f"store.url: can't create the folder for {database}: {e.strerror}", url=self.display_url
                    ) from e
            _configure_sqlite(self.engine)
        self._write_lock: TextClause | None = _PG_WRITE_LOCK if self.engine.dialect.name == "postgresql" else None
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(self.engine.execution_options(**{_IMMEDIATE: True}), expire_on_commit=False)

    @staticmethod
    def _connect_args(url: str) -> dict[str, Any]:
        if make_url(url).get_backend_name() == "sqlite":
            return {"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        return {}

    @property
    def display_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading (a deferred transaction: it never blocks writers)."""
        with self._guard(), self._reader() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One unit of work: committed at the end, rolled back on error.

        On SQLite the transaction starts with BEGIN IMMEDIATE, on PostgreSQL with the write lock
        (``pg_advisory_xact_lock``, released at commit or rollback): one writer at a time, so a
        read-then-write never fails half-way or loses an update because another process wrote in between.
        """
        with self._guard(), self._writer() as session, session.begin():
            if self._write_lock is not None:
                session.execute(self._write_lock)
            yield session

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except DatabaseError as e:
            if isinstance(e, IntegrityError | ProgrammingError):
                raise  # a constraint or the SQL itself: a bug, keeps its traceback
            # locked, damaged, unreadable: one line, never the SQL and its parameters
            raise describe_database_error(e, self.display_url, self.sqlite_file) from e

    @property
    def sqlite_file(self) -> str | None:
        """The SQLite file of the store; None for another database (or an in-memory one)."""
        database = self.engine.url.database
        return database if _is_sqlite(self.engine) and database not in (None, "", ":memory:") else None

    def upgrade(self) -> str:
        """Apply pending migrations; returns the revision the store is at.

        storage.migrate (Alembic) is imported here, not at the top: it takes an engine and never
        imports this module, and opening a store for reading doesn't pay for importing Alembic.
        """
        from storage.migrate import upgrade

        return upgrade(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


__all__ = ["SQLAlchemyError", "StorageError", "Store", "resolve_url"]
