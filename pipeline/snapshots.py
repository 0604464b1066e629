"""Dataset snapshots on disk: ``datasets/<kind>/<fingerprint>/``.

A snapshot folder holds ``data/`` (a ``datasets.DatasetDict`` with ``train`` and ``eval`` splits,
saved with ``save_to_disk``) and ``plora-snapshot.json`` (what went in: profile, sources, row and
token counts per split, label and redaction counts, what was cut or dropped, builder version).
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
from pipeline.workspace import Workspace
from storage.snapshots import latest_snapshot

if TYPE_CHECKING:
    from datasets import DatasetDict

KINDS = ("sft", "text", "dpo", "kto")
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
            raise DatasetError(f"snapshot {self.kind}/{self.fingerprint[:12]}: can't load {self.path}: {e}; "
                               "rebuild it with `plora datasets build`") from e


def snapshot_dir(workspace: Workspace, kind: str, fingerprint: str) -> Path:
    return workspace.home.child(workspace.home.datasets, kind, fingerprint)


def read_snapshot(path: Path) -> Snapshot:
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: not a plora dataset snapshot ({e})") from e
    return Snapshot(meta["kind"], meta["fingerprint"], path, meta)


def latest(workspace: Workspace, profile: str, kind: str) -> Snapshot | None:
    """The profile's newest snapshot of this kind, or None if never built."""
    with workspace.store.read() as session:
        row = latest_snapshot(session, profile, kind)
        if row is None:
            return None
        path = workspace.home.root / row.path
    return read_snapshot(path)
