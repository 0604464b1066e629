"""The monthly cycle's decisions and its report: the pipeline side of the Prefect flows (flows/cycle.py).

- ``ingest_source``: one source, raising ``SourceFailed`` (with the source's report) when it failed, so an
  orchestrator can retry it and still show what happened;
- ``dataset_inputs_key``: a hash of everything a profile's dataset build reads
  (``pipeline.datasets.inputs.inputs_key``: the store's content for its sources, the profile's dataset
  settings, the base tokenizer, the builder) and of the home. The flows cache the build on it: an
  unchanged store reuses the last snapshots. ``snapshots_current`` says whether a cached build's
  snapshots are still the profile's latest and intact (else the flow rebuilds);
- ``training_fingerprints`` / ``check_changes``: the snapshots the next run would train on, compared
  with those recorded in the manifest of the profile's latest registered adapter (accepted or
  rejected): equal means nothing changed since the last cycle;
- ``resumable_run`` / ``train``: "resume the profile's interrupted run if there is one that still fits
  today's config and data, else start a new run", on top of ``pipeline.train.train_profile``;
- ``CycleSummary``: what a cycle did, as the ``plora run --json`` document (flows/report.py renders it
  as markdown for the Prefect UI's artifacts).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.errors import IngestError, PloraError
from pipeline.workspace import Workspace

if TYPE_CHECKING:
    from pipeline.kinds import TrainingMode
    from pipeline.train import Progress, TrainResult
    from pipeline.train.plan import ResumeChoice


class SourceFailed(IngestError):
    """A source's ingest failed; ``report`` is its ``SourceReport.as_dict()`` (``error`` set)."""

    def __init__(self, source: str, report: dict[str, Any]) -> None:
        super().__init__(report.get("error") or f"source {source} failed")
        self.source = source
        self.report = report

    def __reduce__(self) -> tuple[Any, ...]:  # picklable: Prefect may persist a task's exception
        return (SourceFailed, (self.source, self.report))


class CycleFailed(PloraError):
    """A flow finished with failures; ``summary`` is what it did anyway (per source / per profile)."""

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message)
        self.summary = summary

    def __reduce__(self) -> tuple[Any, ...]:
        return (CycleFailed, (str(self), self.summary))


# --- names ------------------------------------------------------------------------------------------


def source_names(workspace: Workspace, names: list[str] | None = None) -> list[str]:
    """The named sources (each checked against the config), or every configured source."""
    config = workspace.config
    return [config.source(name).name for name in names] if names else list(config.source_names)


def profile_names(workspace: Workspace, names: list[str] | None = None) -> list[str]:
    """The named profiles (each checked against the config), or every configured profile."""
    config = workspace.config
    if names:
        return [config.profile(name)[0] for name in names]
    config.profile(None)  # "no profile defined" is a config error
    return list(config.profiles)


# --- ingest -----------------------------------------------------------------------------------------


def ingest_source(workspace: Workspace, name: str) -> dict[str, Any]:
    """Ingest one source; its report, or ``SourceFailed`` carrying the report when it failed."""
    from pipeline.ingest import ingest

    report = ingest(workspace, [name])[name].as_dict()
    if report["error"]:
        raise SourceFailed(name, report)
    return report


# --- datasets: what a build reads, and whether a build is still the latest ---------------------------


def dataset_inputs_key(workspace: Workspace, profile: str | None) -> str:
    """sha256 over the home and the key of everything ``build_datasets`` reads for the profile (see
    ``pipeline.datasets.inputs``; no document text is read). Same key, same snapshots: the home is in it
    because Prefect's cache is shared by every home."""
    from pipeline.datasets import inputs_key, load_tokens

    name, settings = workspace.config.profile(profile)
    key = inputs_key(workspace, name, settings, load_tokens(workspace))
    digest = hashlib.sha256(b"plora-dataset-inputs-v2\n")
    digest.update(json.dumps({"home": str(workspace.home.root), "inputs": key}, sort_keys=True).encode())
    return digest.hexdigest()


def snapshots_current(workspace: Workspace, profile: str, fingerprints: dict[str, str]) -> bool:
    """Whether ``fingerprints`` (kind -> fingerprint) are still the profile's latest snapshots and their
    folders are intact: a cached build may only be reused then."""
    from pipeline.errors import DatasetError
    from pipeline.snapshots import damage, latest

    if not fingerprints:
        return False
    for kind, fingerprint in fingerprints.items():
        try:
            snapshot = latest(workspace, profile, kind)
        except DatasetError:  # its folder is gone or damaged
            return False
        if snapshot is None or snapshot.fingerprint != fingerprint or damage(snapshot) is not None:
            return False
    return True


# --- change detection --------------------------------------------------------------------------------


def training_fingerprints(workspace: Workspace, profile: str) -> dict[str, str]:
    """kind -> fingerprint of the latest snapshots the profile's next run would train or evaluate on
    (``pipeline.train.data.training_snapshots``): what ``train_profile`` records in the adapter's manifest."""
    from pipeline.train import data

    name, settings = workspace.config.profile(profile)
    return data.training_fingerprints(workspace, name, settings.stages)


@dataclass(frozen=True)
class ChangeCheck:
    """Whether a profile has anything new to train on since its latest registered adapter."""

    profile: str
    changed: bool
    reason: str
    snapshots: dict[str, str]  # what the next run would train on
    last_adapter: str | None  # ref of the latest registered version (accepted or rejected)
    last_status: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "changed": self.changed,
            "reason": self.reason,
            "snapshots": self.snapshots,
            "last_adapter": self.last_adapter,
            "last_status": self.last_status,
        }


def check_changes(workspace: Workspace, profile: str) -> ChangeCheck:
    """Compare the snapshots the next run would use with those the profile's latest registered adapter
    (accepted or rejected) was trained on, as its manifest records them."""
    from pipeline import registry

    name, _ = workspace.config.profile(profile)
    now = training_fingerprints(workspace, name)
    versions = registry.list_versions(workspace, name)
    if not versions:
        return ChangeCheck(name, True, "no adapter registered yet", now, None, None)
    last = max(versions, key=lambda version: version.version)
    if last.manifest is None:
        return ChangeCheck(
            name,
            True,
            f"the manifest of {last.ref} is unreadable (see `plora adapters verify "
            f"{last.ref}`), so there is nothing to compare with",
            now,
            last.ref,
            last.status,
        )
    trained_on = dict(last.manifest.snapshots)
    if trained_on == now:
        return ChangeCheck(
            name,
            False,
            f"nothing changed since {last.ref} ({last.status}): same dataset snapshots; use --force to train anyway",
            now,
            last.ref,
            last.status,
        )
    changes = [
        f"{kind} {trained_on.get(kind, '-')[:12]} -> {now.get(kind, '-')[:12]}"
        for kind in sorted(set(trained_on) | set(now))
        if trained_on.get(kind) != now.get(kind)
    ]
    return ChangeCheck(
        name, True, f"dataset snapshots changed since {last.ref}: " + ", ".join(changes), now, last.ref, last.status
    )


# --- training: resume the interrupted run if it still fits, else start a new one ----------------------


def resumable_run(
    workspace: Workspace, profile: str, *, mode: TrainingMode | str | None = None, max_steps: int | None = None
) -> ResumeChoice:
    """The profile's newest interrupted run that still fits today's config, snapshots and base model,
    else None and why (``pipeline.train.plan.resume_choice``)."""
    from pipeline.train.plan import resume_choice

    return resume_choice(workspace, profile, mode=mode, max_steps=max_steps)


def train(
    workspace: Workspace,
    profile: str | None = None,
    *,
    mode: TrainingMode | str | None = None,
    resume: bool = True,
    max_steps: int | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train the profile: with ``resume``, resume its interrupted run when one fits (see
    ``resumable_run``), else start a new run. The choice is the first of the result's notes."""
    from pipeline.train import train_profile
    from pipeline.train.plan import ResumeChoice

    name, _ = workspace.config.profile(profile)
    choice = (
        resumable_run(workspace, name, mode=mode, max_steps=max_steps)
        if resume
        else ResumeChoice(None, "resume off: starting a new run")
    )
    result = train_profile(
        workspace, name, mode=mode, resume=choice.run_id or False, max_steps=max_steps, progress=progress
    )
    result.notes.insert(0, choice.reason)
    return result


# --- the cycle's report ------------------------------------------------------------------------------

TRAINED, UNCHANGED, FAILED = "trained", "unchanged", "failed"


@dataclass
class ProfileOutcome:
    """One profile in a cycle: trained (see ``train``), unchanged (nothing new: ``reason``) or failed."""

    profile: str
    status: str  # trained | unchanged | failed
    reason: str | None = None  # why unchanged, or the error
    snapshots: dict[str, str] = field(default_factory=dict)
    build: dict[str, Any] | None = None  # BuildResult.as_dict() (+ "cached")
    last_adapter: str | None = None
    train: dict[str, Any] | None = None  # TrainResult.as_dict()

    def as_dict(self) -> dict[str, Any]:
        run = self.train or {}
        losses = run.get("eval_loss") or {"base": None, "previous": None, "new": None}
        why = run.get("why") if self.status == TRAINED else self.reason
        return {
            "status": self.status,
            "reason": self.reason,
            "snapshots": self.snapshots or dict(run.get("snapshots") or {}),
            "datasets_cached": bool((self.build or {}).get("cached")),
            "last_adapter": self.last_adapter,
            "run_id": run.get("run_id"),
            "resumed": run.get("resumed"),
            "mode": run.get("mode"),
            "adapter": run.get("adapter"),
            "adapter_status": run.get("adapter_status"),
            "promoted": run.get("promoted", False),
            "current": run.get("current"),
            "why": why,
            "eval_loss": losses,
            "gate": (run.get("gate") or {}).get("decision"),
            "trainable_parameters": run.get("trainable_parameters"),
            "tokens_trained": run.get("tokens_trained"),
            "wall_seconds": run.get("wall_seconds"),
            "steps": run.get("steps"),
            "notes": run.get("notes", []),
        }


@dataclass
class CycleSummary:
    """What one monthly cycle did; ``as_dict()`` is the ``plora run --json`` document."""

    home: str
    sources: dict[str, dict[str, Any]]  # source -> SourceReport.as_dict()
    profiles: dict[str, ProfileOutcome]
    force: bool = False
    flow_run_id: str | None = None
    wall_seconds: float = 0.0
    ingest_error: str | None = None  # the ingest flow failed as a whole (not one source)

    @property
    def failed_sources(self) -> list[str]:
        return [name for name, report in self.sources.items() if report.get("error")]

    @property
    def failed_profiles(self) -> list[str]:
        return [name for name, outcome in self.profiles.items() if outcome.status == FAILED]

    @property
    def ok(self) -> bool:
        return not (self.failed_sources or self.failed_profiles or self.ingest_error)

    def headline(self) -> str:
        """One line: what the cycle registered, or that nothing changed, and what failed."""
        parts = []
        if self.ingest_error:
            parts.append(f"ingest failed: {self.ingest_error}")
        elif self.failed_sources:
            parts.append(f"sources failed: {', '.join(self.failed_sources)}")
        if self.profiles and all(o.status == UNCHANGED for o in self.profiles.values()):
            parts.append("nothing changed since the last cycle: no profile trained")
        else:
            for name, outcome in self.profiles.items():
                run = outcome.train or {}
                if outcome.status == TRAINED:
                    state = "now current" if run.get("promoted") else "not promoted"
                    parts.append(f"{name}: registered {run.get('adapter')} ({run.get('adapter_status')}, {state})")
                elif outcome.status == UNCHANGED:
                    parts.append(f"{name}: nothing changed, trained nothing")
                else:
                    parts.append(f"{name}: failed: {outcome.reason}")
        return "; ".join(parts) or "no profile to train"

    def as_dict(self) -> dict[str, Any]:
        profiles = {name: outcome.as_dict() for name, outcome in self.profiles.items()}
        return {
            "ok": self.ok,
            "message": self.headline(),
            "flow_run_id": self.flow_run_id,
            "home": self.home,
            "force": self.force,
            "ingest": {"sources": self.sources, "failed": self.failed_sources, "error": self.ingest_error},
            "profiles": profiles,
            "registered": [
                p["adapter"] for p in profiles.values() if p["adapter"] and p["adapter_status"] == "accepted"
            ],
            "rejected": [
                {"adapter": p["adapter"], "why": p["why"]}
                for p in profiles.values()
                if p["adapter"] and p["adapter_status"] == "rejected"
            ],
            "trained": [name for name, p in profiles.items() if p["status"] == TRAINED],
            "failed": {"sources": self.failed_sources, "profiles": self.failed_profiles},
            "wall_seconds": round(self.wall_seconds, 3),
        }
