"""Conversations as TRL messages: the paths through a stored conversation and the clean-up every
conversational builder applies.

Clean-up (``to_turns``): tool messages are dropped (tool noise: call results, search dumps), empty
messages too; special-token text is neutralised; consecutive messages of the same role (what is
left around a dropped tool call) are merged into one turn, joined by a blank line, so every chat
template sees alternating turns.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.datasets.common import Tally, Turn
from pipeline.datasets.tokens import Tokens
from storage.corpus import CorpusDocument, CorpusMessage

ROLES = ("system", "user", "assistant")


def main_path(document: CorpusDocument) -> list[CorpusMessage]:
    """The kept path (branch 0), in order."""
    return [m for m in document.messages if m.branch == 0]


def history(document: CorpusDocument, message: CorpusMessage) -> list[CorpusMessage]:
    """The messages before ``message`` on its own path (for a regenerated reply: the kept turns up
    to its parent, then its branch), oldest first."""
    if message.branch == 0 or not message.parent_external_id:
        return [m for m in main_path(document) if m.position < message.position]
    by_id = {m.external_id: m for m in document.messages if m.external_id}
    path: list[CorpusMessage] = []
    seen: set[str] = set()
    parent: str | None = message.parent_external_id
    while parent and parent in by_id and parent not in seen:
        seen.add(parent)
        path.append(by_id[parent])
        parent = by_id[parent].parent_external_id
    path.reverse()
    if path and path[0].position == 0:
        return path
    # A broken link: fall back to the kept path before this position.
    return [m for m in main_path(document) if m.position < message.position]


def to_turns(messages: Sequence[CorpusMessage | Turn], tokens: Tokens, tally: Tally) -> list[Turn]:
    """Messages as clean, alternating TRL turns (see the module docstring)."""
    turns: list[Turn] = []
    for message in messages:
        role, content = (
            (message["role"], message["content"]) if isinstance(message, dict) else (message.role, message.content)
        )
        if role not in ROLES:
            tally.cut["tool_messages"] += 1
            continue
        if not content.strip():
            tally.cut["empty_messages"] += 1
            continue
        content, count = tokens.neutralise(content)
        tally.counts["neutralised_special_tokens"] += count
        if turns and turns[-1]["role"] == role:
            turns[-1] = {"role": role, "content": turns[-1]["content"] + "\n\n" + content}
            tally.cut["merged_turns"] += 1
            continue
        turns.append({"role": role, "content": content})
    return turns


def exchanges(turns: list[Turn]) -> tuple[list[Turn], list[list[Turn]]]:
    """The leading system turns, and the rest as exchanges: the turns up to and including each
    assistant turn (a user turn, maybe a system note, then the reply). A reply with no user turn of
    its own (after a mid-conversation system note) stays in the exchange before it, so no reply is
    ever separated from the user turn it answers. Trailing turns without a reply are left out."""
    start = 0
    while start < len(turns) and turns[start]["role"] == "system":
        start += 1
    groups: list[list[Turn]] = []
    current: list[Turn] = []
    for turn in turns[start:]:
        current.append(turn)
        if turn["role"] == "assistant":
            if groups and not any(t["role"] == "user" for t in current):
                groups[-1].extend(current)
            else:
                groups.append(current)
            current = []
    return turns[:start], groups


def ends_with_user(turns: list[Turn]) -> bool:
    return bool(turns) and turns[-1]["role"] == "user"


__all__ = ["ROLES", "ends_with_user", "exchanges", "history", "main_path", "to_turns"]
