"""The official Anthropic (Claude) data export: the .zip, its folder, or its conversations.json.

Claude conversations are mostly linear. When messages carry ``parent_message_uuid`` and a reply
was edited or retried, the last child at each fork (in export order) is the main path, unless
the conversation names its ``current_leaf_message_uuid``; the other children become branches.
Attachments' extracted text is appended to their message. conversations.json is streamed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.conversations import conversation_record, is_empty, without_duplicates
from connectors.exports import Export, locate_export
from connectors.fingerprints import cursor_state, fingerprints, unchanged
from connectors.json_stream import CHUNK_SIZE, BadElement
from connectors.json_values import as_list, as_object, as_str, from_iso, iso
from connectors.message_tree import Node, Turn, arrange
from connectors.records import Cursor, Item, NothingChanged, Record, Role, Skip
from connectors.settings import ClaudeSource

CONVERSATIONS = "conversations.json"

_ROLES: dict[str, Role] = {"human": "user", "user": "user", "assistant": "assistant"}


def read(settings: ClaudeSource, cursor: Mapping[str, Any] | None, *, chunk_size: int = CHUNK_SIZE) -> Iterator[Item]:
    """Records (or Skips) for every conversation of the export, then the Cursor."""
    export = locate_export(settings.name, settings.path, CONVERSATIONS)
    files = fingerprints(settings.name, export.files(), cursor)
    if unchanged(cursor, files):
        yield NothingChanged()
        yield Cursor(cursor_state(files))
        return
    yield from without_duplicates(_conversations(export, chunk_size))
    yield Cursor(cursor_state(files))


def _conversations(export: Export, chunk_size: int) -> Iterator[tuple[str, Record | Skip]]:
    for index, element in enumerate(export.stream_array(chunk_size)):
        where = f"{export.where}[{index}]"
        yield where, conversation_item(element, where)


def conversation_item(element: Any, item: str) -> Record | Skip:
    """One element of conversations.json as a Record, or a Skip saying what is wrong with it."""
    if isinstance(element, BadElement):
        return Skip(item, element.reason)
    if not isinstance(element, dict):
        return Skip(item, "not a conversation (expected a JSON object)")
    conversation_id = as_str(element.get("uuid"))
    if conversation_id is None:
        return Skip(item, "conversation has no uuid")
    chat = element.get("chat_messages")
    if not isinstance(chat, list):
        reason = "malformed conversation: no chat_messages list"
        return Skip(conversation_id, reason, external_id=conversation_id)
    leaf = as_str(element.get("current_leaf_message_uuid"))
    messages = arrange(_nodes(conversation_id, chat), leaf)
    if is_empty(messages):
        return Skip(conversation_id, "empty conversation", external_id=conversation_id)
    created = iso(from_iso(element.get("created_at")))
    return conversation_record(
        conversation_id,
        as_str(element.get("name")),
        messages,
        updated_at=from_iso(element.get("updated_at")),
        metadata={"created_at": created} if created else {},
    )


def _nodes(conversation_id: str, chat: list[Any]) -> list[Node]:
    """The messages as tree nodes; one without ``parent_message_uuid`` follows the one before."""
    nodes: list[Node] = []
    previous: str | None = None
    for index, message in enumerate(chat):
        if not isinstance(message, dict):
            continue
        node_id = as_str(message.get("uuid")) or f"{conversation_id}:{index}"
        parent = as_str(message.get("parent_message_uuid")) or previous
        nodes.append(Node(id=node_id, parent=parent, turn=_turn(node_id, message)))
        previous = node_id
    return nodes


def _turn(node_id: str, message: dict[str, Any]) -> Turn | None:
    sender = message.get("sender")
    role = _ROLES.get(sender) if isinstance(sender, str) else None
    text = message_text(message)
    if role is None or not text:
        return None
    blocks = [block for block in as_list(message.get("content")) if isinstance(block, dict)]
    names = (as_str(as_object(f).get("file_name")) for f in as_list(message.get("files")))
    files = [name for name in names if name]
    details: dict[str, Any] = {
        "attachments": len(as_list(message.get("attachments"))),
        "files": files,
        "tool_uses": sum(block.get("type") == "tool_use" for block in blocks),
    }
    return Turn(
        role=role,
        content=text,
        external_id=node_id,
        created_at=from_iso(message.get("created_at")),
        metadata={key: value for key, value in details.items() if value},
    )


def message_text(message: Mapping[str, Any]) -> str:
    """Text blocks of ``content`` (else ``text``), then each attachment's extracted text."""
    blocks = [as_object(block) for block in as_list(message.get("content"))]
    texts = [b["text"].strip() for b in blocks if b.get("type") == "text" and as_str(b.get("text"))]
    body = "\n\n".join(text for text in texts if text)
    if not body and isinstance(message.get("text"), str):
        body = message["text"].strip()
    parts = [body] if body else []
    for entry in as_list(message.get("attachments")):
        attachment = as_object(entry)
        extracted = attachment.get("extracted_content")
        if isinstance(extracted, str) and extracted.strip():
            name = as_str(attachment.get("file_name")) or "unnamed"
            parts.append(f"[attachment: {name}]\n{extracted.strip()}")
    return "\n\n".join(parts)
