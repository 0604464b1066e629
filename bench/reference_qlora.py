"""The plain reference for the training benchmark: the textbook QLoRA recipe, nothing of plora's.

    .venv/bin/python bench/reference_qlora.py --model DIR --data rows.jsonl --output-dir DIR \
        [--max-steps 20] [--batch-size 4] [--learning-rate 2e-4] [--max-length 1024] [--r 16] [--alpha 32] \
        [--dropout 0.05] [--target-modules q_proj,v_proj] [--seed 42] [--packing] \
        [--no-gradient-checkpointing] [--json FILE]

What the QLoRA paper, the PEFT/bitsandbytes docs and TRL's ``sft.py`` do: load the base with a
``BitsAndBytesConfig`` (NF4, double quantization, bf16 compute on a GPU, float32 on a CPU),
``prepare_model_for_kbit_training``, hand a ``LoraConfig`` to TRL's ``SFTTrainer`` together with the
rows as conversational ``messages`` (TRL applies the chat template and tokenizes), and train. TRL's
defaults are kept (no packing, gradient checkpointing on, LoRA weights cast to bf16 on a quantized
base), except what the benchmark sets the same on both sides: steps, batch size, learning rate,
``max_length``, LoRA r / alpha / dropout / targets, seed, and the optimizer (``paged_adamw_8bit``,
as plora and the QLoRA recipe use). Tokens are counted as plora counts them (non-padding input
tokens, ``include_num_input_tokens_seen="non_padding"``); the clock runs around ``trainer.train()``.
Prints (or writes) a JSON document: tokens, train_seconds, tokens_per_second, steps, loss, peak VRAM.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def _import_bitsandbytes() -> None:
    """bitsandbytes >= 0.49 may try to download a CPU kernel from the hub at import (through the
    optional `kernels` package); the benchmark runs offline, so keep `kernels` out of its reach."""
    if "bitsandbytes" in sys.modules:
        return
    hidden = "kernels" not in sys.modules
    if hidden:
        sys.modules["kernels"] = None  # type: ignore[assignment]
    import bitsandbytes  # noqa: F401

    if hidden:
        del sys.modules["kernels"]


def get_quantization_config(device: str) -> Any:
    import torch
    from transformers import BitsAndBytesConfig

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
    )


def get_lora_config(args: argparse.Namespace) -> Any:
    from peft import LoraConfig

    targets = args.target_modules if args.target_modules == "all-linear" else args.target_modules.split(",")
    return LoraConfig(
        r=args.r,
        lora_alpha=args.alpha,
        lora_dropout=args.dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )


def main(args: argparse.Namespace, callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Train; ``callbacks`` are extra TrainerCallbacks (the benchmark's step clock), not part of the recipe."""
    _import_bitsandbytes()
    import torch
    from datasets import load_dataset
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    started = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(
        args.model,
        quantization_config=get_quantization_config(device),
        dtype=torch.bfloat16 if device == "cuda" else torch.float32,
        device_map={"": 0 if device == "cuda" else "cpu"},
    )
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.gradient_checkpointing)
    dataset = load_dataset("json", data_files=str(args.data), split="train")
    training_args = SFTConfig(
        output_dir=str(args.output_dir),
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        learning_rate=args.learning_rate,
        optim="paged_adamw_8bit",
        gradient_checkpointing=args.gradient_checkpointing,
        max_length=args.max_length,
        packing=args.packing,
        bf16=device == "cuda",
        use_cpu=device == "cpu",
        seed=args.seed,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
    )
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=get_lora_config(args),
        callbacks=callbacks,
    )
    train_started = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - train_started
    trainable, total = trainer.model.get_nb_trainable_parameters()
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "device": device,
        "tokens": tokens,
        "train_seconds": train_seconds,
        "tokens_per_second": tokens / train_seconds if train_seconds else None,
        "steps": int(trainer.state.global_step),
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "trainable_parameters": int(trainable),
        "total_parameters": int(total),
        "peak_vram_bytes": torch.cuda.max_memory_allocated() if device == "cuda" else None,  # whole process
        "wall_seconds": time.perf_counter() - started,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a local causal LM folder (safetensors)")
    parser.add_argument("--data", type=Path, required=True, help='JSONL rows {"messages": [...]}')
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--gradient-accumulation-steps", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--r", type=int, default=16)
    parser.add_argument("--alpha", type=float, default=32)
    parser.add_argument("--dropout", type=float, default=0.05)
    parser.add_argument("--target-modules", default="q_proj,v_proj", help="comma-separated, or all-linear")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--packing", action="store_true", help="TRL packing (off in the textbook recipe)")
    parser.add_argument(
        "--no-gradient-checkpointing",
        dest="gradient_checkpointing",
        action="store_false",
        help="turn off gradient checkpointing (TRL's default is on)",
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--json", type=Path, default=None, help="write the result here instead of stdout")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    result = main(arguments)
    text = json.dumps(result, indent=2)
    if arguments.json:
        arguments.json.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
