"""What connectors yield: frozen records plus a few markers the ingest step understands.

A connector is a generator ``read(settings, cursor) -> Iterator[Item]``. For every item that
currently exists in the source it yields either a :class:`Record` (read now), an
:class:`Unchanged` (known from the cursor, not re-read) or a :class:`Skip` (could not be read,
with the reason). It may instead yield one :class:`NothingChanged` when the whole source is as the
cursor left it. Its last item is a :class:`Cursor` holding the state for the next run. Storage
saves that cursor in the same transaction as the rows, and marks everything not seen as deleted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Kind = Literal["conversation", "note", "runbook", "code", "commit"]
Role = Literal["system", "user", "assistant", "tool"]
LabelValue = Literal["good", "bad"]


@dataclass(frozen=True)
class Message:
    """One turn of a conversation.

    ``position`` is the depth of the turn from the start of the conversation (0-based).
    ``branch`` is 0 for the turn on the conversation's main path (the one the person kept) and
    1, 2, ... for alternatives at the same position (regenerated or edited replies).
    """

    role: Role
    content: str
    position: int
    branch: int = 0
    external_id: str | None = None
    parent_external_id: str | None = None
    created_at: datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportedLabel:
    """A judgement the person already made in the source (a JSONL ``label``, a ChatGPT thumb).

    ``message_external_id`` is None for a label on the whole conversation.
    """

    value: LabelValue
    message_external_id: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Record:
    external_id: str
    kind: Kind
    title: str
    content: str
    content_hash: str
    updated_at: datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    messages: tuple[Message, ...] = ()
    labels: tuple[ImportedLabel, ...] = ()


@dataclass(frozen=True)
class Unchanged:
    """An item that still exists in the source and was not re-read (the cursor says so)."""

    external_id: str


@dataclass(frozen=True)
class NothingChanged:
    """The whole source is as the cursor left it: keep everything stored, write nothing."""


@dataclass(frozen=True)
class Skip:
    """An item that exists but could not be read; ``item`` is a path or an id."""

    item: str
    reason: str
    external_id: str | None = None


@dataclass(frozen=True)
class Cursor:
    """The connector's state after this run; JSON-serialisable."""

    state: Mapping[str, Any]


Item = Record | Unchanged | NothingChanged | Skip | Cursor
ItemStream = Iterator[Item]


class ConnectorError(Exception):
    """The connectors layer's error root: the source can't be read at all (missing path, corrupt archive).

    The message is ``source: message``; ``source`` is the source's name, ``item`` the file or
    entry that made it fail, when there is one. Raise it ``from e`` when it wraps another error.
    """

    def __init__(self, source: str, message: str, *, item: str | None = None) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.message = message
        self.item = item

    def __reduce__(self) -> tuple[Any, ...]:  # picklable: Prefect may persist a task's exception
        return (type(self), (self.source, self.message), self.__dict__)


def content_hash(*parts: str) -> str:
    """sha256 over the parts, separated so that ("ab", "c") and ("a", "bc") differ."""
    digest = hashlib.sha256()
    for part in parts:
        encoded = part.encode("utf-8", "surrogatepass")
        digest.update(len(encoded).to_bytes(8, "big"))
        digest.update(encoded)
    return digest.hexdigest()
