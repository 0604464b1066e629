"""Training throughput: ``plora train`` against the textbook QLoRA script (bench/reference_qlora.py).

Same model, rows and hyper-parameters on both sides: a Llama built from config
(``bench.common.MODELS``: "small", ~16M parameters, on a CPU; "base", ~104M, on a GPU; the builtin
tiny model for ``--quick``) loaded in NF4, chat rows of mixed lengths, LoRA r=16 / alpha 32 /
dropout 0.05 on q_proj + v_proj (plora's defaults), batch 4 (8 on a GPU), the same learning rate,
``max_length``, seed, steps and optimizer. The rows are plora's own SFT snapshot of the generated
chats (built by ``plora datasets build``); the reference gets the same rows as ``messages``.

Four candidates run in turn, round after round (order rotated), in this process:

- ``plora``: ``train_profile`` (what ``plora train`` runs) with packing on (plora's default);
- ``plora_unpacked``: the same with ``train.packing = false``;
- ``reference``: the textbook recipe as TRL ships it (no packing, gradient checkpointing on);
- ``reference_no_ckpt``: the same without gradient checkpointing (plora turns it off on a CPU, where
  memory is not what limits), to show how much of the difference is that setting.

Throughput is non-padding input tokens per second of each training step, measured the same way on
both sides (plora's progress callback; the same clock as a TrainerCallback on the reference), and a
run's number is the median over its steps, the first left out (model loading, tokenization, plora's
evaluation before and after and registration are outside the clock); ratios are medians of
per-round ratios. On a GPU (``--device cuda``) it also reports peak VRAM
(``torch.cuda.max_memory_allocated`` over the run) and model FLOPs utilisation: 6 x parameters x
tokens/s over the GPU's peak dense bf16 FLOP/s (looked up by device name, or ``--peak-tflops``).
6N counts the weight gradients a LoRA run never computes, so it is the usual upper-bound convention,
comparable between the two sides.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Row, Settings, median, median_ratio, model_folder, model_parameters, quiet

# peak dense bf16 (fp16 where no bf16) tensor TFLOP/s, without sparsity; first matching name wins
PEAK_TFLOPS = (
    ("gh200", 989.0),
    ("h200", 989.0),
    ("h100 pcie", 756.0),
    ("h100 nvl", 835.0),
    ("h100", 989.0),
    ("h800", 989.0),
    ("b200", 2250.0),
    ("b100", 1750.0),
    ("a100", 312.0),
    ("a800", 312.0),
    ("l40s", 362.0),
    ("l40", 181.0),
    ("l4", 121.0),
    ("a6000", 155.0),
    ("rtx 4090", 165.0),
    ("rtx 3090", 71.0),
    ("v100", 125.0),
    ("t4", 65.0),
)


def peak_tflops(device_name: str, override: float | None = None) -> float | None:
    if override:
        return override
    name = device_name.lower()
    for key, value in PEAK_TFLOPS:
        if key in name:
            return value
    return None


@dataclass(frozen=True)
class Plan:
    conversations: int
    steps: int
    batch_size: int
    max_length: int
    rounds: int
    learning_rate: float = 2e-4
    r: int = 16
    alpha: float = 32
    dropout: float = 0.05
    seed: int = 42

    @classmethod
    def of(cls, settings: Settings) -> Plan:
        if settings.quick:
            return cls(conversations=80, steps=3, batch_size=4, max_length=256, rounds=settings.rounds or 1)
        if settings.device == "cuda":
            return cls(conversations=1500, steps=30, batch_size=8, max_length=1024, rounds=settings.rounds or 3)
        return cls(conversations=400, steps=10, batch_size=4, max_length=384, rounds=settings.rounds or 3)


def _config(base: str, plan: Plan) -> str:
    def profile(name: str, packing: bool) -> str:
        return f"""
[profiles.{name}]
sources = ["chats"]
mode = "scratch"
eval_percent = 3
include_unlabelled = true
lora = {{ r = {plan.r}, alpha = {plan.alpha}, dropout = {plan.dropout}, target_modules = ["q_proj", "v_proj"] }}
train = {{ max_steps = {plan.steps}, learning_rate = {plan.learning_rate}, batch_size = {plan.batch_size}, \
max_length = {plan.max_length}, packing = {str(packing).lower()}, seed = {plan.seed}, save_steps = 100000 }}
gate = {{ min_improvement = 0.0, max_source_regression = 100.0 }}
"""

    return f"""
[base_model]
name = "{base}"
quantization = "nf4"
double_quant = true

[[sources]]
name = "chats"
type = "jsonl"
path = "chats.jsonl"
{profile("packed", True)}{profile("unpacked", False)}"""


def prepare(settings: Settings, plan: Plan) -> tuple[Path, Path, Path]:
    """A home with the chats ingested and both profiles' datasets built; the model folder; the
    reference's rows file (the SFT snapshot's train rows as ``messages``)."""
    from bench.ingest import chat_lines, write_chats
    from pipeline.datasets import build_datasets
    from pipeline.ingest import ingest
    from pipeline.snapshots import latest
    from pipeline.workspace import open_workspace

    home = settings.work / "home"
    home.mkdir(parents=True, exist_ok=True)
    # Chats of 1-2 exchanges with log-normal lengths (1 byte = 1 token): rows from a sixth of max_length to
    # over it (a third are cut), so batches mix short and long rows, as a person's chat history does.
    write_chats(
        home / "chats.jsonl",
        chat_lines(
            plan.conversations, seed=9, user_bytes=plan.max_length // 12, reply_bytes=plan.max_length // 6, exchanges=2
        ),
    )
    folder = model_folder(settings, "base" if settings.device == "cuda" else "small")
    (home / "plora.toml").write_text(_config(str(folder), plan), encoding="utf-8")
    rows_file = settings.work / "rows.jsonl"
    with open_workspace(home) as workspace:
        ingest(workspace)
        for profile in ("packed", "unpacked"):
            build_datasets(workspace, profile)
        snapshot = latest(workspace, "unpacked", "sft")
        rows = snapshot.load()["train"]
        rows_file.write_text(
            "".join(json.dumps({"messages": row["messages"]}) + "\n" for row in rows), encoding="utf-8"
        )
    return home, folder, rows_file


def _cuda_reset(settings: Settings) -> int:
    """Collect what earlier runs left and reset the peak; returns the memory allocated now."""
    if settings.device != "cuda":
        return 0
    import torch

    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return int(torch.cuda.memory_allocated())


def _cuda_peak(settings: Settings, before: int) -> int | None:
    if settings.device != "cuda":
        return None
    import torch

    return int(torch.cuda.max_memory_allocated()) - before


def step_rate(rates: list[float | None]) -> float:
    """A run's throughput: the median of its per-step tokens/s, the first step (warm-up) left out. A
    median of steps shrugs off a burst of load from another process in the middle of a run."""
    usable = [rate for rate in rates[1:] if rate] or [rate for rate in rates if rate]
    return median(usable)


def step_clock() -> Any:
    """A TrainerCallback measuring tokens/s of every logged step, as plora's progress callback does
    (``pipeline.train.progress``), for the reference script."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.rates: list[float | None] = []
            self.last = (time.monotonic(), 0)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.last = (time.monotonic(), int(state.num_input_tokens_seen or 0))

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
        ) -> None:
            if not logs or "loss" not in logs:
                return
            now, tokens = time.monotonic(), int(state.num_input_tokens_seen or 0)
            self.rates.append((tokens - self.last[1]) / (now - self.last[0]) if now > self.last[0] else None)
            self.last = (now, tokens)

    return StepClock()


def plora_run(settings: Settings, home: Path, profile: str) -> dict[str, Any]:
    from pipeline.train import TrainProgress, train_profile
    from pipeline.workspace import open_workspace

    rates: list[float | None] = []

    def progress(event: TrainProgress) -> None:
        if event.step is not None:
            rates.append(event.tokens_per_second)

    before = _cuda_reset(settings)
    started = time.perf_counter()
    with open_workspace(home) as workspace:
        result = train_profile(workspace, profile, mode="scratch", force=True, progress=progress)
    return {
        "tokens": result.tokens_trained,
        "train_seconds": result.train_seconds,
        "rate": step_rate(rates),
        "wall_seconds": time.perf_counter() - started,
        "peak_vram_bytes": _cuda_peak(settings, before),
        "steps": result.steps.get("sft"),
    }


def reference_run(settings: Settings, plan: Plan, folder: Path, rows: Path, *, checkpointing: bool) -> dict[str, Any]:
    from bench import reference_qlora

    out = settings.work / "reference-out"
    argv = [
        "--model",
        str(folder),
        "--data",
        str(rows),
        "--output-dir",
        str(out),
        "--max-steps",
        str(plan.steps),
        "--batch-size",
        str(plan.batch_size),
        "--learning-rate",
        str(plan.learning_rate),
        "--max-length",
        str(plan.max_length),
        "--r",
        str(plan.r),
        "--alpha",
        str(plan.alpha),
        "--dropout",
        str(plan.dropout),
        "--target-modules",
        "q_proj,v_proj",
        "--seed",
        str(plan.seed),
        "--device",
        settings.device,
    ]
    if not checkpointing:
        argv.append("--no-gradient-checkpointing")
    clock = step_clock()
    before = _cuda_reset(settings)
    with contextlib.redirect_stdout(io.StringIO()):  # the Trainer prints its logs when tqdm is off
        result = reference_qlora.main(reference_qlora.parse_args(argv), callbacks=[clock])
    result["peak_vram_bytes"] = _cuda_peak(settings, before)  # over the whole run, as for plora
    result["rate"] = step_rate(clock.rates)
    return result


def row_utilisation(folder: Path, rows_file: Path, plan: Plan) -> dict[str, float]:
    """Token utilisation of the training rows, padded per batch vs packed (bench.datasets_build)."""
    from bench.datasets_build import utilisation
    from pipeline.base_model import load_tokenizer
    from pipeline.train.data import tokenize_lm

    rows = [json.loads(line) for line in rows_file.open(encoding="utf-8")]
    tokenized, _ = tokenize_lm(rows, load_tokenizer(str(folder), home=folder.parent), plan.max_length)
    return utilisation([len(ids) for ids in tokenized["input_ids"]], plan.max_length, plan.batch_size)


def run(settings: Settings) -> list[Row]:
    plan = Plan.of(settings)
    with quiet():
        home, folder, rows_file = prepare(settings, plan)
        candidates = {
            "plora": lambda: plora_run(settings, home, "packed"),
            "plora_unpacked": lambda: plora_run(settings, home, "unpacked"),
            "reference": lambda: reference_run(settings, plan, folder, rows_file, checkpointing=True),
            "reference_no_ckpt": lambda: reference_run(settings, plan, folder, rows_file, checkpointing=False),
        }
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in candidates}
        names = list(candidates)
        for round_ in range(plan.rounds):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                results[name].append(candidates[name]())
    rate = {name: [r["rate"] for r in runs] for name, runs in results.items()}
    parameters = model_parameters(folder)
    fill = row_utilisation(folder, rows_file, plan)
    what = (
        f"{parameters / 1e6:.1f}M-parameter Llama in NF4, {plan.steps} steps of batch {plan.batch_size}, "
        f"max_length {plan.max_length}, {sum(1 for _ in rows_file.open())} SFT rows of mixed lengths, "
        f"LoRA r={plan.r} on q/v; median of {plan.rounds} rounds"
    )
    name = "training"
    out = [
        Row(
            name,
            "tokens/s: plora train (packing on) vs reference QLoRA script",
            median(rate["plora"]),
            "tok/s",
            baseline=median(rate["reference"]),
            ratio=median_ratio(rate["plora"], rate["reference"]),
            target="ratio >= 1.0",
            note=what + "; reference = TRL SFTTrainer + PEFT + bitsandbytes as shipped "
            "(no packing, gradient checkpointing on)",
        ),
        Row(
            name,
            "tokens/s: plora train (packing off) vs reference QLoRA script",
            median(rate["plora_unpacked"]),
            "tok/s",
            baseline=median(rate["reference"]),
            ratio=median_ratio(rate["plora_unpacked"], rate["reference"]),
            target="ratio >= 1.0",
        ),
        Row(
            name,
            "tokens/s: plora packing on vs off",
            median(rate["plora"]),
            "tok/s",
            baseline=median(rate["plora_unpacked"]),
            ratio=median_ratio(rate["plora"], rate["plora_unpacked"]),
            target="ratio >= 1.0",
            note="packed blocks stay one per batch row (attention per block, not over the whole batch) unless the "
            "model runs FlashAttention",
        ),
        Row(
            name,
            "SFT token utilisation of these chat rows: packed (BFD) vs padded per batch",
            fill["packed_bfd"],
            "fraction",
            baseline=fill["unpacked_batch"],
            target="ratio >= 1.0",
            note=f"non-padding tokens / all tokens of the training rows above, in blocks of max_length "
            f"{plan.max_length} vs batches of {plan.batch_size} padded to their longest row",
        ),
        Row(
            name,
            "tokens/s: plora (packing off) vs reference without gradient checkpointing",
            median(rate["plora_unpacked"]),
            "tok/s",
            baseline=median(rate["reference_no_ckpt"]),
            ratio=median_ratio(rate["plora_unpacked"], rate["reference_no_ckpt"]),
            note="the reference with checkpointing off, as plora runs on a CPU: what is left is "
            "plora's own overhead or gain (fp32 LoRA weights on CPU, pre-tokenized rows)",
        ),
        Row(
            name,
            "wall seconds: plora train end to end vs reference script",
            median([r["wall_seconds"] for r in results["plora"]]),
            "s",
            baseline=median([r["wall_seconds"] for r in results["reference"]]),
            note="plora's includes loading, evaluating base and new adapter on the eval split, and registering; "
            "the reference's loading, tokenizing and training",
        ),
    ]
    out += _gpu_rows(settings, results, rate, parameters)
    return out


def _gpu_rows(
    settings: Settings, results: dict[str, list[dict[str, Any]]], rate: dict[str, list[float]], parameters: int
) -> list[Row]:
    name = "training"
    if settings.device != "cuda":
        note = "GPU only: python -m bench --device cuda --only training memory (bench/gpu_check.sh)"
        return [
            Row(name, "GPU peak VRAM: plora train vs reference", None, "GiB", note=note),
            Row(name, "GPU MFU: plora train vs reference", None, "fraction", note=note),
        ]
    import torch

    device_name = torch.cuda.get_device_name(0)
    peak = peak_tflops(device_name, settings.peak_tflops)
    vram = {key: median([r["peak_vram_bytes"] / 2**30 for r in runs]) for key, runs in results.items()}
    rows = [
        Row(
            name,
            "GPU peak VRAM: plora train vs reference",
            vram["plora"],
            "GiB",
            baseline=vram["reference"],
            note=f"{device_name}; torch.cuda.max_memory_allocated over the run (plora's includes its eval)",
        )
    ]
    if peak is None:
        rows.append(
            Row(
                name,
                "GPU MFU: plora train vs reference",
                None,
                "fraction",
                note=f"unknown peak FLOP/s for {device_name!r}: pass --peak-tflops",
            )
        )
    else:
        mfu = {key: [6 * parameters * r / (peak * 1e12) for r in rates] for key, rates in rate.items()}
        rows.append(
            Row(
                name,
                "GPU MFU: plora train vs reference",
                median(mfu["plora"]),
                "fraction",
                baseline=median(mfu["reference"]),
                ratio=median_ratio(mfu["plora"], mfu["reference"]),
                note=f"6 x {parameters / 1e6:.1f}M params x non-padding tokens/s / {peak:g} TFLOP/s "
                f"({device_name}, dense bf16)",
            )
        )
    return rows


if __name__ == "__main__":  # python -m bench.training [--quick]: this benchmark alone, rows as JSON
    import tempfile

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for row in run(Settings(quick=args.quick, device=args.device, work=Path(tmp), rounds=args.rounds)):
            print(json.dumps(row.as_dict()))
