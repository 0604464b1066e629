"""Dataset builders: a profile's store rows -> HF ``datasets`` snapshots in TRL's standard formats.

``build_datasets(workspace, profile)`` reads the profile's sources (live, redacted documents and
the labels in force), builds each kind, dedups it, splits it by document into train / eval, checks
the SFT loss masks against the base model's chat template, and saves + records every snapshot
(see pipeline.snapshots for the on-disk contract). Kinds built: ``sft`` and ``text`` always, plus
``dpo`` / ``kto`` when the profile's ``stages`` name them. A kind with no rows still gets its
(empty) snapshot, so ``pipeline.snapshots.latest`` always describes the store as it is now and
never falls back to an older, non-empty build; trainers check ``Snapshot.rows``.

An unchanged store is not rebuilt: the build first computes the key of what it would read
(``inputs.inputs_key``: the store's content for the profile's sources, its labels, the profile's
settings, the base tokenizer's fingerprint, the builder's code; no document text is read) and, when
the latest snapshot of every kind it builds carries that key and its folder is intact
(``pipeline.snapshots.damage``), returns them with ``new`` false. ``force=True`` builds anyway.

One module per job: inputs (the key of what a build reads), corpus (what is read), split (eval
split), chat (conversation clean-up), sft, questions (note sections asked as chats, into sft),
text, preference (dpo + kto), windows (length windows),
dedup, masks (verifier + highlighted render), tokens (base tokenizer helpers), write (fingerprint +
atomic save + record), browse (reading snapshots back: list, find, show one example).

Metadata (``plora-snapshot.json``, also the store row's ``meta``):

- ``kind``, ``fingerprint``, ``profile``, ``sources``, ``builder_version``, ``created_at``,
  ``columns``;
- ``inputs_key``: the ``inputs.inputs_key`` of the build. The file keeps the key of the build that
  wrote the folder; the store row's is updated to the key of the newest build that gave these same
  rows (other inputs can give the same rows), and that is the one compared;
- ``files``: every file of ``data/`` with its size and sha256 (``pipeline.snapshots.damage``);
- ``settings``: ``eval_percent``, ``max_length``, ``base_model``, ``tokenizer_fingerprint``,
  ``split_salt``, ``dedup`` (and for sft ``include_unlabelled`` and ``assistant_mask``: how the
  assistant tokens were found, ``method`` generation / trl / prefix and the ``template_sha256`` it
  renders with): everything the fingerprint covers besides the rows;
- ``rows``, ``tokens``, ``documents`` (distinct documents): ``{"train": n, "eval": n}``;
  ``trained_tokens`` (sft: tokens carrying loss, as verified; text: all); ``max_example_tokens``
  (longest sequence; a DPO row counts chosen and rejected separately); ``rows_by_source``;
- ``labels``: labels in force on the kind's documents: ``documents_good|bad``,
  ``replies_good|bad``, ``corrections``, ``stale_ignored``;
- ``redactions``: secret type -> count, over the documents that gave rows;
- ``cut`` / ``dropped`` / ``counts``: reason -> count (see each builder's docstring; dedup adds
  ``dropped.exact_duplicate`` / ``near_duplicate``; special-token text is counted in
  ``counts.neutralised_special_tokens``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline.config import ProfileConfig
from pipeline.datasets import write
from pipeline.datasets.browse import ExampleView, find_snapshot, list_snapshots, show_example
from pipeline.datasets.common import BUILDER_VERSION, Row, Tally
from pipeline.datasets.corpus import CONVERSATION, NOTE_KINDS, TEXT_KINDS, label_counts, load_corpus, redaction_counts
from pipeline.datasets.dedup import dedup
from pipeline.datasets.inputs import DEDUP, inputs_key, kinds_for, settings_for
from pipeline.datasets.masks import verify_rows
from pipeline.datasets.preference import build_dpo, build_kto
from pipeline.datasets.questions import build_note_questions
from pipeline.datasets.sft import build_sft
from pipeline.datasets.split import SPLITS, side
from pipeline.datasets.text import build_text
from pipeline.datasets.tokens import Tokens, load_tokens
from pipeline.errors import DatasetError
from pipeline.kinds import DatasetKind
from pipeline.snapshots import Snapshot, damage, read_snapshot
from pipeline.workspace import Workspace
from storage.corpus import CorpusDocument
from storage.snapshots import latest_snapshot

Progress = Callable[[str, int, int], None]  # (kind, documents done, documents in all)


@dataclass(frozen=True)
class BuildResult:
    """What ``build_datasets`` made: the snapshot of each kind and whether its folder was written now."""

    profile: str
    snapshots: dict[str, Snapshot]
    new: dict[str, bool] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        """What the build lost to ``max_length``, one line per kind, with the fix (``length_warnings``)."""
        return length_warnings(self.profile, self.snapshots)

    def as_dict(self) -> dict[str, Any]:
        """The ``plora datasets build --json`` document."""
        return {
            "profile": self.profile,
            "warnings": self.warnings,
            "snapshots": {
                kind: {
                    "fingerprint": s.fingerprint,
                    "path": str(s.path),
                    "rows": s.rows,
                    "tokens": dict(s.meta.get("tokens", {})),
                    "new": self.new.get(kind, False),
                }
                for kind, s in self.snapshots.items()
            },
        }


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


def length_warnings(profile: str, snapshots: dict[str, Snapshot]) -> list[str]:
    """A line per kind that lost material to ``max_length``: whole conversations dropped and exchanges
    cut (sft), labelled replies lost (dpo / kto: a thumb or a correction that can't train), with the
    fix. A byte-level tokenizer makes chats long: a third of real chats at 1024 went unnoticed."""
    found = []
    for kind, snapshot in snapshots.items():
        meta = snapshot.meta
        dropped, cut = meta.get("dropped", {}), meta.get("cut", {})
        max_length = meta.get("settings", {}).get("max_length")
        fix = f"raise profiles.{profile}.train.max_length (now {max_length}) if the base model's context allows it"
        if kind == "sft" and (dropped.get("conversation_too_long") or cut.get("exchanges_too_long")):
            kept = sum(meta.get("documents", {}).values())
            total = kept + sum(dropped.values())
            lost = dropped.get("conversation_too_long", 0)
            found.append(
                f"sft: {lost} of {_plural(total, 'conversation')} dropped and "
                f"{_plural(cut.get('exchanges_too_long', 0), 'exchange')} cut as longer than {max_length} tokens; "
                f"{fix}"
            )
        elif kind in ("dpo", "kto") and dropped.get("too_long"):
            lost = _plural(dropped["too_long"], "labelled reply", "labelled replies")
            found.append(
                f"{kind}: {lost} (a thumb or a correction) lost as longer than {max_length} tokens "
                f"with its prompt; {fix}"
            )
    return found


def build_datasets(
    workspace: Workspace, profile_name: str | None = None, *, progress: Progress | None = None, force: bool = False
) -> BuildResult:
    """Build, save and record every snapshot kind of the profile (its first one by default).

    Unless ``force``, the profile's latest snapshots are returned as they are (``new`` false, nothing
    read but the key's inputs) when they were built from what the store holds now (see ``current``)."""
    name, profile = workspace.config.profile(profile_name)
    tokens = load_tokens(workspace)
    key = inputs_key(workspace, name, profile, tokens)
    if not force and (reused := current(workspace, name, kinds_for(profile), key)) is not None:
        return BuildResult(name, reused, dict.fromkeys(reused, False))
    corpus = load_corpus(workspace, profile.sources)
    conversations = [d for d in corpus if d.kind == CONVERSATION]
    texts = [d for d in corpus if d.kind in TEXT_KINDS]
    max_length = profile.train.max_length
    snapshots: dict[str, Snapshot] = {}
    new: dict[str, bool] = {}
    for kind in kinds_for(profile):
        documents = texts if kind == DatasetKind.TEXT else conversations
        notes = [d for d in texts if d.kind in NOTE_KINDS] if kind == DatasetKind.SFT and profile.note_questions else []
        documents = documents + notes
        tick = _ticker(kind, len(documents), progress)
        if kind == DatasetKind.SFT:
            rows, tally = build_sft(
                conversations, tokens, max_length=max_length, include_unlabelled=profile.include_unlabelled, tick=tick
            )
            if notes:
                asked, asked_tally = build_note_questions(notes, tokens, max_length=max_length, tick=tick)
                rows += asked
                tally.update(asked_tally)
        elif kind == DatasetKind.TEXT:
            rows, tally = build_text(documents, tokens, max_length=max_length, tick=tick)
        elif kind == DatasetKind.DPO:
            rows, tally = build_dpo(documents, tokens, max_length=max_length, tick=tick)
        else:
            rows, tally = build_kto(documents, tokens, max_length=max_length, tick=tick)
        snapshot, written = _finish(workspace, name, profile, kind, rows, tally, documents, tokens, key)
        snapshots[kind], new[kind] = snapshot, written
    return BuildResult(name, snapshots, new)


def _ticker(kind: str, total: int, progress: Progress | None) -> Callable[[], None] | None:
    if progress is None:
        return None
    done = 0
    progress(kind, 0, total)

    def tick() -> None:
        nonlocal done
        done += 1
        if done % 50 == 0 or done == total:
            progress(kind, done, total)

    return tick


def current(workspace: Workspace, profile: str, kinds: Sequence[str], key: str) -> dict[str, Snapshot] | None:
    """The profile's latest snapshot of each kind when every one was built from inputs with this key and
    its folder is intact, else None (something must be built)."""
    with workspace.store.read() as session:
        rows = [latest_snapshot(session, profile, kind) for kind in kinds]
        found = [
            (row.kind, row.fingerprint, workspace.home.root / row.path)
            for row in rows
            if row is not None and row.meta.get("inputs_key") == key
        ]
    if len(found) != len(kinds):
        return None
    snapshots: dict[str, Snapshot] = {}
    for kind, fingerprint, path in found:
        try:
            snapshot = read_snapshot(path)
        except DatasetError:  # its folder or its metadata file is gone or unreadable
            return None
        if snapshot.kind != kind or snapshot.fingerprint != fingerprint or damage(snapshot) is not None:
            return None
        snapshots[kind] = snapshot
    return snapshots


def _finish(
    workspace: Workspace,
    profile_name: str,
    profile: ProfileConfig,
    kind: str,
    rows: list[Row],
    tally: Tally,
    documents: list[CorpusDocument],
    tokens: Tokens,
    key: str,
) -> tuple[Snapshot, bool]:
    rows = dedup(rows, DEDUP, tally)
    by_split: dict[str, list[Row]] = {split: [] for split in SPLITS}
    for row in rows:
        by_split[side(row.ref, profile.eval_percent)].append(row)
    for split in SPLITS:
        by_split[split].sort(key=lambda row: (row.ref, row.order))
    trained: dict[str, int] = {}
    if kind == DatasetKind.SFT:
        for split in SPLITS:
            lengths = verify_rows(split, by_split[split], tokens)
            by_split[split] = [
                Row(r.document_id, r.ref, r.source, r.order, r.data, r.key, total)
                for r, (total, _) in zip(by_split[split], lengths, strict=True)
            ]
            trained[split] = sum(mask for _, mask in lengths)
    elif kind == DatasetKind.TEXT:
        trained = {split: sum(r.tokens for r in by_split[split]) for split in SPLITS}
    records = {split: [row.record() for row in by_split[split]] for split in SPLITS}
    settings = settings_for(workspace, profile, kind, tokens)
    fingerprint = write.fingerprint(profile=profile_name, kind=kind, settings=settings, splits=records)
    used = {row.document_id for row in rows}
    by_source: dict[str, Counter[str]] = {}
    for split in SPLITS:
        for row in by_split[split]:
            by_source.setdefault(row.source, Counter())[split] += 1
    meta: dict[str, Any] = {
        "kind": kind,
        "fingerprint": fingerprint,
        "profile": profile_name,
        "sources": list(profile.sources),
        "builder_version": BUILDER_VERSION,
        "inputs_key": key,
        "created_at": datetime.now(UTC).isoformat(),
        "settings": settings,
        "columns": list(write.features(kind)),
        "rows": {split: len(by_split[split]) for split in SPLITS},
        "tokens": {split: sum(r.tokens for r in by_split[split]) for split in SPLITS},
        "max_example_tokens": max((r.longest_sequence for split in SPLITS for r in by_split[split]), default=0),
        "documents": {split: len({r.document_id for r in by_split[split]}) for split in SPLITS},
        "rows_by_source": {
            source: {split: counts[split] for split in SPLITS} for source, counts in sorted(by_source.items())
        },
        "labels": label_counts(documents),
        "redactions": redaction_counts(d for d in documents if d.id in used),
        **tally.as_dict(),
    }
    if trained:
        meta["trained_tokens"] = trained
    snapshot, written = write.save(workspace, kind, fingerprint, records, meta)
    write.record(workspace, snapshot, profile_name, inputs_key=key)
    return snapshot, written


__all__ = [
    "BuildResult",
    "ExampleView",
    "Progress",
    "build_datasets",
    "current",
    "find_snapshot",
    "inputs_key",
    "kinds_for",
    "list_snapshots",
    "load_tokens",
    "settings_for",
    "show_example",
]
