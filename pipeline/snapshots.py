"""Dataset snapshots on disk: ``datasets/<kind>/<fingerprint>/``.

A snapshot folder holds ``data/`` (a ``datasets.DatasetDict`` with ``train`` and ``eval`` splits,
saved with ``save_to_disk``) and ``plora-snapshot.json`` (what went in: profile, sources, row and
token counts per split, label and redaction counts, what was cut or dropped, builder version, and
``files``: every file of ``data/`` with its sha256 and size, a ``pipeline.integrity.FolderManifest``,
which ``damage`` checks; snapshots written before it say ``bytes`` for ``size`` and read the same).
Columns per kind, all in TRL's standard formats plus ``source`` and ``ref`` (``source:external_id``):

- ``sft``:  ``messages`` (conversational)
- ``text``: ``text``
- ``dpo``:  ``prompt`` (messages), ``chosen`` and ``rejected`` (one assistant message each)
- ``kto``:  ``prompt`` (messages), ``completion`` (one assistant message), ``label`` (bool)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import DatasetError
from pipeline.integrity import FolderManifest
from pipeline.workspace import Workspace
from storage.snapshots import latest_snapshot

if TYPE_CHECKING:
    from datasets import DatasetDict

META_FILE = "plora-snapshot.json"
DATA_DIR = "data"


@dataclass(frozen=True)
class Snapshot:
    kind: str
    fingerprint: str
    path: Path
    meta: dict[str, Any]

    @property
    def rows(self) -> dict[str, int]:
        return dict(self.meta.get("rows", {}))

    def load(self) -> DatasetDict:
        """The splits, memory-mapped from disk (Arrow files: no pickle is ever loaded)."""
        from datasets import load_from_disk

        try:
            return load_from_disk(str(self.path / DATA_DIR))
        except (FileNotFoundError, ValueError) as e:
            raise DatasetError(
                f"snapshot {self.kind}/{self.fingerprint[:12]}: can't load {self.path}: {e}; "
                "rebuild it with `plora datasets build`"
            ) from e


def snapshot_dir(workspace: Workspace, kind: str, fingerprint: str) -> Path:
    return workspace.home.child(workspace.home.datasets, kind, fingerprint)


def read_snapshot(path: Path) -> Snapshot:
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: not a plora dataset snapshot ({e})") from e
    return Snapshot(meta["kind"], meta["fingerprint"], path, meta)


def data_files(path: Path) -> dict[str, dict[str, Any]]:
    """Every file under the snapshot folder's ``data/``: path relative to the folder -> sha256, size
    (a ``pipeline.integrity.FolderManifest`` in its JSON form)."""
    return FolderManifest.of_folder(path, under=DATA_DIR).dump()


def damage(snapshot: Snapshot) -> str | None:
    """Why the snapshot's folder can't be used as it is, or None when it is intact.

    A snapshot whose metadata lists its ``files`` is intact when each is there with its size and
    sha256 (files added beside them are never loaded, so they don't count). An older one without
    the list: when every file ``save_to_disk`` writes is there and not empty (the split list, each
    split's state and info, each Arrow file its state names)."""
    files = snapshot.meta.get("files")
    if isinstance(files, dict) and files:
        try:
            manifest = FolderManifest.parse(files)
        except ValueError as e:
            return f"{snapshot.path / META_FILE}: unreadable files list ({e})"
        for mismatch in manifest.mismatches(snapshot.path, first_only=True):
            file = snapshot.path / mismatch.name
            if mismatch.problem in ("size", "sha256"):
                return f"{file} changed since it was written"
            return f"{file}: {mismatch.error or mismatch.problem}"
        return None
    data = snapshot.path / DATA_DIR
    try:
        splits = json.loads((data / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
        for split in splits:
            folder = data / split
            names = [
                "dataset_info.json",
                *(
                    entry["filename"]
                    for entry in json.loads((folder / "state.json").read_text(encoding="utf-8"))["_data_files"]
                ),
            ]
            for name in names:
                if (folder / name).stat().st_size == 0:
                    return f"{folder / name} is empty"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{data}: {e}"
    if sorted(splits) != sorted(snapshot.rows):
        return f"{data}: splits {splits}, expected {sorted(snapshot.rows)}"
    return None


def latest(workspace: Workspace, profile: str, kind: str) -> Snapshot | None:
    """The profile's newest snapshot of this kind, or None if never built."""
    with workspace.store.read() as session:
        row = latest_snapshot(session, profile, kind)
        if row is None:
            return None
        path = workspace.home.root / row.path
    return read_snapshot(path)
