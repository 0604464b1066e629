"""GGUF bases: a ``.gguf`` model file (Ollama, LM Studio, llama.cpp) converted once into a safetensors
folder that loads, quantizes and trains like any other base.

``ensure_gguf(file, models)`` returns ``<models>/gguf-<sha256[:16]>/`` and the base's fingerprint,
the sha256 of the GGUF file's bytes (remembered in ``<models>/gguf-hashes.json``, see
``fingerprint.HashIndex``). The same bytes under another path or name (the packaged short name
and the file it points at) share the folder and the fingerprint.

Conversion: transformers reads the GGUF (the ``gguf`` package; the weights come out dequantized to
float32), its state dict is moved into a fresh model built from the same config (transformers
refuses to save a GGUF-loaded model), which is saved as safetensors with the tokenizer, its chat
template and the generation config. Everything is written into a hidden sibling folder; the
manifest ``plora-gguf.json`` (the GGUF's sha256 and size, every file's size, mtime and sha256) is
written last, then the folder is renamed into place. A killed conversion leaves only the hidden
folder, which is never read and is removed by the next conversion. A folder is used only while its
manifest matches the GGUF's hash and its files match the manifest (size always; the sha256 again
whenever a file's mtime moved), otherwise it is converted again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.base.fingerprint import HashIndex, file_sha256
from pipeline.base.folders import fsync_tree, staging_folder, swap_into_place
from pipeline.errors import TrainingError

log = logging.getLogger(__name__)

MANIFEST = "plora-gguf.json"
HASH_INDEX = "gguf-hashes.json"
FORMAT = "plora-gguf-conversion-v1"


def gguf_folder(models: Path, sha256: str) -> Path:
    return Path(models) / f"gguf-{sha256[:16]}"


def ensure_gguf(file: Path, models: Path, *, name: str | None = None) -> tuple[Path, str]:
    """The converted folder of ``file`` (converting it first when needed) and the base fingerprint."""
    file = Path(file)
    sha256 = HashIndex(Path(models) / HASH_INDEX).sha256(file)
    folder = gguf_folder(models, sha256)
    problem = folder_problem(folder, sha256)
    if problem is None:
        return folder, sha256
    if folder.exists():
        log.warning("%s: %s; converting %s again", folder, problem, file.name)
    convert(file, folder, sha256, name=name or file.name)
    return folder, sha256


def _manifest(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def folder_problem(folder: Path, sha256: str) -> str | None:
    """Why the converted ``folder`` can't be used for the GGUF with this sha256, or None when it can."""
    if not folder.is_dir():
        return "not converted yet"
    manifest = _manifest(folder)
    if manifest is None or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        return f"{MANIFEST} is missing or unreadable"
    if manifest.get("gguf_sha256") != sha256:
        return "it was converted from another GGUF file"
    for name, entry in manifest["files"].items():
        path = folder / name
        try:
            stat = path.stat()
        except OSError:
            return f"{name} is missing"
        if stat.st_size != entry.get("size"):
            return f"{name} changed size"
        if stat.st_mtime_ns != entry.get("mtime_ns") and file_sha256(path) != entry.get("sha256"):
            return f"{name} was modified"
    return None


def convert(file: Path, dest: Path, sha256: str, *, name: str) -> None:
    """Convert the GGUF ``file`` into ``dest`` (see the module docstring); replaces an unusable ``dest``."""
    tmp = staging_folder(dest)
    started = time.monotonic()
    log.warning("%s: converting %s to safetensors in %s (once; about a minute)", name, file.name, dest)
    try:
        _write_model(file, tmp)
        files = {}
        for path in sorted(tmp.iterdir()):
            stat = path.stat()
            files[path.name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": file_sha256(path)}
        manifest = {
            "format": FORMAT,
            "gguf_file": file.name,
            "gguf_size": file.stat().st_size,
            "gguf_sha256": sha256,
            "files": files,
            "libraries": _versions(),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        fsync_tree(tmp)
        swap_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.warning("%s: converted in %.0f s", name, time.monotonic() - started)


def _write_model(file: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    where = {"gguf_file": file.name, "local_files_only": True, "trust_remote_code": False}
    try:
        with _no_dequantize_bar():
            tokenizer = AutoTokenizer.from_pretrained(str(file.parent), **where)
            loaded = AutoModelForCausalLM.from_pretrained(str(file.parent), dtype=torch.float32, **where)
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as e:
        raise TrainingError(f"{file}: transformers can't read this GGUF file ({type(e).__name__}: {e})") from e
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the saved weights are plain float32
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), assign=True, strict=True)
    model.tie_weights()
    model.generation_config = loaded.generation_config
    model.save_pretrained(str(out))
    del loaded, model
    for weights in out.glob("*.safetensors"):  # safetensors writes 0600; use the umask like the other files
        shutil.copymode(out / "config.json", weights)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.model_max_length = int(getattr(config, "max_position_embeddings", 0) or tokenizer.model_max_length)
    tokenizer.save_pretrained(str(out))
    _check_tokenizer(tokenizer, out)


@contextlib.contextmanager
def _no_dequantize_bar() -> Iterator[None]:
    """transformers draws its own tqdm bar while dequantizing GGUF tensors, whatever its progress-bar
    setting; plora reports the conversion itself (start and end lines), so that bar is turned off."""
    from functools import partial

    import transformers.modeling_gguf_pytorch_utils as reader

    drawn = getattr(reader, "tqdm", None)
    if drawn is None:
        yield
        return
    reader.tqdm = partial(drawn, disable=True)
    try:
        yield
    finally:
        reader.tqdm = drawn


def _check_tokenizer(original: Any, out: Path) -> None:
    """The saved tokenizer reads back with the same ids and chat template as the GGUF's own."""
    from transformers import AutoTokenizer

    saved = AutoTokenizer.from_pretrained(str(out), trust_remote_code=False)
    probe = "Hello wörld 🎉\n\tdef f(x):  return x  # 中文" + "".join(original.all_special_tokens)
    if saved(probe)["input_ids"] != original(probe)["input_ids"] or saved.chat_template != original.chat_template:
        raise TrainingError(f"{out}: the converted tokenizer does not match the GGUF file's tokenizer")


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for library in ("transformers", "gguf", "torch"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[library] = metadata.version(library)
    return out


__all__ = ["HASH_INDEX", "MANIFEST", "convert", "ensure_gguf", "folder_problem", "gguf_folder"]
