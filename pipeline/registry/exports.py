"""Export a version out of the registry: its PEFT folder as it is, or merged into its base; as GGUF
for llama.cpp / Ollama (adapter + Modelfile, or merged); or for vLLM (``runtime_exports``).

Every export is written into a temp folder beside the destination and renamed into place
(``export_folder``), so a failed export leaves nothing behind; every format plugs in the same way.
All but the plain PEFT folder carry ``plora-export.json``: which adapter (and its manifest), on
which base, and for a merge which base weights it was merged into (``MergeBase``).

torch / transformers / peft are imported inside the functions."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.base.fingerprint import TOKENIZER_FILES
from pipeline.base_model import load_base
from pipeline.errors import RegistryError, UsageError
from pipeline.integrity import atomic_write, canonical_json, copy_durably, fsync_dir
from pipeline.kinds import Quantization
from pipeline.registry.card import model_card
from pipeline.registry.load import attach
from pipeline.registry.manifest import MANIFEST, MODEL_CARD, is_pickle_name, plora_version
from pipeline.registry.runtime_exports import (
    EXPORT_MANIFEST,
    ExportFormat,
    ExportRecord,
    MergeBase,
    nf4_weights,
    write_gguf,
    write_vllm,
)
from pipeline.registry.verification import verify
from pipeline.registry.versions import AdapterVersion
from pipeline.workspace import Workspace
from storage.models import utcnow

if TYPE_CHECKING:
    from pipeline.base_model import LoadedBase

MERGED_EXPORT_FORMAT = "plora-merged-export/1"


@contextlib.contextmanager
def export_folder(dest: Path) -> Iterator[Path]:
    """A temp folder to write an export into; on success it is fsynced and renamed to ``dest`` (a new
    or empty folder), refusing pickle-format files; on failure it is removed."""
    dest = Path(dest).expanduser().absolute()
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise UsageError(f"export destination {dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()):
        raise UsageError(f"export destination {dest} is not empty; give a new or empty folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.plora-tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        yield tmp
        leftovers = [path.name for path in tmp.iterdir() if is_pickle_name(path.name)]
        if leftovers:
            raise RegistryError(f"export would contain pickle-format files {leftovers}; refusing")
        fsync_dir(tmp)
        try:
            if dest.is_dir():
                dest.rmdir()  # empty (checked before); fails if something appeared meanwhile
            tmp.rename(dest)
        except OSError as e:
            raise UsageError(f"can't create {dest}: {e.strerror or e}") from e
        fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def export(
    workspace: Workspace,
    ref: str,
    dest: Path,
    *,
    merged: bool,
    base: LoadedBase | None = None,
    format: ExportFormat = ExportFormat.PEFT,
    dtype: str = "f16",
    merge_into: MergeBase = MergeBase.FULL,
) -> Path:
    """Write ``ref`` to the new (or empty) folder ``dest``, atomically; returns ``dest``.

    ``format="peft"``, ``merged=False``: the version's files as they are (a PEFT folder vLLM and PEFT
    load as is, with the model card and manifest). ``merged=True``: the base in full precision with
    the adapter merged into its weights (safetensors), plus the tokenizer; ``base`` (full precision)
    is used when given, and is consumed: its weights are modified. Otherwise the configured base is
    loaded with quantization "none". ``merge_into="nf4"`` merges into the NF4 round trip of the
    base's linear weights instead (what a QLoRA adapter was evaluated on).

    ``format="gguf"``: a llama.cpp LoRA adapter GGUF with an Ollama Modelfile, or with ``merged`` one
    GGUF model in ``dtype`` (f16, q8_0 or f32). ``format="vllm"``: what vLLM's ``--lora-modules``
    takes. Both refuse (UsageError) what the runtime can't represent."""
    format = ExportFormat(format)
    merge_into = MergeBase(merge_into)
    if format is ExportFormat.VLLM and merged:
        raise UsageError("--for vllm exports the adapter itself; vLLM serves the base and applies it (drop --merged)")
    version = verify(workspace, ref)
    with export_folder(dest) as tmp:
        if format is ExportFormat.GGUF:
            write_gguf(workspace, version, tmp, merged=merged, dtype=dtype, merge_into=merge_into).write(tmp)
        elif format is ExportFormat.VLLM:
            write_vllm(workspace, version, tmp).write(tmp)
        elif merged:
            _write_merged(workspace, version, tmp, base, merge_into)
        else:
            _write_peft_folder(version, tmp)
    return Path(dest).expanduser().absolute()


def export_record(folder: Path) -> ExportRecord | None:
    """The ``plora-export.json`` of an export folder, or None for a plain PEFT folder."""
    return ExportRecord.read(folder) if (Path(folder) / EXPORT_MANIFEST).is_file() else None


def _write_peft_folder(version: AdapterVersion, tmp: Path) -> None:
    """The version's files, each checked against the manifest as it is copied."""
    manifest = version.require_manifest()
    for name, entry in manifest.files.entries.items():
        if copy_durably(version.path / name, tmp / name) != entry:
            raise RegistryError(f"adapter {version.ref}: {name} changed during export; verify it")
    shutil.copyfile(version.path / MANIFEST, tmp / MANIFEST)


def _full_precision_base(workspace: Workspace) -> LoadedBase:
    """The base in float32 whatever the machine computes in: the merge adds the adapter's deltas to it."""
    import torch

    config = workspace.config.base_model
    return load_base(
        config.name, home=workspace.home.root, quantization=Quantization.NONE, double_quant=False, dtype=torch.float32
    )


def _write_merged(
    workspace: Workspace, version: AdapterVersion, tmp: Path, base: LoadedBase | None, merge_into: MergeBase
) -> None:
    manifest = version.require_manifest()
    replaced = nf4_weights(workspace, version) if merge_into is MergeBase.NF4 else {}
    if base is None:
        base = _full_precision_base(workspace)
    if base.quantized:
        raise RegistryError(
            f"merged export of {version.ref} needs the base in full precision "
            "(quantization='none'); merging into NF4 weights would lose the adapter's precision"
        )
    for name, weight in replaced.items():  # the NF4 round trip, in the base's own dtype
        parameter: Any = base.model.get_submodule(name).weight
        parameter.data.copy_(weight.to(device=parameter.device, dtype=parameter.dtype))
    model = attach(base.model, version, base_fingerprint=base.fingerprint)
    merged = model.merge_and_unload()
    merged.save_pretrained(str(tmp))
    tokenizer_files = [name for name in manifest.files if name in TOKENIZER_FILES]
    if tokenizer_files:
        for name in tokenizer_files:
            shutil.copyfile(version.path / name, tmp / name)
    else:
        base.tokenizer.save_pretrained(str(tmp))
    (tmp / MODEL_CARD).write_text(model_card(manifest, merged=True), encoding="utf-8")
    record = {
        "format": MERGED_EXPORT_FORMAT,
        "adapter": version.ref,
        "adapter_manifest_sha256": version.manifest_sha256,
        "adapter_manifest": manifest.dump(),
        "base_model": {"name": base.name, "fingerprint": base.fingerprint},
        "merged_into": merge_into.value,
        "created_at": utcnow().isoformat(),
        "plora_version": plora_version(),
    }
    atomic_write(tmp / EXPORT_MANIFEST, canonical_json(record))
