"""The Prefect tasks of the monthly cycle: each a few lines around one pipeline call.

Tasks take the home folder's absolute path and names (sources, profiles), open the workspace
themselves and return JSON-ready dicts: no models, datasets or sessions cross a task boundary.
I/O tasks retry with backoff; training never retries (an interrupted run is resumed from its
checkpoint by the next attempt instead: see ``pipeline.cycle.train``).
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff

from pipeline import cycle
from pipeline.kinds import TrainingMode
from pipeline.workspace import open_workspace


@task(name="list-sources")
def list_sources(home: str, sources: list[str] | None) -> list[str]:
    """The sources to ingest (each checked against plora.toml)."""
    with open_workspace(home, check_paths=False) as workspace:
        return cycle.source_names(workspace, sources)


@task(name="list-profiles")
def list_profiles(home: str, profiles: list[str] | None) -> list[str]:
    """The profiles to retrain (each checked against plora.toml)."""
    with open_workspace(home, check_paths=False) as workspace:
        return cycle.profile_names(workspace, profiles)


@task(
    name="ingest-source",
    task_run_name="ingest-{source}",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=10),
    retry_jitter_factor=0.2,
)
def ingest_source(home: str, source: str) -> dict[str, Any]:
    """Pull one source into the store; raises SourceFailed (with the report) so it is retried."""
    with open_workspace(home, check_paths=False) as workspace:
        return cycle.ingest_source(workspace, source)


def _build_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    with open_workspace(parameters["home"], check_paths=False) as workspace:
        return "plora-datasets-" + cycle.dataset_inputs_key(workspace, parameters["profile"])


@task(
    name="build-datasets",
    task_run_name="build-{profile}",
    cache_key_fn=_build_key,
    persist_result=True,
    result_serializer="json",
    retries=2,
    retry_delay_seconds=[10, 60],
)
def build_snapshots(home: str, profile: str) -> dict[str, Any]:
    """Build the profile's snapshots; cached on what the build reads, so an unchanged store reuses them."""
    from pipeline.datasets import build_datasets

    with open_workspace(home, check_paths=False) as workspace:
        return build_datasets(workspace, profile).as_dict()


@task(name="check-snapshots", task_run_name="check-snapshots-{profile}")
def snapshots_current(home: str, profile: str, fingerprints: dict[str, str]) -> bool:
    """Whether a (cached) build's snapshots are still the profile's latest, on disk."""
    with open_workspace(home, check_paths=False) as workspace:
        return cycle.snapshots_current(workspace, profile, fingerprints)


@task(name="check-changes", task_run_name="check-changes-{profile}")
def check_changes(home: str, profile: str) -> dict[str, Any]:
    """Whether the profile has new snapshots since its latest registered adapter."""
    with open_workspace(home, check_paths=False) as workspace:
        return cycle.check_changes(workspace, profile).as_dict()


@task(name="train-adapter", task_run_name="train-{profile}", retries=0)
def train_adapter(
    home: str, profile: str, mode: TrainingMode | None, resume: bool, max_steps: int | None
) -> dict[str, Any]:
    """Train -> evaluate -> gate -> register (one ``train_profile`` run; resumed when one was interrupted)."""
    logger = get_run_logger()

    def report(event: Any) -> None:
        if event.step is None:
            logger.info("%s: %s", event.stage, event.message)
        elif event.step == event.max_steps or event.step % 10 == 0:
            logger.info("%s step %s/%s loss %.4f", event.stage, event.step, event.max_steps, event.loss or 0.0)

    with open_workspace(home, check_paths=False) as workspace:
        result = cycle.train(workspace, profile, mode=mode, resume=resume, max_steps=max_steps, progress=report)
    return result.as_dict()


def source_report(state: Any) -> dict[str, Any]:
    """An ingest-source task's report from its final state: the result, or the report its SourceFailed
    carries; any other failure becomes a report with that error."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, cycle.SourceFailed):
        return result.report
    if isinstance(result, BaseException):
        return {
            "added": 0,
            "updated": 0,
            "unchanged": 0,
            "deleted": 0,
            "skipped": [],
            "redactions": 0,
            "error": f"{type(result).__name__}: {result}",
        }
    return result
