"""Memory: the base's resident size in NF4 vs bf16 vs fp32, and the peak of a training step for
QLoRA vs LoRA vs full fine-tuning of the same model (``bench.common.MODELS["base"]``, ~104M
parameters; the builtin tiny model for ``--quick``).

Every configuration is measured in a process of its own: the benchmark starts a fresh worker
(``python -m bench.memory --worker ...``) that imports torch / transformers / peft / bitsandbytes
once and then, on a CPU, forks one child per configuration. A forked child starts with the worker's
resident pages and its own peak (``ru_maxrss``) at that size, so ``ru_maxrss`` at the end minus the
RSS at the start is the configuration's own peak; nothing a previous configuration allocated can hide
in it. On a GPU the worker runs the configurations one after the other (CUDA can't be used across a
fork) and reads ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, relative to
what was allocated before.

Loads: ``fp32`` and ``bf16`` through ``from_pretrained(dtype=...)``; ``nf4`` through plora's
``load_base`` (NF4, double quantization). Reported per parameter of the unquantized model: the
resident size after loading (RSS) and the bytes of the model's tensors (parameters, buffers and the
NF4 quantization constants), which is what the 4-bit limit is about: 0.5 byte per weight plus
absmax constants (~0.016 byte with double quantization) plus the layers that stay unquantized.

Training step: two steps (forward, backward, ``torch.optim.AdamW``) on a random batch, with the
adapter (LoRA r=16 on q/v) or every weight trainable; gradient checkpointing as plora uses it
(on for CUDA, off on a CPU), the same for all three.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import REPO, Row, Settings, model_folder, model_parameters, peak_rss_bytes

LOADS = ("load_fp32", "load_bf16", "load_nf4", "load_nf4_plain")
STEPS = ("step_qlora", "step_qlora_plain", "step_lora", "step_full")


def _tensor_bytes(model: Any) -> int:
    """Bytes of parameters and buffers, plus the quantization state of bitsandbytes 4-bit weights."""
    seen: set[int] = set()
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if state is None:
            continue
        for tensor in (
            state.absmax,
            state.code,
            getattr(state.state2, "absmax", None),
            getattr(state.state2, "code", None),
            getattr(state, "offset", None),
        ):
            if tensor is not None and id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel() * tensor.element_size()
    return total


def _load(folder: Path, config: str, device: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    from pipeline.base_model import get_quantization_config, load_base

    place = "cuda" if device == "cuda" else "cpu"
    if config in ("load_nf4", "step_qlora"):
        return load_base(str(folder), home=folder.parent, quantization="nf4", double_quant=True, device=place).model
    if config in ("load_nf4_plain", "step_qlora_plain"):  # the textbook recipe: from_pretrained + BitsAndBytesConfig
        quantization = get_quantization_config("nf4", True, place)
        return AutoModelForCausalLM.from_pretrained(
            str(folder),
            quantization_config=quantization,
            dtype=quantization.bnb_4bit_compute_dtype,
            device_map={"": 0 if device == "cuda" else "cpu"},
        )
    if config == "load_fp32":
        dtype = torch.float32
    elif config == "load_bf16":
        dtype = torch.bfloat16
    else:  # LoRA / full fine-tuning base: what plora computes in (bf16 on CUDA, fp32 on a CPU)
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
    return AutoModelForCausalLM.from_pretrained(
        str(folder), dtype=dtype, device_map={"": 0 if device == "cuda" else "cpu"}
    )


def _step(model: Any, config: str, device: str, batch: int, length: int) -> int:
    """Two training steps; returns the trainable parameter count."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    checkpointing = device == "cuda"
    config = config.removesuffix("_plain")
    if config == "step_qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    elif checkpointing:
        model.gradient_checkpointing_enable()
    if config in ("step_qlora", "step_lora"):
        model = get_peft_model(
            model,
            LoraConfig(
                r=16, lora_alpha=32, lora_dropout=0.05, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
            ),
        )
    if checkpointing and config != "step_full":
        model.enable_input_require_grads()
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 256, (batch, length), generator=generator).to("cuda" if device == "cuda" else "cpu")
    for _ in range(2):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return sum(p.numel() for p in trainable)


def _status() -> dict[str, int]:
    """VmRSS, VmHWM (peak), RssAnon and RssFile of this process, in bytes."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            values[key] = int(line.split()[1]) * 1024
    return values


def _reset_peak() -> None:
    """Reset VmHWM to the current RSS (``ru_maxrss`` can't be reset; VmHWM is the same counter)."""
    Path("/proc/self/clear_refs").write_text("5")


def _touch(model: Any) -> None:
    """Read every weight once, as the first forward pass does: a safetensors checkpoint is memory-mapped
    and its pages only become resident when read."""
    import torch

    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.data.view(-1)[:: max(1, 4096 // max(tensor.element_size(), 1))].float().sum()


def measure(folder: Path, config: str, device: str, batch: int, length: int) -> dict[str, Any]:
    """One configuration in this (fresh, forked) process: memory relative to the state on entry."""
    import torch

    gc.collect()
    cuda = device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    start = _status()
    model = _load(folder, config, device)
    gc.collect()
    out: dict[str, Any] = {"config": config}
    if not cuda:
        out["load_peak_bytes"] = max(_status()["VmHWM"], peak_rss_bytes()) - start["VmRSS"]
        _touch(model)
        now = _status()
        out["resident_bytes"] = now["VmRSS"] - start["VmRSS"]
        out["anon_bytes"] = now["RssAnon"] - start["RssAnon"]
        out["file_bytes"] = now["RssFile"] - start["RssFile"]
        _reset_peak()
    else:
        out["load_peak_bytes"] = torch.cuda.max_memory_allocated() - before
        out["resident_bytes"] = torch.cuda.memory_allocated() - before
        torch.cuda.reset_peak_memory_stats()
    out["tensor_bytes"] = _tensor_bytes(model)
    if config in STEPS:
        out["trainable"] = _step(model, config, device, batch, length)
        out["peak_bytes"] = (
            (torch.cuda.max_memory_allocated() - before) if cuda else _status()["VmHWM"] - start["VmRSS"]
        )
    del model
    gc.collect()
    return out


def _warm_up(folder: Path, configs: list[str], device: str) -> None:
    """Run every configuration once on the builtin tiny model in the worker, before forking: the code
    each one pages in (libtorch, bitsandbytes, the model classes transformers imports when loading) is
    then resident in every child from the start, so a child's growth is its model's and step's memory,
    not a fixed ~30 MB of code that would weigh 0.3 B/param on this model and nothing on a 7B one.

    Runs on one thread: an OpenMP thread pool started before a fork hangs the forked child's first
    parallel region; each child sets its own thread count."""
    import ctypes

    import torch

    from pipeline.base_model import ensure_tiny_llama

    ensure_tiny_llama(folder)
    torch.set_num_threads(1)
    for config in configs:
        model = _load(folder, config, device)
        if config in STEPS:
            _step(model, config, device, 1, 8)
        del model
        gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def worker(folder: Path, configs: list[str], device: str, batch: int, length: int) -> list[dict[str, Any]]:
    from pipeline.base_model import import_bitsandbytes

    import_bitsandbytes()
    import peft  # noqa: F401 - imported before forking, so no child pays for it or counts it
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    if device != "cuda":
        threads = torch.get_num_threads()
        _warm_up(folder.parent / "warm-up", configs, device)
    results = []
    for config in configs:
        if device == "cuda":
            results.append(measure(folder, config, device, batch, length))
            continue
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: measure, report through the pipe, leave without cleanup handlers
            os.close(read)
            torch.set_num_threads(threads)
            code = 0
            try:
                data = json.dumps(measure(folder, config, device, batch, length)).encode()
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                data = json.dumps({"config": config, "error": f"{type(e).__name__}: {e}"}).encode()
                code = 1
            with os.fdopen(write, "wb") as handle:
                handle.write(data)
            os._exit(code)
        os.close(write)
        with os.fdopen(read, "rb") as handle:
            data = handle.read()
        os.waitpid(pid, 0)
        result = json.loads(data) if data else {"config": config, "error": "the child died without a result"}
        if "error" in result:
            raise RuntimeError(f"memory {config}: {result['error']}")
        results.append(result)
    return results


def run(settings: Settings) -> list[Row]:
    folder = model_folder(settings, "base")
    parameters = model_parameters(folder)
    batch, length = (2, 64) if settings.quick else (2, 256)
    out_file = settings.work / "memory.json"
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    command = [
        sys.executable,
        "-m",
        "bench.memory",
        "--worker",
        "--model",
        str(folder),
        "--device",
        settings.device,
        "--batch",
        str(batch),
        "--length",
        str(length),
        "--json",
        str(out_file),
        *LOADS,
        *STEPS,
    ]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory worker failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    results = {r["config"]: r for r in json.loads(out_file.read_text())}
    where = "GPU memory allocated (torch.cuda)" if settings.device == "cuda" else "resident set size"
    size = f"{parameters / 1e6:.1f}M-parameter Llama"
    name = "memory"

    def per_param(config: str, key: str) -> float:
        return results[config][key] / parameters

    nf4, fp32 = results["load_nf4"], results["load_fp32"]
    file_part = f"; {nf4['file_bytes'] / parameters:.2f} B/param of it file-backed" if "file_bytes" in nf4 else ""
    plain = results["load_nf4_plain"]
    plain_file_part = (
        f" ({plain['file_bytes'] / parameters:.2f} B/param of it file-backed)" if "file_bytes" in plain else ""
    )
    rows = [
        Row(
            name,
            "NF4 base: tensor bytes/param",
            per_param("load_nf4", "tensor_bytes"),
            "B/param",
            baseline=per_param("load_fp32", "tensor_bytes"),
            target="value <= 0.6",
            note=f"{size}; weights + NF4 constants (double quantization) + the unquantized embeddings, norms and "
            "lm_head, over the unquantized parameter count; baseline fp32",
        ),
        Row(
            name,
            "NF4 base (plora load_base): resident bytes/param",
            per_param("load_nf4", "resident_bytes"),
            "B/param",
            baseline=per_param("load_fp32", "resident_bytes"),
            target="ratio <= 0.2",
            note=f"{where} after loading (every weight read once) minus before, in a process of its own; baseline "
            f"fp32; the 4-bit limit is 0.125x fp32{file_part}; what is above the tensor bytes is the loader's "
            "heap and the code it imported",
        ),
        Row(
            name,
            "NF4 base (textbook from_pretrained + BitsAndBytesConfig): resident bytes/param",
            per_param("load_nf4_plain", "resident_bytes"),
            "B/param",
            baseline=per_param("load_fp32", "resident_bytes"),
            note=f"the same NF4 settings without plora's load_base{plain_file_part}: on a CPU the tensors left "
            "unquantized (embeddings, norms, lm_head) point into the memory-mapped checkpoint, which keeps every "
            "page read while quantizing resident; load_base copies them out and releases the mapping",
        ),
        Row(
            name,
            "bf16 base: resident bytes/param",
            per_param("load_bf16", "resident_bytes"),
            "B/param",
            baseline=per_param("load_fp32", "resident_bytes"),
        ),
        Row(
            name,
            "NF4 base: peak bytes/param while loading",
            per_param("load_nf4", "load_peak_bytes"),
            "B/param",
            baseline=per_param("load_fp32", "resident_bytes"),
            note="peak (ru_maxrss) of the loading process minus its size at start, against the fp32 model's "
            "resident size: the fp32 checkpoint is read and quantized layer by layer",
        ),
    ]
    del fp32
    peak = {config: results[config]["peak_bytes"] / 2**20 for config in STEPS}
    trainable = {config: results[config]["trainable"] for config in STEPS}
    step = f"2 steps of batch {batch} x {length} tokens, AdamW"
    rows += [
        Row(
            name,
            "training step peak: QLoRA vs full fine-tuning",
            peak["step_qlora"],
            "MiB",
            baseline=peak["step_full"],
            target="ratio <= 0.5",
            note=f"{size}, {step}; LoRA r=16 on q/v ({trainable['step_qlora'] / 1e6:.2f}M trainable) vs every "
            f"weight ({trainable['step_full'] / 1e6:.1f}M); peak {where} during the steps (VmHWM reset after "
            "loading) minus the process's size before loading: the model as loaded + the step",
        ),
        Row(
            name,
            "training step peak: textbook QLoRA (from_pretrained) vs full fine-tuning",
            peak["step_qlora_plain"],
            "MiB",
            baseline=peak["step_full"],
            note="the same step on the base loaded without load_base (checkpoint left memory-mapped)",
        ),
        Row(
            name,
            "training step peak: LoRA (unquantized base) vs full fine-tuning",
            peak["step_lora"],
            "MiB",
            baseline=peak["step_full"],
            target="ratio <= 1.0",
        ),
        Row(
            name,
            "training step peak: QLoRA vs LoRA",
            peak["step_qlora"],
            "MiB",
            baseline=peak["step_lora"],
            target="ratio <= 1.0",
        ),
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="memory benchmark worker (run by bench.memory.run)")
    parser.add_argument("--worker", action="store_true", required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("configs", nargs="+", choices=[*LOADS, *STEPS])
    args = parser.parse_args()
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    args.json.write_text(
        json.dumps(worker(args.model, args.configs, args.device, args.batch, args.length)), encoding="utf-8"
    )


if __name__ == "__main__":
    main()
