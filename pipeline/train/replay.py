"""Replay for continue mode: mix a sample of earlier training rows into the new training set, so the
adapter keeps what it learnt last month while it learns this month's material.

Earlier data = the ``train`` rows of the ``sft`` and ``text`` snapshots the parent adapter and its
ancestors were trained on (the ``snapshots`` recorded in each version's manifest, followed up the
``parent_version`` chain), minus any row whose content is in today's train or eval split (so an
eval row is never trained on, and nothing is counted twice). The sample size is
``round(replay_fraction * number of new training rows)`` (capped by what is available), drawn with
the run's seed from the pool in a fixed order, so a resumed run draws the same rows.

When the earlier data can't be had (no snapshots in the manifest, snapshot folders deleted, nothing
left after removing today's rows), the report says so and training goes on without it.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.errors import PloraError
from pipeline.snapshots import DATA_DIR, read_snapshot, snapshot_dir

if TYPE_CHECKING:
    from pipeline.workspace import Workspace

REPLAY_KINDS = ("sft", "text")
MAX_ANCESTORS = 24


@dataclass
class ReplayReport:
    fraction: float
    requested: int = 0  # rows the fraction asks for
    rows: int = 0  # rows mixed in
    pool: int = 0  # earlier rows available (after removing today's)
    snapshots: list[str] = field(default_factory=list)  # "kind/fingerprint[:12] (vN)" read from
    notes: list[str] = field(default_factory=list)  # why less (or nothing) was replayed

    def as_dict(self) -> dict[str, Any]:
        return {
            "fraction": self.fraction,
            "requested": self.requested,
            "rows": self.rows,
            "pool": self.pool,
            "snapshots": list(self.snapshots),
            "note": "; ".join(self.notes) or None,
        }


def row_key(row: Mapping[str, Any]) -> str:
    """Content identity of an sft/text row (messages or text; source and ref don't count)."""
    content = row.get("messages") if row.get("messages") is not None else row.get("text")
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def _lineage(workspace: Workspace, parent: Any) -> Iterable[Any]:
    """The parent version, then its ancestors (as far as the registry still resolves them)."""
    from pipeline import registry

    seen: set[int] = set()
    version = parent
    while version is not None and version.version not in seen and len(seen) < MAX_ANCESTORS:
        seen.add(version.version)
        yield version
        if version.parent_version is None:
            return
        try:
            version = registry.resolve(workspace, f"{version.profile}@v{version.parent_version}")
        except PloraError:
            return


def replay_sample(
    workspace: Workspace,
    parent: Any,
    *,
    current: Mapping[str, str],
    exclude: set[str],
    new_rows: int,
    fraction: float,
    seed: int,
) -> tuple[list[dict[str, Any]], ReplayReport]:
    """Earlier rows to mix in (with their ``kind``), and what was done.

    ``current``: today's snapshot fingerprint per kind (not earlier data). ``exclude``: ``row_key`` of
    every row in today's train and eval splits."""
    report = ReplayReport(fraction=fraction, requested=round(fraction * new_rows))
    if report.requested == 0:
        report.notes.append("replay_fraction is 0" if fraction == 0 else "no new rows to scale the sample by")
        return [], report
    pool: dict[str, dict[str, Any]] = {}
    read: set[tuple[str, str]] = set()
    for version in _lineage(workspace, parent):
        snapshots = version.manifest.snapshots if version.manifest is not None else {}
        if not snapshots:
            report.notes.append(f"v{version.version}'s manifest records no dataset snapshots")
            continue
        for kind in REPLAY_KINDS:
            fingerprint = snapshots.get(kind)
            if not fingerprint or fingerprint == current.get(kind) or (kind, fingerprint) in read:
                continue
            read.add((kind, fingerprint))
            folder = snapshot_dir(workspace, kind, fingerprint)
            if not (folder / DATA_DIR).is_dir():
                report.notes.append(f"{kind} snapshot {fingerprint[:12]} of v{version.version} is no longer on disk")
                continue
            try:
                train = read_snapshot(folder).load()["train"]
            except (PloraError, KeyError) as e:
                report.notes.append(f"{kind} snapshot {fingerprint[:12]} of v{version.version} can't be read ({e})")
                continue
            report.snapshots.append(f"{kind}/{fingerprint[:12]} (v{version.version})")
            for stored in train:
                row = {**dict(stored), "kind": kind}
                key = row_key(row)
                if key not in exclude:
                    pool.setdefault(key, row)
    report.pool = len(pool)
    if not pool:
        if not report.notes:
            report.notes.append("the parent was trained on today's snapshots: no earlier rows to replay")
        return [], report
    keys = sorted(pool)
    chosen = random.Random(seed).sample(keys, min(report.requested, len(keys)))
    if len(chosen) < report.requested:
        report.notes.append(f"only {len(chosen)} earlier rows available (asked for {report.requested})")
    report.rows = len(chosen)
    return [pool[key] for key in sorted(chosen)], report
