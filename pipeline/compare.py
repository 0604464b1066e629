"""``plora eval REF [--against REF]``: two models of a profile side by side on its eval measures.

A model is a registered adapter version (``PROFILE`` for the current one, ``PROFILE@vN``) or the
base model (``base``; the default for ``against``). Both are measured now, on the profile of ``ref``:

- its eval split (the latest dataset snapshots' eval rows, tokenized for the base as training does):
  eval loss overall and per source, preference accuracy on the held-out ``dpo`` pairs;
- the forgetting probe's general-text loss (``pipeline.probe``), and the base's for reference;
- what the profile's eval gate would say about ``ref`` with ``against`` as the reference (the base
  model's numbers are always measured: the forgetting limit compares with them).

Nothing is built, trained or promoted: the snapshots are the ones the last ``plora datasets build``
(or ``plora train``) made. torch and friends are imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.errors import UsageError
from pipeline.evaluate import gate_decision
from pipeline.train.data import load_run_data, tokenize_lm
from pipeline.train.measure import measure_rows
from pipeline.train.progress import Progress, TrainProgress
from pipeline.train.recipe import Recipe

if TYPE_CHECKING:
    from pipeline.base_model import LoadedBase
    from pipeline.registry import AdapterVersion
    from pipeline.workspace import Workspace

BASE = "base"  # the word for the base model in place of an adapter ref


@dataclass
class Comparison:
    """``as_dict()`` is the ``plora eval --json`` document."""

    profile: str
    ref: str
    against: str
    base_model: str
    metrics: dict[str, dict[str, Any]]  # ref / against / "base" -> metrics (pipeline.evaluate.metrics_of)
    gate: dict[str, Any]
    eval_rows: int
    preference_pairs: int
    snapshots: dict[str, str]
    notes: list[str] = field(default_factory=list)

    def change(self) -> dict[str, Any]:
        """Relative change of ``ref`` against ``against`` (negative: lower loss / less likely), per measure."""

        def rel(new: Any, old: Any) -> float | None:
            if isinstance(new, int | float) and isinstance(old, int | float) and old:
                return round((new - old) / abs(old), 6)
            return None

        new, old = self.metrics[self.ref], self.metrics[self.against]
        return {
            "eval_loss": rel(new.get("eval_loss"), old.get("eval_loss")),
            "sources": {
                source: rel(loss, (old.get("sources") or {}).get(source))
                for source, loss in sorted((new.get("sources") or {}).items())
            },
            "general_loss": rel(new.get("general_loss"), old.get("general_loss")),
            "preference_accuracy": (
                round(new["preference_accuracy"] - old["preference_accuracy"], 6)
                if isinstance(new.get("preference_accuracy"), int | float)
                and isinstance(old.get("preference_accuracy"), int | float)
                else None
            ),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "ref": self.ref,
            "against": self.against,
            "base_model": self.base_model,
            "eval_rows": self.eval_rows,
            "preference_pairs": self.preference_pairs,
            "snapshots": self.snapshots,
            "models": self.metrics,
            "change": self.change(),
            "gate": self.gate,
            "notes": self.notes,
        }


def _resolve(workspace: Workspace, ref: str) -> AdapterVersion | None:
    from pipeline import registry

    return None if ref == BASE else registry.resolve(workspace, ref)


def compare(
    workspace: Workspace, ref: str, against: str | None = None, *, progress: Progress | None = None
) -> Comparison:
    """Measure ``ref`` and ``against`` (default: the base model) on ``ref``'s profile; see the module."""
    from pipeline.base_model import import_bitsandbytes, load_base

    report = progress or (lambda _: None)
    if ref == BASE:
        raise UsageError("plora eval: REF must be an adapter (PROFILE or PROFILE@vN); compare it --against base")
    from pipeline import registry

    version = registry.resolve(workspace, ref)
    other = _resolve(workspace, against or BASE)
    recipe = Recipe.from_config(workspace.config, version.profile)
    data, _, _ = load_run_data(workspace, recipe.profile, recipe.stages)
    dpo_eval = data.preference_eval.get("dpo", [])
    if not data.lm_eval and not dpo_eval:
        raise UsageError(
            f"profile {recipe.profile!r} has no eval rows to measure on: raise profiles.{recipe.profile}.eval_percent "
            "in plora.toml and run `plora datasets build`"
        )
    labels = {version.ref: version, **({other.ref: other} if other is not None else {BASE: None})}
    if len(labels) < 2:
        raise UsageError(f"plora eval: {ref} and {against} are the same version; pick two different ones")

    import_bitsandbytes()
    report(TrainProgress("load", message=f"loading {recipe.base_model}"))
    base = load_base(
        recipe.base_model, home=workspace.home.root, quantization=recipe.quantization, double_quant=recipe.double_quant
    )
    max_length, batch_size = recipe.train.max_length, recipe.train.batch_size
    eval_set, dropped = tokenize_lm(data.lm_eval, base.tokenizer, max_length) if data.lm_eval else ([], 0)
    notes = (
        [f"{dropped} eval rows had nothing to score within train.max_length={max_length} tokens and were left out"]
        if dropped
        else []
    )

    def measured(model: Any) -> dict[str, Any]:
        return measure_rows(model, base.tokenizer, eval_set, dpo_eval, max_length=max_length, batch_size=batch_size)

    report(TrainProgress("eval", message="evaluating the base model"))
    metrics: dict[str, dict[str, Any]] = {BASE: measured(base.model)}
    for label, adapter in labels.items():
        if adapter is not None:
            report(TrainProgress("eval", message=f"evaluating {label}"))
            metrics[label] = _measure_adapter(base, adapter, measured)
    reference = metrics[other.ref] if other is not None else None
    decision = gate_decision(
        metrics[version.ref],
        current=reference,
        base=metrics[BASE],
        min_improvement=recipe.min_improvement,
        max_source_regression=recipe.max_source_regression,
        max_forgetting=recipe.max_forgetting,
        min_preference_accuracy=recipe.min_preference_accuracy,
    )
    return Comparison(
        profile=recipe.profile,
        ref=version.ref,
        against=other.ref if other is not None else BASE,
        base_model=recipe.base_model,
        metrics=metrics,
        gate={**decision.as_dict(), "compared_with": other.ref if other is not None else BASE},
        eval_rows=len(eval_set),
        preference_pairs=len(dpo_eval),
        snapshots=data.fingerprints,
        notes=notes,
    )


def _measure_adapter(base: LoadedBase, version: AdapterVersion, measured: Any) -> dict[str, Any]:
    """``version`` on the base (verified, fingerprint-checked by ``registry.attach``), measured, taken off."""
    from pipeline import registry

    model = registry.attach(base.model, version, base_fingerprint=base.fingerprint, adapter_name="default")
    try:
        return measured(model)
    finally:
        model.unload()
