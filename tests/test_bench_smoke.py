"""Smoke check of the benchmarks: ``python -m bench --quick`` (in two halves, run side by side) completes
and reports every row.

Speeds are not asserted (they belong to the machine, not the code); only that each benchmark ran
and produced each of its rows in the documented format, in the JSON and the markdown it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pipeline.conftest import smollm2_models  # noqa: F401 - the session's SmolLM2 conversion

REPO = Path(__file__).resolve().parents[1]

RANKS = (1, 4, 8, 16, 64)
TARGETS = ("q,v", "all-linear")

EXPECTED = {
    "ingest": [
        "first ingest: documents/s",
        "first ingest: MB/s",
        "unchanged re-ingest: time vs first",
        "1% touched: time vs first",
        "5% touched: time vs first",
        "touched ingest: marginal cost per changed document vs first ingest's",
        "touched ingest: fixed cost of finding the changes",
        "1% touched: cost per changed document vs first ingest's",
        "child git processes left",
    ],
    "datasets": [
        "sft build: rows/s",
        "dpo build: rows/s",
        "kto build: rows/s",
        "rebuild of an unchanged store: time vs first build",
        "SFT token utilisation: packed (BFD) vs unpacked (pad to longest in batch)",
        "SFT token utilisation: packed (BFD) vs unpacked (pad to max_length)",
        "build (datasets_build.py): rows/s",
    ],
    "redaction": [
        "generated secret families: recall",
        "generated lookalike families: variants damaged",
        "public docs corpus (installed packages' docs): false positives",
        "credential canaries found: detect-secrets KeywordDetector (as .yaml) vs pipeline.redaction",
        "ingest of one 0.05 MB note with a distinct secret per KB: seconds",
        "ingest of one 0.25 MB note with a distinct secret per KB: seconds",
        "ingest of one 1 MB note with a distinct secret per KB: seconds",
        "ingest seconds per MB: 1 MB note vs 0.05 MB note",
    ],
    "training": [
        "tokens/s: plora train (packing on) vs reference QLoRA script",
        "tokens/s: plora train (packing off) vs reference QLoRA script",
        "tokens/s: plora packing on vs off",
        "SFT token utilisation of these chat rows: packed (BFD) vs padded per batch",
        "tokens/s: plora (packing off) vs reference without gradient checkpointing",
        "wall seconds: plora train end to end vs reference script",
        "GPU peak VRAM: plora train vs reference",
        "GPU MFU: plora train vs reference",
    ],
    "real_training": [
        "tokens/s: plora train vs reference QLoRA script",
        "peak RSS: plora train (whole command) vs reference QLoRA script",
        "eval loss: plora's adapter vs the base (held-out rows)",
    ],
    "memory": [
        "NF4 base: tensor bytes/param",
        "NF4 base (plora load_base): resident bytes/param",
        "NF4 base (textbook from_pretrained + BitsAndBytesConfig): resident bytes/param",
        "bf16 base: resident bytes/param",
        "NF4 base: peak bytes/param while loading",
        "training step peak: QLoRA vs full fine-tuning",
        "training step peak: textbook QLoRA (from_pretrained) vs full fine-tuning",
        "training step peak: LoRA (unquantized base) vs full fine-tuning",
        "training step peak: QLoRA vs LoRA",
    ],
    "lora_rank": [
        *(
            f"r={r} {t}: {what}"
            for t in TARGETS
            for r in RANKS
            for what in ("trainable %", "steps/s vs full fine-tuning", "adapter file vs full weights")
        ),
        *(f"Llama-2-7B shape, r={r} {t}: trainable %" for t in TARGETS for r in RANKS),
    ],
    "inference": [
        "latency: base (fp32)",
        "latency: base + unmerged adapter (fp32)",
        "latency: merged model (fp32)",
        "latency: NF4 base",
        "latency: NF4 base + unmerged adapter",
        "hot-swap profile vs reload base + adapter",
    ],
    "adaptation": [
        "held-out loss, chats: adapter vs base",
        "held-out loss, notes: adapter vs base",
        "fact recall (paraphrased questions, 4 options): adapter",
        "control facts never in the corpus: adapter",
        "voice: greedy replies opening with 'Short answer:': adapter",
        "preference: person's reply over a generic one, held-out pairs: adapter",
        "forgetting: general-text loss, adapter vs base",
        *(
            f"month 2 ({way}): {what}"
            for way in ("continue + replay", "scratch", "continue, no replay")
            for what in ("new-fact recall", "month-1 recall kept vs v1")
        ),
        *(
            f"cost, {run}: {what}"
            for run in ("month 1", "continue + replay", "scratch", "continue, no replay")
            for what in ("wall seconds of plora train", "peak RSS of plora train")
        ),
    ],
}
GPU_ONLY = {"GPU peak VRAM: plora train vs reference", "GPU MFU: plora train vs reference"}
KEYS = {"benchmark", "metric", "value", "unit", "baseline", "ratio", "target", "ok"}


# Two halves of about equal time, so the test suite's workers run them side by side.
GROUPS = (
    ("ingest", "training", "lora_rank", "inference", "adaptation"),
    ("datasets", "redaction", "real_training", "memory"),
)


def test_the_groups_cover_every_benchmark() -> None:
    from bench.__main__ import BENCHMARKS

    assert sorted(name for group in GROUPS for name in group) == sorted(BENCHMARKS) == sorted(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize("group", GROUPS, ids=["-".join(g[:2]) for g in GROUPS])
def test_quick_benchmarks_report_every_row(tmp_path: Path, smollm2_models: Path, group: tuple[str, ...]) -> None:  # noqa: F811
    out = tmp_path / "results"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "bench", "--quick", "--only", *group, "--out", str(out)]
    done = subprocess.run(
        [*argv, "--models", str(smollm2_models)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    order = [name for name in EXPECTED if name in group]  # the runner's canonical order
    stem = "latest-" + "-".join(order)
    document = json.loads((out / f"{stem}.json").read_text())
    assert document["quick"] is True and document["errors"] == {}
    assert document["benchmarks"] == order
    assert {"cpu", "cores", "ram_gib", "versions", "date"} <= set(document["machine"])
    rows = document["rows"]
    assert all(set(row) >= KEYS for row in rows)
    reported = [(row["benchmark"], row["metric"]) for row in rows]
    expected = [(benchmark, metric) for benchmark in order for metric in EXPECTED[benchmark]]
    assert sorted(reported) == sorted(expected)
    for row in rows:  # every row measured something (the GPU rows say why they couldn't on a CPU)
        if row["metric"] in GPU_ONLY:
            assert row["value"] is None and "--device cuda" in row["note"]
        else:
            assert isinstance(row["value"], int | float), row
        if row["target"] is not None and isinstance(row["value"], int | float):
            assert row["ok"] in (True, False), row

    table = (out / f"{stem}.md").read_text()
    assert all(f"| {benchmark} | {metric} |" in table for benchmark, metric in expected)
    assert "| benchmark | metric | value |" in done.stdout
    assert len(list(out.glob("run-*.json"))) == 1
