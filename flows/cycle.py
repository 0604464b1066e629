"""The Prefect flows of the monthly cycle: ingest -> (per profile) build datasets -> train -> register.

Orchestration only: the tasks (flows/tasks.py) are thin calls into pipeline, the decisions (what
changed, what to resume) and the report live in pipeline/cycle.py. Every flow takes ``home``
(None: ``$PLORA_HOME``, else the working directory) and resolves it once, so each task gets an
absolute path.

Flow names, which deployments refer to (prefect.yaml, ``plora serve``):

- ``ingest-sources``: ``ingest_flow``           (deployment ``ingest-nightly``)
- ``build-datasets``: ``build_datasets_flow``
- ``train-adapter``: ``train_flow``
- ``monthly-retrain-cycle``: ``monthly_retrain_flow`` (deployment ``monthly-retrain``)

A flow that finished with failures (a source, a profile) ends Failed and still hands back what it
did: its state's result is a ``pipeline.cycle.CycleFailed`` whose ``summary`` is the same document
a successful run returns (calling the flow directly raises it).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from prefect import Flow, flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.states import Failed, State

from flows import report, tasks
from pipeline import cycle
from pipeline.cycle import CycleFailed, CycleSummary, ProfileOutcome
from pipeline.home import Home
from pipeline.kinds import TrainingMode

REPO = Path(__file__).resolve().parents[1]
PREFECT_YAML = REPO / "prefect.yaml"


def _home(home: str | None) -> str:
    return str(Home.resolve(home).root)


def _artifact_key(*parts: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def _failed(message: str, summary: dict[str, Any]) -> State:
    return Failed(message=message, data=CycleFailed(message, summary))


def _outcome(state: State) -> tuple[Any, str | None]:
    """A sub-flow's result and, when it failed, why (its summary is kept when it carries one)."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, CycleFailed):
        return result.summary, str(result)
    if isinstance(result, BaseException):
        return None, f"{type(result).__name__}: {result}" if str(result) else type(result).__name__
    if not state.is_completed():
        return None, state.message or state.name
    return result, None


@flow(name="ingest-sources")
def ingest_flow(home: str | None = None, sources: list[str] | None = None) -> dict[str, Any] | State:
    """Pull every source (or the named ones) into the store, one task per source. A failed source
    doesn't stop the others, but fails the flow at the end."""
    root = _home(home)
    names = tasks.list_sources(root, sources)
    reports = {name: tasks.source_report(tasks.ingest_source(root, name, return_state=True)) for name in names}
    summary = {"home": root, "sources": reports}
    create_markdown_artifact(
        key="plora-ingest",
        markdown="# plora ingest\n\n" + report.ingest_markdown(reports) + "\n",
        description="per-source ingest counts",
    )
    failed = [name for name, report in reports.items() if report["error"]]
    if failed:
        return _failed(f"{len(failed)} of {len(reports)} sources failed: {', '.join(failed)}", summary)
    return summary


@flow(name="build-datasets")
def build_datasets_flow(home: str | None = None, profile: str | None = None) -> dict[str, Any]:
    """Build the profile's dataset snapshots (its first one by default). Cached on what the build reads:
    an unchanged store reuses the last snapshots, as long as they are still the profile's latest."""
    root = _home(home)
    name = tasks.list_profiles(root, [profile] if profile else None)[0]
    state = tasks.build_snapshots(root, name, return_state=True)
    build = dict(state.result())
    fingerprints = {kind: s["fingerprint"] for kind, s in build["snapshots"].items()}
    cached = state.name == "Cached"
    if cached and not tasks.snapshots_current(root, name, fingerprints):
        build, cached = dict(tasks.build_snapshots.with_options(refresh_cache=True)(root, name)), False
    build["cached"] = cached
    create_markdown_artifact(
        key=_artifact_key("plora-datasets", name),
        markdown=f"# plora datasets: {name}\n\n{'Reused (store unchanged).' if cached else ''}\n\n"
        + report.snapshots_markdown(build)
        + "\n",
        description=f"dataset snapshots of profile {name}",
    )
    return build


@flow(name="train-adapter")
def train_flow(
    home: str | None = None,
    profile: str | None = None,
    mode: TrainingMode | None = None,
    resume: bool = True,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Train -> evaluate -> gate -> register one adapter version for the profile (its first one by
    default). With ``resume``, an interrupted run of the profile is resumed from its last checkpoint
    when it still fits today's config and data; training itself is never retried."""
    root = _home(home)
    name = tasks.list_profiles(root, [profile] if profile else None)[0]
    result = tasks.train_adapter(root, name, mode, resume, max_steps)
    create_markdown_artifact(
        key=_artifact_key("plora-train", name),
        markdown=f"# plora train: {name}\n\n" + report.train_markdown(result) + "\n",
        description=f"training run of profile {name}",
    )
    return result


@flow(name="monthly-retrain-cycle")
def monthly_retrain_flow(
    home: str | None = None,
    profiles: list[str] | None = None,
    mode: TrainingMode | None = None,
    force: bool = False,
    max_steps: int | None = None,
) -> dict[str, Any] | State:
    """Ingest every source, then for each profile in turn (one GPU): build its datasets and, when they
    changed since its latest registered adapter (or ``force``), train -> evaluate -> register. Returns the
    cycle's summary (``plora run --json``); fails at the end if a source or a profile failed."""
    started = time.monotonic()
    logger = get_run_logger()
    root = _home(home)
    names = tasks.list_profiles(root, profiles)

    ingest, ingest_error = _outcome(ingest_flow(root, None, return_state=True))
    sources = dict((ingest or {}).get("sources") or {})
    if ingest is None:  # the ingest flow itself broke (not one source): nothing new to train on
        ingest_error = ingest_error or "ingest failed"
        logger.error("ingest failed: %s", ingest_error)
    else:
        ingest_error = None

    outcomes: dict[str, ProfileOutcome] = {}
    for name in names if ingest is not None else []:
        build, error = _outcome(build_datasets_flow(root, name, return_state=True))
        if error is not None:
            outcomes[name] = ProfileOutcome(name, cycle.FAILED, f"building datasets: {error}")
            continue
        check = tasks.check_changes(root, name)
        outcome = ProfileOutcome(
            name, cycle.UNCHANGED, check["reason"], check["snapshots"], build, check["last_adapter"]
        )
        if check["changed"] or force:
            logger.info("%s: %s", name, check["reason"] if check["changed"] else "forced: training anyway")
            result, error = _outcome(train_flow(root, name, mode, True, max_steps, return_state=True))
            if error is not None:
                outcome.status, outcome.reason = cycle.FAILED, f"training: {error}"
            else:
                outcome.status, outcome.train = cycle.TRAINED, result
                outcome.reason = check["reason"] if check["changed"] else "forced"
        else:
            logger.info("%s: %s", name, check["reason"])
        outcomes[name] = outcome

    summary = CycleSummary(
        home=root,
        sources=sources,
        profiles=outcomes,
        force=force,
        flow_run_id=flow_run.get_id(),
        wall_seconds=time.monotonic() - started,
        ingest_error=ingest_error,
    )
    create_markdown_artifact(
        key="plora-monthly-cycle",
        markdown=report.cycle_markdown(summary),
        description="what the monthly cycle ingested, built, trained and registered",
    )
    logger.info("%s", summary.headline())
    if not summary.ok:
        return _failed(summary.headline(), summary.as_dict())
    return summary.as_dict()


# --- deployments: prefect.yaml is the one place they are defined -------------------------------------

FLOWS: dict[str, Flow[..., Any]] = {
    "ingest-sources": ingest_flow,
    "build-datasets": build_datasets_flow,
    "train-adapter": train_flow,
    "monthly-retrain-cycle": monthly_retrain_flow,
}


def deployment_specs(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The ``deployments`` of prefect.yaml (name, entrypoint, schedules, parameters, work pool)."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        return list((yaml.safe_load(handle) or {}).get("deployments") or [])


def served_deployments(home: str | None = None, path: Path = PREFECT_YAML) -> list[Any]:
    """prefect.yaml's deployments as ``RunnerDeployment``s for ``serve()``: same names, schedules and
    parameters, with ``home`` set to the resolved home folder (no work pool: serve runs them itself)."""
    from prefect.schedules import Cron

    root = _home(home)
    deployments = []
    for spec in deployment_specs(path):
        function = spec["entrypoint"].rsplit(":", 1)[1]
        chosen = next(f for f in FLOWS.values() if f.fn.__name__ == function)
        schedules = [
            Cron(s["cron"], timezone=s.get("timezone") or "UTC")
            for s in spec.get("schedules") or []
            if s.get("cron") and s.get("active", True)
        ]
        deployments.append(
            chosen.to_deployment(
                name=spec["name"],
                description=spec.get("description"),
                tags=spec.get("tags") or [],
                parameters={**(spec.get("parameters") or {}), "home": root},
                schedules=schedules,
            )
        )
    return deployments
