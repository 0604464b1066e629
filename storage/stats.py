"""Counts for ``plora status``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.labels import effective_labels, stale_labels
from storage.models import (
    Adapter,
    DatasetSnapshot,
    Document,
    DocumentKind,
    LabelValue,
    Message,
    ProfilePointer,
    Redaction,
    Source,
)


def source_stats(session: Session) -> dict[str, dict[str, Any]]:
    live = Document.deleted_at.is_(None)
    documents = dict(
        session.execute(select(Document.source_id, func.count()).where(live).group_by(Document.source_id)).all()
    )
    conversations = dict(
        session.execute(
            select(Document.source_id, func.count())
            .where(live, Document.kind == DocumentKind.conversation)
            .group_by(Document.source_id)
        ).all()
    )
    messages = dict(
        session.execute(
            select(Document.source_id, func.count(Message.id)).join(Message).where(live).group_by(Document.source_id)
        ).all()
    )
    return {
        source.name: {
            "type": source.type,
            "documents": documents.get(source.id, 0),
            "conversations": conversations.get(source.id, 0),
            "messages": messages.get(source.id, 0),
            "last_ingest": source.last_ingest_at.isoformat() if source.last_ingest_at else None,
        }
        for source in session.scalars(select(Source).order_by(Source.name))
    }


def documents_by_kind(session: Session) -> dict[str, int]:
    counts = dict(
        session.execute(
            select(Document.kind, func.count()).where(Document.deleted_at.is_(None)).group_by(Document.kind)
        ).all()
    )
    return {kind.value: counts.get(kind, 0) for kind in DocumentKind}


def label_stats(session: Session) -> dict[str, int]:
    labels = effective_labels(session)
    live_conversations = set(
        session.scalars(
            select(Document.id).where(Document.deleted_at.is_(None), Document.kind == DocumentKind.conversation)
        )
    )
    labelled = {document_id for document_id, _, _ in labels}
    return {
        "good": sum(1 for label in labels.values() if label.value == LabelValue.good),
        "bad": sum(1 for label in labels.values() if label.value == LabelValue.bad),
        "corrections": sum(1 for label in labels.values() if label.correction),
        "unlabelled_conversations": len(live_conversations - labelled),
        "stale": len(stale_labels(session, labels)),
    }


def redaction_stats(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(Redaction.secret_type, func.count())
        .join(Document)
        .where(Document.deleted_at.is_(None))
        .group_by(Redaction.secret_type)
        .order_by(Redaction.secret_type)
    )
    return dict(rows.all())


def adapter_stats(session: Session) -> dict[str, dict[str, Any]]:
    versions = dict(session.execute(select(Adapter.profile, func.count()).group_by(Adapter.profile)).all())
    current = {p.profile: p.current_version for p in session.scalars(select(ProfilePointer))}
    return {
        profile: {"current": f"v{current[profile]}" if current.get(profile) else None, "versions": count}
        for profile, count in sorted(versions.items())
    }


def status(session: Session) -> dict[str, Any]:
    return {
        "sources": source_stats(session),
        "documents_by_kind": documents_by_kind(session),
        "labels": label_stats(session),
        "redactions": redaction_stats(session),
        "datasets": session.scalar(select(func.count()).select_from(DatasetSnapshot)) or 0,
        "adapters": adapter_stats(session),
    }
