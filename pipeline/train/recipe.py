"""The recipe: what one run trains (a profile's validated config models, ``pipeline.config``'s
``LoraConfig`` and ``TrainConfig``, plus the command-line overrides), and the small helpers that
turn it into library objects (``get_lora_config``, ``sft_args``, ``dpo_args``, ``kto_args``).

``get_quantization_config`` lives in pipeline.base_model (``load_base`` uses it). What the config
hash covers is ``Recipe.hashed()``: everything that changes what a run computes. Left out on
purpose: ``save_steps`` (only how often checkpoints are written), the gate (applied after training,
with today's values) and the device (a run may resume on another machine; its numbers then match
within float tolerance, not bit for bit).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import Config, ConfigError, LoraConfig, TrainConfig
from pipeline.kinds import Quantization, Stage, TrainingMode

if TYPE_CHECKING:
    from peft import LoraConfig as PeftLoraConfig
    from trl import DPOConfig, KTOConfig, SFTConfig

    from pipeline.train.packing import PackingMode

RECIPE_VERSION = 1  # bump when the training code changes what a recipe computes
SAVE_TOTAL_LIMIT = 2  # checkpoints kept per stage: the newest can be incomplete, the one before is not


@dataclass(frozen=True)
class Recipe:
    """What ``plora train`` trains for one profile (config + command-line overrides)."""

    profile: str
    mode: TrainingMode  # requested (config or --mode)
    stages: tuple[Stage, ...]
    base_model: str
    quantization: Quantization
    double_quant: bool
    lora: LoraConfig
    train: TrainConfig
    min_improvement: float
    max_source_regression: float
    max_forgetting: float | None = None
    min_preference_accuracy: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in tuple(TrainingMode):
            raise ValueError(f"mode {self.mode!r}: expected 'scratch' or 'continue'")
        if (
            not self.stages
            or self.stages[0] != "sft"
            or any(s not in tuple(Stage) for s in self.stages)
            or len(self.stages) > 2
            or len(set(self.stages)) != len(self.stages)
        ):
            raise ValueError(f"stages {list(self.stages)}: expected ['sft'], ['sft', 'dpo'] or ['sft', 'kto']")
        if self.quantization not in tuple(Quantization):
            raise ValueError(f"base_model.quantization {self.quantization!r}: expected 'nf4' or 'none'")

        if "kto" in self.stages and self.train.batch_size < 2:
            raise ValueError(
                "train.batch_size must be >= 2 for the kto stage (its KL term compares completions within a batch)"
            )

    @classmethod
    def from_config(
        cls,
        config: Config,
        profile: str | None,
        *,
        mode: TrainingMode | str | None = None,
        max_steps: int | None = None,
    ) -> Recipe:
        """The profile's recipe; ``mode`` / ``max_steps`` override the config (command-line flags).
        A bad value is a ConfigError naming the key (exit 2)."""
        name, settings = config.profile(profile)
        try:
            train = settings.train
            if max_steps is not None:  # validated as the config is
                train = TrainConfig.model_validate({**train.model_dump(), "max_steps": max_steps})
            requested = mode or settings.mode
            if requested not in tuple(TrainingMode):
                raise ValueError(f"mode {requested!r}: expected 'scratch' or 'continue'")
            return cls(
                profile=name,
                mode=TrainingMode(requested),
                stages=tuple(settings.stages),
                base_model=config.base_model.name,
                quantization=config.base_model.quantization,
                double_quant=config.base_model.double_quant,
                lora=settings.lora,
                train=train,
                min_improvement=settings.gate.min_improvement,
                max_source_regression=settings.gate.max_source_regression,
                max_forgetting=settings.gate.max_forgetting,
                min_preference_accuracy=settings.gate.min_preference_accuracy,
            )
        except ValueError as e:
            raise ConfigError(config.file, f"profiles.{name}", str(e)) from e

    def hashed(self) -> dict[str, Any]:
        """The settings the config hash covers (JSON-ready, stable key order)."""
        train = self.train.model_dump()
        del train["save_steps"]
        lora = self.lora.model_dump()  # target_modules: a list of names, or "all-linear"
        return {
            "recipe_version": RECIPE_VERSION,
            "profile": self.profile,
            "mode": self.mode,
            "stages": list(self.stages),
            "base_model": {
                "name": self.base_model,
                "quantization": self.quantization,
                "double_quant": self.double_quant,
            },
            "lora": lora,
            "train": train,
        }

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.hashed(), sort_keys=True).encode()).hexdigest()

    def lora_dict(self) -> dict[str, Any]:
        return self.hashed()["lora"]

    def train_dict(self) -> dict[str, Any]:
        return self.train.model_dump()


# --- library objects ---------------------------------------------------------------------------------


def get_lora_config(lora: LoraConfig) -> PeftLoraConfig:
    """PEFT LoRA settings: rank r, scaling alpha / r, dropout on the adapter input, the target modules
    (``q_proj`` + ``v_proj`` by default, as in the LoRA paper; ``all-linear`` = every linear layer but
    the output head), no bias training."""
    from peft import LoraConfig

    targets = lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules)
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,  # type: ignore[arg-type]  # peft annotates int; a float scales the same
        lora_dropout=lora.dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )


def use_gradient_checkpointing(device: str) -> bool:
    """On for CUDA (GPU memory is what limits QLoRA there), off on a CPU: recomputing every layer's
    activations costs about a third more compute, and what they take (tens of MB per layer for a
    small model at 4 x 512 tokens) fits in a machine's RAM; the output head's logits, the big tensor,
    are never kept whole anyway (pipeline.lm_head)."""
    return device.startswith("cuda")


def compute_notes(device: str) -> str:
    """What the run computes in and why, as one line for the run's notes and ``plora train``'s output."""
    from pipeline.base_model import compute_dtype_choice

    checkpointing = (
        "gradient checkpointing on (GPU memory)"
        if use_gradient_checkpointing(device)
        else "gradient checkpointing off (a CPU has the RAM; recomputing costs ~30%)"
    )
    return f"compute on {device}: {compute_dtype_choice(device)[1]}; {checkpointing}"


def _common_args(train: TrainConfig, output_dir: Path, device: str) -> dict[str, Any]:
    import torch

    from pipeline.base_model import compute_dtype_choice

    cuda = device.startswith("cuda")
    dtype = compute_dtype_choice(device)[0]
    bf16 = dtype == torch.bfloat16
    return {
        "output_dir": str(output_dir),
        "max_steps": train.max_steps,
        "per_device_train_batch_size": train.batch_size,
        "gradient_accumulation_steps": train.gradient_accumulation_steps,
        "learning_rate": train.learning_rate,
        "seed": train.seed,
        "data_seed": train.seed,
        "optim": "paged_adamw_8bit",  # on CPU bitsandbytes falls back to the non-paged 8-bit AdamW
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": train.save_steps,
        "save_total_limit": SAVE_TOTAL_LIMIT,
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": not cuda,
        "bf16": bf16,
        "fp16": dtype == torch.float16,
        "activation_checkpointing": use_gradient_checkpointing(device),
        "include_num_input_tokens_seen": "non_padding",
        "dataloader_num_workers": 0,
        "eval_strategy": "no",
    }


def sft_args(train: TrainConfig, output_dir: Path, device: str, packing: PackingMode = "off") -> SFTConfig:
    """SFT on pre-tokenized rows (``input_ids`` + ``labels``, assistant-only labels already applied):
    TRL leaves a dataset with a ``labels`` column as it is, so chat and text rows train together.
    TRL packs only in ``"padding_free"`` mode; ``"rows"`` rows arrive packed (pipeline.train.packing)."""
    from trl import SFTConfig

    return SFTConfig(
        **_common_args(train, output_dir, device),
        max_length=train.max_length,
        packing=packing == "padding_free",
        assistant_only_loss=False,
        completion_only_loss=False,
    )


def dpo_args(train: TrainConfig, output_dir: Path, device: str) -> DPOConfig:
    from trl import DPOConfig

    return DPOConfig(**_common_args(train, output_dir, device), max_length=train.max_length)


def kto_args(train: TrainConfig, output_dir: Path, device: str) -> KTOConfig:
    from trl import KTOConfig

    return KTOConfig(**_common_args(train, output_dir, device), max_length=train.max_length)
