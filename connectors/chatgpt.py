"""The official ChatGPT data export: the .zip, its folder, or its conversations.json.

Each conversation is a tree of messages (``mapping``); the path from the root to
``current_node`` is what the person kept (branch 0), every regenerated or edited reply and its
subtree becomes a branch (1, 2, ...). Thumbs up/down from ``message_feedback.json`` become
message-level ImportedLabels; ids are matched in either form exports use (a UUID with dashes, or
its 32 hex digits without, as older exports write ``conversation_id``), and a thumb that matches no
message of the export is reported as a Skip. An assistant message addressed to a tool or plugin
(``recipient`` other than ``all``: the call's JSON) is a tool turn, not reply text.
conversations.json is streamed, one conversation at a time.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from connectors.conversations import conversation_record, is_empty, without_duplicates
from connectors.exports import Export, locate_export
from connectors.fingerprints import cursor_state, fingerprints, unchanged
from connectors.json_stream import CHUNK_SIZE, MAX_ITEM_MB, BadElement, JsonStreamError, iter_json_array
from connectors.json_values import as_object, as_str, from_epoch, iso
from connectors.message_tree import Node, Turn, arrange
from connectors.records import (
    Cursor,
    ImportedLabel,
    Item,
    LabelValue,
    NothingChanged,
    Record,
    Role,
    Skip,
)
from connectors.settings import ChatGPTSource

CONVERSATIONS = "conversations.json"
FEEDBACK = "message_feedback.json"
TOOL_CONTENT_LIMIT = 2000
_LAST_WORD = re.compile(r"\S+$")

_ROLES: frozenset[Role] = frozenset({"system", "user", "assistant", "tool"})
_DROPPED_TYPES = frozenset({"user_editable_context", "model_editable_context", "thoughts", "reasoning_recap"})
_RATINGS: dict[str, LabelValue] = {
    "thumbsup": "good",
    "thumbs_up": "good",
    "thumbsdown": "bad",
    "thumbs_down": "bad",
}

Feedback = Mapping[str, Mapping[str, ImportedLabel]]


def read(settings: ChatGPTSource, cursor: Mapping[str, Any] | None, *, chunk_size: int = CHUNK_SIZE) -> Iterator[Item]:
    """Records (or Skips) for every conversation of the export, then the Cursor."""
    export = locate_export(settings.name, settings.path, CONVERSATIONS)
    files = fingerprints(settings.name, export.files(FEEDBACK), cursor)
    if unchanged(cursor, files):
        yield NothingChanged()
        yield Cursor(cursor_state(files))
        return
    feedback, problems = read_feedback(export, chunk_size)
    yield from problems
    yield from without_duplicates(_conversations(export, feedback, chunk_size))
    yield Cursor(cursor_state(files))


def id_key(value: str) -> str:
    """The form ids are matched in: a UUID as 32 lower-case hex digits (with or without its dashes,
    any case); any other id as it is."""
    try:
        return uuid.UUID(value).hex
    except ValueError:
        return value


def _conversations(export: Export, feedback: Feedback, chunk_size: int) -> Iterator[tuple[str, Record | Skip]]:
    matched: set[tuple[str, str]] = set()
    for index, element in enumerate(export.stream_array(chunk_size)):
        where = f"{export.where}[{index}]"
        item = conversation_item(element, where, feedback)
        if isinstance(item, Record):
            key = id_key(item.external_id)
            matched.update((key, id_key(label.message_external_id or "")) for label in item.labels)
        yield where, item
    where = export.sibling_where(FEEDBACK)
    for conversation, rated in feedback.items():
        for message, label in rated.items():
            if (conversation, message) not in matched:
                reason = (
                    f"a thumbs {'up' if label.value == 'good' else 'down'} for a message that is not in "
                    f"{CONVERSATIONS} (conversation {conversation}, message {message}); not imported"
                )
                yield where, Skip(f"{where}: {conversation}/{message}", reason)


def conversation_item(element: Any, item: str, feedback: Feedback) -> Record | Skip:
    """One element of conversations.json as a Record, or a Skip saying what is wrong with it."""
    if isinstance(element, BadElement):
        return Skip(item, element.reason)
    if not isinstance(element, dict):
        return Skip(item, "not a conversation (expected a JSON object)")
    conversation_id = as_str(element.get("id")) or as_str(element.get("conversation_id"))
    if conversation_id is None:
        return Skip(item, "conversation has no id")
    mapping = element.get("mapping")
    if not isinstance(mapping, dict):
        reason = "malformed conversation: no message mapping"
        return Skip(conversation_id, reason, external_id=conversation_id)
    nodes = [_node(key, value) for key, value in mapping.items() if isinstance(value, dict)]
    messages = arrange(nodes, as_str(element.get("current_node")))
    if is_empty(messages):
        return Skip(conversation_id, "empty conversation", external_id=conversation_id)
    rated = feedback.get(id_key(conversation_id), {})
    labels = tuple(  # each on the message's id as this export writes it
        replace(rated[id_key(m.external_id)], message_external_id=m.external_id)
        for m in messages
        if m.external_id is not None and id_key(m.external_id) in rated
    )
    details = {
        "create_time": iso(from_epoch(element.get("create_time"))),
        "model": as_str(element.get("default_model_slug")),
    }
    return conversation_record(
        conversation_id,
        as_str(element.get("title")),
        messages,
        updated_at=from_epoch(element.get("update_time")),
        metadata={key: value for key, value in details.items() if value},
        labels=labels,
    )


def _node(key: str, node: dict[str, Any]) -> Node:
    message = node.get("message")
    turn = _turn(message) if isinstance(message, dict) else None
    return Node(id=key, parent=as_str(node.get("parent")), turn=turn)


def _turn(message: dict[str, Any]) -> Turn | None:
    """The message as a Turn; None for hidden, empty or unknown-role messages."""
    author = as_object(message.get("author"))
    role = author.get("role")
    meta = as_object(message.get("metadata"))
    if not isinstance(role, str) or role not in _ROLES:
        return None
    recipient = as_str(message.get("recipient"))
    if role == "assistant" and recipient not in (None, "all"):
        role = "tool"  # a call to a tool or plugin (its JSON), not a reply to the person
    if meta.get("is_visually_hidden_from_conversation"):
        return None
    content = as_object(message.get("content"))
    text = content_text(content).strip()
    if not text:
        return None
    if role == "tool" and len(text) > TOOL_CONTENT_LIMIT:
        kept = text[:TOOL_CONTENT_LIMIT]
        if not text[TOOL_CONTENT_LIMIT].isspace():  # never half a word: a token cut short is no longer
            kept = _LAST_WORD.sub("", kept)  # recognisable as a secret, so redaction would miss it
        kept = kept.rstrip()
        text = f"{kept}\n… [{len(text) - len(kept)} more characters]"
    content_type = content.get("content_type")
    details = {
        "content_type": content_type if content_type != "text" else None,
        "model": meta.get("model_slug"),
        "recipient": message.get("recipient") if message.get("recipient") != "all" else None,
        "tool": author.get("name") if role == "tool" and author.get("role") == "tool" else None,
        "tool_call": "true" if author.get("role") == "assistant" and role == "tool" else None,
    }
    return Turn(
        role=role,  # type: ignore[arg-type]  # one of Turn's roles: mapped above
        content=text,
        external_id=as_str(message.get("id")),
        created_at=from_epoch(message.get("create_time")),
        metadata={key: value for key, value in details.items() if as_str(value)},
    )


def content_text(content: Mapping[str, Any]) -> str:
    """The readable text of a message's ``content``, whatever its content_type; "" if none."""
    content_type = content.get("content_type")
    if isinstance(content_type, str) and content_type in _DROPPED_TYPES:
        return ""
    text = content.get("text")
    if content_type == "code" and isinstance(text, str) and text.strip():
        language = as_str(content.get("language"))
        fence = "```" + (language if language and language != "unknown" else "")
        return f"{fence}\n{text.strip()}\n```"
    parts = content.get("parts")
    if isinstance(parts, list):
        return "\n".join(t for t in map(_part_text, parts) if t.strip())
    for key in ("text", "result"):
        if isinstance(content.get(key), str):
            return content[key]
    return ""


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        return ""
    if part.get("content_type") == "image_asset_pointer":
        return "[image]"
    return part["text"] if isinstance(part.get("text"), str) else ""


def read_feedback(
    export: Export, chunk_size: int = CHUNK_SIZE
) -> tuple[dict[str, dict[str, ImportedLabel]], list[Skip]]:
    """Thumbs from message_feedback.json by conversation id, then message id (both as ``id_key``).

    The file is streamed one entry at a time like conversations.json, so its size costs no memory
    beyond the labels. A missing file means no labels; a file that is not a valid JSON list is one
    Skip and no labels (the conversations still come through); an entry that can't be used is a
    Skip of its own. For a message rated twice the later entry wins.
    """
    where = export.sibling_where(FEEDBACK)
    labels: dict[str, dict[str, ImportedLabel]] = {}
    problems: list[Skip] = []
    with export.open(FEEDBACK) as stream:
        if stream is None:
            return {}, []
        try:
            for index, entry in enumerate(iter_json_array(stream, chunk_size, MAX_ITEM_MB << 20)):
                if isinstance(entry, BadElement):
                    return {}, [Skip(where, f"{entry.reason} (entry {index}); thumbs up/down were not imported")]
                parsed = _feedback_label(entry)
                if isinstance(parsed, str):
                    problems.append(Skip(f"{where}[{index}]", parsed))
                else:
                    conversation_id, label = parsed
                    labels.setdefault(id_key(conversation_id), {})[id_key(label.message_external_id or "")] = label
        except JsonStreamError as e:
            return {}, [Skip(where, f"not a valid list of feedback entries: {e}; thumbs up/down were not imported")]
    return labels, problems


def _feedback_label(entry: Any) -> tuple[str, ImportedLabel] | str:
    """(conversation id, label), or the reason the entry can't be used."""
    if not isinstance(entry, dict):
        return "feedback entry is not an object"
    conversation_id = as_str(entry.get("conversation_id"))
    message_id = as_str(entry.get("message_id")) or as_str(entry.get("id"))
    if conversation_id is None or message_id is None:
        return "feedback entry has no conversation_id or message id"
    rating = entry.get("rating")
    value = _RATINGS.get(rating.lower()) if isinstance(rating, str) else None
    if value is None:
        return f"unknown rating {rating!r} (expected thumbsUp or thumbsDown)"
    note = _feedback_note(entry.get("content"))
    return conversation_id, ImportedLabel(value, message_external_id=message_id, note=note)


def _feedback_note(content: Any) -> str | None:
    """The text the person typed with the thumb; ``content`` is usually a JSON string."""
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except ValueError:
            return content.strip() or None
    text = as_object(content).get("text")
    return (text.strip() or None) if isinstance(text, str) else None
