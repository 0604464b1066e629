"""Typed SQLAlchemy 2 models of the store.

Schema changes only through Alembic revisions in storage/migrations; tests check that
autogenerate finds no drift between these models and the migrated schema.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from sqlalchemy import JSON, DateTime, Enum, ForeignKey, Index, MetaData, String, Text, TypeDecorator, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _enum(cls: type[enum.Enum]) -> Enum:
    """Enums are stored by value, as plain strings (portable, readable in the SQLite file)."""
    return Enum(
        cls,
        values_callable=lambda members: [m.value for m in members],
        native_enum=False,
        validate_strings=True,
        length=32,
    )


intpk = Annotated[int, mapped_column(primary_key=True)]
created = Annotated[datetime, mapped_column(UTCDateTime(), default=utcnow)]
timestamp = Annotated[datetime, mapped_column(UTCDateTime())]
name = Annotated[str, mapped_column(String(64))]
sha256 = Annotated[str, mapped_column(String(64))]
jsondict = Annotated[dict[str, Any], mapped_column(JSON, default=dict)]


class DocumentKind(enum.StrEnum):
    conversation = "conversation"
    note = "note"
    runbook = "runbook"
    code = "code"
    commit = "commit"


class Role(enum.StrEnum):
    system = "system"
    user = "user"
    assistant = "assistant"
    tool = "tool"


class LabelValue(enum.StrEnum):
    good = "good"
    bad = "bad"
    clear = "clear"


class LabelOrigin(enum.StrEnum):
    plora = "plora"  # made by the person in plora (CLI, annotation UI)
    imported = "import"  # came with the source (JSONL label, ChatGPT thumbs)


class RunStatus(enum.StrEnum):
    running = "running"
    completed = "completed"
    failed = "failed"


class AdapterStatus(enum.StrEnum):
    accepted = "accepted"  # passed the gate (or forced)
    rejected = "rejected"  # a candidate that did not beat the current version


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class Source(Base):
    __tablename__ = "sources"

    id: Mapped[intpk]
    name: Mapped[name] = mapped_column(unique=True)
    type: Mapped[str] = mapped_column(String(32))
    cursor: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    last_ingest_at: Mapped[datetime | None]
    created_at: Mapped[created]

    documents: Mapped[list[Document]] = relationship(back_populates="source")


class Document(Base):
    """One item of a source: a conversation, a note, a code file or a commit."""

    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("source_id", "external_id"),
        Index("ix_documents_kind_deleted", "kind", "deleted_at"),
    )

    id: Mapped[intpk]
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[str] = mapped_column(String(512))
    kind: Mapped[DocumentKind] = mapped_column(_enum(DocumentKind))
    title: Mapped[str] = mapped_column(Text)
    content: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[sha256]
    meta: Mapped[jsondict] = mapped_column("metadata", JSON, default=dict)
    source_updated_at: Mapped[datetime | None]
    created_at: Mapped[created]
    updated_at: Mapped[created]
    deleted_at: Mapped[datetime | None]

    source: Mapped[Source] = relationship(back_populates="documents")
    messages: Mapped[list[Message]] = relationship(
        back_populates="document", cascade="all, delete-orphan", order_by="(Message.position, Message.branch)"
    )
    labels: Mapped[list[Label]] = relationship(back_populates="document", order_by="Label.id")
    redactions: Mapped[list[Redaction]] = relationship(back_populates="document", cascade="all, delete-orphan")

    @property
    def ref(self) -> str:
        return f"{self.source.name}:{self.external_id}"


class Message(Base):
    """A conversation turn. ``branch`` 0 is the kept path; 1, 2... are alternative replies."""

    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("document_id", "position", "branch"),)

    id: Mapped[intpk]
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    position: Mapped[int]
    branch: Mapped[int] = mapped_column(default=0)
    role: Mapped[Role] = mapped_column(_enum(Role))
    content: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[sha256]
    external_id: Mapped[str | None] = mapped_column(String(256))
    parent_external_id: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime | None]
    meta: Mapped[jsondict] = mapped_column("metadata", JSON, default=dict)

    document: Mapped[Document] = relationship(back_populates="messages")


class Label(Base):
    """An append-only label event; the latest event per (document, message, origin) is in force.

    Labels point at a message by (position, branch), not by row, so they survive re-ingest;
    ``message_hash`` is the message's content hash when labelled: a mismatch marks it stale.
    """

    __tablename__ = "labels"
    __table_args__ = (Index("ix_labels_target", "document_id", "position", "branch", "origin"),)

    id: Mapped[intpk]
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    position: Mapped[int | None]
    branch: Mapped[int] = mapped_column(default=0)
    value: Mapped[LabelValue] = mapped_column(_enum(LabelValue))
    origin: Mapped[LabelOrigin] = mapped_column(_enum(LabelOrigin), default=LabelOrigin.plora)
    note: Mapped[str | None] = mapped_column(Text)
    correction: Mapped[str | None] = mapped_column(Text)
    message_hash: Mapped[str | None] = mapped_column(String(64))
    undoes_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id"))
    created_at: Mapped[created]

    document: Mapped[Document] = relationship(back_populates="labels")


class Redaction(Base):
    """A secret removed before storage: its type and where, never the value."""

    __tablename__ = "redactions"

    id: Mapped[intpk]
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    location: Mapped[str] = mapped_column(String(64))
    secret_type: Mapped[str] = mapped_column(String(64), index=True)
    line: Mapped[int]
    start: Mapped[int]
    end: Mapped[int]
    created_at: Mapped[created]

    document: Mapped[Document] = relationship(back_populates="redactions")


class DatasetSnapshot(Base):
    __tablename__ = "dataset_snapshots"
    __table_args__ = (UniqueConstraint("kind", "fingerprint"),)

    id: Mapped[intpk]
    profile: Mapped[name]
    kind: Mapped[str] = mapped_column(String(16))
    fingerprint: Mapped[sha256]
    path: Mapped[str] = mapped_column(Text)
    rows: Mapped[int] = mapped_column(default=0)
    meta: Mapped[jsondict] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[created]


class TrainingRun(Base):
    __tablename__ = "training_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    profile: Mapped[name] = mapped_column(index=True)
    mode: Mapped[str] = mapped_column(String(16))
    status: Mapped[RunStatus] = mapped_column(_enum(RunStatus), default=RunStatus.running)
    config: Mapped[jsondict]
    metrics: Mapped[jsondict]
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[created]
    finished_at: Mapped[datetime | None]


class Adapter(Base):
    """A registered, immutable adapter version (its files live in adapters/<profile>/v<N>/)."""

    __tablename__ = "adapters"
    __table_args__ = (UniqueConstraint("profile", "version"),)

    id: Mapped[intpk]
    profile: Mapped[name]
    version: Mapped[int]
    parent_version: Mapped[int | None]
    status: Mapped[AdapterStatus] = mapped_column(_enum(AdapterStatus))
    path: Mapped[str] = mapped_column(Text)
    base_model: Mapped[str] = mapped_column(Text)
    base_fingerprint: Mapped[sha256]
    manifest_sha256: Mapped[sha256]
    run_id: Mapped[str | None] = mapped_column(ForeignKey("training_runs.id"))
    metrics: Mapped[jsondict]
    created_at: Mapped[created]


class ProfilePointer(Base):
    """Which version of a profile is current: promote and rollback only move this pointer."""

    __tablename__ = "profile_pointers"

    profile: Mapped[name] = mapped_column(primary_key=True)
    current_version: Mapped[int | None]
    updated_at: Mapped[created]
