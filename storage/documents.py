"""Writing ingested records: upsert by (source, external_id), soft deletes, cursors."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session, defer

from connectors.records import ImportedLabel, Record, content_hash
from connectors.records import Message as RecordMessage
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
    """The source's row, made if new; its cursor (which can be large) is only read when used."""
    query = select(Source).where(Source.name == name).options(defer(Source.cursor))
    source = session.scalars(query).one_or_none()
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
        select(Document.external_id, Document.id, Document.content_hash, Document.deleted_at).where(
            Document.source_id == source.id
        )
    )
    return source.cursor, {ext: Known(id_, hash_, deleted is not None) for ext, id_, hash_, deleted in rows}


@dataclass(frozen=True)
class Upsert:
    """A record to store: redacted, with its stored hash, its redactions and what is stored of it."""

    record: Record
    content_hash: str
    redactions: Sequence[RedactionSpan]
    existing: Known | None


def write_documents(session: Session, source: Source, batch: Sequence[Upsert]) -> None:
    """Insert or replace each document of ``batch`` with its messages and redactions, and make its
    imported labels in force equal the record's; plora's own labels stay attached.

    Set-based: a replaced document's messages and redactions go in one DELETE per table, documents,
    messages, redactions and labels are written with one statement each, and the labels in force
    are read with one query, whatever the size of the batch.
    """
    if not batch:
        return
    now = utcnow()
    replaced = [(u, u.existing) for u in batch if u.existing is not None]
    for ids in _chunks([known.id for _, known in replaced]):
        for table in (Message, Redaction):
            session.execute(
                delete(table).where(table.document_id.in_(ids)), execution_options={"synchronize_session": False}
            )
    if replaced:
        session.execute(update(Document), [{"id": known.id, **_document_row(u, now)} for u, known in replaced])
    added = [
        {"source_id": source.id, "external_id": u.record.external_id, "created_at": now, **_document_row(u, now)}
        for u in batch
        if u.existing is None
    ]
    new_ids: Iterator[int] = iter(())
    if added:
        new_ids = iter(
            session.scalars(insert(Document).returning(Document.id, sort_by_parameter_order=True), added).all()
        )
    ids = [u.existing.id if u.existing is not None else next(new_ids) for u in batch]
    messages = [
        _message_row(document_id, m) for document_id, u in zip(ids, batch, strict=True) for m in u.record.messages
    ]
    redactions = [
        {
            "document_id": document_id,
            "location": r.location,
            "secret_type": r.secret_type,
            "line": r.line,
            "start": r.start,
            "end": r.end,
        }
        for document_id, u in zip(ids, batch, strict=True)
        for r in u.redactions
    ]
    labels = _imported_label_changes(session, ids, [u.record for u in batch])
    for model, children in ((Message, messages), (Redaction, redactions), (Label, labels)):
        if children:
            session.execute(insert(model), children)


def _document_row(upsert: Upsert, now: datetime) -> dict[str, Any]:
    record = upsert.record
    return {
        "kind": DocumentKind(record.kind),
        "title": record.title,
        "content": record.content,
        "content_hash": upsert.content_hash,
        "meta": dict(record.metadata),
        "source_updated_at": record.updated_at,
        "updated_at": now,
        "deleted_at": None,
    }


def _message_row(document_id: int, m: RecordMessage) -> dict[str, Any]:
    return {
        "document_id": document_id,
        "position": m.position,
        "branch": m.branch,
        "role": Role(m.role),
        "content": m.content,
        "content_hash": content_hash(m.role, m.content),
        "external_id": m.external_id,
        "parent_external_id": m.parent_external_id,
        "created_at": m.created_at,
        "meta": dict(m.metadata),
    }


Target = tuple[int | None, int]  # (position, branch) of a message; (None, 0) for the whole document


def _imported_label_changes(session: Session, ids: Sequence[int], records: Sequence[Record]) -> list[dict[str, Any]]:
    """Label rows that make each document's imported labels in force equal its record's."""
    held = _imported_in_force(session, ids)
    rows: list[dict[str, Any]] = []
    for document_id, record in zip(ids, records, strict=True):
        by_message_id = {m.external_id: (m.position, m.branch) for m in record.messages if m.external_id}
        wanted: dict[Target, ImportedLabel] = {}
        for label in record.labels:
            if label.message_external_id is None:
                wanted[(None, 0)] = label
            elif label.message_external_id in by_message_id:
                wanted[by_message_id[label.message_external_id]] = label
        in_force = held.get(document_id, {})
        for target, label in wanted.items():
            current = in_force.get(target)
            if current is None or current.value != label.value or current.note != label.note:
                message = next((m for m in record.messages if (m.position, m.branch) == target), None)
                rows.append(
                    {
                        "document_id": document_id,
                        "position": target[0],
                        "branch": target[1],
                        "value": LabelValue(label.value),
                        "origin": LabelOrigin.imported,
                        "note": label.note,
                        "message_hash": content_hash(message.role, message.content) if message else None,
                    }
                )
        for target in in_force.keys() - wanted.keys():
            rows.append(
                {
                    "document_id": document_id,
                    "position": target[0],
                    "branch": target[1],
                    "value": LabelValue.clear,
                    "origin": LabelOrigin.imported,
                }
            )
    return rows


def _imported_in_force(session: Session, ids: Sequence[int]) -> dict[int, dict[Target, Label]]:
    """Per document, the latest imported label event of each target, unless it is a clear."""
    latest: dict[int, dict[Target, Label]] = {}
    for chunk in _chunks(ids):
        query = (
            select(Label).where(Label.document_id.in_(chunk), Label.origin == LabelOrigin.imported).order_by(Label.id)
        )
        for label in session.scalars(query):
            latest.setdefault(label.document_id, {})[(label.position, label.branch)] = label
    return {
        document_id: {target: label for target, label in held.items() if label.value != LabelValue.clear}
        for document_id, held in latest.items()
    }


def _chunks(ids: Sequence[int], size: int = 500) -> Iterator[Sequence[int]]:
    """``ids`` in slices short enough for an ``IN (...)`` on every backend."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def mark_deleted(session: Session, ids: Iterable[int]) -> int:
    ids = list(ids)
    for chunk in _chunks(ids):
        session.execute(
            update(Document).where(Document.id.in_(chunk), Document.deleted_at.is_(None)).values(deleted_at=utcnow())
        )
    return len(ids)


def save_cursor(session: Session, source: Source, cursor: Mapping[str, Any] | None, when: datetime) -> None:
    if cursor is not None and source.cursor != dict(cursor):
        source.cursor = dict(cursor)
    source.last_ingest_at = when


__all__ = [
    "Known",
    "RedactionSpan",
    "Upsert",
    "ensure_source",
    "mark_deleted",
    "save_cursor",
    "source_state",
    "write_documents",
]
