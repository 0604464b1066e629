"""Writing ingested records: upsert by (source, external_id), soft deletes, cursors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from connectors.records import ImportedLabel, Record, content_hash
from storage.models import (
    Document,
    DocumentKind,
    Label,
    LabelOrigin,
    LabelValue,
    Message,
    Redaction,
    Role,
    Source,
    utcnow,
)


@dataclass(frozen=True)
class RedactionSpan:
    location: str  # "title", "content", "message[3.0]", "metadata.<key>"
    secret_type: str
    line: int
    start: int
    end: int


@dataclass(frozen=True)
class Known:
    """What the store knows of a document, enough to decide unchanged / updated / revived."""

    id: int
    content_hash: str
    deleted: bool


def ensure_source(session: Session, name: str, type_: str) -> Source:
    source = session.scalars(select(Source).where(Source.name == name)).one_or_none()
    if source is None:
        source = Source(name=name, type=type_)
        session.add(source)
        session.flush()
    elif source.type != type_:
        source.type, source.cursor = type_, None  # a different reader: its old cursor means nothing
    return source


def source_state(session: Session, name: str) -> tuple[Mapping[str, Any] | None, dict[str, Known]]:
    """The source's cursor and what is stored of each of its documents."""
    source = session.scalars(select(Source).where(Source.name == name)).one_or_none()
    if source is None:
        return None, {}
    rows = session.execute(
        select(Document.external_id, Document.id, Document.content_hash, Document.deleted_at)
        .where(Document.source_id == source.id))
    return source.cursor, {ext: Known(id_, hash_, deleted is not None) for ext, id_, hash_, deleted in rows}


def upsert_document(session: Session, source: Source, record: Record, stored_hash: str,
                    redactions: Sequence[RedactionSpan], existing: Known | None) -> Document:
    """Insert or replace a document with its messages and redactions; labels stay attached."""
    now = utcnow()
    if existing is None:
        document = Document(source_id=source.id, external_id=record.external_id, created_at=now)
        session.add(document)
    else:
        document = session.get_one(Document, existing.id)
        document.messages.clear()
        document.redactions.clear()
        session.flush()
    document.kind = DocumentKind(record.kind)
    document.title = record.title
    document.content = record.content
    document.content_hash = stored_hash
    document.meta = dict(record.metadata)
    document.source_updated_at = record.updated_at
    document.updated_at = now
    document.deleted_at = None
    document.messages.extend(
        Message(position=m.position, branch=m.branch, role=Role(m.role), content=m.content,
                content_hash=content_hash(m.role, m.content), external_id=m.external_id,
                parent_external_id=m.parent_external_id, created_at=m.created_at, meta=dict(m.metadata))
        for m in record.messages)
    document.redactions.extend(
        Redaction(location=r.location, secret_type=r.secret_type, line=r.line, start=r.start, end=r.end)
        for r in redactions)
    session.flush()
    _sync_imported_labels(session, document, record)
    return document


def _sync_imported_labels(session: Session, document: Document, record: Record) -> None:
    """Make the imported labels in force equal the source's; plora's own labels are untouched."""
    by_message_id = {m.external_id: (m.position, m.branch) for m in record.messages if m.external_id}
    wanted: dict[tuple[int | None, int], ImportedLabel] = {}
    for label in record.labels:
        if label.message_external_id is None:
            wanted[(None, 0)] = label
        elif label.message_external_id in by_message_id:
            wanted[by_message_id[label.message_external_id]] = label
    hashes = {(m.position, m.branch): m.content_hash for m in document.messages}
    held = _imported_in_force(session, document.id)
    for target, label in wanted.items():
        current = held.get(target)
        if current is None or current.value != label.value or current.note != label.note:
            session.add(Label(document_id=document.id, position=target[0], branch=target[1],
                              value=LabelValue(label.value), origin=LabelOrigin.imported, note=label.note,
                              message_hash=hashes.get(target) if target[0] is not None else None))
    for target in held.keys() - wanted.keys():
        session.add(Label(document_id=document.id, position=target[0], branch=target[1],
                          value=LabelValue.clear, origin=LabelOrigin.imported))


def _imported_in_force(session: Session, document_id: int) -> dict[tuple[int | None, int], Label]:
    latest = select(Label).where(Label.document_id == document_id, Label.origin == LabelOrigin.imported
                                 ).order_by(Label.id)
    held: dict[tuple[int | None, int], Label] = {}
    for label in session.scalars(latest):
        held[(label.position, label.branch)] = label
    return {target: label for target, label in held.items() if label.value != LabelValue.clear}


def mark_deleted(session: Session, ids: Iterable[int]) -> int:
    ids = list(ids)
    for start in range(0, len(ids), 500):
        session.execute(update(Document).where(Document.id.in_(ids[start:start + 500]),
                                               Document.deleted_at.is_(None)).values(deleted_at=utcnow()))
    return len(ids)


def save_cursor(session: Session, source: Source, cursor: Mapping[str, Any] | None, when: datetime) -> None:
    if cursor is not None and source.cursor != dict(cursor):
        source.cursor = dict(cursor)
    source.last_ingest_at = when


__all__ = ["Known", "RedactionSpan", "ensure_source", "mark_deleted", "save_cursor",
           "source_state", "upsert_document"]
