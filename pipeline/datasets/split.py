"""The eval split: a document's side is decided by a hash of its stable ref alone.

``source:external_id`` survives re-ingest and edits, so a document lands on the same side in every
month's build however the corpus grows, and adapter versions are compared on the same held-out
documents. The hash is mapped to a bucket 0..9999 and documents with ``bucket < eval_percent * 100``
are held out: raising ``eval_percent`` only moves documents from train to eval, never back. Every
row of a document (windows, pieces, pairs) goes to its document's side, in every kind, so nothing
of a held-out document is trained on. A small corpus can end up with an empty eval side: the
split stays a property of each document rather than of the corpus.
"""

from __future__ import annotations

import hashlib

SALT = "plora-eval-split-v1"
TRAIN, EVAL = "train", "eval"
SPLITS = (TRAIN, EVAL)


def bucket(ref: str) -> int:
    digest = hashlib.sha256(f"{SALT}\0{ref}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % 10_000


def side(ref: str, eval_percent: int) -> str:
    """``"eval"`` or ``"train"`` for the document ``ref`` (``source:external_id``)."""
    return EVAL if bucket(ref) < eval_percent * 100 else TRAIN


__all__ = ["EVAL", "SALT", "SPLITS", "TRAIN", "bucket", "side"]
