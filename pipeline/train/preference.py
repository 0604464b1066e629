"""The preference stages, after SFT: DPO on chosen/rejected pairs, or KTO on replies labelled
good/bad. Each continues training the same adapter.

The reference model is the adapter as SFT left it: given a PeftModel without a ``peft_config``,
TRL copies the ``default`` adapter into a frozen ``ref`` adapter and scores the reference with it.
That copy is dropped when the stage ends, so only ``default`` is saved and registered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.train.resume import Checkpoint
from pipeline.train.sft import StageClock, StageResult, keep_adapter_dtype, quiet, run_trainer, trainable_state

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase, TrainerCallback
    from trl import DPOConfig, KTOConfig

REF_ADAPTER = "ref"


def drop_reference_adapter(model: Any) -> None:
    if REF_ADAPTER in getattr(model, "peft_config", {}):
        model.delete_adapter(REF_ADAPTER)
    model.set_adapter("default")


def train_dpo(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    train: Dataset,
    *,
    args: DPOConfig,
    callbacks: list[TrainerCallback],
    resume_from: Checkpoint | None,
    clock: StageClock,
    keep_fp32: bool,
) -> StageResult:
    """DPO on ``prompt`` / ``chosen`` / ``rejected`` rows (conversational)."""
    from trl import DPOTrainer

    return _train_preference(
        DPOTrainer,
        "dpo",
        model,
        tokenizer,
        train,
        args=args,
        callbacks=callbacks,
        resume_from=resume_from,
        clock=clock,
        keep_fp32=keep_fp32,
    )


def train_kto(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    train: Dataset,
    *,
    args: KTOConfig,
    callbacks: list[TrainerCallback],
    resume_from: Checkpoint | None,
    clock: StageClock,
    keep_fp32: bool,
) -> StageResult:
    """KTO on ``prompt`` / ``completion`` / ``label`` rows (label True: a reply to encourage)."""
    from trl import KTOTrainer

    return _train_preference(
        KTOTrainer,
        "kto",
        model,
        tokenizer,
        train,
        args=args,
        callbacks=callbacks,
        resume_from=resume_from,
        clock=clock,
        keep_fp32=keep_fp32,
    )


def _train_preference(
    trainer_class: Any,
    stage: str,
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    train: Dataset,
    *,
    args: Any,
    callbacks: list[TrainerCallback],
    resume_from: Checkpoint | None,
    clock: StageClock,
    keep_fp32: bool,
) -> StageResult:
    """Both TRL preference trainers copy the adapter into a frozen reference adapter: drop it after."""
    saved = trainable_state(model) if keep_fp32 else {}
    trainer = trainer_class(
        model=model, args=args, train_dataset=train, processing_class=tokenizer, callbacks=callbacks
    )
    keep_adapter_dtype(trainer.model, saved)
    quiet(trainer)
    try:
        return run_trainer(trainer, stage, resume_from, clock)
    finally:
        drop_reference_adapter(model)
