"""Text helpers the scanners share: ASCII lower-casing that keeps offsets, literal tries."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def lower(text: str) -> str:
    """Lower-cased with the same offsets (every literal we look for is ASCII)."""
    low = text.lower()
    return low if len(low) == len(text) else text.translate(_ASCII_LOWER)  # "İ".lower() is 2 chars


def trie(words: Sequence[str]) -> str:
    """One regex for many literals, factored by prefix (re tries the alternatives in turn)."""
    children: dict[str, list[str]] = {}
    ends = False
    for word in words:
        if word:
            children.setdefault(word[0], []).append(word[1:])
        else:
            ends = True
    if not children:
        return ""
    branches = [re.escape(c) + trie(rest) for c, rest in sorted(children.items())]
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    return f"(?:{body})?" if ends else body
