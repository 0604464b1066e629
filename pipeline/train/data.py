"""A run's data: the profile's latest snapshots as rows, the stages they allow, tokenization for SFT,
and the fingerprint of everything trained and evaluated (what resume checks).

SFT trains on the ``sft`` rows (chats, assistant-only loss) and the ``text`` rows (every token) of
the train splits, plus replay rows in continue mode; the eval split of both is what eval loss is
measured on. ``dpo`` / ``kto`` rows feed their stage; ``dpo`` eval rows give preference accuracy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.errors import TrainingError
from pipeline.kinds import LM_KINDS, PREFERENCE_KINDS, DatasetKind, Stage
from pipeline.snapshots import Snapshot, latest

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

    from pipeline.workspace import Workspace

COLUMNS = {
    "sft": ("messages", "source", "ref"),
    "text": ("text", "source", "ref"),
    "dpo": ("prompt", "chosen", "rejected", "source", "ref"),
    "kto": ("prompt", "completion", "label", "source", "ref"),
}


@dataclass
class RunData:
    snapshots: dict[str, Snapshot]
    lm_train: list[dict[str, Any]]  # sft + text train rows, each with "kind"
    lm_eval: list[dict[str, Any]]
    preference_train: dict[str, list[dict[str, Any]]]  # "dpo" / "kto" -> rows
    preference_eval: dict[str, list[dict[str, Any]]]
    replay_rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fingerprints(self) -> dict[str, str]:
        return {kind: snap.fingerprint for kind, snap in sorted(self.snapshots.items())}

    def fingerprint(self) -> str:
        """sha256 over every row this run trains or evaluates on, in order, part by part."""
        digest = hashlib.sha256(b"plora-run-data-v1\n")
        parts: list[tuple[str, list[dict[str, Any]]]] = [
            ("lm_train", self.lm_train),
            ("lm_eval", self.lm_eval),
            ("replay", self.replay_rows),
            *((f"{kind}_train", rows) for kind, rows in sorted(self.preference_train.items())),
            *((f"{kind}_eval", rows) for kind, rows in sorted(self.preference_eval.items())),
        ]
        for name, rows in parts:
            digest.update(f"[{name}] {len(rows)}\n".encode())
            for row in rows:
                digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode() + b"\n")
        return digest.hexdigest()

    def sources(self) -> dict[str, dict[str, int]]:
        """Training rows per source and kind (replay rows counted under ``replay``)."""
        out: dict[str, dict[str, int]] = {}
        for rows, kind_of in ((self.lm_train, None), (self.replay_rows, "replay")):
            for row in rows:
                bucket = out.setdefault(str(row.get("source") or "(none)"), {})
                kind = kind_of or row["kind"]
                bucket[kind] = bucket.get(kind, 0) + 1
        for kind, rows in self.preference_train.items():
            for row in rows:
                bucket = out.setdefault(str(row.get("source") or "(none)"), {})
                bucket[kind] = bucket.get(kind, 0) + 1
        return dict(sorted(out.items()))


def _rows(snapshot: Snapshot, split: str) -> list[dict[str, Any]]:
    data = snapshot.load()
    if split not in data:
        return []
    columns = [c for c in COLUMNS[snapshot.kind] if c in data[split].column_names]
    return [{**{c: row[c] for c in columns}, "kind": snapshot.kind} for row in data[split]]


@dataclass(frozen=True)
class SnapshotUse:
    """A snapshot a run reads, and which of its splits: ``train`` (trained on), ``eval`` (measured on)."""

    snapshot: Snapshot
    splits: tuple[str, ...]


def training_snapshots(workspace: Workspace, profile: str, stages: Sequence[str]) -> dict[DatasetKind, SnapshotUse]:
    """kind -> the latest snapshot a run of the profile with these ``stages`` trains or evaluates on:
    ``sft`` and ``text`` always (both splits); a preference stage's kind when it has training rows;
    ``dpo`` also when it has eval rows (preference accuracy, even without the stage). Decided from the
    snapshots' recorded row counts, so no rows are loaded: the monthly cycle asks this too (what the
    next run would train on) and the adapter's manifest records exactly these fingerprints."""
    found: dict[DatasetKind, SnapshotUse] = {}
    for kind in DatasetKind:
        if kind in PREFERENCE_KINDS and kind not in stages and kind != DatasetKind.DPO:
            continue
        snapshot = latest(workspace, profile, kind)
        if snapshot is None:
            continue
        if kind in LM_KINDS:
            found[kind] = SnapshotUse(snapshot, ("train", "eval"))
            continue
        rows = snapshot.rows
        splits = (
            *(("train",) if kind in stages and rows.get("train", 0) > 0 else ()),
            *(("eval",) if kind == DatasetKind.DPO and rows.get("eval", 0) > 0 else ()),
        )
        if splits:
            found[kind] = SnapshotUse(snapshot, splits)
    return dict(sorted(found.items()))


def training_fingerprints(workspace: Workspace, profile: str, stages: Sequence[str]) -> dict[str, str]:
    """kind -> fingerprint of the ``training_snapshots``."""
    return {str(kind): use.snapshot.fingerprint for kind, use in training_snapshots(workspace, profile, stages).items()}


def load_run_data(
    workspace: Workspace, profile: str, stages: Sequence[Stage]
) -> tuple[RunData, list[Stage], list[dict[str, str]]]:
    """The rows of the profile's ``training_snapshots``; the stages that have data; the stages skipped
    and why. No ``sft`` snapshot is an error that says to build the datasets first."""
    used = training_snapshots(workspace, profile, stages)
    if DatasetKind.SFT not in used:
        raise TrainingError(
            f"profile {profile!r} has no sft dataset snapshot yet: run `plora datasets build "
            f"--profile {profile}` first (after `plora ingest`)"
        )
    lm_train, lm_eval = [], []
    for kind in LM_KINDS:
        if kind in used:
            lm_train += _rows(used[kind].snapshot, "train")
            lm_eval += _rows(used[kind].snapshot, "eval")
    if not lm_train:
        raise TrainingError(
            f"profile {profile!r}: the sft (and text) snapshots have no training rows; add material "
            "or labels and run `plora datasets build` again"
        )
    preference_train, preference_eval = {}, {}
    for kind in PREFERENCE_KINDS:
        if kind in used and "train" in used[kind].splits:
            preference_train[str(kind)] = _rows(used[kind].snapshot, "train")
        if kind in used and "eval" in used[kind].splits:
            preference_eval[str(kind)] = _rows(used[kind].snapshot, "eval")
    run_stages, skipped = [Stage.SFT], []
    for stage in stages[1:]:
        if stage in preference_train:
            run_stages.append(stage)
        else:
            skipped.append(
                {
                    "stage": str(stage),
                    "reason": f"no {stage} training rows in the profile's snapshots "
                    f"(label some replies good/bad or write corrections, then `plora datasets build`)",
                }
            )
    snapshots = {str(kind): use.snapshot for kind, use in used.items()}
    return RunData(snapshots, lm_train, lm_eval, preference_train, preference_eval), run_stages, skipped


def tokenize_lm(
    rows: Dataset | Sequence[Mapping[str, Any]], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> tuple[Dataset, int]:
    """SFT rows (chat or text; a Dataset or a list) as a Dataset of ``input_ids`` / ``labels`` / ``source``,
    and how many rows were dropped because nothing was left to learn after truncation to ``max_length``
    (``pipeline.tokenization.tokenize_dataset``: Arrow in, Arrow out, in batches)."""
    from pipeline.tokenization import tokenize_dataset

    return tokenize_dataset(rows, tokenizer, max_length)


def preference_dataset(rows: list[dict[str, Any]], kind: str) -> Dataset:
    """``dpo`` / ``kto`` rows in TRL's conversational format (only the columns TRL reads)."""
    from datasets import Dataset

    columns = ("prompt", "chosen", "rejected") if kind == "dpo" else ("prompt", "completion", "label")
    return Dataset.from_list([{c: row[c] for c in columns} for row in rows])
