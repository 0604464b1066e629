"""Fingerprints of base models: what an adapter records, so it is never put on a base it wasn't trained on.

- A model folder (the builtin, a local folder, a hub snapshot): ``fingerprint_folder``, sha256 over
  ``name NUL size NUL sha256(bytes) LF`` of its weight files (``*.safetensors`` + index),
  ``config.json`` and tokenizer files, sorted by name.
- A GGUF file: the sha256 of its bytes, what ``sha256sum`` prints (``file_sha256``). The same file
  under any path or name has the same fingerprint. ``HashIndex`` remembers it per path with the
  file's size, mtime, ctime, inode and device, so a second load doesn't read the file again; any
  change to one of those (and writing a file always changes its ctime) hashes it again.
- A tokenizer: ``tokenizer_fingerprint``, over its tokenizer and chat-template files only.

Nothing here imports torch or transformers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from pathlib import Path

from pipeline.errors import TrainingError

FINGERPRINT_FILE = "fingerprint.txt"
_FOLDER_HEADER = b"plora-base-fingerprint-v1\n"
_TOKENIZER_HEADER = b"plora-tokenizer-fingerprint-v1\n"

# The files that define a tokenizer and its chat template (what ``tokenizer_fingerprint`` covers).
TOKENIZER_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "chat_template.jinja",
        "chat_template.json",
        "tokenizer.model",
        "vocab.json",
        "vocab.txt",
        "merges.txt",
    }
)
# Files that define a base model: weights, architecture and tokenizer. Everything else in a folder
# (README, generation_config.json, fingerprint.txt, subfolders) is left out of the fingerprint.
_FOLDER_FILES = TOKENIZER_FILES | {"config.json", "model.safetensors.index.json"}


def file_sha256(path: Path) -> str:
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def fingerprint_files(folder: Path) -> list[Path]:
    """The files of ``folder`` that the fingerprint covers, sorted by name (top level only)."""
    return sorted(
        (
            path
            for path in Path(folder).iterdir()
            if path.is_file() and (path.name in _FOLDER_FILES or path.name.endswith(".safetensors"))
        ),
        key=lambda path: path.name,
    )


def fingerprint_folder(folder: Path) -> str:
    """sha256 over ``name NUL size NUL sha256(bytes) LF`` for each file of ``fingerprint_files``.

    Names are part of it, so a renamed or missing file changes the fingerprint too."""
    outer = hashlib.sha256(_FOLDER_HEADER)
    for path in fingerprint_files(folder):
        outer.update(f"{path.name}\0{path.stat().st_size}\0{file_sha256(path)}\n".encode())
    return outer.hexdigest()


def tokenizer_fingerprint(folder: Path | str) -> str:
    """sha256 over ``name NUL sha256(bytes) LF`` of the folder's tokenizer and chat-template files
    (sorted by name): what decides how text becomes tokens, without hashing gigabytes of weights."""
    outer = hashlib.sha256(_TOKENIZER_HEADER)
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name in TOKENIZER_FILES) if folder.is_dir() else []
    if not files:
        raise TrainingError(f"{folder}: no tokenizer files to fingerprint")
    for path in files:
        outer.update(f"{path.name}\0{file_sha256(path)}\n".encode())
    return outer.hexdigest()


def recorded_fingerprint(folder: Path) -> str | None:
    try:
        return (Path(folder) / FINGERPRINT_FILE).read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def verify_fingerprint(folder: Path) -> str:
    """The fingerprint recorded in ``folder/fingerprint.txt``, after checking the files match it."""
    recorded = recorded_fingerprint(folder)
    if recorded is None:
        raise TrainingError(f"{folder}: no {FINGERPRINT_FILE}; rebuild the model (delete the folder)")
    actual = fingerprint_folder(folder)
    if actual != recorded:
        raise TrainingError(
            f"{folder}: files do not match the recorded fingerprint ({recorded} recorded, {actual} found); "
            "the cached model is corrupt or was modified: delete the folder so it is rebuilt"
        )
    return recorded


def _stamp(stat: os.stat_result) -> dict[str, int]:
    return {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
        "inode": stat.st_ino,
        "device": stat.st_dev,
    }


class HashIndex:
    """sha256 of big files, remembered in a JSON file keyed by absolute path and checked against the
    file's stat stamp (size, mtime, ctime, inode, device) on every use. A lost or unreadable index only
    costs a re-hash; it is rewritten atomically (temp file + rename)."""

    def __init__(self, index_file: Path) -> None:
        self.index_file = Path(index_file)

    def _read(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.index_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def sha256(self, path: Path) -> str:
        path = Path(path).resolve()
        stamp = _stamp(path.stat())
        entries = self._read()
        entry = entries.get(str(path))
        if isinstance(entry, dict) and entry.get("stamp") == stamp and isinstance(entry.get("sha256"), str):
            return str(entry["sha256"])
        digest = file_sha256(path)
        if _stamp(path.stat()) != stamp:  # written to while we read it: don't remember this one
            return digest
        entries[str(path)] = {"stamp": stamp, "sha256": digest}
        self._write(entries)
        return digest

    def _write(self, entries: dict[str, dict[str, object]]) -> None:
        self.index_file.parent.mkdir(parents=True, exist_ok=True)
        temp = self.index_file.with_name(f".{self.index_file.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            temp.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(temp, self.index_file)
        except OSError:  # a read-only models folder: hashing again next time is all it costs
            with contextlib.suppress(OSError):
                temp.unlink()


__all__ = [
    "FINGERPRINT_FILE",
    "TOKENIZER_FILES",
    "HashIndex",
    "file_sha256",
    "fingerprint_files",
    "fingerprint_folder",
    "recorded_fingerprint",
    "tokenizer_fingerprint",
    "verify_fingerprint",
]
