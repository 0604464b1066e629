"""Snapshots on disk and in the store (see pipeline.snapshots for the contract).

The fingerprint is sha256 over the builder version, the profile, the kind, the settings that shape
the rows (eval percent, max length, unlabelled policy, base model and tokenizer fingerprint, split
salt, dedup settings) and every row with its split, as canonical JSON lines in the written order.
The profile is part of it because snapshots are recorded per profile: two profiles with the same
rows get two snapshots. Metadata that only describes the build (counts of what was dropped) is
not: the same rows are the same dataset.

Writing is atomic: the splits go to ``datasets/<kind>/.tmp-<fingerprint>-<random>/`` and the
folder is renamed to ``datasets/<kind>/<fingerprint>/``. When that folder already holds a
snapshot, nothing is written (a concurrent build that lost the race discards its copy). Data
files are Arrow (``save_to_disk``), never pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from pipeline.datasets.common import BUILDER_VERSION
from pipeline.datasets.split import SPLITS
from pipeline.errors import DatasetError
from pipeline.snapshots import DATA_DIR, META_FILE, Snapshot, read_snapshot, snapshot_dir
from pipeline.workspace import Workspace
from storage.snapshots import renew_snapshot
from storage.snapshots import latest_snapshot, record_snapshot


def fingerprint(*, profile: str, kind: str, settings: dict[str, Any], splits: dict[str, list[dict[str, Any]]]) -> str:
    digest = hashlib.sha256()
    head = {"builder_version": BUILDER_VERSION, "profile": profile, "kind": kind, "settings": settings}
    digest.update(_canonical(head).encode() + b"\n")
    for split in SPLITS:
        for record in splits[split]:
            digest.update(_canonical({"split": split, "row": record}).encode("utf-8", "surrogatepass") + b"\n")
    return digest.hexdigest()


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def features(kind: str) -> Any:
    """The columns of each kind (typed even when a split is empty)."""
    from datasets import Features, Value

    string = Value("string")
    messages = [{"role": string, "content": string}]  # a list of messages (datasets 3.x and later)
    columns: dict[str, Any] = {
        "sft": {"messages": messages},
        "text": {"text": string},
        "dpo": {"prompt": messages, "chosen": messages, "rejected": messages},
        "kto": {"prompt": messages, "completion": messages, "label": Value("bool")},
    }[kind]
    return Features({**columns, "source": string, "ref": string})


def save(workspace: Workspace, kind: str, fingerprint_: str, splits: dict[str, list[dict[str, Any]]],
         meta: dict[str, Any]) -> tuple[Snapshot, bool]:
    """Write the snapshot unless its folder exists; returns it and whether it was written now."""
    from datasets import Dataset, DatasetDict
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    target = snapshot_dir(workspace, kind, fingerprint_)
    if (target / META_FILE).is_file():
        return read_snapshot(target), False
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    temp = parent / f".tmp-{fingerprint_[:16]}-{uuid.uuid4().hex[:8]}"
    try:
        schema = features(kind)
        columns = {split: {column: [row[column] for row in splits[split]] for column in schema} for split in SPLITS}
        data = DatasetDict({split: Dataset.from_dict(columns[split], features=schema) for split in SPLITS})
        shown = is_progress_bar_enabled()
        disable_progress_bar()  # progress is the CLI's to show, on stderr, and never on --json stdout
        try:
            data.save_to_disk(str(temp / DATA_DIR), num_shards={split: 1 for split in SPLITS})
        finally:
            if shown:
                enable_progress_bar()
        (temp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
        _fsync_tree(temp)
        if target.exists() and not (target / META_FILE).is_file():
            shutil.rmtree(target)  # a folder left half-made by a crash before this scheme: replace it
        try:
            os.rename(temp, target)
        except OSError:
            if (target / META_FILE).is_file():  # another build wrote the same snapshot first
                return read_snapshot(target), False
            raise
    except OSError as e:
        raise DatasetError(f"can't write snapshot {kind}/{fingerprint_[:12]} to {target}: {e}") from e
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
    return read_snapshot(target), True


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())


def record(workspace: Workspace, snapshot: Snapshot, profile: str) -> bool:
    """Record the snapshot in the store as the profile's newest of its kind; False if it already was."""
    path = snapshot.path.relative_to(workspace.home.root).as_posix()
    rows = sum(snapshot.rows.values())
    with workspace.store.read() as session:
        current = latest_snapshot(session, profile, snapshot.kind)
        if current is not None and current.fingerprint == snapshot.fingerprint:
            return False
    with workspace.store.write() as session:
        row = record_snapshot(session, profile=profile, kind=snapshot.kind, fingerprint=snapshot.fingerprint,
                              path=path, rows=rows, meta=snapshot.meta)
        current = latest_snapshot(session, profile, snapshot.kind)
        if current is not None and current.id != row.id:
            renew_snapshot(session, row)
    return True


__all__ = ["features", "fingerprint", "record", "save"]
