"""Shared pieces of the dataset builders: the row every builder yields, the tally of what was cut
or dropped, and the builder version recorded in every snapshot."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

BUILDER_VERSION = "1"
Turn = dict[str, str]  # {"role": ..., "content": ...}, TRL's conversational message


@dataclass(frozen=True)
class Row:
    """One example of a snapshot before it is written.

    ``order`` places it inside its document (window, piece or pair index) so rows sort the same way
    in every build; ``key`` is the text compared by dedup; ``tokens`` its length in base tokens
    (a DPO row: chosen and rejected sequences together); ``longest`` its longest sequence when that
    differs from ``tokens``.
    """

    document_id: int
    ref: str
    source: str
    order: tuple[int, ...]
    data: dict[str, Any]
    key: str
    tokens: int = 0
    longest: int | None = None

    @property
    def longest_sequence(self) -> int:
        return self.tokens if self.longest is None else self.longest

    def record(self) -> dict[str, Any]:
        """The row as written: the kind's columns plus ``source`` and ``ref``."""
        return {**self.data, "source": self.source, "ref": self.ref}


@dataclass
class Tally:
    """Counts of what a builder cut, dropped or changed, keyed by reason (metadata ``cut`` /
    ``dropped`` / ``counts``)."""

    cut: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)

    def update(self, other: Tally) -> None:
        self.cut.update(other.cut)
        self.dropped.update(other.dropped)
        self.counts.update(other.counts)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {
            name: dict(sorted((k, v) for k, v in getattr(self, name).items() if v))
            for name in ("cut", "dropped", "counts")
        }


def turn_text(turns: list[Turn]) -> str:
    """A conversation as plain text, for dedup keys. System turns are left out: one long system
    prompt shared by many short chats would make them all look alike."""
    return "\n".join(f"{t['role']}: {t['content']}" for t in turns if t["role"] != "system")
