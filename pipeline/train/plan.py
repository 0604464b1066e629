"""Planning a training run: what it trains on and how, before any model is loaded.

- ``make_plan``: the recipe (config + flags), the profile's latest snapshots (``data.load_run_data``),
  the mode (``continue`` falls back to ``scratch`` without a current adapter, and says so), the parent
  adapter and the replay sample; with ``resume``, the interrupted run to pick up.
- ``resumable_runs`` / ``resume_recipe`` / ``resume_choice``: which interrupted runs can be resumed,
  the recipe a resumed run trains with, and whether one still fits today's config, snapshots and
  base (``resume.changed_inputs`` decides; the monthly cycle asks ``resume_choice`` before training).
- ``run_state``: the ``resume.RunState`` of a plan.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import TrainingError
from pipeline.kinds import Stage, TrainingMode
from pipeline.locks import is_locked
from pipeline.train.data import RunData, load_run_data, training_fingerprints
from pipeline.train.recipe import Recipe
from pipeline.train.replay import ReplayReport, replay_sample, row_key
from pipeline.train.resume import RunState, changed_inputs, finished_stage, last_complete_checkpoint
from storage import runs
from storage.models import RunStatus

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.registry import AdapterVersion
    from pipeline.workspace import Workspace


@dataclass
class Plan:
    """What a run trains: the recipe, its data and stages, the mode after any fallback, the parent
    adapter (continue), the replay sample; and when resuming, the saved state and what it recorded."""

    recipe: Recipe
    run_id: str
    run_dir: Path
    data: RunData
    stages: list[Stage]
    skipped: list[dict[str, str]]
    mode: TrainingMode  # after any fallback
    parent: AdapterVersion | None
    replay: ReplayReport | None
    saved: RunState | None  # set when resuming
    recorded: set[str]  # manifest hashes this run recorded in the store
    finished: dict[str, dict[str, Any]]  # stage results recorded before (resume)
    notes: list[str]


def _new_run_id(profile: str, recipe: Recipe) -> str:
    now = datetime.now(UTC)
    salt = f"{recipe.config_hash()} {now.isoformat()} {os.getpid()} {time.perf_counter_ns()}"
    return f"{profile[:38]}-{now:%Y%m%dT%H%M%S}-{hashlib.sha256(salt.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class Resumable:
    run_id: str
    state: RunState
    recorded: set[str]  # manifest hashes of the checkpoints this run wrote
    metrics: dict[str, Any]


def resumable_runs(workspace: Workspace, profile: str, run_id: str | None = None) -> Iterator[Resumable]:
    """The profile's unfinished runs (or the named one), newest first, that have something to resume
    from: a complete checkpoint or a finished stage. A run being trained by another process right now
    is a TrainingError; a run killed before its first checkpoint is marked failed on the way."""
    with workspace.store.read() as session:
        rows = [
            (row.id, dict(row.config or {}), dict(row.metrics or {}), row.status)
            for row in runs.unfinished_runs(session, profile)
        ]
        if run_id is not None:
            named = runs.get_run(session, run_id)
            if named is None or named.profile != profile:
                raise TrainingError(f"no training run {run_id!r} for profile {profile!r}")
            if named.status == RunStatus.completed:
                raise TrainingError(f"run {run_id} already completed; nothing to resume")
            rows = [(named.id, dict(named.config or {}), dict(named.metrics or {}), named.status)]
    for id_, config, metrics, status in rows:
        run_dir = workspace.home.child(workspace.home.runs, id_)
        try:
            saved = RunState(**config["state"])
        except (KeyError, TypeError, ValueError):
            continue
        if is_locked(run_dir):
            raise TrainingError(f"run {id_} is being trained by another process right now; let it finish")
        recorded = {c.get("manifest_sha256") for c in metrics.get("checkpoints", [])}
        if any(
            finished_stage(run_dir / stage, saved, stage, recorded)
            or last_complete_checkpoint(run_dir / stage, saved, stage, recorded)[0]
            for stage in saved.stages
        ):
            yield Resumable(id_, saved, recorded, metrics)
        elif status == RunStatus.running:  # killed before its first checkpoint: nothing to resume
            with workspace.store.write() as session:
                runs.finish_run(
                    session,
                    id_,
                    status=RunStatus.failed,
                    error="interrupted before its first checkpoint; nothing to resume",
                )


def _pick_run(workspace: Workspace, profile: str, resume: bool | str) -> tuple[RunState, set[str], dict[str, Any]]:
    """The run to resume: the named one, or the profile's newest one with something to resume from."""
    found = next(resumable_runs(workspace, profile, resume if isinstance(resume, str) else None), None)
    if found is None:
        raise TrainingError(
            f"no interrupted run of profile {profile!r} to resume (a run can be resumed once it "
            "has written a checkpoint, every train.save_steps steps); start one with `plora train`"
        )
    return found.state, found.recorded, found.metrics


def resume_recipe(
    config: Config, profile: str, saved: RunState, *, mode: TrainingMode | str | None, max_steps: int | None
) -> Recipe:
    """The recipe a resumed run trains with: flags left out take the run's own values (a resumed run
    keeps its --mode / --max-steps)."""
    return Recipe.from_config(
        config,
        profile,
        mode=mode or saved.requested_mode,
        max_steps=max_steps or int(saved.config["train"]["max_steps"]),
    )


@dataclass(frozen=True)
class ResumeChoice:
    run_id: str | None  # the run to resume; None: start a new run
    reason: str


# what changed, as `resume_choice` says it (checked in this order)
_CHANGED = {"config": "the training config", "snapshots": "the dataset snapshots", "base": "the base model"}


def resume_choice(
    workspace: Workspace, profile: str, *, mode: TrainingMode | str | None = None, max_steps: int | None = None
) -> ResumeChoice:
    """The profile's newest interrupted run that has something to resume from (a complete checkpoint or
    a finished stage) and was started with today's config, snapshots and base model, else None and why.
    Seen without loading rows or the model: what ``train_profile`` checks in full once it has them.

    ``mode`` / ``max_steps`` are the overrides the new attempt would pass (see ``resume_recipe``). A run
    being trained by another process right now is a TrainingError: starting a second run beside it
    would only compete for the GPU."""
    name, settings = workspace.config.profile(profile)
    for run in resumable_runs(workspace, name):
        saved = run.state
        recipe = resume_recipe(workspace.config, name, saved, mode=mode, max_steps=max_steps)
        # today's state as far as it is known without data or model: the rest is taken as saved
        now = replace(
            saved,
            config=recipe.hashed(),
            config_hash=recipe.config_hash(),
            snapshots=training_fingerprints(workspace, name, settings.stages),
            base_model=recipe.base_model,
        )
        changed = changed_inputs(saved, now)
        for key, what in _CHANGED.items():
            if key in changed:
                return ResumeChoice(
                    None, f"run {run.run_id} was interrupted, but {what} changed since: starting a new run"
                )
        return ResumeChoice(run.run_id, f"resuming the interrupted run {run.run_id}")
    return ResumeChoice(None, "no interrupted run to resume: starting a new run")


def make_plan(
    workspace: Workspace,
    recipe: Recipe,
    *,
    resume: bool | str,
    mode: TrainingMode | str | None,
    max_steps: int | None,
) -> Plan:
    """The run to do: a new one for ``recipe``, or (``resume``) the interrupted one, with its own
    ``--mode`` / ``--max-steps`` where the flags are left out."""
    from pipeline import registry

    notes: list[str] = []
    saved: RunState | None = None
    recorded: set[str] = set()
    finished: dict[str, dict[str, Any]] = {}
    if resume:
        saved, recorded, metrics = _pick_run(workspace, recipe.profile, resume)
        finished = dict(metrics.get("stages") or {})
        recipe = resume_recipe(workspace.config, recipe.profile, saved, mode=mode, max_steps=max_steps)
    data, stages, skipped = load_run_data(workspace, recipe.profile, recipe.stages)

    parent = None
    effective = recipe.mode
    if saved is not None:
        effective = saved.mode
        if saved.parent_version is not None:
            parent = registry.resolve(workspace, f"{recipe.profile}@v{saved.parent_version}")
    elif recipe.mode == TrainingMode.CONTINUE:
        parent = registry.current(workspace, recipe.profile)
        if parent is None:
            effective = TrainingMode.SCRATCH
            notes.append(
                f"mode continue: profile {recipe.profile!r} has no current adapter yet, so this run "
                "trains a fresh adapter (scratch)"
            )
    if parent is not None and saved is None:  # a resumed run's settings are checked against its state instead
        _check_parent_lora(parent, recipe)

    replay = None
    if effective == TrainingMode.CONTINUE and parent is not None:
        exclude = {row_key(row) for row in (*data.lm_train, *data.lm_eval)}
        data.replay_rows, replay = replay_sample(
            workspace,
            parent,
            current=data.fingerprints,
            exclude=exclude,
            new_rows=len(data.lm_train),
            fraction=recipe.train.replay_fraction,
            seed=recipe.train.seed,
        )
        if replay.notes and replay.requested:
            notes.append("replay: " + "; ".join(replay.notes))

    run_id = saved.run_id if saved else _new_run_id(recipe.profile, recipe)
    run_dir = workspace.home.child(workspace.home.runs, run_id)
    return Plan(
        recipe, run_id, run_dir, data, stages, skipped, effective, parent, replay, saved, recorded, finished, notes
    )


def _check_parent_lora(parent: AdapterVersion, recipe: Recipe) -> None:
    """Continue mode trains the parent's adapter as it is: its shape must be the profile's."""
    recorded = parent.manifest.lora if parent.manifest is not None else {}
    wanted = recipe.lora_dict()
    differs = [
        f"{key} {recorded[key]!r} -> {wanted[key]!r}"
        for key in ("r", "alpha", "target_modules")
        if key in recorded and _norm(recorded[key]) != _norm(wanted[key])
    ]
    if differs:
        raise TrainingError(
            f"mode continue: the profile's LoRA settings differ from the current adapter "
            f"{parent.ref} ({', '.join(differs)}); an adapter can only be continued with its own "
            "shape: train once with `--mode scratch` to switch to the new settings"
        )


def _norm(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return sorted(value)
    if isinstance(value, int | float):
        return float(value)
    return value


def run_state(plan: Plan, base_fingerprint: str, base_model: str) -> RunState:
    """The run's state from its plan and base (what a resume compares with the saved one)."""
    import peft
    import torch
    import transformers
    import trl

    recipe = plan.recipe
    return RunState(
        run_id=plan.run_id,
        profile=recipe.profile,
        mode=plan.mode,
        requested_mode=recipe.mode,
        seed=recipe.train.seed,
        stages=list(plan.stages),
        config=recipe.hashed(),
        config_hash=recipe.config_hash(),
        dataset_fingerprint=plan.data.fingerprint(),
        snapshots=plan.data.fingerprints,
        base_model=base_model,
        base_fingerprint=base_fingerprint,
        parent_version=plan.parent.version if plan.parent else None,
        versions={
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "trl": trl.__version__,
        },
    )
