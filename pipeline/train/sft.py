"""The SFT stage: supervised fine-tuning of the LoRA adapter on the profile's chats and notes.

Rows arrive tokenized (``input_ids`` + ``labels``, see pipeline.train.data.tokenize_lm): chat rows
with labels only on the assistant's tokens, text rows on every token. TRL's SFTTrainer keeps a
dataset that already has ``labels`` as it is, so chats and text train in one stage with the same
masking the evaluation uses. With ``train.packing`` on, rows are packed by TRL (padding-free, for
FlashAttention) or by pipeline.train.packing (one block per batch row, for every other attention).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.train.packing import PackedRowsCollator, PackingMode, pack_rows
from pipeline.train.resume import Checkpoint

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback
    from trl import SFTConfig


@dataclass
class StageResult:
    stage: str
    steps: int
    loss_history: list[dict[str, Any]]  # {"step": N, "loss": x} for every logged step, resumed ones included
    tokens: int  # input tokens seen (padding excluded)
    wall_seconds: float  # training time of the stage, earlier sessions of a resumed run included
    resumed_from_step: int | None = None
    earlier_seconds: float = 0.0  # the part of wall_seconds spent in earlier sessions
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "steps": self.steps,
            "loss_history": self.loss_history,
            "tokens": self.tokens,
            "wall_seconds": round(self.wall_seconds, 3),
            "resumed_from_step": self.resumed_from_step,
        }


def trainable_state(model: Any) -> dict[str, Any]:
    """The trainable tensors as they are now (to restore their dtype after TRL's bf16 cast)."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def keep_adapter_dtype(model: Any, saved: dict[str, Any]) -> None:
    """Undo TRL's cast of the LoRA weights to bf16 on a quantized model, putting back the exact saved
    tensors: on CPU the compute dtype is float32 and bf16 adapters would only lose precision (and a
    continued adapter would no longer start from its parent's exact weights)."""
    for name, param in model.named_parameters():
        if name in saved and param.dtype != saved[name].dtype:
            param.data = saved[name]


def quiet(trainer: Trainer) -> None:
    """No Trainer printing on stdout (``--json`` owns it) and no tqdm bars: progress goes through
    plora's own callback."""
    from transformers import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def run_trainer(trainer: Trainer, stage: str, resume_from: Checkpoint | None, clock: StageClock) -> StageResult:
    """``trainer.train()``, from ``resume_from`` when given (its hashes were verified by the caller)."""
    clock.start()
    output = trainer.train(resume_from_checkpoint=str(resume_from.path) if resume_from else None)
    state = trainer.state
    losses = [{"step": int(e["step"]), "loss": float(e["loss"])} for e in state.log_history if "loss" in e]
    del output
    return StageResult(
        stage=stage,
        steps=int(state.global_step),
        loss_history=losses,
        tokens=int(state.num_input_tokens_seen or 0),
        wall_seconds=clock(),
        resumed_from_step=resume_from.step if resume_from else None,
    )


class StageClock:
    """Training seconds of a stage: earlier sessions (from the resumed checkpoint) + this one."""

    def __init__(self, before: float = 0.0) -> None:
        self.before = before
        self.started: float | None = None

    def start(self) -> None:
        self.started = time.monotonic()

    def __call__(self) -> float:
        return self.before + (time.monotonic() - self.started if self.started is not None else 0.0)


def _sft_trainer_class() -> type[Trainer]:
    """TRL's SFTTrainer with plora's loss: the labelled tokens' NLL through ``pipeline.lm_head`` (only
    the labelled positions reach the output head, in checkpointed chunks), summed and divided by the
    labelled tokens of the whole optimizer step, as TRL and Trainer normalise it. TRL's entropy and
    token-accuracy metrics are not computed (they need every position's logits)."""
    from trl import SFTTrainer

    from pipeline.lm_head import has_plain_head, labelled_logprobs

    class PloraSFTTrainer(SFTTrainer):
        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            if return_outputs or "shift_labels" in inputs or not has_plain_head(model):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            inputs = dict(inputs)
            labels = inputs.pop("labels")
            ids = inputs.pop("input_ids")
            logprobs, mask = labelled_logprobs(model, ids, labels, **inputs)
            count = mask.sum() if num_items_in_batch is None else num_items_in_batch
            loss = -logprobs.sum() / torch_clamp(count)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            return loss

    return PloraSFTTrainer


def torch_clamp(count: Any) -> Any:
    """``count`` as a tensor of at least 1 (a batch without a labelled token gives a zero loss, not NaN)."""
    import torch

    return torch.as_tensor(count).clamp(min=1)


def train_sft(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    train: Dataset,
    *,
    args: SFTConfig,
    callbacks: list[TrainerCallback],
    resume_from: Checkpoint | None,
    clock: StageClock,
    keep_fp32: bool,
    packing: PackingMode = "off",
) -> StageResult:
    """Train ``model`` (a PeftModel whose adapter ``default`` is trainable) on ``train``; ``packing``
    as ``packing_mode`` decided it (``args`` made by ``sft_args`` with the same mode)."""
    collator = None
    if packing == "rows":
        assert args.max_length is not None  # sft_args always sets it
        train, collator = pack_rows(train, args.max_length), PackedRowsCollator(tokenizer.pad_token_id)
    saved = trainable_state(model) if keep_fp32 else {}
    trainer = _sft_trainer_class()(
        model=model,
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
        data_collator=collator,
        callbacks=callbacks,
    )
    keep_adapter_dtype(trainer.model, saved)
    quiet(trainer)
    return run_trainer(trainer, "sft", resume_from, clock)
