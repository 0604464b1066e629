"""What the dataset builders read: a profile's live documents with their messages, the labels in
force on them and their redaction counts, as plain frozen records (no ORM objects leave here).

Labels are the ones ``storage.labels.effective_labels`` puts in force; a plora label on a message
whose text changed since it was made (stale, see ``storage.labels.is_stale``) is left out and
counted in ``CorpusDocument.stale_labels`` instead: a judgement of other words is not applied.

``corpus_digest`` hashes what ``read_corpus`` would read without reading it: the live documents'
ids, content hashes and write times (ingest rewrites a changed document with its messages and
redactions in one go and stamps ``updated_at``) and the ids of the label events on them (labels are
append-only: every change, an undo or a clear included, is a new event).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.labels import effective_labels, is_stale
from storage.models import Document, Label, Message, Redaction, Source

_CHUNK = 500


@dataclass(frozen=True)
class CorpusMessage:
    position: int
    branch: int
    role: str  # system | user | assistant | tool
    content: str
    external_id: str | None = None
    parent_external_id: str | None = None


@dataclass(frozen=True)
class CorpusLabel:
    position: int | None  # None: the whole document
    branch: int
    value: str  # good | bad
    correction: str | None = None
    origin: str = "plora"


@dataclass(frozen=True)
class CorpusDocument:
    id: int
    source: str
    external_id: str
    kind: str  # conversation | note | runbook | code | commit
    title: str
    content: str
    meta: dict[str, Any] = field(default_factory=dict)
    messages: tuple[CorpusMessage, ...] = ()  # ordered by (position, branch)
    labels: dict[tuple[int | None, int], CorpusLabel] = field(default_factory=dict)
    redactions: dict[str, int] = field(default_factory=dict)  # secret type -> count
    stale_labels: int = 0

    @property
    def ref(self) -> str:
        return f"{self.source}:{self.external_id}"

    def label(self, position: int | None, branch: int = 0) -> CorpusLabel | None:
        return self.labels.get((position, branch))


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start : start + _CHUNK])


def read_corpus(session: Session, sources: Sequence[str]) -> list[CorpusDocument]:
    """The live documents of the named sources, oldest first (by row id, i.e. order of ingest)."""
    rows = session.execute(
        select(
            Document.id,
            Source.name,
            Document.external_id,
            Document.kind,
            Document.title,
            Document.content,
            Document.meta,
        )
        .join(Source)
        .where(Source.name.in_(list(sources)), Document.deleted_at.is_(None))
        .order_by(Document.id)
    ).all()
    ids = [row[0] for row in rows]
    messages: dict[int, list[CorpusMessage]] = defaultdict(list)
    hashes: dict[int, dict[tuple[int, int], str]] = defaultdict(dict)
    redactions: dict[int, Counter[str]] = defaultdict(Counter)
    for chunk in _chunks(ids):
        for m in session.execute(
            select(
                Message.document_id,
                Message.position,
                Message.branch,
                Message.role,
                Message.content,
                Message.external_id,
                Message.parent_external_id,
                Message.content_hash,
            )
            .where(Message.document_id.in_(chunk))
            .order_by(Message.document_id, Message.position, Message.branch)
        ):
            messages[m.document_id].append(
                CorpusMessage(m.position, m.branch, m.role.value, m.content, m.external_id, m.parent_external_id)
            )
            hashes[m.document_id][(m.position, m.branch)] = m.content_hash
        for document_id, secret_type, count in session.execute(
            select(Redaction.document_id, Redaction.secret_type, func.count())
            .where(Redaction.document_id.in_(chunk))
            .group_by(Redaction.document_id, Redaction.secret_type)
        ):
            redactions[document_id][secret_type] += count
    labels: dict[int, dict[tuple[int | None, int], CorpusLabel]] = defaultdict(dict)
    stale: Counter[int] = Counter()
    for (document_id, position, branch), label in effective_labels(session, ids).items():
        if is_stale(label, hashes[document_id]):
            stale[document_id] += 1
            continue
        labels[document_id][(position, branch)] = CorpusLabel(
            position, branch, label.value.value, label.correction or None, label.origin.value
        )
    return [
        CorpusDocument(
            id=id_,
            source=source,
            external_id=external_id,
            kind=kind.value,
            title=title,
            content=content,
            meta=dict(meta or {}),
            messages=tuple(messages.get(id_, ())),
            labels=labels.get(id_, {}),
            redactions=dict(redactions.get(id_, {})),
            stale_labels=stale[id_],
        )
        for id_, source, external_id, kind, title, content, meta in rows
    ]


def corpus_digest(session: Session, sources: Sequence[str]) -> str:
    """sha256 over the live documents of the named sources (source, id, content hash, updated_at) and
    the label events on them (id, document, origin): it changes whenever ``read_corpus`` would read
    something else, and reads no content (two narrow scans)."""
    digest = hashlib.sha256(b"plora-corpus-digest-v1\n")
    live = select(Document.id).join(Source).where(Source.name.in_(list(sources)), Document.deleted_at.is_(None))
    documents = session.execute(
        select(Source.name, Document.id, Document.content_hash, Document.updated_at)
        .join(Source)
        .where(Document.id.in_(live))
        .order_by(Document.id)
    )
    for source, id_, hash_, updated_at in documents:
        digest.update(f"d\t{source}\t{id_}\t{hash_}\t{updated_at.isoformat()}\n".encode())
    labels = session.execute(
        select(Label.id, Label.document_id, Label.origin).where(Label.document_id.in_(live)).order_by(Label.id)
    )
    for id_, document_id, origin in labels:
        digest.update(f"l\t{id_}\t{document_id}\t{origin.value}\n".encode())
    return digest.hexdigest()


__all__ = ["CorpusDocument", "CorpusLabel", "CorpusMessage", "read_corpus"]
