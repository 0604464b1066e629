"""The end of a run: the trained adapter saved and registered (promoted when the gate says so), and
the run's ``TrainResult``."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

from pipeline.evaluate import GateDecision
from pipeline.kinds import TrainingMode
from pipeline.train.measure import EvalSets
from pipeline.train.plan import Plan
from pipeline.train.result import TrainResult, why_not_current
from pipeline.train.resume import ADAPTER_DIR
from pipeline.train.sft import StageResult

if TYPE_CHECKING:
    from pipeline.base_model import LoadedBase
    from pipeline.registry import AdapterVersion
    from pipeline.workspace import Workspace

FINAL_DIR = ADAPTER_DIR  # runs/<id>/adapter: the adapter handed to the registry


def parent_ref(plan: Plan) -> AdapterVersion | None:
    """The adapter this one was trained on from (continue mode), else None."""
    return plan.parent if plan.mode == TrainingMode.CONTINUE else None


def register_adapter(
    workspace: Workspace,
    plan: Plan,
    base: LoadedBase,
    model: Any,
    results: dict[str, StageResult],
    metrics: dict[str, dict[str, Any] | None],
    gate: dict[str, Any],
    decision: GateDecision,
    trainable: int,
) -> AdapterVersion:
    """Save the trained adapter as runs/<id>/adapter and register it (promoted when ``decision`` says)."""
    from pipeline import registry

    recipe, data = plan.recipe, plan.data
    final_dir = plan.run_dir / FINAL_DIR
    if final_dir.exists():
        shutil.rmtree(final_dir)
    model.save_pretrained(str(final_dir), selected_adapters=["default"])
    parent = parent_ref(plan)
    return registry.register(
        workspace,
        profile=recipe.profile,
        adapter_dir=final_dir,
        parent_version=parent.version if parent is not None else None,
        base_model=recipe.base_model,
        base_fingerprint=base.fingerprint,
        snapshots=data.fingerprints,
        lora=recipe.lora_dict(),
        train=recipe.train_dict(),
        metrics={
            "eval_loss": (metrics["new"] or {})["eval_loss"],
            "eval": metrics,
            "tokens_trained": sum(r.tokens for r in results.values()),
            "train_seconds": round(sum(r.wall_seconds for r in results.values()), 3),
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


def train_result(
    workspace: Workspace,
    plan: Plan,
    version: AdapterVersion,
    decision: GateDecision,
    gate: dict[str, Any],
    metrics: dict[str, dict[str, Any] | None],
    results: dict[str, StageResult],
    resumed_from: dict[str, int | None],
    sets: EvalSets,
    notes: list[str],
    wall: float,
    parameters: tuple[int, int],  # trainable, total
) -> TrainResult:
    from pipeline import registry

    recipe, data = plan.recipe, plan.data
    now_current = registry.current(workspace, recipe.profile)
    parent = parent_ref(plan)
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
        why=why_not_current(decision),
        parent=parent.ref if parent is not None else None,
        eval=metrics,
        gate=gate,
        trainable_parameters=parameters[0],
        total_parameters=parameters[1],
        tokens_trained=sum(r.tokens for r in results.values()),
        wall_seconds=wall,
        train_seconds=sum(r.wall_seconds for r in results.values()),
        steps={s: r.steps for s, r in results.items()},
        loss_history=[{"stage": r.stage, **entry} for r in results.values() for entry in r.loss_history],
        resumed_from=resumed_from,
        stages_skipped=plan.skipped,
        replay=plan.replay.as_dict() if plan.replay else None,
        snapshots=data.fingerprints,
        data={
            "train_rows": len(data.lm_train),
            "replay_rows": len(data.replay_rows),
            "eval_rows": len(data.lm_eval),
            **{f"{kind}_rows": len(rows) for kind, rows in data.preference_train.items()},
            "dpo_eval_pairs": len(sets.dpo_eval),
        },
        adapter_dir=str(plan.run_dir / FINAL_DIR),
        notes=notes,
    )
