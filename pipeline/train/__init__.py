"""``plora train``: turn a profile's dataset snapshots into a new LoRA adapter version.

One run, in order:

1. **Plan** (``_plan``): the recipe (config + flags), the latest snapshots, the mode. ``continue``
   starts from the profile's current adapter and mixes in a replay sample of earlier rows; with no
   current adapter it falls back to ``scratch`` and says so. ``--resume`` picks the profile's latest
   unfinished run and checks that config, data and base are still what it was trained on.
2. **Measure before**: eval loss (overall, per source) and preference accuracy of the base model and
   of the current adapter, on today's eval split.
3. **Train** each stage (``sft``, then ``dpo`` or ``kto`` when configured and there is data), with
   checkpoints every ``train.save_steps`` steps under ``runs/<run-id>/<stage>/`` (see
   pipeline.train.resume for the layout and what makes a checkpoint loadable).
4. **Measure after** and apply the gate (pipeline.evaluate.gate_decision).
5. **Register** the adapter: promoted to current when it passed the gate (or ``force``), else kept as
   a rejected candidate with the reasons.

Everything heavy (torch, transformers, peft, trl) is imported inside functions, after
``import_bitsandbytes()`` so bitsandbytes never reaches for the hub.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import PloraError, TrainingError
from pipeline.evaluate import GateDecision, eval_loss, gate_decision, metrics_of, preference_accuracy
from pipeline.train.data import RunData, load_run_data, preference_dataset, tokenize_lm
from pipeline.train.packing import packing_mode
from pipeline.train.progress import Progress, TrainProgress, progress_callback
from pipeline.train.recipe import (
    Recipe,
    compute_notes,
    dpo_args,
    get_lora_config,
    kto_args,
    sft_args,
    use_gradient_checkpointing,
)
from pipeline.train.replay import ReplayReport, replay_sample, row_key
from pipeline.train.resume import (
    ADAPTER_DIR,
    RUN_FILE,
    Checkpoint,
    RunState,
    check_resumable,
    checkpoint_callback,
    finished_stage,
    is_locked,
    last_complete_checkpoint,
    run_lock,
    seal,
)
from pipeline.train.sft import StageClock, StageResult, train_sft
from storage import runs
from storage.models import RunStatus

if TYPE_CHECKING:
    from pipeline.base_model import LoadedBase
    from pipeline.workspace import Workspace

__all__ = ["Progress", "TrainProgress", "TrainResult", "train_profile"]

FINAL_DIR = ADAPTER_DIR  # runs/<id>/adapter: the adapter handed to the registry


@dataclass
class TrainResult:
    """What a run did; ``as_dict()`` is the ``plora train --json`` document."""

    run_id: str
    profile: str
    mode: str
    requested_mode: str
    resumed: bool
    stages: list[str]
    adapter: str | None  # registered ref, "work@v3" (also when rejected)
    adapter_status: str | None  # "accepted" | "rejected"
    promoted: bool
    current: str | None  # the profile's current adapter after the run
    why: str | None  # why the new adapter is not current (null when promoted)
    parent: str | None
    eval: dict[str, dict[str, Any] | None]  # "base" / "previous" / "new" -> metrics
    gate: dict[str, Any]
    trainable_parameters: int
    total_parameters: int
    tokens_trained: int
    wall_seconds: float
    train_seconds: float
    steps: dict[str, int]
    loss_history: list[dict[str, Any]]
    resumed_from: dict[str, int | None]
    stages_skipped: list[dict[str, str]]
    replay: dict[str, Any] | None
    snapshots: dict[str, str]
    data: dict[str, int]
    adapter_dir: str  # runs/<id>/adapter
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        def loss(name: str) -> float | None:
            metrics = self.eval.get(name)
            return metrics.get("eval_loss") if metrics else None

        def by_source(name: str) -> dict[str, float] | None:
            metrics = self.eval.get(name)
            return dict(metrics.get("sources") or {}) if metrics else None

        preference = {name: (m or {}).get("preference_accuracy") for name, m in self.eval.items()}
        return {
            "run_id": self.run_id,
            "profile": self.profile,
            "mode": self.mode,
            "requested_mode": self.requested_mode,
            "resumed": self.resumed,
            "resumed_from": self.resumed_from,
            "stages": self.stages,
            "stages_skipped": self.stages_skipped,
            "adapter": self.adapter,
            "adapter_status": self.adapter_status,
            "promoted": self.promoted,
            "current": self.current,
            "why": self.why,
            "parent": self.parent,
            "eval_loss": {"base": loss("base"), "previous": loss("previous"), "new": loss("new")},
            "source_eval_loss": {"base": by_source("base"), "previous": by_source("previous"), "new": by_source("new")},
            "preference_accuracy": preference if any(v is not None for v in preference.values()) else None,
            "eval_tokens": (self.eval.get("new") or {}).get("eval_tokens"),
            "gate": self.gate,
            "trainable_parameters": self.trainable_parameters,
            "total_parameters": self.total_parameters,
            "tokens_trained": self.tokens_trained,
            "wall_seconds": round(self.wall_seconds, 3),
            "train_seconds": round(self.train_seconds, 3),
            "steps": self.steps,
            "loss_history": self.loss_history,
            "replay": self.replay,
            "snapshots": self.snapshots,
            "data": self.data,
            "adapter_dir": self.adapter_dir,
            "notes": self.notes,
        }


@dataclass
class _Plan:
    recipe: Recipe
    run_id: str
    run_dir: Path
    data: RunData
    stages: list[str]
    skipped: list[dict[str, str]]
    mode: str
    parent: Any  # registry.AdapterVersion | None
    replay: ReplayReport | None
    saved: RunState | None  # set when resuming
    recorded: set[str]  # manifest hashes this run recorded in the store
    finished: dict[str, dict[str, Any]]  # stage results recorded before (resume)
    notes: list[str]


def train_profile(
    workspace: Workspace,
    profile_name: str | None = None,
    *,
    mode: str | None = None,
    resume: bool | str = False,
    max_steps: int | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> TrainResult:
    """Train the profile (the first one when ``profile_name`` is None) and register the result.

    ``mode`` / ``max_steps`` override the profile config. ``resume``: True resumes the profile's
    latest unfinished run (a run id string: that run); flags left out then take the run's values.
    ``force`` promotes the new adapter even when the gate rejects it. ``progress`` receives
    TrainProgress events (steps with loss and tokens/s, and eval phases)."""
    started = time.monotonic()
    report = progress or (lambda _event: None)
    recipe = Recipe.from_config(workspace.config, profile_name, mode=mode, max_steps=max_steps)
    with _quiet_libraries():
        plan = _plan(workspace, recipe, resume=resume, mode=mode, max_steps=max_steps)
        with run_lock(plan.run_dir):
            return _execute(workspace, plan, force=force, progress=report, started=started)


# --- planning -------------------------------------------------------------------------------------


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


def _plan(
    workspace: Workspace, recipe: Recipe, *, resume: bool | str, mode: str | None, max_steps: int | None
) -> _Plan:
    from pipeline import registry

    notes: list[str] = []
    saved, recorded, finished = None, set(), {}
    if resume:
        saved, recorded, metrics = _pick_run(workspace, recipe.profile, resume)
        finished = dict(metrics.get("stages") or {})
        # flags left out take the run's own values (a resumed run keeps its --mode / --max-steps)
        recipe = replace(
            recipe,
            mode=mode or saved.requested_mode,
            train=replace(recipe.train, max_steps=max_steps or saved.config["train"]["max_steps"]),
        )
    data, stages, skipped = load_run_data(workspace, recipe.profile, recipe.stages)

    parent = None
    effective = recipe.mode
    if saved is not None:
        effective = saved.mode
        if saved.parent_version is not None:
            parent = registry.resolve(workspace, f"{recipe.profile}@v{saved.parent_version}")
    elif recipe.mode == "continue":
        parent = registry.current(workspace, recipe.profile)
        if parent is None:
            effective = "scratch"
            notes.append(
                f"mode continue: profile {recipe.profile!r} has no current adapter yet, so this run "
                "trains a fresh adapter (scratch)"
            )
    if parent is not None and saved is None:  # a resumed run's settings are checked against its state instead
        _check_parent_lora(parent, recipe)

    replay = None
    if effective == "continue" and parent is not None:
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
    return _Plan(
        recipe, run_id, run_dir, data, stages, skipped, effective, parent, replay, saved, recorded, finished, notes
    )


def _check_parent_lora(parent: Any, recipe: Recipe) -> None:
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


# --- running ----------------------------------------------------------------------------------------


def _state(plan: _Plan, base_fingerprint: str, base_model: str) -> RunState:
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


def _execute(workspace: Workspace, plan: _Plan, *, force: bool, progress: Progress, started: float) -> TrainResult:
    from pipeline.base_model import import_bitsandbytes, load_base

    import_bitsandbytes()
    recipe = plan.recipe
    if plan.saved is not None:
        # config and data first: no need to load the model to know the run can't resume
        check_resumable(plan.saved, _state(plan, plan.saved.base_fingerprint, plan.saved.base_model))
    progress(TrainProgress("load", message=f"loading {recipe.base_model}"))
    base = load_base(
        recipe.base_model,
        home=workspace.home.root,
        quantization=recipe.quantization,  # type: ignore[arg-type]
        double_quant=recipe.double_quant,
    )
    state = _state(plan, base.fingerprint, recipe.base_model)
    if plan.saved is not None:
        check_resumable(plan.saved, state)
        state = plan.saved
        with workspace.store.write() as session:
            runs.mark_running(session, plan.run_id)
    else:
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        state.write(plan.run_dir / RUN_FILE)
        with workspace.store.write() as session:
            runs.create_run(
                session,
                run_id=plan.run_id,
                profile=recipe.profile,
                mode=plan.mode,
                config={
                    "state": asdict(state),
                    "requested_max_steps": recipe.train.max_steps,
                    "save_steps": recipe.train.save_steps,
                    "notes": plan.notes,
                },
            )
    try:
        result = _train_and_register(workspace, plan, state, base, force=force, progress=progress, started=started)
    except BaseException as e:
        message = "interrupted" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}"
        with contextlib.suppress(Exception), workspace.store.write() as session:
            runs.finish_run(session, plan.run_id, status=RunStatus.failed, error=message[:4000])
        # what the libraries raise when the work fails (CUDA out of memory is a RuntimeError, a full disk
        # an OSError, a bad tensor shape a ValueError) becomes a TrainingError; anything else is a bug
        if isinstance(e, RuntimeError | OSError | ValueError) and not isinstance(e, PloraError):
            raise TrainingError(
                f"run {plan.run_id} failed: {type(e).__name__}: {e} (resume it with "
                "`plora train --resume` once the cause is fixed)"
            ) from e
        raise
    with workspace.store.write() as session:
        runs.finish_run(
            session,
            plan.run_id,
            status=RunStatus.completed,
            metrics={
                "loss_history": result.loss_history,
                "tokens": result.tokens_trained,
                "wall_seconds": result.wall_seconds,
                "train_seconds": result.train_seconds,
                "eval": result.eval,
                "gate": result.gate,
                "adapter": result.adapter,
                "trainable_parameters": result.trainable_parameters,
            },
        )
    return result


def _recorder(workspace: Workspace, plan: _Plan) -> Any:
    def record(entry: dict[str, Any]) -> None:
        with workspace.store.write() as session:
            runs.add_checkpoint(session, plan.run_id, entry)
        plan.recorded.add(entry["manifest_sha256"])

    return record


def _measure(
    model: Any, tokenizer: Any, lm_eval: Any, dpo_eval: list[dict[str, Any]], recipe: Recipe
) -> dict[str, Any]:
    loss = eval_loss(model, lm_eval, tokenizer, max_length=recipe.train.max_length, batch_size=recipe.train.batch_size)
    preference = (
        preference_accuracy(
            model, dpo_eval, tokenizer, max_length=recipe.train.max_length, batch_size=recipe.train.batch_size
        )
        if dpo_eval
        else None
    )
    return metrics_of(loss, preference)


def _train_and_register(
    workspace: Workspace,
    plan: _Plan,
    state: RunState,
    base: LoadedBase,
    *,
    force: bool,
    progress: Progress,
    started: float,
) -> TrainResult:
    import transformers
    from peft import get_peft_model, prepare_model_for_kbit_training

    from pipeline import registry

    recipe, data = plan.recipe, plan.data
    tokenizer = base.tokenizer
    notes = list(plan.notes)
    train_set, dropped_train = tokenize_lm(data.lm_train + data.replay_rows, tokenizer, recipe.train.max_length)
    eval_set, dropped_eval = tokenize_lm(data.lm_eval, tokenizer, recipe.train.max_length)
    if dropped_train or dropped_eval:
        notes.append(
            f"{dropped_train} training and {dropped_eval} eval rows had nothing to learn within "
            f"train.max_length={recipe.train.max_length} tokens and were left out"
        )
    if len(train_set) == 0:
        raise TrainingError(
            f"profile {recipe.profile!r}: no training row has a token to learn within "
            f"train.max_length={recipe.train.max_length}"
        )
    dpo_eval = data.preference_eval.get("dpo", [])

    # 2. measure the base and the current adapter on today's eval split
    progress(TrainProgress("eval", message="evaluating the base model"))
    metrics: dict[str, dict[str, Any] | None] = {
        "base": _measure(base.model, tokenizer, eval_set, dpo_eval, recipe),
        "previous": None,
        "new": None,
    }
    current = registry.current(workspace, recipe.profile)
    model = base.model
    continuing_current = (
        plan.mode == "continue"
        and plan.parent is not None
        and current is not None
        and plan.parent.version == current.version
    )
    if current is not None and not continuing_current:
        progress(TrainProgress("eval", message=f"evaluating the current adapter {current.ref}"))
        try:
            attached = registry.attach(
                model, current, base_fingerprint=base.fingerprint, adapter_name="default", trainable=False
            )
        except PloraError as e:
            if any("lora_" in name for name, _ in model.named_modules()):
                raise  # it failed half-way on the model: don't train on top of that
            # e.g. the base model changed since: the current adapter can't be measured on this base
            notes.append(
                f"the current adapter {current.ref} can't be evaluated ({e}); the gate compares the new "
                "adapter with the base model instead"
            )
            current = None
        else:
            metrics["previous"] = _measure(attached, tokenizer, eval_set, dpo_eval, recipe)
            model = attached.unload()

    # 3. the trainable adapter: the parent's weights (continue) or a fresh LoRA (scratch)
    device = base.device
    notes.append(compute_notes(device))
    if base.quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=use_gradient_checkpointing(device))
    if plan.mode == "continue":
        try:
            model = registry.attach(
                model, plan.parent, base_fingerprint=base.fingerprint, adapter_name="default", trainable=True
            )
        except PloraError as e:
            raise TrainingError(
                f"mode continue: can't load the parent adapter {plan.parent.ref}: {e} "
                "(train with `--mode scratch` to start a new adapter line)"
            ) from e
        if continuing_current:
            progress(TrainProgress("eval", message=f"evaluating the current adapter {current.ref}"))
            metrics["previous"] = _measure(model, tokenizer, eval_set, dpo_eval, recipe)
    else:
        transformers.set_seed(recipe.train.seed)
        model = get_peft_model(model, get_lora_config(recipe.lora))
    trainable, total = model.get_nb_trainable_parameters()

    results, resumed_from = _run_stages(workspace, plan, state, model, tokenizer, train_set, device, progress)
    notes += [note for result in results.values() for note in result.notes]

    # 4. measure the new adapter, apply the gate
    progress(TrainProgress("eval", message="evaluating the new adapter"))
    metrics["new"] = _measure(model, tokenizer, eval_set, dpo_eval, recipe)
    decision = gate_decision(
        metrics["new"],
        current=metrics["previous"] if current is not None else None,
        base=metrics["base"],
        min_improvement=recipe.min_improvement,
        max_source_regression=recipe.max_source_regression,
        force=force,
    )

    # 5. register
    progress(TrainProgress("register", message="registering the adapter"))
    final_dir = plan.run_dir / FINAL_DIR
    if final_dir.exists():
        shutil.rmtree(final_dir)
    model.save_pretrained(str(final_dir), selected_adapters=["default"])
    tokens = sum(r.tokens for r in results.values())
    train_seconds = sum(r.wall_seconds for r in results.values())
    wall = time.monotonic() - started + sum(r.earlier_seconds for r in results.values())
    gate = {
        **decision.as_dict(),
        "min_improvement": recipe.min_improvement,
        "max_source_regression": recipe.max_source_regression,
        "force": force,
    }
    loss_history = [{"stage": r.stage, **entry} for r in results.values() for entry in r.loss_history]
    version = registry.register(
        workspace,
        profile=recipe.profile,
        adapter_dir=final_dir,
        parent_version=plan.parent.version if plan.parent is not None and plan.mode == "continue" else None,
        base_model=recipe.base_model,
        base_fingerprint=base.fingerprint,
        snapshots=data.fingerprints,
        lora=recipe.lora_dict(),
        train=recipe.train_dict(),
        metrics={
            "eval_loss": metrics["new"]["eval_loss"],
            "eval": metrics,
            "tokens_trained": tokens,
            "train_seconds": round(train_seconds, 3),
            "trainable_parameters": trainable,
            "steps": {s: r.steps for s, r in results.items()},
            "stages": list(results),
            "mode": plan.mode,
            "replay": plan.replay.as_dict() if plan.replay else None,
        },
        gate=gate,
        run_id=plan.run_id,
        sources=data.sources(),
        promote=decision.promote,
    )
    now_current = registry.current(workspace, recipe.profile)
    return TrainResult(
        run_id=plan.run_id,
        profile=recipe.profile,
        mode=plan.mode,
        requested_mode=recipe.mode,
        resumed=plan.saved is not None,
        stages=list(results),
        adapter=version.ref,
        adapter_status=version.status,
        promoted=decision.promote,
        current=now_current.ref if now_current else None,
        why=_why(decision),
        parent=plan.parent.ref if plan.parent is not None and plan.mode == "continue" else None,
        eval=metrics,
        gate=gate,
        trainable_parameters=int(trainable),
        total_parameters=int(total),
        tokens_trained=tokens,
        wall_seconds=wall,
        train_seconds=train_seconds,
        steps={s: r.steps for s, r in results.items()},
        loss_history=loss_history,
        resumed_from=resumed_from,
        stages_skipped=plan.skipped,
        replay=plan.replay.as_dict() if plan.replay else None,
        snapshots=data.fingerprints,
        data={
            "train_rows": len(data.lm_train),
            "replay_rows": len(data.replay_rows),
            "eval_rows": len(data.lm_eval),
            **{f"{kind}_rows": len(rows) for kind, rows in data.preference_train.items()},
            "dpo_eval_pairs": len(dpo_eval),
        },
        adapter_dir=str(final_dir),
        notes=notes,
    )


def _why(decision: GateDecision) -> str | None:
    if decision.promote and decision.decision == "accepted":
        return None
    if decision.promote:
        return "promoted with --force although: " + "; ".join(decision.reasons)
    return "; ".join(decision.reasons)


def _run_stages(
    workspace: Workspace,
    plan: _Plan,
    state: RunState,
    model: Any,
    tokenizer: Any,
    train_set: Any,
    device: str,
    progress: Progress,
) -> tuple[dict[str, StageResult], dict[str, int | None]]:
    from pipeline.train.preference import train_dpo, train_kto

    recipe = plan.recipe
    record = _recorder(workspace, plan)
    keep_fp32 = not device.startswith("cuda")
    results: dict[str, StageResult] = {}
    resumed_from: dict[str, int | None] = {}
    for stage in plan.stages:
        stage_dir = plan.run_dir / stage
        finished = finished_stage(stage_dir, state, stage, plan.recorded) if plan.saved is not None else None
        if finished is not None and stage in plan.finished:
            model.load_adapter(str(finished.path), "default", is_trainable=True)
            saved = plan.finished[stage]
            results[stage] = StageResult(
                stage,
                int(saved["steps"]),
                list(saved["loss_history"]),
                int(saved["tokens"]),
                float(saved["wall_seconds"]),
                saved.get("resumed_from_step"),
                earlier_seconds=float(saved["wall_seconds"]),
            )
            resumed_from[stage] = results[stage].steps
            continue
        resume_from: Checkpoint | None = None
        skipped: list[str] = []
        if plan.saved is not None:
            resume_from, skipped = last_complete_checkpoint(stage_dir, state, stage, plan.recorded, set_aside=True)
        elif stage_dir.exists():
            shutil.rmtree(stage_dir)
        if (stage_dir / ADAPTER_DIR).exists():  # an unfinished stage's adapter folder: never sealed
            shutil.rmtree(stage_dir / ADAPTER_DIR)
        resumed_from[stage] = resume_from.step if resume_from else None
        clock = StageClock(resume_from.state.wall_seconds if resume_from else 0.0)
        callbacks = [checkpoint_callback(state, stage, record, clock), progress_callback(stage, progress)]
        if stage == "sft":
            packing = packing_mode(recipe.train.packing, model)
            result = train_sft(
                model,
                tokenizer,
                train_set,
                args=sft_args(recipe.train, stage_dir, device, packing),
                callbacks=callbacks,
                resume_from=resume_from,
                clock=clock,
                keep_fp32=keep_fp32,
                packing=packing,
            )
        elif stage == "dpo":
            result = train_dpo(
                model,
                tokenizer,
                preference_dataset(plan.data.preference_train["dpo"], "dpo"),
                args=dpo_args(recipe.train, stage_dir, device),
                callbacks=callbacks,
                resume_from=resume_from,
                clock=clock,
                keep_fp32=keep_fp32,
            )
        else:
            result = train_kto(
                model,
                tokenizer,
                preference_dataset(plan.data.preference_train["kto"], "kto"),
                args=kto_args(recipe.train, stage_dir, device),
                callbacks=callbacks,
                resume_from=resume_from,
                clock=clock,
                keep_fp32=keep_fp32,
            )
        result.earlier_seconds = clock.before
        result.notes += skipped
        adapter_dir = stage_dir / ADAPTER_DIR
        model.save_pretrained(str(adapter_dir), selected_adapters=["default"])
        seal(adapter_dir, state.at(stage, result.steps, wall_seconds=result.wall_seconds, tokens=result.tokens), record)
        with workspace.store.write() as session:
            row = runs.get_run(session, plan.run_id)
            stages = dict((row.metrics or {}).get("stages") or {}) if row else {}
            stages[stage] = result.as_dict()
            runs.update_metrics(session, plan.run_id, {"stages": stages})
        results[stage] = result
    return results, resumed_from


# Warnings the libraries print on every run that say nothing about this run: on CPU bitsandbytes falls
# back from the paged to the plain 8-bit AdamW (expected), and peft's prepare_model_for_kbit_training
# calls a transformers method that transformers 5 renamed.
_EXPECTED_WARNINGS = (
    r"Paged optimizers are not supported on CPU",
    r"`is_gradient_checkpointing` is deprecated",
)


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """No datasets progress bars on stderr while plora maps and packs small tables, and none of the
    expected library warnings above."""
    import warnings

    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        with warnings.catch_warnings():
            for message in _EXPECTED_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
