"""``plora train``: turn a profile's dataset snapshots into a new LoRA adapter version.

One run, in order (``train_profile``):

1. **Plan** (pipeline.train.plan): the recipe (config + flags), the latest snapshots, the mode, the
   parent adapter and replay sample; ``--resume`` picks the profile's latest unfinished run.
2. **Set up** (``_execute``): load the base, check that a resumed run's config, data and base are
   still what it was trained on, record the run in the store (failed when anything below raises).
3. **Measure before**: eval loss (overall, per source) and preference accuracy of the base model and
   of the current adapter, on today's eval split.
4. **Train** each stage (pipeline.train.stages), on the parent's adapter (continue) or a fresh LoRA.
5. **Measure after** and apply the gate (pipeline.evaluate.gate_decision).
6. **Register** the adapter: promoted to current when it passed the gate (or ``force``), else kept as
   a rejected candidate with the reasons.

Everything heavy (torch, transformers, peft, trl) is imported inside functions, after
``import_bitsandbytes()`` so bitsandbytes never reaches for the hub.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from pipeline.errors import PloraError, TrainingError
from pipeline.evaluate import gate_decision
from pipeline.kinds import TrainingMode
from pipeline.locks import hold, run_lock
from pipeline.train.measure import EvalSets, continuing_current, measure, measure_current, tokenized
from pipeline.train.plan import Plan, make_plan, run_state
from pipeline.train.progress import Progress, TrainProgress
from pipeline.train.recipe import Recipe, compute_notes, get_lora_config, gradient_checkpointing
from pipeline.train.register import register_adapter, train_result
from pipeline.train.result import TrainResult
from pipeline.train.resume import RUN_FILE, RunState, check_resumable
from pipeline.train.stages import run_stages
from storage import runs
from storage.models import RunStatus

if TYPE_CHECKING:
    from pipeline.base_model import LoadedBase
    from pipeline.registry import AdapterVersion
    from pipeline.workspace import Workspace


def train_profile(
    workspace: Workspace,
    profile_name: str | None = None,
    *,
    mode: TrainingMode | str | None = None,
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
    # one training per profile per home: a second waits, then plans from what the first registered
    with hold(workspace.home.root, f"train-{recipe.profile}", what=f"a training run of profile {recipe.profile!r}"):
        return _train_locked(
            workspace,
            recipe,
            resume=resume,
            mode=mode,
            max_steps=max_steps,
            force=force,
            progress=report,
            started=started,
        )


def _train_locked(
    workspace: Workspace,
    recipe: Recipe,
    *,
    resume: bool | str,
    mode: TrainingMode | str | None,
    max_steps: int | None,
    force: bool,
    progress: Progress,
    started: float,
) -> TrainResult:
    report = progress
    with _quiet_libraries():
        plan = make_plan(workspace, recipe, resume=resume, mode=mode, max_steps=max_steps)
        with run_lock(plan.run_dir):
            return _execute(workspace, plan, force=force, progress=report, started=started)


def _execute(workspace: Workspace, plan: Plan, *, force: bool, progress: Progress, started: float) -> TrainResult:
    """Load the base, record the run (new, or running again when resumed), train and register; the run
    is marked failed when that raises, completed with its numbers when it returns."""
    from pipeline.base_model import import_bitsandbytes, load_base

    import_bitsandbytes()
    recipe = plan.recipe
    if plan.saved is not None:
        # config and data first: no need to load the model to know the run can't resume
        check_resumable(plan.saved, run_state(plan, plan.saved.base_fingerprint, plan.saved.base_model))
    progress(TrainProgress("load", message=f"loading {recipe.base_model}"))
    base = load_base(
        recipe.base_model, home=workspace.home.root, quantization=recipe.quantization, double_quant=recipe.double_quant
    )
    state = run_state(plan, base.fingerprint, recipe.base_model)
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


def _train_and_register(
    workspace: Workspace,
    plan: Plan,
    state: RunState,
    base: LoadedBase,
    *,
    force: bool,
    progress: Progress,
    started: float,
) -> TrainResult:
    """Steps 3-6 of the module docstring, on a loaded base and a recorded run."""
    recipe = plan.recipe
    notes = list(plan.notes)
    sets = tokenized(plan, base, notes)

    # 3. measure the base and the current adapter on today's eval split
    progress(TrainProgress("eval", message="evaluating the base model"))
    metrics: dict[str, dict[str, Any] | None] = {
        "base": measure(base.model, base, sets, recipe),
        "previous": None,
        "new": None,
    }
    current, model = measure_current(workspace, plan, base, sets, metrics, progress, notes)

    # 4. the trainable adapter: the parent's weights (continue) or a fresh LoRA (scratch); train the stages
    device = base.device
    checkpointing = gradient_checkpointing(recipe.train, device, base.model.config)
    notes.append(compute_notes(device, checkpointing))
    model = _trainable(plan, base, model, current, sets, metrics, progress, checkpointing=checkpointing.on)
    trainable, total = model.get_nb_trainable_parameters()
    results, resumed_from = run_stages(
        workspace, plan, state, model, base.tokenizer, sets.train, device, progress, checkpointing=checkpointing.on
    )
    notes += [note for result in results.values() for note in result.notes]

    # 5. measure the new adapter, apply the gate
    progress(TrainProgress("eval", message="evaluating the new adapter"))
    metrics["new"] = new = measure(model, base, sets, recipe)
    decision = gate_decision(
        new,
        current=metrics["previous"] if current is not None else None,
        base=metrics["base"] or {},
        min_improvement=recipe.min_improvement,
        max_source_regression=recipe.max_source_regression,
        max_forgetting=recipe.max_forgetting,
        min_preference_accuracy=recipe.min_preference_accuracy,
        force=force,
    )
    gate = {
        **decision.as_dict(),
        "min_improvement": recipe.min_improvement,
        "max_source_regression": recipe.max_source_regression,
        "max_forgetting": recipe.max_forgetting,
        "min_preference_accuracy": recipe.min_preference_accuracy,
        "force": force,
    }

    # 6. register
    progress(TrainProgress("register", message="registering the adapter"))
    wall = time.monotonic() - started + sum(r.earlier_seconds for r in results.values())
    version = register_adapter(workspace, plan, base, model, results, metrics, gate, decision, trainable)
    parameters = (int(trainable), int(total))
    return train_result(
        workspace, plan, version, decision, gate, metrics, results, resumed_from, sets, notes, wall, parameters
    )


def _trainable(
    plan: Plan,
    base: LoadedBase,
    model: Any,
    current: AdapterVersion | None,
    sets: EvalSets,
    metrics: dict[str, dict[str, Any] | None],
    progress: Progress,
    *,
    checkpointing: bool,
) -> Any:
    """``model`` with the adapter ``default`` to train: the parent's (continue; measured as the current
    adapter when it is that one) or a fresh LoRA (scratch)."""
    import transformers
    from peft import get_peft_model, prepare_model_for_kbit_training

    from pipeline import registry

    if base.quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    if plan.mode != TrainingMode.CONTINUE:
        transformers.set_seed(plan.recipe.train.seed)
        return get_peft_model(model, get_lora_config(plan.recipe.lora))
    parent = plan.parent
    if parent is None:  # make_plan falls back to scratch without one; a resumed run records its parent
        raise TrainingError(f"run {plan.run_id}: mode continue, but no parent adapter is recorded")
    try:
        model = registry.attach(
            model, parent, base_fingerprint=base.fingerprint, adapter_name="default", trainable=True
        )
    except PloraError as e:
        raise TrainingError(
            f"mode continue: can't load the parent adapter {parent.ref}: {e} "
            "(train with `--mode scratch` to start a new adapter line)"
        ) from e
    if current is not None and continuing_current(plan, current):
        progress(TrainProgress("eval", message=f"evaluating the current adapter {current.ref}"))
        metrics["previous"] = measure(model, base, sets, plan.recipe)
    return model


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
