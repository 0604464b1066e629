"""Dataset snapshot rows: one per (kind, fingerprint); the files live under datasets/."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from storage.models import DatasetSnapshot


def record_snapshot(
    session: Session, *, profile: str, kind: str, fingerprint: str, path: str, rows: int, meta: dict[str, Any]
) -> DatasetSnapshot:
    """Insert the row unless this (kind, fingerprint) is already recorded; returns the row."""
    existing = session.scalars(
        select(DatasetSnapshot).where(DatasetSnapshot.kind == kind, DatasetSnapshot.fingerprint == fingerprint)
    ).one_or_none()
    if existing is not None:
        return existing
    row = DatasetSnapshot(profile=profile, kind=kind, fingerprint=fingerprint, path=path, rows=rows, meta=meta)
    session.add(row)
    session.flush()
    return row


def latest_snapshot(session: Session, profile: str, kind: str) -> DatasetSnapshot | None:
    return session.scalars(
        select(DatasetSnapshot)
        .where(DatasetSnapshot.profile == profile, DatasetSnapshot.kind == kind)
        .order_by(DatasetSnapshot.id.desc())
        .limit(1)
    ).one_or_none()


def list_snapshots(session: Session, profile: str | None = None) -> list[DatasetSnapshot]:
    query = select(DatasetSnapshot).order_by(DatasetSnapshot.id)
    if profile is not None:
        query = query.where(DatasetSnapshot.profile == profile)
    return list(session.scalars(query))


def find_snapshot(session: Session, fingerprint_prefix: str) -> list[DatasetSnapshot]:
    if not fingerprint_prefix.isascii():  # fingerprints are hex; SQLite can't take lone surrogates
        return []
    return list(
        session.scalars(
            select(DatasetSnapshot).where(DatasetSnapshot.fingerprint.startswith(fingerprint_prefix, autoescape=True))
        )
    )


def update_meta(session: Session, row: DatasetSnapshot, values: dict[str, Any]) -> DatasetSnapshot:
    """Set keys of the row's ``meta`` (a new dict, so the JSON column is written)."""
    row.meta = {**row.meta, **values}
    session.flush()
    return row


def renew_snapshot(session: Session, row: DatasetSnapshot) -> DatasetSnapshot:
    """Make an already recorded snapshot the newest of its (profile, kind) again.

    ``storage.snapshots.latest_snapshot`` takes the highest row id; when a build gives back the
    content of an older snapshot (A, then B, then A again) its row is re-inserted with a new id so
    ``latest`` names what the store holds now. Nothing references snapshot rows by id.
    """
    copy = DatasetSnapshot(
        profile=row.profile,
        kind=row.kind,
        fingerprint=row.fingerprint,
        path=row.path,
        rows=row.rows,
        meta=dict(row.meta),
    )
    session.execute(delete(DatasetSnapshot).where(DatasetSnapshot.id == row.id))
    session.flush()
    session.add(copy)
    session.flush()
    return copy
