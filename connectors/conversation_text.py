"""The text derived from a conversation's messages: its readable content and its fallback title.

Pure functions of the messages, kept apart so that a step which changes the messages (redaction)
can derive both again from the changed messages rather than repair text made before it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from connectors.records import Message

TITLE_LENGTH = 80
UNTITLED = "Untitled conversation"

_WORD = re.compile(r"\S+")


def render_conversation(messages: Iterable[Message]) -> str:
    """Readable text of a conversation's main path, used as the document's content."""
    return "\n\n".join(f"{m.role}: {m.content}" for m in messages if m.branch == 0)


def fallback_title(messages: Iterable[Message]) -> str:
    """The first user message on the main path, on one line, at most TITLE_LENGTH characters."""
    first = next((m.content for m in messages if m.branch == 0 and m.role == "user"), "")
    words: list[str] = []
    length = -1
    for word in _WORD.finditer(first):  # not first.split(): a 100 MB message is 20M words
        words.append(word.group())
        length += len(words[-1]) + 1
        if length > TITLE_LENGTH:
            break
    text = " ".join(words)
    if len(text) > TITLE_LENGTH:
        text = text[: TITLE_LENGTH - 1].rstrip() + "…"
    return text or UNTITLED
