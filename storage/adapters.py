"""Adapter version rows and each profile's ``current`` pointer.

Rows are written once (a registered version is immutable); only ``ProfilePointer.current_version``
moves (promote, rollback). The files live under ``adapters/<profile>/v<N>/``; pipeline.registry
keeps the two in step.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.models import Adapter, AdapterStatus, ProfilePointer, TrainingRun, utcnow


def lock_pointer(session: Session, profile: str) -> ProfilePointer:
    """The profile's pointer row, created (current None) when missing, locked for this transaction.

    On SQLite the write transaction already holds the database write lock (BEGIN IMMEDIATE); on
    Postgres ``FOR UPDATE`` serializes registrations and pointer moves of one profile."""
    pointer = session.scalars(
        select(ProfilePointer).where(ProfilePointer.profile == profile).with_for_update()
    ).one_or_none()
    if pointer is None:
        pointer = ProfilePointer(profile=profile, current_version=None, updated_at=utcnow())
        session.add(pointer)
        session.flush()
    return pointer


def current_version(session: Session, profile: str) -> int | None:
    return session.scalar(select(ProfilePointer.current_version).where(ProfilePointer.profile == profile))


def current_versions(session: Session) -> dict[str, int | None]:
    return dict(session.execute(select(ProfilePointer.profile, ProfilePointer.current_version)).tuples().all())


def set_current(session: Session, pointer: ProfilePointer, version: int | None) -> None:
    pointer.current_version = version
    pointer.updated_at = utcnow()
    session.flush()


def next_version(session: Session, profile: str) -> int:
    """1 + the highest version ever registered for the profile (rejected ones count too)."""
    highest = session.scalar(select(func.max(Adapter.version)).where(Adapter.profile == profile))
    return (highest or 0) + 1


def versions_of(session: Session, profile: str) -> set[int]:
    return set(session.scalars(select(Adapter.version).where(Adapter.profile == profile)))


def add_adapter(
    session: Session,
    *,
    profile: str,
    version: int,
    parent_version: int | None,
    status: AdapterStatus,
    path: str,
    base_model: str,
    base_fingerprint: str,
    manifest_sha256: str,
    run_id: str | None,
    metrics: dict[str, Any],
    created_at: datetime,
) -> Adapter:
    row = Adapter(
        profile=profile,
        version=version,
        parent_version=parent_version,
        status=status,
        path=path,
        base_model=base_model,
        base_fingerprint=base_fingerprint,
        manifest_sha256=manifest_sha256,
        run_id=run_id,
        metrics=metrics,
        created_at=created_at,
    )
    session.add(row)
    session.flush()
    return row


def get_adapter(session: Session, profile: str, version: int) -> Adapter | None:
    return session.scalars(select(Adapter).where(Adapter.profile == profile, Adapter.version == version)).one_or_none()


def list_adapters(session: Session, profile: str | None = None) -> list[Adapter]:
    query = select(Adapter).order_by(Adapter.profile, Adapter.version)
    if profile is not None:
        query = query.where(Adapter.profile == profile)
    return list(session.scalars(query))


def previous_accepted(session: Session, profile: str, before: int) -> Adapter | None:
    """The newest accepted version of the profile numbered below ``before``."""
    return session.scalars(
        select(Adapter)
        .where(Adapter.profile == profile, Adapter.version < before, Adapter.status == AdapterStatus.accepted)
        .order_by(Adapter.version.desc())
        .limit(1)
    ).one_or_none()


def run_exists(session: Session, run_id: str) -> bool:
    return session.get(TrainingRun, run_id) is not None
