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
- ``CycleSummary``: what a cycle did, as the ``plora run --json`` document and as markdown tables
  (pure functions) for the Prefect UI's artifacts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.errors import IngestError, PloraError
from pipeline.workspace import Workspace

if TYPE_CHECKING:
    from pipeline.train import Progress, TrainResult

LM_KINDS = ("sft", "text")
PREFERENCE_KINDS = ("dpo", "kto")


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
    """kind -> fingerprint of the latest snapshots the profile's next run would train or evaluate on:
    what ``train_profile`` records in the adapter's manifest. Mirrors ``pipeline.train.data.load_run_data``
    from the snapshots' row counts (no rows are loaded): sft and text always; a preference stage of the
    profile when it has training rows; dpo also when it has eval rows (preference accuracy)."""
    from pipeline.snapshots import latest

    name, settings = workspace.config.profile(profile)
    stages = set(settings.stages[1:])
    found: dict[str, str] = {}
    for kind in (*LM_KINDS, *PREFERENCE_KINDS):
        snapshot = latest(workspace, name, kind)
        if snapshot is None:
            continue
        rows = snapshot.rows
        used = (
            kind in LM_KINDS
            or (kind in stages and rows.get("train", 0) > 0)
            or (kind == "dpo" and rows.get("eval", 0) > 0)
        )
        if used:
            found[kind] = snapshot.fingerprint
    return dict(sorted(found.items()))


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


@dataclass(frozen=True)
class ResumeChoice:
    run_id: str | None  # the run to resume; None: start a new run
    reason: str


def resumable_run(
    workspace: Workspace, profile: str, *, mode: str | None = None, max_steps: int | None = None
) -> ResumeChoice:
    """The profile's newest interrupted run that has something to resume from (a complete checkpoint or
    a finished stage) and was started with today's config and snapshots, else None and why.

    ``mode`` / ``max_steps`` are the overrides the new attempt would pass: a resumed run keeps its own
    when they are None (as ``train_profile`` does). A run being trained by another process right now is a
    TrainingError: starting a second run beside it would only compete for the GPU."""
    from pipeline.train import resumable_runs
    from pipeline.train.recipe import Recipe

    name, _ = workspace.config.profile(profile)
    for run in resumable_runs(workspace, name):
        run_id, saved = run.run_id, run.state
        recipe = Recipe.from_config(
            workspace.config,
            name,
            mode=mode or saved.requested_mode,
            max_steps=max_steps or int(saved.config["train"]["max_steps"]),
        )
        if recipe.config_hash() != saved.config_hash:
            return ResumeChoice(
                None, f"run {run_id} was interrupted, but the training config changed since: starting a new run"
            )
        now = training_fingerprints(workspace, name)
        if now != saved.snapshots:
            return ResumeChoice(
                None, f"run {run_id} was interrupted, but the dataset snapshots changed since: starting a new run"
            )
        if saved.base_model != workspace.config.base_model.name:
            return ResumeChoice(
                None, f"run {run_id} was interrupted, but the base model changed since: starting a new run"
            )
        return ResumeChoice(run_id, f"resuming the interrupted run {run_id}")
    return ResumeChoice(None, "no interrupted run to resume: starting a new run")


def train(
    workspace: Workspace,
    profile: str | None = None,
    *,
    mode: str | None = None,
    resume: bool = True,
    max_steps: int | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train the profile: with ``resume``, resume its interrupted run when one fits (see
    ``resumable_run``), else start a new run. The choice is the first of the result's notes."""
    from pipeline.train import train_profile

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

    def to_markdown(self) -> str:
        lines = [
            "# plora monthly cycle",
            "",
            f"**{_cell(self.headline())}**",
            "",
            f"Home: `{self.home}`" + (" (forced)" if self.force else ""),
            "",
        ]
        lines += [
            "## Sources",
            "",
            ingest_markdown(self.sources)
            if self.sources
            else f"_ingest failed: {_cell(self.ingest_error or 'no sources')}_",
            "",
        ]
        lines += ["## Profiles", "", profiles_markdown(self.profiles)]
        return "\n".join(lines) + "\n"


# --- markdown (pure) ---------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    text = f"{value:.4f}" if isinstance(value, float) else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(out)


def ingest_markdown(sources: dict[str, dict[str, Any]]) -> str:
    """Per source: added / updated / unchanged / deleted / skipped / redactions / error."""
    return _table(
        ["source", "added", "updated", "unchanged", "deleted", "skipped", "redactions", "error"],
        [
            [
                name,
                r.get("added"),
                r.get("updated"),
                r.get("unchanged"),
                r.get("deleted"),
                len(r.get("skipped") or []),
                r.get("redactions"),
                r.get("error"),
            ]
            for name, r in sources.items()
        ],
    )


def snapshots_markdown(build: dict[str, Any]) -> str:
    """Per snapshot kind of a ``BuildResult.as_dict()``: fingerprint, rows and tokens per split."""
    snapshots = build.get("snapshots") or {}
    return _table(
        ["kind", "snapshot", "train rows", "eval rows", "train tokens", "new"],
        [
            [
                kind,
                (s.get("fingerprint") or "")[:12],
                (s.get("rows") or {}).get("train", 0),
                (s.get("rows") or {}).get("eval", 0),
                (s.get("tokens") or {}).get("train", 0),
                "yes" if s.get("new") else "no",
            ]
            for kind, s in snapshots.items()
        ],
    )


def train_markdown(result: dict[str, Any]) -> str:
    """A ``TrainResult.as_dict()``: eval losses of base / previous / new, the gate and the registration."""
    losses = result.get("eval_loss") or {}
    gate = result.get("gate") or {}
    rows: list[list[Any]] = [
        ["eval loss, base model", losses.get("base")],
        ["eval loss, previous adapter", losses.get("previous")],
        ["eval loss, new adapter", losses.get("new")],
        ["gate", f"{gate.get('decision', '-')} (vs {gate.get('compared_with', '-')})"],
        ["adapter", f"{result.get('adapter')} ({result.get('adapter_status')})"],
        ["current", result.get("current")],
        ["why not current", result.get("why")],
        ["run", result.get("run_id")],
        ["resumed", result.get("resumed")],
        ["mode", result.get("mode")],
        ["trainable parameters", result.get("trainable_parameters")],
        ["tokens trained", result.get("tokens_trained")],
        ["wall seconds", result.get("wall_seconds")],
    ]
    text = _table(["", result.get("profile") or "run"], rows)
    reasons = gate.get("reasons") or []
    if reasons:
        text += "\n\nGate: " + "; ".join(_cell(r) for r in reasons)
    return text


def profiles_markdown(profiles: dict[str, ProfileOutcome]) -> str:
    """Per profile: what happened, the snapshots, eval losses, the gate and the adapter."""
    rows = []
    for name, outcome in profiles.items():
        data = outcome.as_dict()
        losses = data["eval_loss"]
        snapshots = ", ".join(f"{kind} {fp[:12]}" for kind, fp in data["snapshots"].items())
        rows.append(
            [
                name,
                data["status"],
                snapshots,
                losses.get("base"),
                losses.get("previous"),
                losses.get("new"),
                data["gate"],
                data["adapter"],
                data["why"],
            ]
        )
    return _table(
        ["profile", "status", "snapshots", "eval loss base", "previous", "new", "gate", "adapter", "why"], rows
    )
