"""LoRA vs full fine-tuning across ranks: trainable fraction, step throughput and adapter size.

For r in 1, 4, 8, 16, 64 and targets q_proj+v_proj (plora's default) and all-linear, on the
benchmark model (``bench.common.MODELS["small"]``, unquantized: fp32 on a CPU, bf16 on a GPU, so only
LoRA itself differs from full fine-tuning):

- trainable parameters as a fraction of all (PEFT's count, adapter included);
- training steps/s (forward, backward, AdamW) against full fine-tuning of the same model, timed
  alternately step by step (median of per-pair ratios);
- the adapter's file size (``adapter_model.safetensors`` as ``save_pretrained`` writes it) against
  the full model's weights file.

The fraction depends on the model's shape (LoRA adds r x (in + out) per target layer), so it is also
computed for a Llama-2-7B-shaped model (hidden 4096, MLP 11008, 32 layers, vocab 32000) from the
shapes alone: the range plora's docs quote for real bases.
"""

from __future__ import annotations

import copy
import gc
import time
from pathlib import Path
from typing import Any

from bench.common import Row, Settings, median, model_folder, quiet

RANKS = (1, 4, 8, 16, 64)
TARGETS = {"q,v": ["q_proj", "v_proj"], "all-linear": "all-linear"}
LLAMA_7B = {"hidden": 4096, "intermediate": 11008, "layers": 32, "heads": 32, "kv_heads": 32, "vocab": 32000}


def llama_fraction(shape: dict[str, int], r: int, targets: str) -> float:
    """Trainable fraction (LoRA / (base + LoRA)) of a Llama of ``shape``, from its layer shapes."""
    h, m, kv = shape["hidden"], shape["intermediate"], shape["hidden"] * shape["kv_heads"] // shape["heads"]
    linear = {
        "q_proj": (h, h),
        "k_proj": (h, kv),
        "v_proj": (h, kv),
        "o_proj": (h, h),
        "gate_proj": (h, m),
        "up_proj": (h, m),
        "down_proj": (m, h),
    }
    base = shape["layers"] * (sum(i * o for i, o in linear.values()) + 2 * h) + 2 * shape["vocab"] * h + h
    chosen = ("q_proj", "v_proj") if targets == "q,v" else tuple(linear)
    lora = shape["layers"] * sum(r * (linear[name][0] + linear[name][1]) for name in chosen)
    return lora / (base + lora)


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _trainer(model: Any, device: str, batch: int, length: int) -> Any:
    """A function doing one training step of ``model`` on a fixed random batch."""
    import torch

    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, 256, (batch, length), generator=torch.Generator().manual_seed(0))
    ids = ids.to("cuda" if device == "cuda" else "cpu")

    def step() -> None:
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)

    return step


def _seconds(step: Any) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def run(settings: Settings) -> list[Row]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = model_folder(settings, "small")
    device = settings.device
    batch, length = (2, 32) if settings.quick else (2, 256)
    pairs = settings.rounds or (1 if settings.quick else 3)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    rows: list[Row] = []
    with quiet():
        base = AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=dtype, device_map={"": 0 if device == "cuda" else "cpu"}
        )
        full_bytes = sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))
        full = copy.deepcopy(base)
        full_step = _trainer(full, device, batch, length)
        full_step()  # warm-up: optimizer state, first-call allocations
        for label, targets in TARGETS.items():
            for r in RANKS:
                model = get_peft_model(
                    copy.deepcopy(base),
                    LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM"),
                )
                trainable, total = model.get_nb_trainable_parameters()
                step = _trainer(model, device, batch, length)
                step()
                lora_s, full_s = [], []
                for i in range(pairs):  # alternate, starting side swapped every pair
                    if i % 2:
                        full_s.append(_seconds(full_step))
                        lora_s.append(_seconds(step))
                    else:
                        lora_s.append(_seconds(step))
                        full_s.append(_seconds(full_step))
                out = settings.work / f"adapter-{label}-{r}"
                model.save_pretrained(str(out))
                size = (out / "adapter_model.safetensors").stat().st_size
                config = f"r={r} {label}"
                speedup = median([f / lora for f, lora in zip(full_s, lora_s, strict=True)])
                rows += [
                    Row(
                        "lora_rank",
                        f"{config}: trainable %",
                        100 * trainable / total,
                        "%",
                        note=(
                            f"{total / 1e6:.1f}M-parameter Llama, {'bf16' if device == 'cuda' else 'fp32'}, batch "
                            f"{batch} x {length} tokens; median of {pairs} alternating step pairs"
                        )
                        if (label, r) == ("q,v", 1)
                        else "",
                    ),
                    Row(
                        "lora_rank",
                        f"{config}: steps/s vs full fine-tuning",
                        1 / median(lora_s),
                        "steps/s",
                        baseline=1 / median(full_s),
                        ratio=speedup,
                    ),
                    Row(
                        "lora_rank",
                        f"{config}: adapter file vs full weights",
                        size / 2**20,
                        "MiB",
                        baseline=full_bytes / 2**20,
                    ),
                ]
                del model, step
                gc.collect()
        del full, full_step, base
        gc.collect()
    for label in TARGETS:
        for r in RANKS:
            rows.append(
                Row(
                    "lora_rank",
                    f"Llama-2-7B shape, r={r} {label}: trainable %",
                    100 * llama_fraction(LLAMA_7B, r, label),
                    "%",
                    note="computed from the layer shapes (no weights): LoRA adds r x (in + out) per target"
                    if (label, r) == ("q,v", 1)
                    else "",
                )
            )
    return rows
