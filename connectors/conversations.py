"""Building conversation Records, shared by the chat connectors (chatgpt, claude, jsonl)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from connectors.conversation_text import render_conversation
from connectors.records import ImportedLabel, Message, Record, Skip, content_hash


def conversation_record(
    external_id: str,
    title: str | None,
    messages: tuple[Message, ...],
    *,
    updated_at: datetime | None = None,
    metadata: Mapping[str, Any] | None = None,
    labels: tuple[ImportedLabel, ...] = (),
) -> Record:
    """A conversation Record.

    ``content_hash`` covers the title, the main path, every branch message and the imported
    labels: anything storage has to write again when it changes. An untitled conversation's
    title is "": ingest derives one (``fallback_title``) after redacting the messages.
    """
    title = (title or "").strip()
    content = render_conversation(messages)
    main = [m for m in messages if m.branch == 0]
    counts = {
        "turns": len(main),
        "assistant_turns": sum(m.role == "assistant" for m in main),
        "branch_messages": len(messages) - len(main),
    }
    return Record(
        external_id=external_id,
        kind="conversation",
        title=title,
        content=content,
        content_hash=content_hash(title, content, *_branch_parts(messages), *_label_parts(labels)),
        updated_at=updated_at,
        metadata={**counts, **(metadata or {})},
        messages=messages,
        labels=labels,
    )


def is_empty(messages: Iterable[Message]) -> bool:
    """No user or assistant text at all."""
    return not any(m.role in ("user", "assistant") and m.content.strip() for m in messages)


def without_duplicates(items: Iterable[tuple[str, Record | Skip]]) -> Iterator[Record | Skip]:
    """Pass (where, item) pairs on; an item whose external id came before becomes a Skip."""
    seen: set[str] = set()
    for where, item in items:
        if item.external_id is not None and item.external_id in seen:
            reason = f"duplicate conversation id {item.external_id!r}; the first one was kept"
            yield Skip(where, reason)
            continue
        if item.external_id is not None:
            seen.add(item.external_id)
        yield item


def _branch_parts(messages: Iterable[Message]) -> Iterator[str]:
    for m in messages:
        if m.branch:
            yield f"branch {m.position}.{m.branch} after {m.parent_external_id} {m.role}"
            yield m.content


def _label_parts(labels: Iterable[ImportedLabel]) -> Iterator[str]:
    for label in labels:
        yield f"label {label.value} {label.message_external_id}"
        yield label.note or ""
