"""A profile's corpus: its sources' live (not deleted), redacted documents, with labels in force."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from pipeline.workspace import Workspace
from storage.corpus import CorpusDocument, read_corpus

CONVERSATION = "conversation"
NOTE_KINDS = ("note", "runbook")  # markdown, cut at headings
TEXT_KINDS = (*NOTE_KINDS, "code", "commit")


def load_corpus(workspace: Workspace, sources: Sequence[str]) -> list[CorpusDocument]:
    """Live documents of ``sources``, oldest first (the dedup keeps the oldest of near-twins)."""
    with workspace.store.read() as session:
        return read_corpus(session, sources)


def label_counts(documents: Iterable[CorpusDocument]) -> dict[str, int]:
    """Labels in force on the documents: whole conversations / single replies, good / bad,
    corrections, and stale ones (left out: their message changed since)."""
    counts: Counter[str] = Counter()
    for document in documents:
        counts["stale_ignored"] += document.stale_labels
        for (position, _), label in document.labels.items():
            scope = "documents" if position is None else "replies"
            counts[f"{scope}_{label.value}"] += 1
            if label.correction:
                counts["corrections"] += 1
    keys = ("documents_good", "documents_bad", "replies_good", "replies_bad", "corrections", "stale_ignored")
    return {key: counts[key] for key in keys}


def redaction_counts(documents: Iterable[CorpusDocument]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for document in documents:
        counts.update(document.redactions)
    return dict(sorted(counts.items()))


__all__ = [
    "CONVERSATION",
    "NOTE_KINDS",
    "TEXT_KINDS",
    "CorpusDocument",
    "label_counts",
    "load_corpus",
    "redaction_counts",
]
