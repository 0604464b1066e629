"""``TrainResult``: what one ``plora train`` run did; ``as_dict()`` is the ``plora train --json`` document."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.evaluate import GateDecision


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
        general = {name: (m or {}).get("general_loss") for name, m in self.eval.items()}
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
            "general_loss": general,  # the forgetting probe (pipeline.probe)
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


def why_not_current(decision: GateDecision) -> str | None:
    """Why the new adapter is not current (None when it is and passed the gate)."""
    if decision.promote and decision.decision == "accepted":
        return None
    if decision.promote:
        return "promoted with --force although: " + "; ".join(decision.reasons)
    return "; ".join(decision.reasons)
