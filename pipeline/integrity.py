"""File integrity, in one place: sha256 of files, durable writes, and the folder manifest.

- ``sha256_file`` / ``hash_file``: a file's sha256 (``hashlib.file_digest``) and size.
- ``atomic_write``: temp file + fsync + rename + fsync of the folder, so a reader (or a crash) sees
  the old file or the whole new one, never a part. ``copy_durably`` copies a file and fsyncs it,
  ``fsync_dir`` makes a rename or a new entry in a folder durable.
- ``FolderManifest``: file (path relative to its folder, ``/``-separated) -> ``FileEntry`` (sha256
  and size). On disk it is ``{"<path>": {"sha256": "<hex>", "size": N}}``; the manifests of
  registered adapter versions (``plora.json`` ``files``), training checkpoints
  (``plora-manifest.json`` ``files``) and dataset snapshots (``plora-snapshot.json`` ``files``) are
  all this type. Snapshots written before it existed say ``bytes`` instead of ``size``; both are read.
  ``mismatches`` says, per listed file, what is wrong with it; each caller decides what an unlisted
  file means for its folder (an adapter refuses it, a checkpoint is incomplete, a snapshot ignores it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, RootModel, ValidationError

SHA256_PATTERN = r"^[0-9a-f]{64}$"


# --- hashing --------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FileEntry(BaseModel):
    """One file of a folder manifest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str = Field(pattern=SHA256_PATTERN)
    size: int = Field(ge=0, validation_alias=AliasChoices("size", "bytes"))  # "bytes": older snapshots

    @classmethod
    def of_bytes(cls, data: bytes) -> FileEntry:
        return cls(sha256=sha256_bytes(data), size=len(data))

    def matches(self, data: bytes) -> bool:
        return len(data) == self.size and sha256_bytes(data) == self.sha256


def hash_file(path: Path) -> FileEntry:
    """The file's sha256 and size, both taken from the one open handle."""
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
        size = os.fstat(handle.fileno()).st_size
    return FileEntry(sha256=digest, size=size)


# --- durable writes -------------------------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    """Make the folder's entries (a rename, a new file) durable; a no-op where folders can't be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``path`` via a temp file beside it + fsync + rename + fsync of the folder (text as UTF-8)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with tmp.open("xb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def copy_durably(source: Path, dest: Path) -> FileEntry:
    """Copy ``source`` to the new file ``dest``, fsync it; the sha256 and size of what ``dest`` holds."""
    with source.open("rb") as src, dest.open("xb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())
    return hash_file(dest)


def canonical_json(data: Any) -> bytes:
    """Sorted keys, two-space indent, UTF-8, one trailing newline: the form plora's manifests are written in."""
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


# --- the folder manifest --------------------------------------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    """What is wrong with one listed file: ``missing``, ``not-a-file``, ``size`` (``size`` holds the
    size found) or ``sha256``."""

    name: str
    problem: Literal["missing", "not-a-file", "size", "sha256"]
    expected: FileEntry
    size: int | None = None
    error: str | None = None  # the OS error, when the file couldn't be read

    def describe(self, *, since: str = "it was written") -> str:
        """One line: ``NAME: missing``, ``NAME: N bytes, the manifest says M (truncated or changed)``, ..."""
        if self.problem == "missing":
            return f"{self.name}: missing" + (f" ({self.error})" if self.error else "")
        if self.problem == "not-a-file":
            return f"{self.name}: not a regular file"
        if self.problem == "size":
            return f"{self.name}: {self.size} bytes, the manifest says {self.expected.size} (truncated or changed)"
        return f"{self.name}: sha256 mismatch (changed since {since})"

    def __str__(self) -> str:
        return self.describe()


class FolderManifest(RootModel[dict[str, FileEntry]]):
    """file (relative path) -> sha256 + size; see the module docstring."""

    model_config = ConfigDict(frozen=True)

    @classmethod
    def of_files(cls, folder: Path, names: Iterable[str]) -> FolderManifest:
        """Hash the named files of ``folder``."""
        return cls({name: hash_file(folder / name) for name in sorted(names)})

    @classmethod
    def of_folder(cls, folder: Path, *, under: str | None = None, exclude: Iterable[str] = ()) -> FolderManifest:
        """Hash every regular file under ``folder`` (or under its subfolder ``under``), except those
        whose relative path is in ``exclude``."""
        return cls.of_files(folder, files_under(folder, under=under, exclude=exclude))

    @classmethod
    def parse(cls, data: Any) -> FolderManifest:
        """From its JSON form; ValueError when it isn't one."""
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ValueError(validation_summary(e)) from e

    @property
    def entries(self) -> dict[str, FileEntry]:
        return dict(self.root)

    def __contains__(self, name: object) -> bool:
        return name in self.root

    def __iter__(self) -> Any:  # the file names, sorted
        return iter(sorted(self.root))

    def __len__(self) -> int:
        return len(self.root)

    def __getitem__(self, name: str) -> FileEntry:
        return self.root[name]

    def dump(self) -> dict[str, dict[str, Any]]:
        return {name: self.root[name].model_dump() for name in sorted(self.root)}

    def mismatches(self, folder: Path, *, first_only: bool = False) -> list[Mismatch]:
        """Each listed file of ``folder`` that is missing, not a regular file, or differs in size or
        sha256 (size first: a file of the wrong size is never hashed)."""
        found: list[Mismatch] = []
        for name in sorted(self.root):
            expected = self.root[name]
            path = folder / name
            try:
                if path.is_symlink() or (path.exists() and not path.is_file()):
                    found.append(Mismatch(name, "not-a-file", expected))
                elif (size := path.stat().st_size) != expected.size:
                    found.append(Mismatch(name, "size", expected, size=size))
                elif sha256_file(path) != expected.sha256:
                    found.append(Mismatch(name, "sha256", expected, size=size))
            except FileNotFoundError:
                found.append(Mismatch(name, "missing", expected))
            except OSError as e:
                found.append(Mismatch(name, "missing", expected, error=str(e)))
            if found and first_only:
                break
        return found


def files_under(folder: Path, *, under: str | None = None, exclude: Iterable[str] = ()) -> list[str]:
    """Relative paths of the regular files under ``folder`` (or its subfolder ``under``), sorted."""
    skip = set(exclude)
    root = folder / under if under else folder
    return sorted(
        name for path in root.rglob("*") if path.is_file() and (name := path.relative_to(folder).as_posix()) not in skip
    )


def validation_summary(error: ValidationError, limit: int = 3) -> str:
    """A pydantic error as one line: ``key.path: message`` for the first few problems."""
    parts = []
    for item in error.errors()[:limit]:
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        parts.append(f"{where}: {item['msg']}")
    more = error.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
