"""What plora knows about a base model's architecture for serving: its shape, its llama.cpp name and
tensor layout, and which LoRA target modules vLLM and llama.cpp map.

``base_facts(home, name)`` reads them without loading weights or asking a hub: from the GGUF file's
header for a GGUF base (packaged short name or ``.gguf`` path), else from the ``config.json`` of the
local folder (the builtin's, a model folder, a hub id's cached snapshot). None when unknown.

Llama's q/k layout: Hugging Face stores each attention head's rotary dimensions as two halves
(``x[:d/2]``, ``x[d/2:]``); llama.cpp's converter reorders the rows of ``q_proj`` and ``k_proj`` so
the two halves interleave (``rotary_rows``). Anything written in llama.cpp's layout (a LoRA B
factor, a merged weight) gets the same reordering; transformers undoes it when it reads a GGUF.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.base.names import BaseKind, BaseNameError, classify
from pipeline.base_model import builtin_model_dir

if TYPE_CHECKING:
    import numpy as np

# The decoder projections of the Llama family (also Mistral, Qwen2/3, Gemma): the modules a LoRA
# adapter targets that both runtimes map (vLLM packs q/k/v into qkv_proj and gate/up into
# gate_up_proj and splits the adapter's factors accordingly).
PROJECTIONS = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})


@dataclass(frozen=True)
class Architecture:
    model_type: str  # transformers' config.model_type
    gguf_arch: str | None  # llama.cpp's general.architecture when plora writes GGUF for it, else None
    rotary_permuted: frozenset[str]  # modules whose output rows llama.cpp stores reordered
    modules: frozenset[str]  # LoRA target modules the runtimes map


ARCHITECTURES: dict[str, Architecture] = {
    arch.model_type: arch
    for arch in (
        Architecture("llama", "llama", frozenset({"q_proj", "k_proj"}), PROJECTIONS),
        # vLLM maps these the same way; plora's GGUF export does not cover them (untested there)
        Architecture("mistral", None, frozenset(), PROJECTIONS),
        Architecture("qwen2", None, frozenset(), PROJECTIONS),
        Architecture("qwen3", None, frozenset(), PROJECTIONS),
        Architecture("gemma", None, frozenset(), PROJECTIONS),
        Architecture("gemma2", None, frozenset(), PROJECTIONS),
    )
}
GGUF_TO_MODEL_TYPE = {arch.gguf_arch: arch.model_type for arch in ARCHITECTURES.values() if arch.gguf_arch}


@dataclass(frozen=True)
class BaseFacts:
    """A base model's architecture and shape, and its GGUF file when it is one."""

    model_type: str
    n_layer: int
    n_head: int
    n_head_kv: int
    gguf_file: Path | None = None
    folder: Path | None = None  # a local Hugging Face folder (vLLM serves from one)

    @property
    def architecture(self) -> Architecture | None:
        return ARCHITECTURES.get(self.model_type)


def gguf_facts(file: Path) -> BaseFacts:
    """The architecture and shape of a GGUF model file, from its header (ValueError when unreadable)."""
    import gguf

    reader = gguf.GGUFReader(file)

    def field(key: str) -> Any:
        found = reader.get_field(key)
        if found is None:
            raise ValueError(f"{file.name}: no {key} in its metadata")
        return found.contents()

    arch = str(field("general.architecture"))
    n_head = int(field(f"{arch}.attention.head_count"))
    kv = reader.get_field(f"{arch}.attention.head_count_kv")
    return BaseFacts(
        model_type=GGUF_TO_MODEL_TYPE.get(arch, f"gguf:{arch}"),
        n_layer=int(field(f"{arch}.block_count")),
        n_head=n_head,
        n_head_kv=int(kv.contents()) if kv is not None else n_head,
        gguf_file=file,
    )


def folder_facts(folder: Path) -> BaseFacts | None:
    """From a Hugging Face folder's config.json; None when it has none."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        n_head = int(config["num_attention_heads"])
        return BaseFacts(
            model_type=str(config["model_type"]),
            n_layer=int(config["num_hidden_layers"]),
            n_head=n_head,
            n_head_kv=int(config.get("num_key_value_heads") or n_head),
            folder=folder,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _cached_hub_folder(name: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(name, "config.json")
    except ValueError:
        return None
    return Path(found).parent if isinstance(found, str) else None


def base_facts(home: Path, name: str) -> BaseFacts | None:
    """What ``base_model.name`` ``name`` is, read from local files only; None when that can't be told."""
    try:
        ref = classify(name, Path(home))
    except BaseNameError:
        return None
    if ref.kind in (BaseKind.PACKAGED, BaseKind.GGUF) and ref.path is not None:
        try:
            return gguf_facts(ref.path)
        except (OSError, ValueError):
            return None
    if ref.kind is BaseKind.BUILTIN:
        folder: Path | None = builtin_model_dir(Path(home))
    elif ref.kind is BaseKind.FOLDER:
        folder = ref.path
    else:
        folder = _cached_hub_folder(name)
    return folder_facts(folder) if folder is not None else None


def rotary_rows(rows: np.ndarray, n_head: int) -> np.ndarray:
    """Rows of a q/k projection (or of its LoRA B factor) from Hugging Face's order to llama.cpp's:
    within each of the ``n_head`` heads, row ``half * d/2 + i`` moves to ``2 * i + half``."""
    head_dim = rows.shape[0] // n_head
    if head_dim * n_head != rows.shape[0] or head_dim % 2:
        raise ValueError(f"{rows.shape[0]} rows don't split into {n_head} heads of an even size")
    return rows.reshape(n_head, 2, head_dim // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def module_kind(module: str) -> str:
    """The last part of a module path: ``model.layers.3.self_attn.q_proj`` -> ``q_proj``."""
    return module.rsplit(".", 1)[-1]


__all__ = [
    "ARCHITECTURES",
    "PROJECTIONS",
    "Architecture",
    "BaseFacts",
    "base_facts",
    "folder_facts",
    "gguf_facts",
    "module_kind",
    "rotary_rows",
]
