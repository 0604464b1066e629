"""A registered adapter as a llama.cpp LoRA adapter GGUF, for llama.cpp, Ollama and LM Studio.

The file (``adapter.gguf``) has ``general.type = "adapter"``, ``general.architecture`` of the base,
``adapter.type = "lora"`` and ``adapter.lora.alpha``, and for each targeted projection the tensors
``<base tensor>.lora_a`` (PEFT's A, r x in) and ``<base tensor>.lora_b`` (PEFT's B, out x r), named
after the base GGUF's tensors (``blk.3.attn_q.weight.lora_a``), in float32. llama.cpp computes
``W x + alpha / r * B (A x)``; where PEFT's scale differs from ``lora_alpha / r`` (rsLoRA, an
``alpha_pattern``) the difference is folded into B. The rows of B for ``q_proj`` / ``k_proj`` are
reordered into llama.cpp's rotary layout (``architectures.rotary_rows``), as llama.cpp's converter
does for the base weights.

The base must be the GGUF file the adapter was trained on (its sha256 is the base fingerprint):
the ``Modelfile`` names it in ``FROM`` and ``README.txt`` gives the commands. What A/B pairs can't
carry (DoRA, ``modules_to_save``, biases, embedding targets) is a UsageError naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.base.fingerprint import HashIndex
from pipeline.base.gguf import HASH_INDEX
from pipeline.base_model import models_dir
from pipeline.errors import RegistryError, UsageError
from pipeline.registry.architectures import Architecture, BaseFacts, base_facts, module_kind, rotary_rows
from pipeline.registry.lora_factors import (
    LoraPair,
    adapter_config,
    lora_pairs,
    representation_problems,
    weight_tensors,
)
from pipeline.registry.versions import AdapterVersion

if TYPE_CHECKING:
    import numpy as np

ADAPTER_FILE = "adapter.gguf"
MODELFILE = "Modelfile"
INSTRUCTIONS = "README.txt"


@dataclass(frozen=True)
class GgufBase:
    """The verified GGUF base of an adapter."""

    facts: BaseFacts
    arch: Architecture
    file: Path
    sha256: str

    @property
    def gguf_arch(self) -> str:
        assert self.arch.gguf_arch is not None
        return self.arch.gguf_arch


def gguf_base(home: Path, version: AdapterVersion) -> GgufBase:
    """The GGUF file ``version`` was trained on; UsageError when its base isn't a GGUF file of a
    supported architecture, RegistryError when the file there is not the one it was trained on."""
    name = version.base_model
    facts = base_facts(home, name)
    if facts is None or facts.gguf_file is None:
        raise UsageError(
            f"adapter {version.ref}: its base {name!r} is not a GGUF file, so there is no base for llama.cpp or "
            "Ollama to load it on; export it as a PEFT folder (or --merged), or train on a .gguf base"
        )
    arch = facts.architecture
    if arch is None or arch.gguf_arch is None:
        raise UsageError(
            f"adapter {version.ref}: base {name!r} has architecture {facts.model_type!r}; "
            "plora's GGUF export supports llama (SmolLM2, Llama and their GGUF files)"
        )
    sha256 = HashIndex(models_dir(home) / HASH_INDEX).sha256(facts.gguf_file)
    if sha256 != version.base_fingerprint:
        raise RegistryError(
            f"adapter {version.ref}: {facts.gguf_file} (sha256 {sha256[:12]}...) is not the GGUF file it was "
            f"trained on (fingerprint {version.base_fingerprint[:12]}...)"
        )
    return GgufBase(facts=facts, arch=arch, file=facts.gguf_file, sha256=sha256)


def checked_pairs(version: AdapterVersion, base: GgufBase) -> tuple[dict, list[LoraPair]]:
    """The adapter's config and factors, refusing what a llama.cpp adapter can't represent."""
    config = adapter_config(version)
    tensors = weight_tensors(version)
    problems = representation_problems(config, tensors, base.arch.modules)
    if problems:
        raise UsageError(f"adapter {version.ref} can't be written as GGUF: {'; '.join(problems)}")
    return config, lora_pairs(config, tensors, version.ref)


def tensor_name(base: GgufBase, module: str) -> str:
    """The base GGUF tensor of a module: ``model.layers.3.self_attn.q_proj`` -> ``blk.3.attn_q.weight``."""
    import gguf

    arch = {name: arch for arch, name in gguf.MODEL_ARCH_NAMES.items()}[base.gguf_arch]
    name = gguf.get_tensor_name_map(arch, base.facts.n_layer).get_name(module)
    if name is None:
        raise UsageError(f"{module}: no {base.gguf_arch} GGUF tensor for this module")
    return f"{name}.weight"


def to_gguf_rows(base: GgufBase, module: str, rows: np.ndarray) -> np.ndarray:
    """Rows (of B, or of a whole weight) of ``module`` in llama.cpp's order."""
    kind = module_kind(module)
    if kind not in base.arch.rotary_permuted:
        return rows
    return rotary_rows(rows, base.facts.n_head if kind == "q_proj" else base.facts.n_head_kv)


def _check_shape(reader_shapes: dict[str, tuple[int, ...]], name: str, pair: LoraPair, ref: str) -> None:
    shape = reader_shapes.get(name)
    if shape is None:
        raise RegistryError(f"adapter {ref}: the base GGUF has no tensor {name} for {pair.module}")
    columns, rows = shape  # GGUF lists the fastest dimension first
    if pair.a.shape[1] != columns or pair.b.shape[0] != rows:
        raise RegistryError(
            f"adapter {ref}: {pair.module} is {pair.b.shape[0]}x{pair.a.shape[1]}, the base's {name} {rows}x{columns}"
        )


def write_adapter(version: AdapterVersion, base: GgufBase, path: Path) -> dict:
    """Write the adapter GGUF to ``path``; returns what the export record says about it."""
    import gguf
    import numpy as np

    config, pairs = checked_pairs(version, base)
    reader = gguf.GGUFReader(base.file)
    shapes = {t.name: tuple(int(n) for n in t.shape) for t in reader.tensors if len(t.shape) == 2}
    alpha = float(config.get("lora_alpha") or 0) or float(pairs[0].rank)
    writer = gguf.GGUFWriter(str(path), arch=base.gguf_arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_name(f"plora {version.ref}")
    folded = []
    for pair in pairs:
        name = tensor_name(base, pair.module)
        _check_shape(shapes, name, pair, version.ref)
        factor = pair.scale * pair.rank / alpha  # llama.cpp applies alpha / r
        if abs(factor - 1.0) > 1e-9:
            folded.append(pair.module)
        b = to_gguf_rows(base, pair.module, pair.b * np.float32(factor))
        writer.add_tensor(f"{name}.lora_a", np.ascontiguousarray(pair.a, dtype=np.float32))
        writer.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {
        "alpha": alpha,
        "modules": len(pairs),
        "ranks": sorted({pair.rank for pair in pairs}),
        "scale_folded_into_b": folded,
        "rotary_rows_reordered": sorted(base.arch.rotary_permuted),
    }


def ollama_name(version: AdapterVersion) -> str:
    return f"plora-{version.profile}-v{version.version}"


def write_runtime_files(folder: Path, version: AdapterVersion, *, model: str, adapter: str | None) -> str:
    """``Modelfile`` (FROM ``model``, ADAPTER ``adapter``) and ``README.txt`` with the commands; returns them."""
    lines = [f"# plora {version.ref} for Ollama: ollama create {ollama_name(version)} -f Modelfile", f"FROM {model}"]
    if adapter:
        lines.append(f"ADAPTER ./{adapter}")
    (folder / MODELFILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    lora = f" --lora {adapter}" if adapter else ""
    python_lora = f', lora_path="{adapter}"' if adapter else ""
    text = "\n".join(
        [
            f"plora {version.ref} as GGUF ({'an adapter on its base' if adapter else 'a merged model'}).",
            "Run these in this folder.",
            "",
            "Ollama:",
            f"  ollama create {ollama_name(version)} -f Modelfile",
            f"  ollama run {ollama_name(version)}",
            "",
            "llama.cpp:",
            f"  llama-cli -m {model}{lora}",
            f"  llama-server -m {model}{lora} --port 8080",
            "",
            "llama-cpp-python:",
            "  from llama_cpp import Llama",
            f'  llm = Llama(model_path="{model}"{python_lora})',
            *([] if adapter else ["", "LM Studio:", f"  lms import {model}"]),
            "",
        ]
    )
    (folder / INSTRUCTIONS).write_text(text, encoding="utf-8")
    return text
