"""Export folders for serving runtimes: GGUF (llama.cpp / Ollama / LM Studio; adapter or merged) and
vLLM. Each folder gets ``README.txt`` with the exact commands and ``plora-export.json`` (which
adapter and manifest, on which base, what was written: ``ExportRecord``).

The merge base (``MergeBase``): ``full`` merges into the base's own weights (for a GGUF base, its
weights dequantized: exactly what PEFT loads in full precision); ``nf4`` first replaces every
linear weight of the decoder by its NF4 round trip, the weights a QLoRA adapter was trained and
evaluated on (``nf4_weights``). docs/adapters.md has the measurements behind the choice.

torch / bitsandbytes / gguf are imported inside the functions."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from pipeline.base_model import load_base
from pipeline.errors import UsageError
from pipeline.integrity import atomic_write, canonical_json
from pipeline.kinds import Quantization
from pipeline.registry.architectures import base_facts
from pipeline.registry.gguf_adapter import ADAPTER_FILE, INSTRUCTIONS, gguf_base, write_adapter, write_runtime_files
from pipeline.registry.gguf_merge import MERGED_FILE, write_merged
from pipeline.registry.lora_factors import adapter_config
from pipeline.registry.manifest import CONFIG_FILE, WEIGHTS_FILE, plora_version
from pipeline.registry.serving import report_of
from pipeline.registry.verification import read_checked
from pipeline.registry.versions import AdapterVersion
from pipeline.workspace import Workspace
from storage.models import utcnow

if TYPE_CHECKING:
    import torch

EXPORT_MANIFEST = "plora-export.json"


class ExportFormat(StrEnum):
    PEFT = "peft"  # the version's PEFT folder (or --merged: a transformers model)
    GGUF = "gguf"  # llama.cpp adapter GGUF + Modelfile (or --merged: one GGUF model)
    VLLM = "vllm"  # what vLLM's --lora-modules / load_lora_adapter take


class MergeBase(StrEnum):
    FULL = "full"  # the base's own full-precision weights
    NF4 = "nf4"  # the base's linear weights after the NF4 round trip (what a QLoRA adapter saw)


class ExportRecord(BaseModel):
    """``plora-export.json``: what an export wrote, from which adapter, on which base."""

    model_config = ConfigDict(frozen=True, extra="allow")

    format: str
    adapter: str
    adapter_manifest_sha256: str | None
    base_model: dict[str, Any]
    created_at: str
    plora_version: str
    merged_into: MergeBase | None = None  # for a merged export
    files: list[str] = []

    def write(self, folder: Path) -> None:
        atomic_write(folder / EXPORT_MANIFEST, canonical_json(self.model_dump(mode="json")))

    @classmethod
    def read(cls, folder: Path) -> ExportRecord:
        return cls.model_validate(json.loads((folder / EXPORT_MANIFEST).read_bytes()))


def record(version: AdapterVersion, fmt: str, base: dict[str, Any], **fields: Any) -> ExportRecord:
    return ExportRecord(
        format=fmt,
        adapter=version.ref,
        adapter_manifest_sha256=version.manifest_sha256,
        base_model={"name": version.base_model, "fingerprint": version.base_fingerprint, **base},
        created_at=utcnow().isoformat(),
        plora_version=plora_version(),
        **fields,
    )


def nf4_weights(workspace: Workspace, version: AdapterVersion) -> dict[str, torch.Tensor]:
    """Every NF4-quantized linear weight of the base, dequantized (module name -> float32, out x in):
    the base as ``[base_model] quantization = "nf4"`` loads it (``double_quant`` from plora.toml)."""
    import bitsandbytes as bnb

    loaded = load_base(
        version.base_model,
        home=workspace.home.root,
        quantization=Quantization.NF4,
        double_quant=workspace.config.base_model.double_quant,
    )
    weights = {}
    for name, module in loaded.model.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            weight: Any = module.weight  # a bitsandbytes Params4bit, with its quant_state
            weights[name] = bnb.functional.dequantize_4bit(weight.data, weight.quant_state).float().cpu()
    del loaded
    return weights


def write_gguf(
    workspace: Workspace, version: AdapterVersion, tmp: Path, *, merged: bool, dtype: str, merge_into: MergeBase
) -> ExportRecord:
    base = gguf_base(workspace.home.root, version)
    base_info = {"gguf_file": str(base.file), "architecture": base.gguf_arch}
    if not merged:
        details = write_adapter(version, base, tmp / ADAPTER_FILE)
        write_runtime_files(tmp, version, model=str(base.file), adapter=ADAPTER_FILE)
        files = [ADAPTER_FILE, "Modelfile", INSTRUCTIONS]
        return record(version, "plora-gguf-adapter/1", base_info, files=files, adapter_gguf=details)
    replaced = None
    if merge_into is MergeBase.NF4:
        replaced = {name: weight.numpy() for name, weight in nf4_weights(workspace, version).items()}
    details = write_merged(version, base, tmp / MERGED_FILE, dtype=dtype, replaced=replaced)
    write_runtime_files(tmp, version, model=f"./{MERGED_FILE}", adapter=None)
    files = [MERGED_FILE, "Modelfile", INSTRUCTIONS]
    return record(version, "plora-gguf-merged/1", base_info, files=files, merged_into=merge_into, merged_gguf=details)


def vllm_base_folder(workspace: Workspace, version: AdapterVersion) -> Path | None:
    """The local Hugging Face folder vLLM serves the base from (a GGUF base's converted folder)."""
    from pipeline.base.gguf import folder_problem, gguf_folder
    from pipeline.base_model import models_dir

    facts = base_facts(workspace.home.root, version.base_model)
    if facts is None:
        return None
    if facts.gguf_file is not None:
        folder = gguf_folder(models_dir(workspace.home.root), version.base_fingerprint)
        return folder if folder_problem(folder, version.base_fingerprint) is None else None
    return facts.folder


def write_vllm(workspace: Workspace, version: AdapterVersion, tmp: Path) -> ExportRecord:
    report, _ = report_of(workspace.home.root, version)
    if not report.vllm.ok:
        raise UsageError(f"adapter {version.ref}: vLLM would not load it: {'; '.join(report.vllm.problems)}")
    max_rank = (report.vllm.model_extra or {}).get("max_lora_rank") or 16
    folder = vllm_base_folder(workspace, version)
    config = adapter_config(version)
    config.pop("runtime_config", None)
    config["inference_mode"] = True
    if folder is not None:
        config["base_model_name_or_path"] = str(folder)
    (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (tmp / WEIGHTS_FILE).write_bytes(read_checked(version, WEIGHTS_FILE))  # PEFT's names are vLLM's
    name = f"{version.profile}-v{version.version}"
    dest = "THIS_FOLDER"
    served = str(folder) if folder is not None else f"<the Hugging Face folder of {version.base_model}>"
    text = "\n".join(
        [
            f"plora {version.ref} for vLLM (replace THIS_FOLDER with this folder's path).",
            "",
            "Serve the base with the adapter:",
            f"  vllm serve {served} --enable-lora --max-lora-rank {max_rank} --lora-modules {name}={dest}",
            f"  then ask for model {name!r} on the OpenAI API (/v1/chat/completions).",
            "",
            "Or load it into a running server (started with --enable-lora and",
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True):",
            "  curl -X POST http://localhost:8000/v1/load_lora_adapter -H 'Content-Type: application/json' \\",
            f'    -d \'{{"lora_name": "{name}", "lora_path": "{dest}"}}\'',
            "",
        ]
    )
    (tmp / INSTRUCTIONS).write_text(text, encoding="utf-8")
    base_info = {"served_from": str(folder) if folder is not None else None}
    return record(
        version,
        "plora-vllm-adapter/1",
        base_info,
        files=[CONFIG_FILE, WEIGHTS_FILE, INSTRUCTIONS],
        max_lora_rank=max_rank,
        lora_name=name,
    )
