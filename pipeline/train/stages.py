"""Running a plan's stages (``sft``, then ``dpo`` or ``kto``): each stage's trainer, its checkpoints
every ``train.save_steps`` steps under ``runs/<run-id>/<stage>/`` and, when resuming, where it picks up
(see pipeline.train.resume for the layout and what makes a checkpoint loadable)."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

from pipeline.kinds import Stage
from pipeline.train.data import preference_dataset
from pipeline.train.packing import packing_mode
from pipeline.train.plan import Plan
from pipeline.train.progress import Progress, progress_callback
from pipeline.train.recipe import dpo_args, kto_args, sft_args
from pipeline.train.resume import (
    ADAPTER_DIR,
    Checkpoint,
    RunState,
    checkpoint_callback,
    finished_stage,
    last_complete_checkpoint,
    seal,
)
from pipeline.train.sft import StageClock, StageResult, train_sft
from storage import runs

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipeline.workspace import Workspace


def run_stages(
    workspace: Workspace,
    plan: Plan,
    state: RunState,
    model: Any,
    tokenizer: Any,
    train_set: Any,
    device: str,
    progress: Progress,
    *,
    checkpointing: bool,
) -> tuple[dict[str, StageResult], dict[str, int | None]]:
    """Train each of the plan's stages in order on ``model`` (its adapter ``default``), each from its
    last complete checkpoint when resuming (a stage finished before is loaded, not trained again); the
    stage results and the step each resumed from. Each finished stage's adapter is sealed and recorded
    in the run's metrics."""
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
        # what every stage's trainer takes beside its model, data and settings
        common: dict[str, Any] = {
            "callbacks": callbacks,
            "resume_from": resume_from,
            "clock": clock,
            "keep_fp32": keep_fp32,
        }
        if stage == Stage.SFT:
            packing = packing_mode(recipe.train.packing, model)
            args = sft_args(recipe.train, stage_dir, device, packing, checkpointing=checkpointing)
            result = train_sft(model, tokenizer, train_set, args=args, packing=packing, **common)
        elif stage == Stage.DPO:
            rows = preference_dataset(plan.data.preference_train[stage], stage)
            dpo = dpo_args(recipe.train, stage_dir, device, checkpointing=checkpointing)
            result = train_dpo(model, tokenizer, rows, args=dpo, **common)
        else:
            rows = preference_dataset(plan.data.preference_train[stage], stage)
            kto = kto_args(recipe.train, stage_dir, device, checkpointing=checkpointing)
            result = train_kto(model, tokenizer, rows, args=kto, **common)
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


def _recorder(workspace: Workspace, plan: Plan) -> Callable[[dict[str, Any]], None]:
    """Records a checkpoint's manifest hash in the store (and in the plan: this run wrote it)."""

    def record(entry: dict[str, Any]) -> None:
        with workspace.store.write() as session:
            runs.add_checkpoint(session, plan.run_id, entry)
        plan.recorded.add(entry["manifest_sha256"])

    return record
