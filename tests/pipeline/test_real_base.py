"""The whole first run on a real pretrained base, as a user runs it: ``plora init --example``, the base
set to SmolLM2-135M-Instruct (``smollm2-135m``), ``plora ingest``, ``plora train`` (which builds the
datasets itself) with stderr to a file, not a terminal. Then: the adapter's loss on the training rows is
below the base's, the file log shows progress lines, ``plora generate`` answers in English, and the
adapter folder loads in plain PEFT on the same base and gives the numbers plora measured."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pipeline.conftest import SMOLLM2, link_models

pytestmark = pytest.mark.slow

STEPS = 8


def plora(home: Path, *args: str, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PLORA_PROGRESS_INTERVAL": "0", "COLUMNS": "200"}
    env.pop("PLORA_HOME", None)
    env.pop("PLORA_STORE_URL", None)
    argv = [str(Path(sys.executable).with_name("plora")), *args, "--home", str(home)]
    if log is None:
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900, check=False)
    with log.open("w", encoding="utf-8") as err:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=err, text=True, env=env, timeout=900, check=False)
    done.stderr = log.read_text(encoding="utf-8")
    return done


def test_first_run_on_smollm2(tmp_path: Path, smollm2_models: Path, smollm2_folder: Path) -> None:
    home = tmp_path / "home"
    assert plora(home, "init", "--example").returncode == 0
    config = home / "plora.toml"
    text = config.read_text(encoding="utf-8").replace('name = "builtin:tiny-llama"', f'name = "{SMOLLM2}"')
    # a short first run: 128-token rows, batch 2, a learning rate that moves a 135M model in 8 steps
    text = text.replace(
        "train = { max_steps = 30, learning_rate = 2e-4, batch_size = 4, max_length = 1024, packing = true }",
        "train = { max_steps = 30, learning_rate = 1e-3, batch_size = 2, max_length = 128, packing = true }",
    )
    text = text.replace('stages = ["sft", "dpo"]', 'stages = ["sft"]', 1)
    config.write_text(text, encoding="utf-8")
    link_models(smollm2_models, home)
    assert plora(home, "ingest").returncode == 0

    log = tmp_path / "train.log"
    trained = plora(home, "train", "--profile", "work", "--max-steps", str(STEPS), "--json", log=log)
    assert trained.returncode == 0, trained.stderr[-3000:]
    result = json.loads(trained.stdout)
    assert result["adapter"] == "work@v1" and result["promoted"], result
    assert result["steps"]["sft"] == STEPS
    # the datasets were built by `plora train` itself, and the run says what it computes in and why
    assert "datasets: built new snapshots" in trained.stderr
    assert any(note.startswith("compute on cpu: ") for note in result["notes"]), result["notes"]
    # a log file sees progress: timestamped lines with the step, the loss and an ETA
    steps = re.findall(r"^\[\d\d:\d\d:\d\d\] sft loss (\d+\.\d+).*: (\d+)/(\d+) \(\d+%\)", trained.stderr, re.M)
    assert len(steps) >= STEPS // 2 and steps[-1][1:] == (str(STEPS), str(STEPS)), trained.stderr[-2000:]
    assert re.search(r"ETA \d+", trained.stderr)
    assert "evaluating the base model" in trained.stderr

    # eval loss of the new adapter below the base's, on the eval split plora reports...
    assert result["eval_loss"]["new"] < result["eval_loss"]["base"]

    # ...and on the training rows, with the adapter folder loaded by plain PEFT on the same base
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.evaluate import eval_loss
    from pipeline.snapshots import read_snapshot

    adapters = plora(home, "adapters", "list", "--json")
    assert adapters.returncode == 0, adapters.stderr
    snapshots = json.loads(plora(home, "datasets", "list", "--json").stdout)
    rows = [
        row
        for s in snapshots
        if s["profile"] == "work" and s["latest"] and s["kind"] in ("sft", "text")
        for row in read_snapshot(Path(s["path"])).load()["train"]
    ]
    # every 4th training row, chats and notes alike (all ~64 would take minutes in fp32 on one core)
    rows = rows[::4]
    assert {row.get("source") for row in rows} >= {"chats", "vault"}, {row.get("source") for row in rows}
    adapter_dir = home / "adapters" / "work" / "v1"
    assert (adapter_dir / "adapter_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(str(smollm2_folder))
    base = AutoModelForCausalLM.from_pretrained(str(smollm2_folder), dtype=torch.float32)
    before = eval_loss(base, rows, tokenizer, max_length=128).loss
    tuned = PeftModel.from_pretrained(base, str(adapter_dir))
    after = eval_loss(tuned, rows, tokenizer, max_length=128).loss
    assert before is not None and after is not None and after < before, (before, after)

    # generate answers in English words
    answer = plora(home, "generate", "--profile", "work", "--max-new-tokens", "24", "How do I restart a service?")
    assert answer.returncode == 0, answer.stderr
    words = re.findall(r"[A-Za-z]{2,}", answer.stdout)
    assert len(words) >= 5, answer.stdout
    common = {"the", "a", "to", "you", "is", "and", "of", "it", "can", "use", "with", "on", "for", "in", "this"}
    assert common & {w.lower() for w in words}, answer.stdout
