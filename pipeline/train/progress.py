"""Progress of a run, reported to a plain callable (the CLI draws it; tests record it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrainProgress:
    """One event: a training step of a stage, or a phase of the run (``step`` None)."""

    stage: str  # "sft" | "dpo" | "kto" | "eval" | "register"
    step: int | None = None
    max_steps: int | None = None
    loss: float | None = None
    tokens: int = 0  # input tokens seen in the stage so far
    tokens_per_second: float | None = None
    message: str = ""


Progress = Callable[[TrainProgress], None]


def progress_callback(stage: str, progress: Progress) -> Any:
    """A TrainerCallback that passes each logged step's loss, token count and tokens/s to ``progress``
    (the loss history itself is read from the Trainer's state, which a resumed run restores)."""
    from transformers import TrainerCallback

    class ReportProgress(TrainerCallback):
        def __init__(self) -> None:
            self.last_time = time.monotonic()
            self.last_tokens: int | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.last_time = time.monotonic()
            self.last_tokens = int(state.num_input_tokens_seen or 0)

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
        ) -> None:
            if not logs or "loss" not in logs:
                return
            tokens = int(state.num_input_tokens_seen or 0)
            now = time.monotonic()
            rate = None
            if self.last_tokens is not None and now > self.last_time:
                rate = (tokens - self.last_tokens) / (now - self.last_time)
            self.last_time, self.last_tokens = now, tokens
            progress(
                TrainProgress(
                    stage=stage,
                    step=int(state.global_step),
                    max_steps=int(state.max_steps),
                    loss=float(logs["loss"]),
                    tokens=tokens,
                    tokens_per_second=rate,
                )
            )

    return ReportProgress()
