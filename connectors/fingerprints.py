"""File fingerprints for a connector's cursor: has an export file changed since the last run?

A fingerprint is ``{"size", "mtime_ns", "sha256"}``; the cursor holds one per file under
``"files"``. The hash is computed again only when size or mtime moved, and a file counts as
changed only when its size or content did (a touched but identical file is unchanged).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from connectors.records import ConnectorError

Fingerprint = dict[str, Any]


def fingerprints(source: str, files: Mapping[str, Path], cursor: Mapping[str, Any] | None) -> dict[str, Fingerprint]:
    """size, mtime_ns and sha256 of each file; the hash is reused when size and mtime match."""
    previous = _cursor_files(cursor)
    result: dict[str, Fingerprint] = {}
    for key, path in files.items():
        try:
            result[key] = _fingerprint(path, previous.get(key))
        except OSError as e:
            problem = f"cannot read it ({e.strerror or e}); check that it exists and is readable"
            raise ConnectorError(source, f"{path}: {problem}") from e
    return result


def cursor_state(files: Mapping[str, Fingerprint]) -> dict[str, Any]:
    """The cursor that records these fingerprints."""
    return {"files": dict(files)}


def unchanged(cursor: Mapping[str, Any] | None, files: Mapping[str, Fingerprint]) -> bool:
    """True when the cursor holds the same files with the same size and content.

    A file whose mtime moved but whose bytes are the same still counts as unchanged; the new
    cursor records the new mtime.
    """
    previous = _cursor_files(cursor)
    if not files or previous.keys() != files.keys():
        return False
    return all(_same_content(previous[key], fp) for key, fp in files.items())


def _same_content(old: Any, new: Fingerprint) -> bool:
    if not isinstance(old, Mapping):
        return False
    return (old.get("size"), old.get("sha256")) == (new["size"], new["sha256"])


def _cursor_files(cursor: Mapping[str, Any] | None) -> Mapping[str, Any]:
    files = cursor.get("files") if isinstance(cursor, Mapping) else None
    return files if isinstance(files, Mapping) else {}


def _fingerprint(path: Path, previous: Any) -> Fingerprint:
    stat = path.stat()
    sha = None
    if isinstance(previous, Mapping) and (previous.get("size"), previous.get("mtime_ns")) == (
        stat.st_size,
        stat.st_mtime_ns,
    ):
        sha = previous.get("sha256")
    if not isinstance(sha, str):
        with path.open("rb") as f:
            sha = hashlib.file_digest(f, "sha256").hexdigest()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha}
