"""Inference overhead of an adapter, and hot-swapping profiles vs reloading the base.

On the benchmark model (``bench.common.MODELS["small"]``; the builtin tiny model for ``--quick``)
with two registered adapters (LoRA r=16 on q/v with random, non-zero weights: the cost of an adapter
doesn't depend on what it learned):

- greedy generation latency (a fixed chat prompt, exactly ``new_tokens`` new tokens) for the base,
  the base + the unmerged adapter (``registry.attach``) and the merged model (``plora adapters
  export --merged``, loaded back), all in full precision (fp32 on a CPU, bf16 on a GPU), and for the
  NF4 base with and without the adapter (plora's default); candidates alternate round by round, the
  ratios are medians of per-round ratios against the full-precision base (target: merged within
  noise, <= 1.05x);
- switching the active profile on a loaded base (``Profiles.use``, PEFT ``set_adapter``) against
  loading the base again with the other profile's adapter (``load_profiles``), as plora's config
  has it (NF4).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.common import Row, Settings, alternate, median, model_folder, quiet

PROMPT = "The BGP session to the transit flapped twice overnight. What should I check first?"


def _home(settings: Settings, folder: Path) -> Path:
    home = settings.work / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "chats.jsonl").write_text("", encoding="utf-8")
    (home / "plora.toml").write_text(
        f"""
[base_model]
name = "{folder}"
quantization = "nf4"

[[sources]]
name = "chats"
type = "jsonl"
path = "chats.jsonl"

[profiles.work]
sources = ["chats"]

[profiles.creative]
sources = ["chats"]
""",
        encoding="utf-8",
    )
    return home


def _register_adapters(workspace: Any, folder: Path, device: str) -> None:
    """Two adapters with random non-zero weights, registered and current for "work" and "creative"."""
    import torch
    from peft import LoraConfig, get_peft_model

    from pipeline import registry
    from pipeline.base_model import load_base

    base = load_base(str(folder), home=workspace.home.root, quantization="none", double_quant=False, device=device)
    for seed, profile in enumerate(("work", "creative")):
        torch.manual_seed(seed)
        model = get_peft_model(
            base.model,
            LoraConfig(
                r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM"
            ),
        )
        out = workspace.home.root / f"adapter-{profile}"
        model.save_pretrained(str(out))
        base.model = model.unload()
        registry.register(
            workspace,
            profile=profile,
            adapter_dir=out,
            parent_version=None,
            base_model=str(folder),
            base_fingerprint=base.fingerprint,
            snapshots={},
            lora={"r": 16, "alpha": 32.0},
            train={},
            metrics={},
            gate={"accepted": True, "reasons": []},
            run_id=None,
            promote=True,
        )


def _generator(model: Any, tokenizer: Any, device: str, new_tokens: int) -> Any:
    import torch

    batch = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}], add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    batch = {key: value.to(model.device) for key, value in batch.items()}
    model.eval()

    def generate() -> None:
        with torch.inference_mode():
            output = model.generate(
                **batch,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        if output.shape[1] - batch["input_ids"].shape[1] != new_tokens:
            raise RuntimeError(f"generated {output.shape[1] - batch['input_ids'].shape[1]} tokens, not {new_tokens}")
        if device == "cuda":
            torch.cuda.synchronize()

    return generate


def run(settings: Settings) -> list[Row]:
    from transformers import AutoModelForCausalLM

    from pipeline import registry
    from pipeline.base_model import load_base
    from pipeline.generate import load_profiles
    from pipeline.workspace import open_workspace

    folder = model_folder(settings, "small")
    device = "cuda" if settings.device == "cuda" else "cpu"
    new_tokens = 16 if settings.quick else 32
    rounds = settings.rounds or (2 if settings.quick else 15)
    home = _home(settings, folder)
    with quiet(), open_workspace(home) as workspace:
        _register_adapters(workspace, folder, device)
        work = registry.resolve(workspace, "work")
        merged_dir = registry.export(workspace, "work", settings.work / "merged", merged=True)

        def loaded(quantization: str) -> Any:
            return load_base(str(folder), home=home, quantization=quantization, double_quant=True, device=device)

        plain = loaded("none")
        tokenizer = plain.tokenizer
        adapted = registry.attach(loaded("none").model, work, base_fingerprint=plain.fingerprint)
        merged = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=plain.model.dtype, device_map={"": device})
        nf4 = loaded("nf4")
        nf4_adapted = registry.attach(loaded("nf4").model, work, base_fingerprint=plain.fingerprint)
        candidates = {
            name: _generator(model, tokenizer, device, new_tokens)
            for name, model in (
                ("base", plain.model),
                ("unmerged", adapted),
                ("merged", merged),
                ("nf4", nf4.model),
                ("nf4_unmerged", nf4_adapted),
            )
        }
        timing = alternate(candidates, rounds)

        profiles = load_profiles(workspace, ["work", "creative"])
        swaps = []
        for i in range(50 if not settings.quick else 10):
            started = time.perf_counter()
            profiles.use("creative" if i % 2 == 0 else "work")
            swaps.append(time.perf_counter() - started)
        reloads = []
        for i in range(3 if not settings.quick else 2):
            started = time.perf_counter()
            load_profiles(workspace, ["creative" if i % 2 == 0 else "work"])
            reloads.append(time.perf_counter() - started)

    per_token = {name: timing.median(name) / new_tokens * 1000 for name in candidates}
    name = "inference"
    precision = "bf16" if device == "cuda" else "fp32"
    return [
        Row(
            name,
            f"latency: base ({precision})",
            per_token["base"],
            "ms/token",
            note=f"greedy generation of {new_tokens} tokens after a {len(PROMPT)}-character chat prompt; median of "
            f"{rounds} alternating rounds; ratios are medians of per-round ratios against this row",
        ),
        Row(
            name,
            f"latency: base + unmerged adapter ({precision})",
            per_token["unmerged"],
            "ms/token",
            baseline=per_token["base"],
            ratio=timing.ratio("unmerged", "base"),
            note="LoRA r=16 on q/v through PEFT (registry.attach)",
        ),
        Row(
            name,
            f"latency: merged model ({precision})",
            per_token["merged"],
            "ms/token",
            baseline=per_token["base"],
            ratio=timing.ratio("merged", "base"),
            target="ratio <= 1.05",
            note="plora adapters export --merged, loaded with from_pretrained",
        ),
        Row(
            name,
            "latency: NF4 base",
            per_token["nf4"],
            "ms/token",
            baseline=per_token["base"],
            ratio=timing.ratio("nf4", "base"),
            note=f"against the {precision} base",
        ),
        Row(
            name,
            "latency: NF4 base + unmerged adapter",
            per_token["nf4_unmerged"],
            "ms/token",
            baseline=per_token["nf4"],
            ratio=timing.ratio("nf4_unmerged", "nf4"),
            note="against the NF4 base",
        ),
        Row(
            name,
            "hot-swap profile vs reload base + adapter",
            median(swaps) * 1000,
            "ms",
            baseline=median(reloads) * 1000,
            target="ratio <= 0.01",
            note="Profiles.use (PEFT set_adapter) on a loaded base with two adapters, against load_profiles "
            "(NF4 base loaded again + the adapter attached and verified)",
        ),
    ]
