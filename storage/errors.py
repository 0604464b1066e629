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


__all__ = ["StorageError"]
