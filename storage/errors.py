"""The storage layer's one error root. Its own module, so that every storage module (engine,
migrate, queries) can raise it without importing the engine."""

from __future__ import annotations


class StorageError(Exception):
    """The store can't be opened, migrated, read or written; the message says which store and why.

    ``url`` is the store's URL with the password hidden, when the error is about one store.
    """

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.url = url


_DAMAGED = ("database disk image is malformed", "file is not a database", "could not decode to utf-8")


def _sqlite_header(path: str) -> bool:
    try:
        with open(path, "rb") as file:
            return file.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def describe_database_error(error: Exception, shown_url: str, sqlite_file: str | None, doing: str = "") -> StorageError:
    """One line for a database error: the store, what went wrong (the driver's first line, without
    the SQL or the parameters SQLAlchemy adds, which may hold document text) and, for a damaged
    SQLite file, what to do. ``sqlite_file`` is the store's file (None: not SQLite)."""
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0] if str(error).strip() else repr(error)
    reason = reason.split(" with text '", 1)[0]  # sqlite3's decode error quotes the stored text
    if len(reason) > 200:
        reason = reason[:200] + "..."
    if sqlite_file and "file is not a database" in reason and not _sqlite_header(sqlite_file):
        reason += f" ({sqlite_file} is not a SQLite file: move it aside, or point store.url elsewhere)"
    elif sqlite_file and any(marker in reason.lower() for marker in _DAMAGED):
        reason += (
            f" (the store file {sqlite_file} is damaged: restore it from a backup, or salvage what is left with "
            f"`sqlite3 {sqlite_file} .recover | sqlite3 recovered.db` and point store.url at recovered.db)"
        )
    return StorageError(f"{shown_url}: {doing}{reason}", url=shown_url)


__all__ = ["StorageError", "describe_database_error"]
