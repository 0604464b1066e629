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
        del train["save_steps"], train["gradient_checkpointing"]  # how, not what, a run trains
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


# Without gradient checkpointing a Llama-shaped layer keeps about this many values per token and
# hidden unit for its backward pass (inputs of the norms, projections, attention and MLP, the MLP's
# wider intermediates): measured on SmolLM2-135M at 4 x 512 tokens, 4.2 GB over 30 layers in fp32.
ACTIVATION_VALUES_PER_HIDDEN = 30
CHECKPOINTING_ABOVE_BYTES = 1 << 30  # auto: checkpoint when a step would keep more activations than this


@dataclass(frozen=True)
class Checkpointing:
    on: bool
    why: str

    def note(self) -> str:
        return f"gradient checkpointing {'on' if self.on else 'off'} ({self.why})"


def activation_bytes(train: TrainConfig, model_config: Any, element_bytes: int) -> int:
    """About what one training step keeps for its backward pass without checkpointing (the text
    model's layers for a multimodal config, as ``pipeline.lm_head`` reads it)."""
    text = model_config.get_text_config()
    tokens = train.batch_size * train.max_length
    layers, hidden = getattr(text, "num_hidden_layers", 0), getattr(text, "hidden_size", 0)
    return tokens * layers * hidden * ACTIVATION_VALUES_PER_HIDDEN * element_bytes


def gradient_checkpointing(train: TrainConfig, device: str, model_config: Any) -> Checkpointing:
    """``train.gradient_checkpointing`` when set; else on a GPU always (memory is what limits QLoRA
    there), and on a CPU when a step would keep more than 1 GiB of activations. Recomputing each
    layer in the backward pass costs one more forward pass (15-30% of the speed, measured); keeping
    the activations is what makes training memory grow with the batch (SmolLM2-135M at 4 x 512:
    4.2 GB of a 5.7 GB peak, see docs/benchmarks.md, real_training). The output head's logits are
    never kept whole either way (pipeline.lm_head)."""
    from pipeline.base_model import compute_dtype_choice

    if train.gradient_checkpointing is not None:
        return Checkpointing(train.gradient_checkpointing, "train.gradient_checkpointing")
    if device.startswith("cuda"):
        return Checkpointing(True, "GPU memory")
    estimate = activation_bytes(train, model_config, compute_dtype_choice(device)[0].itemsize)
    size = f"a step would keep ~{estimate / 2**30:.1f} GiB of activations"
    if estimate > CHECKPOINTING_ABOVE_BYTES:
        return Checkpointing(True, f"{size}; train.gradient_checkpointing = false keeps them, 15-30% faster")
    return Checkpointing(False, f"{size}: recomputing them would cost 15-30% of the speed")


def compute_notes(device: str, checkpointing: Checkpointing) -> str:
    """What the run computes in and why, as one line for the run's notes and ``plora train``'s output."""
    from pipeline.base_model import compute_dtype_choice

    return f"compute on {device}: {compute_dtype_choice(device)[1]}; {checkpointing.note()}"


def _common_args(train: TrainConfig, output_dir: Path, device: str, checkpointing: bool) -> dict[str, Any]:
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
        "activation_checkpointing": checkpointing,
        "include_num_input_tokens_seen": "non_padding",
        "dataloader_num_workers": 0,
        "eval_strategy": "no",
    }


def sft_args(
    train: TrainConfig, output_dir: Path, device: str, packing: PackingMode = "off", *, checkpointing: bool
) -> SFTConfig:
    """SFT on pre-tokenized rows (``input_ids`` + ``labels``, assistant-only labels already applied):
    TRL leaves a dataset with a ``labels`` column as it is, so chat and text rows train together.
    TRL packs only in ``"padding_free"`` mode; ``"rows"`` rows arrive packed (pipeline.train.packing)."""
    from trl import SFTConfig

    return SFTConfig(
        **_common_args(train, output_dir, device, checkpointing),
        max_length=train.max_length,
        packing=packing == "padding_free",
        assistant_only_loss=False,
        completion_only_loss=False,
    )


def dpo_args(train: TrainConfig, output_dir: Path, device: str, *, checkpointing: bool) -> DPOConfig:
    from trl import DPOConfig

    return DPOConfig(**_common_args(train, output_dir, device, checkpointing), max_length=train.max_length)


def kto_args(train: TrainConfig, output_dir: Path, device: str, *, checkpointing: bool) -> KTOConfig:
    from trl import KTOConfig

    return KTOConfig(**_common_args(train, output_dir, device, checkpointing), max_length=train.max_length)
