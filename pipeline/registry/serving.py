"""The serving check: would vLLM load this adapter as it is, and can llama.cpp (through plora's GGUF
export)? Recorded in each version's manifest at registration (``serving``), shown by ``plora adapters
verify`` and marked by ``plora adapters list``.

vLLM (its ``PEFTHelper`` and LoRA model loader) refuses DoRA, ``modules_to_save``, trained biases,
ranks above ``--max-lora-rank`` (one of ``VLLM_MAX_LORA_RANKS``, at most 512) and target modules its
model class doesn't map. llama.cpp takes A/B pairs of the base's GGUF tensors only, and plora
writes them for the architectures in ``pipeline.registry.architectures`` with a GGUF name, on a
base that is a GGUF file."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.registry.architectures import BaseFacts, base_facts
from pipeline.registry.lora_factors import adapter_config, representation_problems
from pipeline.registry.manifest import CONFIG_FILE, WEIGHTS_FILE, RuntimeCheck, ServingReport
from pipeline.registry.versions import AdapterVersion

VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vllm.config.lora.MaxLoRARanks


def _ranks(config: dict[str, Any]) -> list[int]:
    ranks = [config.get("r", 8), *(config.get("rank_pattern") or {}).values()]
    return [int(rank) for rank in ranks if isinstance(rank, int | float)]


def vllm_check(config: dict[str, Any], keys: Iterable[str], facts: BaseFacts | None, base: str) -> RuntimeCheck:
    keys = list(keys)
    arch = facts.architecture if facts else None
    problems = []
    if arch is None:
        what = f"architecture {facts.model_type!r}" if facts else "an architecture plora can't read locally"
        problems.append(f"base {base!r} has {what}; plora knows vLLM's LoRA modules of llama, mistral, qwen2/3, gemma")
    problems += representation_problems(config, keys, arch.modules if arch else frozenset())
    top = max(_ranks(config), default=0)
    fitting = [rank for rank in VLLM_MAX_LORA_RANKS if rank >= top]
    if not fitting:
        problems.append(f"rank {top} is above vLLM's largest --max-lora-rank ({VLLM_MAX_LORA_RANKS[-1]})")
    return RuntimeCheck(ok=not problems, problems=problems, max_lora_rank=fitting[0] if fitting else None)


def llama_cpp_check(config: dict[str, Any], keys: Iterable[str], facts: BaseFacts | None, base: str) -> RuntimeCheck:
    arch = facts.architecture if facts else None
    problems = []
    if facts is None or arch is None or arch.gguf_arch is None:
        what = f"architecture {facts.model_type!r}" if facts else "an architecture plora can't read locally"
        problems.append(f"base {base!r} has {what}; plora's GGUF export supports llama")
    elif facts.gguf_file is None:
        problems.append(
            f"base {base!r} is not a GGUF file: llama.cpp and Ollama need the base as GGUF "
            "(train on a .gguf base, e.g. base_model.name = 'smollm2-135m')"
        )
    problems += representation_problems(config, keys, arch.modules if arch else frozenset())
    return RuntimeCheck(ok=not problems, problems=problems)


def check(config: dict[str, Any], keys: Iterable[str], facts: BaseFacts | None, base: str) -> ServingReport:
    keys = list(keys)
    return ServingReport(
        vllm=vllm_check(config, keys, facts, base), llama_cpp=llama_cpp_check(config, keys, facts, base)
    )


def check_folder(home: Path, base_model: str, adapter_dir: Path) -> ServingReport:
    """The check of a PEFT folder about to be registered (its files were checked by then)."""
    from safetensors import safe_open

    config = json.loads((adapter_dir / CONFIG_FILE).read_bytes())
    with safe_open(str(adapter_dir / WEIGHTS_FILE), framework="numpy") as weights:
        keys = list(weights.keys())
    return check(config, keys, base_facts(home, base_model), base_model)


def check_version(home: Path, version: AdapterVersion) -> ServingReport:
    """The check of a verified version, from its files (for manifests written before the check)."""
    from pipeline.registry.lora_factors import weight_tensors

    config = adapter_config(version)
    return check(config, weight_tensors(version), base_facts(home, version.base_model), version.base_model)


def report_of(home: Path, version: AdapterVersion) -> tuple[ServingReport, bool]:
    """The recorded report, or one computed now for an older manifest; (report, recorded)."""
    manifest = version.require_manifest()
    if manifest.serving is not None:
        return manifest.serving, True
    return check_version(home, version), False
