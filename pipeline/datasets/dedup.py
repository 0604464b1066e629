"""Dedup across sources: exact duplicates by content hash, near-duplicates by MinHash LSH.

Rows are visited oldest document first (store row id = order of ingest, then the row's place in
its document), and a row is dropped when an earlier one has the same text (whitespace collapsed;
``dropped.exact_duplicate``) or, for rows of *another* document, an estimated Jaccard similarity of
word 5-gram shingles of at least ``threshold`` (``dropped.near_duplicate``). Keeping the oldest
means a document added later never pushes out one already in a snapshot, so the eval set stays
put as the corpus grows. Rows of one document (windows, pieces, pairs) are never near-duplicates
of each other. What is compared is each row's ``key``: the text without system turns for chats,
the body without its header for text pieces.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.datasets.common import Row, Tally

_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class DedupSettings:
    threshold: float = 0.85
    num_perm: int = 128
    shingle_words: int = 5
    seed: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {"exact": "sha256 of whitespace-collapsed text", "near": "minhash-lsh", **asdict(self)}


def shingles(text: str, size: int) -> set[bytes]:
    words = _WORD.findall(text.lower())
    if len(words) <= size:
        return {" ".join(words).encode()} if words else set()
    return {" ".join(words[i : i + size]).encode() for i in range(len(words) - size + 1)}


def dedup(rows: list[Row], settings: DedupSettings, tally: Tally) -> list[Row]:
    """``rows`` without duplicates, in the order given."""
    from datasketch import MinHash, MinHashLSH

    ordered = sorted(range(len(rows)), key=lambda i: (rows[i].document_id, rows[i].order))
    lsh = MinHashLSH(threshold=settings.threshold, num_perm=settings.num_perm)
    seen: set[str] = set()
    owners: dict[str, int] = {}
    sketches: dict[str, MinHash] = {}
    keep: set[int] = set()
    for index in ordered:
        row = rows[index]
        digest = hashlib.sha256(_SPACE.sub(" ", row.key).strip().encode("utf-8", "surrogatepass")).hexdigest()
        if digest in seen:
            tally.dropped["exact_duplicate"] += 1
            continue
        seen.add(digest)
        grams = shingles(row.key, settings.shingle_words)
        if grams:
            sketch = MinHash(num_perm=settings.num_perm, seed=settings.seed)
            sketch.update_batch(list(grams))
            twins = [
                key
                for key in lsh.query(sketch)
                if owners[key] != row.document_id and sketches[key].jaccard(sketch) >= settings.threshold
            ]
            if twins:
                tally.dropped["near_duplicate"] += 1
                continue
            key = str(index)
            lsh.insert(key, sketch)
            owners[key], sketches[key] = row.document_id, sketch
        keep.add(index)
    return [row for index, row in enumerate(rows) if index in keep]


__all__ = ["DedupSettings", "dedup", "shingles"]
