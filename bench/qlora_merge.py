"""Merging a QLoRA adapter: how close is each merged model to the model that was evaluated?

``python -m bench.qlora_merge [--steps N] [--home DIR]``: trains a small LoRA adapter on the NF4
SmolLM2-135M base (the example chats, 7 for training, 3 held out), registers it, exports it merged
both ways (``--merge-into full``: the full-precision base; ``--merge-into nf4``: the dequantized
NF4 weights) and compares each merged model with the NF4 base + adapter (what the eval gate saw):
logit differences and KL on the held-out chats, and the held-out loss of each. Writes
``bench/results/qlora_merge.json`` and ``.md``; docs/adapters.md quotes the numbers. CPU, a few
minutes."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from bench.common import REPO

SMOLLM2 = "smollm2-135m"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _chats() -> list[list[dict[str, str]]]:
    lines = (REPO / "examples" / "chats" / "labelled.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["messages"] for line in lines if line.strip()]


def _batches(tokenizer: Any, chats: list[list[dict[str, str]]], max_length: int) -> list[Any]:
    import torch

    out = []
    for chat in chats:
        ids = list(tokenizer.apply_chat_template(chat, return_dict=False))[:max_length]
        out.append(torch.tensor([ids]))
    return out


def _loss_and_logits(model: Any, batches: list[Any]) -> tuple[float, list[Any]]:
    import torch

    losses, logits = [], []
    with torch.no_grad():
        for ids in batches:
            result = model(input_ids=ids, labels=ids)
            losses.append(float(result.loss))
            logits.append(result.logits[0].float())
    return sum(losses) / len(losses), logits


def _compare(reference: list[Any], other: list[Any]) -> dict[str, float]:
    import torch

    diffs, kls = [], []
    for ref, got in zip(reference, other, strict=True):
        diffs.append(float((ref - got).abs().max()))
        p, q = torch.log_softmax(ref, -1), torch.log_softmax(got, -1)
        kls.append(float((p.exp() * (p - q)).sum(-1).mean()))
    return {"max_abs_logit_diff": max(diffs), "mean_kl_vs_nf4_adapter": sum(kls) / len(kls)}


def _train(home: Path, chats: list[list[dict[str, str]]], steps: int, max_length: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model

    from pipeline.base_model import load_base

    base = load_base(SMOLLM2, home=home, quantization="nf4", double_quant=True)
    model = get_peft_model(base.model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS))
    batches = _batches(base.tokenizer, chats, max_length)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    for step in range(steps):
        ids = batches[step % len(batches)]
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    out = home / "trained-adapter"
    model.save_pretrained(str(out))
    return out


def measure(home: Path, steps: int, max_length: int) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    from pipeline import registry
    from pipeline.base_model import load_base
    from pipeline.workspace import open_workspace

    (home / "plora.toml").write_text(
        f'[base_model]\nname = "{SMOLLM2}"\nquantization = "nf4"\ndouble_quant = true\n', encoding="utf-8"
    )
    chats = _chats()
    train, held_out = chats[:7], chats[7:]
    adapter = _train(home, train, steps, max_length)
    nf4 = load_base(SMOLLM2, home=home, quantization="nf4", double_quant=True)
    batches = _batches(nf4.tokenizer, held_out, max_length)
    with open_workspace(home) as workspace:
        version = registry.register(
            workspace,
            profile="work",
            adapter_dir=adapter,
            parent_version=None,
            base_model=SMOLLM2,
            base_fingerprint=nf4.fingerprint,
            snapshots={},
            lora={},
            train={"max_steps": steps},
            metrics={},
            gate={"accepted": True, "reasons": ["bench"]},
            run_id=None,
            promote=True,
        )
        results: dict[str, Any] = {"steps": steps, "max_length": max_length, "held_out_chats": len(held_out)}
        results["nf4_base_loss"], _ = _loss_and_logits(nf4.model, batches)
        fp32 = load_base(SMOLLM2, home=home, quantization="none", double_quant=False)
        results["full_base_loss"], _ = _loss_and_logits(fp32.model, batches)
        del fp32
        evaluated = registry.attach(nf4.model, version, base_fingerprint=nf4.fingerprint)
        results["nf4_adapter_loss"], reference = _loss_and_logits(evaluated, batches)
        for into in ("full", "nf4"):
            out = home / f"merged-{into}"
            registry.export(workspace, version.ref, out, merged=True, merge_into=into)
            merged = AutoModelForCausalLM.from_pretrained(str(out)).eval()
            loss, logits = _loss_and_logits(merged, batches)
            results[f"merged_{into}"] = {"held_out_loss": loss, **_compare(reference, logits)}
    return results


def _markdown(results: dict[str, Any]) -> str:
    rows = [
        "| model | held-out loss | max abs logit diff vs NF4 + adapter | mean KL vs NF4 + adapter |",
        "|---|---|---|---|",
        f"| full-precision base (no adapter) | {results['full_base_loss']:.4f} | | |",
        f"| NF4 base (no adapter) | {results['nf4_base_loss']:.4f} | | |",
        f"| NF4 base + adapter (what was evaluated) | {results['nf4_adapter_loss']:.4f} | 0 | 0 |",
    ]
    for into, label in (("full", "merged into the full-precision base"), ("nf4", "merged into the dequantized NF4")):
        m = results[f"merged_{into}"]
        numbers = f"{m['held_out_loss']:.4f} | {m['max_abs_logit_diff']:.4f} | {m['mean_kl_vs_nf4_adapter']:.2e}"
        rows.append(f"| {label} | {numbers} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.qlora_merge", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--home", type=Path, default=None, help="a plora home to work in (default: a temp one)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="plora-qlora-merge-") as tmp:
        home = args.home or Path(tmp)
        home.mkdir(parents=True, exist_ok=True)
        results = measure(home, args.steps, args.max_length)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "qlora_merge.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    table = _markdown(results)
    (args.out / "qlora_merge.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
