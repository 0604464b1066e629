"""Training end to end on the builtin tiny-llama in real NF4, on CPU: scratch lowers eval loss, only
the LoRA weights change, continue starts from the parent's weights (with replay), the gate, DPO and
KTO stages, progress and the run's record in the store. Resume lives in test_train_resume.py.

Datasets come from ``save_snapshot`` below: small DatasetDicts written in the snapshot contract
(``datasets/<kind>/<fingerprint>/data`` + ``plora-snapshot.json``) and recorded in the store, so these
tests don't depend on the dataset builders."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import TrainingError
from pipeline.workspace import Workspace, open_workspace

REPO = Path(__file__).resolve().parents[2]

CONFIG = (
    """\
[base_model]
name = "builtin:tiny-llama"
quantization = "nf4"
double_quant = true

[[sources]]
name = "chats"
type = "jsonl"
path = "chats.jsonl"

[[sources]]
name = "notes"
type = "markdown"
path = "notes"

[profiles.work]
sources = ["chats", "notes"]
stages = {stages}
mode = "{mode}"
eval_percent = 20
lora = {{ r = 4, alpha = 8, dropout = {dropout}, target_modules = ["q_proj", "v_proj"] }}
train = {{ max_steps = {max_steps}, learning_rate = {lr}, batch_size = {batch_size}, max_length = 96, """
    """packing = {packing}, save_steps = {save_steps}, seed = 7, replay_fraction = {replay}{checkpointing} }}
gate = {{ min_improvement = 0.0, max_source_regression = {regression} }}
"""
)


def write_config(
    home: Path,
    *,
    stages: str = '["sft"]',
    mode: str = "scratch",
    max_steps: int = 12,
    lr: float = 1e-2,
    batch_size: int = 4,
    save_steps: int = 50,
    dropout: float = 0.0,
    replay: float = 0.5,
    regression: float = 0.5,
    packing: bool = False,
    checkpointing: bool | None = None,
) -> None:
    (home / "plora.toml").write_text(
        CONFIG.format(
            stages=stages,
            mode=mode,
            max_steps=max_steps,
            lr=lr,
            packing=str(packing).lower(),
            batch_size=batch_size,
            save_steps=save_steps,
            dropout=dropout,
            replay=replay,
            regression=regression,
            checkpointing="" if checkpointing is None else f", gradient_checkpointing = {str(checkpointing).lower()}",
        ),
        encoding="utf-8",
    )


# --- rows: a learnable little language (the builtin is random, so any regularity lowers loss) ------


def chat_rows(n: int, *, offset: int = 0, topic: str = "router") -> list[dict[str, Any]]:
    rows = []
    for i in range(offset, offset + n):
        messages = [
            {"role": "user", "content": f"How do I fix the {topic} {i}?"},
            {"role": "assistant", "content": f"Restart the {topic} {i}, then check the {topic} log."},
        ]
        if i % 3 == 0:
            messages.insert(0, {"role": "system", "content": "You are my helpful netops assistant."})
        rows.append({"messages": messages, "source": "chats", "ref": f"chats:{topic}-{i}"})
    return rows


def text_rows(n: int, *, offset: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "text": f"Runbook {i}: restart the router, then check the log of router {i}.",
            "source": "notes",
            "ref": f"notes:runbook-{i}.md",
        }
        for i in range(offset, offset + n)
    ]


def dpo_rows(n: int) -> list[dict[str, Any]]:
    return [
        {
            "prompt": [{"role": "user", "content": f"How do I fix the router {i % 5}?"}],
            "chosen": [{"role": "assistant", "content": f"Restart the router {i % 5}, then check the router log."}],
            "rejected": [{"role": "assistant", "content": "No idea, buy a new one!!"}],
            "source": "chats",
            "ref": f"chats:pair-{i}",
        }
        for i in range(n)
    ]


def kto_rows(n: int) -> list[dict[str, Any]]:
    good = "Restart the router, then check the router log."
    return [
        {
            "prompt": [{"role": "user", "content": f"How do I fix the router {i % 5}?"}],
            "completion": [{"role": "assistant", "content": good if i % 2 == 0 else "Whatever."}],
            "label": i % 2 == 0,
            "source": "chats",
            "ref": f"chats:kto-{i}",
        }
        for i in range(n)
    ]


# --- snapshots in the contract format ------------------------------------------------------------------


def _features(kind: str) -> Any:
    from datasets import Features, Value

    string = Value("string")
    messages = [{"role": string, "content": string}]
    columns = {
        "sft": {"messages": messages},
        "text": {"text": string},
        "dpo": {"prompt": messages, "chosen": messages, "rejected": messages},
        "kto": {"prompt": messages, "completion": messages, "label": Value("bool")},
    }[kind]
    return Features({**columns, "source": string, "ref": string})


def save_snapshot(
    workspace: Workspace, kind: str, train: list[dict[str, Any]], eval_: list[dict[str, Any]], profile: str = "work"
) -> str:
    """Write ``datasets/<kind>/<fp>/`` (data/ + plora-snapshot.json) and record it; returns the fp."""
    from datasets import Dataset, DatasetDict

    from storage.snapshots import record_snapshot

    body = json.dumps({"profile": profile, "kind": kind, "train": train, "eval": eval_}, sort_keys=True)
    fingerprint = hashlib.sha256(body.encode()).hexdigest()
    folder = workspace.home.datasets / kind / fingerprint
    if not folder.exists():
        schema = _features(kind)
        data = DatasetDict(
            {
                split: Dataset.from_dict({c: [row[c] for row in rows] for c in schema}, features=schema)
                for split, rows in (("train", train), ("eval", eval_))
            }
        )
        data.save_to_disk(str(folder / "data"), num_shards={"train": 1, "eval": 1})  # loadable when empty
        meta = {
            "kind": kind,
            "fingerprint": fingerprint,
            "profile": profile,
            "rows": {"train": len(train), "eval": len(eval_)},
            "builder_version": "test",
        }
        (folder / "plora-snapshot.json").write_text(json.dumps(meta), encoding="utf-8")
    with workspace.store.write() as session:
        record_snapshot(
            session,
            profile=profile,
            kind=kind,
            fingerprint=fingerprint,
            path=folder.relative_to(workspace.home.root).as_posix(),
            rows=len(train) + len(eval_),
            meta={"rows": {"train": len(train), "eval": len(eval_)}},
        )
    return fingerprint


def standard_snapshots(workspace: Workspace, *, month: int = 0, preference: bool = False) -> dict[str, str]:
    """30 chat + 8 text training rows (and a fifth as much eval) for "month" ``month``."""
    out = {
        "sft": save_snapshot(
            workspace, "sft", chat_rows(30, offset=100 * month), chat_rows(8, offset=100 * month + 50)
        ),
        "text": save_snapshot(
            workspace, "text", text_rows(8, offset=100 * month), text_rows(3, offset=100 * month + 50)
        ),
    }
    if preference:
        out["dpo"] = save_snapshot(workspace, "dpo", dpo_rows(12), dpo_rows(4))
        out["kto"] = save_snapshot(workspace, "kto", kto_rows(12), [])
    return out


# --- homes ------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def offline(no_network: None) -> None:
    """Every test here runs with the hub offline and no internet sockets (see tests/conftest.py)."""


def new_home(path: Path, models: Path, **config: Any) -> Path:
    path.mkdir(parents=True)
    shutil.copytree(models, path / "models")
    (path / "notes").mkdir()
    (path / "chats.jsonl").write_text("", encoding="utf-8")
    write_config(path, **config)
    return path


@dataclass
class Events:
    events: list[Any]

    def __call__(self, event: Any) -> None:
        self.events.append(event)

    def steps(self, stage: str) -> list[Any]:
        return [e for e in self.events if e.stage == stage and e.step is not None]


def run(home: Path, **kwargs: Any):
    from pipeline.train import train_profile

    with open_workspace(home, check_paths=False) as workspace:
        return train_profile(workspace, "work", **kwargs)


def adapter_tensors(folder: Path | str) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "adapter_model.safetensors"))


# --- tests ------------------------------------------------------------------------------------------------


def test_scratch_lowers_eval_loss_registers_and_records_the_run(tmp_path: Path, models_dir: Path) -> None:
    home = new_home(tmp_path / "home", models_dir, max_steps=12, save_steps=5)
    with open_workspace(home, check_paths=False) as workspace:
        snapshots = standard_snapshots(workspace)
    events = Events([])
    result = run(home, progress=events)

    out = result.as_dict()
    assert out["mode"] == "scratch" and out["stages"] == ["sft"] and not out["resumed"]
    assert out["eval_loss"]["previous"] is None
    assert out["eval_loss"]["new"] < out["eval_loss"]["base"] - 0.05
    assert set(out["source_eval_loss"]["new"]) == {"chats", "notes"}
    assert out["adapter"] == "work@v1" and out["promoted"] and out["current"] == "work@v1" and out["why"] is None
    assert out["gate"]["accepted"] and out["gate"]["compared_with"] == "base"
    # 2 layers x (q, v) x (A: 4x64 + B: 64x4 for q; A: 4x64 + B: 32x4 for v)
    assert out["trainable_parameters"] == 2 * (4 * 64 + 64 * 4 + 4 * 64 + 32 * 4)
    assert out["tokens_trained"] > 0 and out["wall_seconds"] > 0 and out["steps"] == {"sft": 12}
    assert [e["step"] for e in out["loss_history"]] == list(range(1, 13))
    assert out["snapshots"] == snapshots
    json.dumps(out)  # the --json document is plain JSON

    # progress: one event per step with loss and tokens/s, plus the eval phases
    steps = events.steps("sft")
    assert [e.step for e in steps] == list(range(1, 13)) and all(e.max_steps == 12 for e in steps)
    assert all(math.isfinite(e.loss) for e in steps) and steps[-1].tokens == out["tokens_trained"]
    assert any(e.stage == "eval" for e in events.events)

    # the run's row and folder
    from storage import runs
    from storage.models import RunStatus

    with open_workspace(home, check_paths=False) as workspace:
        with workspace.store.read() as session:
            row = runs.get_run(session, out["run_id"])
            assert row.status == RunStatus.completed and row.finished_at is not None
            assert [e["loss"] for e in row.metrics["loss_history"]] == [e["loss"] for e in out["loss_history"]]
            assert row.metrics["tokens"] == out["tokens_trained"] and row.metrics["wall_seconds"] > 0
            assert {c["step"] for c in row.metrics["checkpoints"] if c["path"].startswith("checkpoint")} == {5, 10, 12}
        from pipeline import registry

        version = registry.current(workspace, "work")
        assert version.manifest.run_id == out["run_id"] and version.manifest.snapshots == snapshots
        assert version.manifest.sources == {"chats": {"sft": 30}, "notes": {"text": 8}}
    # the forgetting probe is measured for both models, gated against the base, and on the model card
    general = out["general_loss"]
    assert general["previous"] is None and all(math.isfinite(general[k]) for k in ("base", "new"))
    assert any(check.startswith("general-text loss ") for check in out["gate"]["checks"]), out["gate"]
    assert out["gate"]["max_forgetting"] == 0.05
    card = (Path(version.path) / "README.md").read_text()
    assert "| measure | base model | this adapter |" in card
    assert f"| general-text loss (forgetting probe) | {general['base']:.4f} | {general['new']:.4f} |" in card
    run_dir = home / "runs" / out["run_id"]
    assert out["run_id"].startswith("work-") and (run_dir / "plora-run.json").is_file()
    assert (run_dir / "sft" / "checkpoint-12" / "plora-manifest.json").is_file()
    # the registered adapter is the run's final adapter, byte for byte
    assert (Path(version.path) / "adapter_model.safetensors").read_bytes() == (
        run_dir / "adapter" / "adapter_model.safetensors"
    ).read_bytes()
    # every LoRA B matrix moved away from its zero init: gradients reached every layer
    tensors = adapter_tensors(run_dir / "adapter")
    assert len(tensors) == 8 and all(t.abs().max() > 0 for name, t in tensors.items() if "lora_B" in name)


def test_only_lora_weights_change(tmp_path: Path, models_dir: Path) -> None:
    """The SFT stage on an NF4 base: base weights (dequantized 4-bit and plain) equal before and after."""
    import bitsandbytes.functional as bnbf
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training

    from pipeline.base_model import load_base
    from pipeline.config import LoraConfig, TrainConfig
    from pipeline.train.data import tokenize_lm
    from pipeline.train.recipe import get_lora_config, sft_args
    from pipeline.train.sft import StageClock, train_sft

    home = new_home(tmp_path / "home", models_dir)
    base = load_base("builtin:tiny-llama", home=home, quantization="nf4", double_quant=True)

    def frozen(model: Any) -> dict[str, torch.Tensor]:
        out = {}
        for module_name, module in model.named_modules():
            weight = getattr(module, "weight", None)
            name = module_name.replace(".base_layer", "")  # PEFT moves the wrapped layer one level down
            if weight is None or "lora_" in name or name in out:
                continue
            if getattr(weight, "quant_state", None) is not None:
                out[name] = bnbf.dequantize_4bit(weight.data, weight.quant_state).clone()
            else:
                out[name] = weight.detach().clone()
        return out

    model = prepare_model_for_kbit_training(base.model, use_gradient_checkpointing=False)
    before = frozen(model)
    assert sum(1 for n in before if n.endswith("_proj")) == 14
    model = get_peft_model(
        model, get_lora_config(LoraConfig(r=4, alpha=8.0, dropout=0.0, target_modules=["q_proj", "v_proj"]))
    )
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    train, _ = tokenize_lm(chat_rows(16) + text_rows(4), base.tokenizer, 96)
    settings = TrainConfig(
        max_steps=6,
        learning_rate=1e-2,
        batch_size=4,
        gradient_accumulation_steps=1,
        max_length=96,
        packing=False,
        seed=0,
        save_steps=100,
        replay_fraction=0.0,
    )
    train_sft(
        model,
        base.tokenizer,
        train,
        args=sft_args(settings, tmp_path / "out", "cpu", checkpointing=False),
        callbacks=[],
        resume_from=None,
        clock=StageClock(),
        keep_fp32=True,
    )

    after = frozen(model.get_base_model())
    assert set(after) == set(before)
    for name in before:
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=0, msg=name)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert set(trainable) == set(lora_before) and all("lora_" in n for n in trainable)
    assert all(p.dtype == torch.float32 for p in trainable.values())  # TRL's bf16 cast undone on CPU
    assert any(not torch.equal(trainable[n], lora_before[n]) for n in trainable if "lora_B" in n)


def test_gradient_checkpointing_changes_memory_not_the_training(tmp_path: Path, models_dir: Path) -> None:
    """Recomputing activations in the backward pass (forced on for the tiny model, whose activations
    are far below the automatic threshold) gives the same losses step for step: the gradients reach
    the adapter either way."""
    losses = {}
    for on in (None, True):
        home = new_home(tmp_path / f"home-{on}", models_dir, max_steps=4, checkpointing=on)
        with open_workspace(home, check_paths=False) as workspace:
            standard_snapshots(workspace)
        out = run(home).as_dict()
        (compute,) = [n for n in out["notes"] if n.startswith("compute on ")]
        if on:
            assert compute.endswith("gradient checkpointing on (train.gradient_checkpointing)")
        else:
            assert "gradient checkpointing off (a step would keep ~0.0 GiB of activations" in compute
        losses[on] = [e["loss"] for e in out["loss_history"]]
    assert losses[True] == pytest.approx(losses[None], rel=1e-4)
    assert losses[True][-1] < losses[True][0]


def test_gradient_checkpointing_turns_on_where_activations_would_not_fit_lightly() -> None:
    from transformers import LlamaConfig

    from pipeline.base_model import compute_dtype_choice
    from pipeline.config import TrainConfig
    from pipeline.train.recipe import gradient_checkpointing

    smollm2 = LlamaConfig(num_hidden_layers=30, hidden_size=576, intermediate_size=1536)
    big = TrainConfig(batch_size=4, max_length=512)
    small = TrainConfig(batch_size=1, max_length=128)
    choice = gradient_checkpointing(big, "cpu", smollm2)
    element = compute_dtype_choice("cpu")[0].itemsize  # fp32, or bf16 on a CPU that has it
    assert choice.on and f"~{4 * 512 * 30 * 576 * 30 * element / 2**30:.1f} GiB of activations" in choice.why
    assert not gradient_checkpointing(small, "cpu", smollm2).on
    assert gradient_checkpointing(small, "cuda", smollm2).on  # GPU memory is what limits there
    assert not gradient_checkpointing(TrainConfig(gradient_checkpointing=False), "cuda", smollm2).on
    assert gradient_checkpointing(TrainConfig(gradient_checkpointing=True), "cpu", smollm2).on


def test_continue_starts_from_the_parent_with_replay_and_the_gate_rejects_a_worse_adapter(
    tmp_path: Path, models_dir: Path
) -> None:
    home = new_home(tmp_path / "home", models_dir, max_steps=12)
    with open_workspace(home, check_paths=False) as workspace:
        month0 = standard_snapshots(workspace, month=0)
    first = run(home).as_dict()
    assert first["adapter"] == "work@v1" and first["promoted"]

    # month 1: new snapshots; continue from v1 on all of the new rows in one batch, one step, no dropout:
    # the first step's loss is the parent's loss on those rows, before any update
    write_config(home, mode="continue", max_steps=1, batch_size=64, lr=1e-2, replay=0.25)
    with open_workspace(home, check_paths=False) as workspace:
        standard_snapshots(workspace, month=1)
    second = run(home).as_dict()
    assert second["mode"] == "continue" and second["parent"] == "work@v1"
    assert [n for n in second["notes"] if not n.startswith("compute on ")] == []  # no fallback, nothing dropped
    assert second["replay"]["rows"] == round(0.25 * 38) and second["replay"]["pool"] == 38
    assert second["data"]["replay_rows"] == 10

    from pipeline import registry
    from pipeline.base_model import load_base
    from pipeline.evaluate import eval_loss
    from pipeline.train.data import load_run_data, tokenize_lm

    with open_workspace(home, check_paths=False) as workspace:
        parent = registry.resolve(workspace, "work@v1")
        data, _, _ = load_run_data(workspace, "work", ("sft",))
        from pipeline.train.replay import replay_sample, row_key

        replay, _ = replay_sample(
            workspace,
            parent,
            current=data.fingerprints,
            exclude={row_key(r) for r in data.lm_train + data.lm_eval},
            new_rows=len(data.lm_train),
            fraction=0.25,
            seed=7,
        )
        assert all(int(re.search(r"(\d+)(\.md)?$", r["ref"])[1]) < 100 for r in replay)  # month-0 rows only
        base = load_base("builtin:tiny-llama", home=home, quantization="nf4", double_quant=True)
        model = registry.attach(base.model, parent, base_fingerprint=base.fingerprint)
        train, _ = tokenize_lm(data.lm_train + replay, base.tokenizer, 96)
        parent_loss = eval_loss(model, train, base.tokenizer, max_length=96).loss
    first_step = second["loss_history"][0]["loss"]
    assert first_step == pytest.approx(parent_loss, rel=1e-4, abs=1e-4)
    # "previous" is v1 measured on today's eval split
    assert second["eval_loss"]["previous"] is not None

    # a destructive learning rate: the candidate is registered, rejected, and v-current stays
    write_config(home, mode="continue", max_steps=6, lr=3.0, replay=0.0)
    current_before = second["current"]
    third = run(home).as_dict()
    assert third["adapter_status"] == "rejected" and not third["promoted"]
    assert third["current"] == current_before and third["why"]
    assert third["gate"]["decision"] == "rejected" and third["gate"]["compared_with"] == "current"

    # --force promotes a rejected candidate anyway (when its loss is finite)
    forced = run(home, force=True).as_dict()
    assert forced["eval_loss"]["new"] > forced["eval_loss"]["previous"]  # still worse (deterministic seeds)
    assert forced["gate"]["decision"] == "forced" and forced["gate"]["reasons"]
    assert forced["promoted"] and forced["adapter_status"] == "accepted" and forced["current"] == forced["adapter"]
    assert forced["why"].startswith("promoted with --force")
    assert month0  # the month-0 snapshots were the replay pool above


def test_continue_without_a_current_adapter_falls_back_to_scratch(tmp_path: Path, models_dir: Path) -> None:
    """(With packing on, as in the default config: the pre-tokenized labels are packed as they are.)"""
    home = new_home(tmp_path / "home", models_dir, mode="continue", max_steps=2, packing=True)
    with open_workspace(home, check_paths=False) as workspace:
        standard_snapshots(workspace)
    out = run(home).as_dict()
    assert out["requested_mode"] == "continue" and out["mode"] == "scratch" and out["parent"] is None
    assert any("trains a fresh adapter (scratch)" in n for n in out["notes"]) and out["replay"] is None
    assert len(out["loss_history"]) == 2 and all(math.isfinite(e["loss"]) for e in out["loss_history"])
    assert out["tokens_trained"] > 0


def test_dpo_and_kto_stages_run_after_sft(tmp_path: Path, models_dir: Path) -> None:
    home = new_home(tmp_path / "home", models_dir, stages='["sft", "dpo"]', max_steps=4, lr=5e-3)
    with open_workspace(home, check_paths=False) as workspace:
        standard_snapshots(workspace, preference=True)
    events = Events([])
    dpo = run(home, progress=events).as_dict()
    assert dpo["stages"] == ["sft", "dpo"] and dpo["steps"] == {"sft": 4, "dpo": 4}
    assert [e["stage"] for e in dpo["loss_history"]] == ["sft"] * 4 + ["dpo"] * 4
    assert len(events.steps("dpo")) == 4
    accuracy = dpo["preference_accuracy"]
    assert set(accuracy) == {"base", "previous", "new"} and 0 <= accuracy["new"] <= 1
    assert dpo["data"]["dpo_rows"] == 12 and dpo["data"]["dpo_eval_pairs"] == 4
    # the registered adapter holds only the trained adapter (no DPO reference copy)
    with open_workspace(home, check_paths=False) as workspace:
        from pipeline import registry

        files = set(registry.resolve(workspace, dpo["adapter"]).manifest.files)
    assert "ref" not in files and all(not name.startswith("ref") for name in files)

    write_config(home, stages='["sft", "kto"]', max_steps=3, lr=5e-3)
    kto = run(home).as_dict()
    assert kto["stages"] == ["sft", "kto"] and kto["steps"] == {"sft": 3, "kto": 3}
    assert all(math.isfinite(e["loss"]) for e in kto["loss_history"])


def test_a_preference_stage_without_rows_is_skipped(tmp_path: Path, models_dir: Path) -> None:
    home = new_home(tmp_path / "home", models_dir, stages='["sft", "kto"]', max_steps=2)
    with open_workspace(home, check_paths=False) as workspace:
        standard_snapshots(workspace)
        save_snapshot(workspace, "kto", [], [])
    out = run(home).as_dict()
    assert out["stages"] == ["sft"] and out["stages_skipped"][0]["stage"] == "kto"


def test_no_sft_snapshot_is_a_clear_error(tmp_path: Path, models_dir: Path) -> None:
    home = new_home(tmp_path / "home", models_dir)
    with pytest.raises(TrainingError, match="plora datasets build"):
        run(home)


def test_continue_with_changed_lora_shape_is_a_clear_error(tmp_path: Path, models_dir: Path) -> None:
    home = new_home(tmp_path / "home", models_dir, max_steps=2)
    with open_workspace(home, check_paths=False) as workspace:
        standard_snapshots(workspace)
    run(home)
    (home / "plora.toml").write_text(
        (home / "plora.toml").read_text().replace("r = 4,", "r = 8,").replace('mode = "scratch"', 'mode = "continue"')
    )
    with pytest.raises(TrainingError, match=r"--mode scratch"):
        run(home)


def test_a_current_adapter_on_another_base_is_not_compared(tmp_path: Path, models_dir: Path) -> None:
    """After switching base models the current adapter can't be measured: the gate uses the base."""
    from pipeline.base.tiny_llama import build_tiny_llama

    home = new_home(tmp_path / "home", models_dir, max_steps=3)
    with open_workspace(home, check_paths=False) as workspace:
        standard_snapshots(workspace)
    assert run(home).as_dict()["current"] == "work@v1"
    build_tiny_llama(home / "otherbase", seed=999)
    config = home / "plora.toml"
    config.write_text(config.read_text().replace('name = "builtin:tiny-llama"', 'name = "otherbase"'))
    out = run(home).as_dict()
    assert out["eval_loss"]["previous"] is None and out["gate"]["compared_with"] == "base"
    assert any("work@v1 can't be evaluated" in note for note in out["notes"])
