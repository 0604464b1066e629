"""Measuring a run's models on today's eval split: the run's rows tokenized for the base, then eval
loss (overall, per source), preference accuracy and the forgetting probe's general-text loss of the
base, the current adapter and the new one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.errors import PloraError, TrainingError
from pipeline.evaluate import eval_loss, metrics_of, preference_accuracy
from pipeline.kinds import TrainingMode
from pipeline.probe import general_text_loss
from pipeline.train.data import tokenize_lm
from pipeline.train.plan import Plan
from pipeline.train.progress import Progress, TrainProgress
from pipeline.train.recipe import Recipe

if TYPE_CHECKING:
    from datasets import Dataset

    from pipeline.base_model import LoadedBase
    from pipeline.registry import AdapterVersion
    from pipeline.workspace import Workspace


@dataclass
class EvalSets:
    """The run's rows tokenized for this base: what SFT trains on and what every model is measured on."""

    train: Dataset
    eval: Dataset
    dpo_eval: list[dict[str, Any]]  # preference pairs: preference accuracy


def tokenized(plan: Plan, base: LoadedBase, notes: list[str]) -> EvalSets:
    recipe, data = plan.recipe, plan.data
    max_length = recipe.train.max_length
    train_set, dropped_train = tokenize_lm(data.lm_train + data.replay_rows, base.tokenizer, max_length)
    eval_set, dropped_eval = tokenize_lm(data.lm_eval, base.tokenizer, max_length)
    if dropped_train or dropped_eval:
        notes.append(
            f"{dropped_train} training and {dropped_eval} eval rows had nothing to learn within "
            f"train.max_length={max_length} tokens and were left out"
        )
    if len(train_set) == 0:
        raise TrainingError(
            f"profile {recipe.profile!r}: no training row has a token to learn within train.max_length={max_length}"
        )
    return EvalSets(train_set, eval_set, data.preference_eval.get("dpo", []))


def continuing_current(plan: Plan, current: AdapterVersion | None) -> bool:
    """Continue mode from the current adapter: it is measured once attached as the trainable adapter."""
    return (
        plan.mode == TrainingMode.CONTINUE
        and plan.parent is not None
        and current is not None
        and plan.parent.version == current.version
    )


def measure_current(
    workspace: Workspace,
    plan: Plan,
    base: LoadedBase,
    sets: EvalSets,
    metrics: dict[str, dict[str, Any] | None],
    progress: Progress,
    notes: list[str],
) -> tuple[AdapterVersion | None, Any]:
    """The profile's current adapter (None when there is none or it can't be measured on this base),
    measured into ``metrics["previous"]`` unless this run continues from it; and the base model again."""
    from pipeline import registry

    current = registry.current(workspace, plan.recipe.profile)
    model = base.model
    if current is None or continuing_current(plan, current):
        return current, model
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
        return None, model
    metrics["previous"] = measure(attached, base, sets, plan.recipe)
    return current, attached.unload()


def measure(model: Any, base: LoadedBase, sets: EvalSets, recipe: Recipe) -> dict[str, Any]:
    return measure_rows(
        model,
        base.tokenizer,
        sets.eval,
        sets.dpo_eval,
        max_length=recipe.train.max_length,
        batch_size=recipe.train.batch_size,
    )


def measure_rows(
    model: Any,
    tokenizer: Any,
    eval_rows: Dataset | list[dict[str, Any]],
    dpo_rows: list[dict[str, Any]],
    *,
    max_length: int,
    batch_size: int,
) -> dict[str, Any]:
    """One model's numbers (``pipeline.evaluate.metrics_of``): eval loss on ``eval_rows``, preference
    accuracy on ``dpo_rows`` (when there are any) and the forgetting probe."""
    loss = eval_loss(model, eval_rows, tokenizer, max_length=max_length, batch_size=batch_size)
    preference = (
        preference_accuracy(model, dpo_rows, tokenizer, max_length=max_length, batch_size=batch_size)
        if dpo_rows
        else None
    )
    general = general_text_loss(model, tokenizer, max_length=max_length, batch_size=batch_size)
    return metrics_of(loss, preference, general_loss=general)
