"""Reading dataset snapshots back: every recorded snapshot (``plora datasets list``), one found by
a fingerprint prefix, and one example with the tokens the trainer sees (``plora datasets show``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.datasets.masks import Segment, render
from pipeline.datasets.split import EVAL, SPLITS, TRAIN
from pipeline.datasets.tokens import load_tokens
from pipeline.errors import UsageError
from pipeline.kinds import LM_KINDS, DatasetKind
from pipeline.snapshots import Snapshot, read_snapshot
from pipeline.workspace import Workspace
from storage.snapshots import find_snapshot as find_rows
from storage.snapshots import latest_snapshot
from storage.snapshots import list_snapshots as list_rows


def list_snapshots(workspace: Workspace, profile: str | None = None) -> list[dict[str, Any]]:
    """Every recorded snapshot, oldest first, with whether it is its profile's latest of its kind."""
    with workspace.store.read() as session:
        rows = list_rows(session, profile)
        latest_ids = {
            key: current.id
            for key in {(r.profile, r.kind) for r in rows}
            if (current := latest_snapshot(session, *key)) is not None
        }
        return [
            {
                "profile": r.profile,
                "kind": r.kind,
                "fingerprint": r.fingerprint,
                "path": str(workspace.home.root / r.path),
                "rows": dict(r.meta.get("rows", {})),
                "tokens": dict(r.meta.get("tokens", {})),
                "created_at": r.created_at.isoformat(),
                "latest": latest_ids.get((r.profile, r.kind)) == r.id,
            }
            for r in rows
        ]


def find_snapshot(workspace: Workspace, prefix: str) -> Snapshot:
    """The snapshot whose fingerprint starts with ``prefix``; UsageError when none or several do."""
    prefix = prefix.strip().lower()
    if not prefix:
        raise UsageError("give a snapshot fingerprint (or a prefix of one); see `plora datasets list`")
    with workspace.store.read() as session:
        rows = find_rows(session, prefix)
        found = [(r.kind, r.fingerprint, workspace.home.root / r.path) for r in rows]
    if not found:
        raise UsageError(f"no dataset snapshot matches {prefix!r}; see `plora datasets list`")
    if len(found) > 1:
        names = ", ".join(f"{kind}/{fp[:12]}" for kind, fp, _ in found[:5])
        raise UsageError(f"{prefix!r} matches {len(found)} snapshots ({names}); give more of the fingerprint")
    return read_snapshot(found[0][2])


@dataclass(frozen=True)
class ExampleView:
    kind: str
    split: str
    index: int
    row: dict[str, Any]
    segments: list[Segment] | None  # sft / text: the tokens the trainer sees, trained or not
    note: str | None = None  # e.g. the base tokenizer changed since the snapshot was built

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "split": self.split,
            "index": self.index,
            "row": self.row,
            "segments": None
            if self.segments is None
            else [{"text": s.text, "trained": s.trained} for s in self.segments],
            "note": self.note,
        }


def show_example(workspace: Workspace, snapshot: Snapshot, index: int, split: str = TRAIN) -> ExampleView:
    if split not in SPLITS:
        raise UsageError(f"split {split!r}: expected {TRAIN} or {EVAL}")
    count = snapshot.rows.get(split, 0)
    if not 0 <= index < count:
        raise UsageError(
            f"{snapshot.kind}/{snapshot.fingerprint[:12]} has {count} {split} examples; "
            f"--example must be 0..{count - 1}"
            if count
            else f"{snapshot.kind}/{snapshot.fingerprint[:12]} has no {split} examples"
        )
    row = snapshot.load()[split][index]
    if snapshot.kind not in LM_KINDS:
        return ExampleView(snapshot.kind, split, index, row, None)
    tokens = load_tokens(workspace)
    note = None
    if snapshot.meta.get("settings", {}).get("tokenizer_fingerprint") != tokens.fingerprint:
        note = (
            f"the base tokenizer ({workspace.config.base_model.name}) changed since this snapshot was built; "
            "shown with the current one"
        )
    segments = (
        render(row["messages"], tokens)
        if snapshot.kind == DatasetKind.SFT
        else [Segment(row["text"] + tokens.eos, True)]
    )
    return ExampleView(snapshot.kind, split, index, row, segments, note)


__all__ = ["ExampleView", "find_snapshot", "list_snapshots", "show_example"]
