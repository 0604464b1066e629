"""Snapshots on disk and in the store (see pipeline.snapshots for the contract).

The fingerprint is sha256 over the builder version, the profile, the kind, the settings that shape
the rows (eval percent, max length, unlabelled policy, base model and tokenizer fingerprint, split
salt, dedup settings) and every row with its split, as canonical JSON lines in the written order.
The profile is part of it because snapshots are recorded per profile: two profiles with the same
rows get two snapshots. Metadata that only describes the build (counts of what was dropped) is
not: the same rows are the same dataset.

The metadata file gets ``files`` (every file of ``data/``: sha256 and size) so a later build can tell
an intact folder from a damaged one without loading it (``pipeline.snapshots.damage``).

Writing is atomic: the splits go to ``datasets/<kind>/.tmp-<fingerprint>-<host>-<pid>-<random>/``
and the folder is renamed to ``datasets/<kind>/<fingerprint>/``. A build killed meanwhile leaves its
temp folder; the next build of that kind removes those of dead processes on this host (and, from
before the host and pid were in the name, ones untouched for a day), never a live build's. When
the target folder already holds the snapshot intact, nothing is written (a concurrent build that
lost the race discards its copy); a damaged one is replaced. Data files are Arrow (``save_to_disk``), never pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from pipeline.datasets.common import BUILDER_VERSION
from pipeline.datasets.split import SPLITS
from pipeline.errors import DatasetError
from pipeline.locks import left_by_dead_process, owner
from pipeline.snapshots import DATA_DIR, META_FILE, Snapshot, damage, data_files, read_snapshot, snapshot_dir
from pipeline.workspace import Workspace
from storage.snapshots import latest_snapshot, record_snapshot, renew_snapshot, update_meta


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


def save(
    workspace: Workspace, kind: str, fingerprint_: str, splits: dict[str, list[dict[str, Any]]], meta: dict[str, Any]
) -> tuple[Snapshot, bool]:
    """Write the snapshot unless its folder holds it intact; returns it and whether it was written now."""
    from datasets import Dataset, DatasetDict
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    target = snapshot_dir(workspace, kind, fingerprint_)
    parent = target.parent
    if parent.is_dir():
        remove_stale_temp(parent)
    if (existing := intact(target)) is not None:
        return existing, False
    parent.mkdir(parents=True, exist_ok=True)
    temp = parent / f"{_TEMP}{fingerprint_[:16]}-{owner()}-{uuid.uuid4().hex[:8]}"
    try:
        schema = features(kind)
        columns = {split: {column: [row[column] for row in splits[split]] for column in schema} for split in SPLITS}
        data = DatasetDict({split: Dataset.from_dict(columns[split], features=schema) for split in SPLITS})
        shown = is_progress_bar_enabled()
        disable_progress_bar()  # progress is the CLI's to show, on stderr, and never on --json stdout
        try:
            data.save_to_disk(str(temp / DATA_DIR), num_shards=dict.fromkeys(SPLITS, 1))
        finally:
            if shown:
                enable_progress_bar()
        meta = {**meta, "files": data_files(temp)}
        (temp / META_FILE).write_text(
            json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        _fsync_tree(temp)
        if target.exists():
            if (existing := intact(target)) is not None:  # another build wrote the same snapshot meanwhile
                return existing, False
            shutil.rmtree(target)  # left half-made by a crash before this scheme, or damaged since: replace it
        try:
            os.rename(temp, target)
        except OSError:
            if (existing := intact(target)) is not None:  # another build wrote the same snapshot first
                return existing, False
            raise
    except OSError as e:
        raise DatasetError(f"can't write snapshot {kind}/{fingerprint_[:12]} to {target}: {e}") from e
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
    return read_snapshot(target), True


_TEMP = ".tmp-"
_LEGACY_TEMP_AGE_S = 24 * 3600


def _stale(entry: Path) -> bool:
    rest = entry.name[len(_TEMP) :]
    fingerprint_part, _, tag = rest.partition("-")
    if len(fingerprint_part) != 16 or not entry.is_dir() or entry.is_symlink():
        return False
    if len(tag) == 8 and tag.isalnum():  # ".tmp-<fp>-<random>": written before the owner was in the name
        return time.time() - entry.stat().st_mtime > _LEGACY_TEMP_AGE_S
    return left_by_dead_process(tag)


def remove_stale_temp(folder: Path) -> list[str]:
    """Remove the temp folders of builds that died (see the module docstring); their names."""
    removed = []
    for entry in folder.iterdir():
        if entry.name.startswith(_TEMP) and _stale(entry):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def intact(folder: Path) -> Snapshot | None:
    """The snapshot in ``folder`` when there is one and it is intact (``pipeline.snapshots.damage``)."""
    if not (folder / META_FILE).is_file():
        return None
    try:
        snapshot = read_snapshot(folder)
    except DatasetError:
        return None
    return snapshot if damage(snapshot) is None else None


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())


def record(workspace: Workspace, snapshot: Snapshot, profile: str, *, inputs_key: str | None = None) -> bool:
    """Record the snapshot in the store as the profile's newest of its kind; False if it already was.

    ``inputs_key`` (the key of the build that gave these rows) goes into the row's meta, replacing the
    key of an earlier build with other inputs that gave the same rows."""
    path = snapshot.path.relative_to(workspace.home.root).as_posix()
    rows = sum(snapshot.rows.values())
    wanted = {} if inputs_key is None else {"inputs_key": inputs_key}
    with workspace.store.read() as session:
        current = latest_snapshot(session, profile, snapshot.kind)
        if (
            current is not None
            and current.fingerprint == snapshot.fingerprint
            and all(current.meta.get(k) == v for k, v in wanted.items())
        ):
            return False
    with workspace.store.write() as session:
        current = latest_snapshot(session, profile, snapshot.kind)
        if current is not None and current.fingerprint == snapshot.fingerprint:
            update_meta(session, current, wanted)
            return False
        row = record_snapshot(
            session,
            profile=profile,
            kind=snapshot.kind,
            fingerprint=snapshot.fingerprint,
            path=path,
            rows=rows,
            meta={**snapshot.meta, **wanted},
        )
        current = latest_snapshot(session, profile, snapshot.kind)
        if current is not None and current.id != row.id:
            row = renew_snapshot(session, row)
        update_meta(session, row, wanted)
    return True


__all__ = ["features", "fingerprint", "intact", "record", "save"]
