"""Base + adapter merged into one GGUF model (``model.gguf``), for runtimes without LoRA support or to
skip the adapter's cost at inference.

The base GGUF is read with ``gguf.GGUFReader``; all of its metadata (tokenizer, chat template,
hyper-parameters) is copied, and so is every tensor the adapter doesn't touch, byte for byte. Each
targeted weight is dequantized, gets ``scale * B @ A`` added in llama.cpp's layout (q/k rows
reordered, see ``gguf_adapter.to_gguf_rows``) and is written as ``dtype``: ``f16`` (default),
``q8_0`` or ``f32``.

``replaced`` (module -> weight, Hugging Face layout) swaps base weights before the merge: the
export passes the dequantized NF4 weights there when merging into the base the adapter was
evaluated on (``merge_into = "nf4"``, see docs/adapters.md); those are then all written as ``dtype``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.registry.gguf_adapter import GgufBase, checked_pairs, tensor_name, to_gguf_rows
from pipeline.registry.versions import AdapterVersion

if TYPE_CHECKING:
    import numpy as np

MERGED_FILE = "model.gguf"
DTYPES = ("f16", "q8_0", "f32")
_NOT_COPIED = ("GGUF.", "general.architecture", "general.name")


def _encode(weight: np.ndarray, dtype: str) -> tuple[np.ndarray, object | None]:
    import gguf
    import numpy as np

    if dtype == "f32":
        return np.ascontiguousarray(weight, dtype=np.float32), None
    if dtype == "f16":
        return np.ascontiguousarray(weight, dtype=np.float16), None
    quantized = gguf.quants.quantize(np.ascontiguousarray(weight, dtype=np.float32), gguf.GGMLQuantizationType.Q8_0)
    return quantized, gguf.GGMLQuantizationType.Q8_0


def _copy_metadata(reader: object, writer: object, version: AdapterVersion) -> None:
    import gguf

    for field in reader.fields.values():  # type: ignore[attr-defined]
        if field.name.startswith(_NOT_COPIED):
            continue
        kind = field.types[0]
        sub_type = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        if field.name == gguf.Keys.General.ALIGNMENT:
            writer.data_alignment = int(field.contents())  # type: ignore[attr-defined]
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub_type)  # type: ignore[attr-defined]
    name = reader.get_field(gguf.Keys.General.NAME)  # type: ignore[attr-defined]
    writer.add_name(f"{name.contents() if name else 'base'} + plora {version.ref}")  # type: ignore[attr-defined]


def write_merged(
    version: AdapterVersion,
    base: GgufBase,
    path: Path,
    *,
    dtype: str,
    replaced: dict[str, np.ndarray] | None = None,
) -> dict:
    """Write the merged model to ``path``; returns what the export record says about it."""
    import gguf

    _, pairs = checked_pairs(version, base)
    deltas = {tensor_name(base, pair.module): pair for pair in pairs}
    replacements = {tensor_name(base, module): (module, weight) for module, weight in (replaced or {}).items()}
    reader = gguf.GGUFReader(base.file)
    writer = gguf.GGUFWriter(str(path), arch=base.gguf_arch)
    _copy_metadata(reader, writer, version)
    rewritten = 0
    for tensor in reader.tensors:
        name = tensor.name
        if name not in deltas and name not in replacements:
            writer.add_tensor(name, tensor.data, raw_dtype=tensor.tensor_type)
            continue
        if name in replacements:
            module, weight = replacements[name]
            merged = to_gguf_rows(base, module, weight.astype("float32"))
        else:
            merged = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype("float32")
        if name in deltas:
            pair = deltas[name]
            merged = merged + to_gguf_rows(base, pair.module, pair.delta())
        data, raw_dtype = _encode(merged, dtype)
        writer.add_tensor(name, data, raw_dtype=raw_dtype)  # type: ignore[arg-type]
        rewritten += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"dtype": dtype, "tensors_rewritten": rewritten, "tensors_copied": len(reader.tensors) - rewritten}
