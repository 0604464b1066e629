"""Training run rows: one per ``plora train`` run (a resumed run keeps its row).

``config`` holds the run's resume state (pipeline.train.resume.RunState as a dict) and the recipe;
``metrics`` the loss history, tokens, wall seconds, the checkpoints the run wrote (with their
manifest hashes: resume only loads a checkpoint recorded here) and, at the end, the evaluation.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.errors import StorageError
from storage.models import Adapter, RunStatus, TrainingRun, utcnow

UNFINISHED = (RunStatus.running, RunStatus.failed)


def create_run(session: Session, *, run_id: str, profile: str, mode: str, config: dict[str, Any]) -> TrainingRun:
    row = TrainingRun(
        id=run_id,
        profile=profile,
        mode=mode,
        status=RunStatus.running,
        config=config,
        metrics={},
        error=None,
        started_at=utcnow(),
        finished_at=None,
    )
    session.add(row)
    session.flush()
    return row


def get_run(session: Session, run_id: str) -> TrainingRun | None:
    return session.get(TrainingRun, run_id)


def list_runs(session: Session, profile: str | None = None) -> list[TrainingRun]:
    query = select(TrainingRun).order_by(TrainingRun.started_at, TrainingRun.id)
    if profile is not None:
        query = query.where(TrainingRun.profile == profile)
    return list(session.scalars(query))


def unfinished_runs(session: Session, profile: str) -> list[TrainingRun]:
    """The profile's runs that did not complete (running, or failed), newest first. A run with a
    registered adapter is done even when its row doesn't say so (killed between the registration's
    commit and its own): resuming it would register the same adapter again."""
    registered = select(Adapter.id).where(Adapter.run_id == TrainingRun.id).exists()
    return list(
        session.scalars(
            select(TrainingRun)
            .where(TrainingRun.profile == profile, TrainingRun.status.in_(UNFINISHED), ~registered)
            .order_by(TrainingRun.started_at.desc(), TrainingRun.id.desc())
        )
    )


def mark_running(session: Session, run_id: str) -> TrainingRun:
    """A resumed run is running again; its previous error is cleared."""
    row = _require(session, run_id)
    row.status = RunStatus.running
    row.error = None
    row.finished_at = None
    session.flush()
    return row


def update_metrics(session: Session, run_id: str, changes: dict[str, Any]) -> TrainingRun:
    """Merge ``changes`` into the run's metrics (top-level keys replaced)."""
    row = _require(session, run_id)
    row.metrics = {**(row.metrics or {}), **changes}
    session.flush()
    return row


def add_checkpoint(session: Session, run_id: str, record: dict[str, Any]) -> TrainingRun:
    """Append a checkpoint record (stage, step, path, manifest sha256) to the run's metrics."""
    row = _require(session, run_id)
    metrics = dict(row.metrics or {})
    metrics["checkpoints"] = [*metrics.get("checkpoints", []), record]
    row.metrics = metrics
    session.flush()
    return row


def finish_run(
    session: Session, run_id: str, *, status: RunStatus, metrics: dict[str, Any] | None = None, error: str | None = None
) -> TrainingRun:
    row = _require(session, run_id)
    row.status = status
    row.error = error
    row.finished_at = utcnow()
    if metrics:
        row.metrics = {**(row.metrics or {}), **metrics}
    session.flush()
    return row


def _require(session: Session, run_id: str) -> TrainingRun:
    row = session.get(TrainingRun, run_id)
    if row is None:
        raise StorageError(f"training run {run_id!r} is not in the store")
    return row
