"""connectors.claude against small Claude exports written to tmp_path (zip and bare JSON)."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors import claude
from connectors.conversation_text import fallback_title
from connectors.records import ConnectorError, Cursor, Item, NothingChanged, Record, Skip
from connectors.settings import ClaudeSource

ROOT = "00000000-0000-4000-8000-000000000000"


def chat(uuid: str, sender: Any, text: str, *, content: Any = None, **extra: Any) -> dict[str, Any]:
    message = {
        "uuid": uuid,
        "text": text,
        "content": [{"type": "text", "text": text}] if content is None else content,
        "sender": sender,
        "created_at": "2024-05-01T10:00:01.5Z",
        "updated_at": "2024-05-01T10:00:01.5Z",
        "attachments": [],
        "files": [],
    }
    return {**message, **extra}


def subnetting() -> dict[str, Any]:
    return {
        "uuid": "k1",
        "name": "Subnetting help",
        "created_at": "2024-05-01T10:00:00.123456Z",
        "updated_at": "2024-05-01T10:05:00Z",
        "account": {"uuid": "me"},
        "chat_messages": [
            chat(
                "m1",
                "human",
                "Split 10.0.0.0/24 into four",
                attachments=[
                    {
                        "file_name": "plan.txt",
                        "file_type": "txt",
                        "file_size": 15,
                        "extracted_content": "sites A, B, C, D",
                    }
                ],
                files=[{"file_name": "diagram.png"}],
            ),
            chat(
                "m2",
                "assistant",
                "stale text field",
                content=[
                    {"type": "text", "text": "Use /26 subnets."},
                    {"type": "tool_use", "name": "calc", "input": {"expr": "256/4"}},
                    {"type": "tool_result", "content": [{"type": "text", "text": "64"}]},
                    {"type": "text", "text": "That gives 64 addresses each."},
                ],
            ),
            chat("m3", "human", "", content=[]),
            chat("m4", "human", "Thanks!", content=None) | {"content": None},
        ],
    }


def note_to_self() -> dict[str, Any]:
    return {
        "uuid": "k2",
        "name": "",
        "created_at": "2024-05-02T08:00:00Z",
        "updated_at": None,
        "chat_messages": [chat("n1", "human", "Note to self: renew the VPN certs before June")],
    }


def retried() -> dict[str, Any]:
    return {
        "uuid": "k3",
        "name": "Retry",
        "created_at": "2024-05-03T08:00:00Z",
        "updated_at": "2024-05-03T08:00:00Z",
        "chat_messages": [
            chat("h1", "human", "Explain VRRP", parent_message_uuid=ROOT),
            chat("a1", "assistant", "VRRP is a protocol.", parent_message_uuid="h1"),
            chat("a1b", "assistant", "VRRP elects a virtual router.", parent_message_uuid="h1"),
            chat("h2", "human", "And preemption?", parent_message_uuid="a1b"),
        ],
    }


def write_export(folder: Path, conversations: list[Any], *, form: str = "zip") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(conversations)
    if form == "zip":
        path = folder / "claude-export.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("conversations.json", text)
            archive.writestr("users.json", "[]")
            archive.writestr("projects.json", "[]")
        return path
    path = folder / "conversations.json"
    path.write_text(text, encoding="utf-8")
    return path


def read(path: Path, cursor: Any = None, **kwargs: Any) -> list[Item]:
    settings = ClaudeSource(name="claude", type="claude", path=path)
    items = list(claude.read(settings, cursor, **kwargs))
    assert isinstance(items[-1], Cursor)
    return items


def records(items: list[Item]) -> dict[str, Record]:
    return {item.external_id: item for item in items if isinstance(item, Record)}


@pytest.fixture(params=["zip", "json"])
def export(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    conversations = [subnetting(), note_to_self(), retried()]
    return write_export(tmp_path / "export", conversations, form=request.param)


def test_reads_every_conversation_with_stable_ids(export: Path) -> None:
    first, second = read(export), read(export)
    assert list(records(first)) == ["k1", "k2", "k3"]
    assert records(first) == records(second)
    record = records(first)["k1"]
    assert record.kind == "conversation"
    assert record.title == "Subnetting help"
    assert record.updated_at == datetime(2024, 5, 1, 10, 5, tzinfo=UTC)
    assert record.metadata["created_at"] == "2024-05-01T10:00:00.123456+00:00"


def test_second_read_with_the_cursor_changes_nothing(export: Path) -> None:
    cursor = read(export)[-1]
    assert read(export, cursor.state) == [NothingChanged(), cursor]


def test_an_edited_export_is_read_again(tmp_path: Path) -> None:
    path = write_export(tmp_path, [subnetting()])
    first = read(path)
    edited = subnetting()
    edited["chat_messages"][3]["text"] = "Thanks, that works!"
    write_export(tmp_path, [edited])
    record = records(read(path, first[-1].state))["k1"]
    assert record.content.endswith("user: Thanks, that works!")
    assert record.content_hash != records(first)["k1"].content_hash


def test_message_text_attachments_and_empty_messages(export: Path) -> None:
    messages = records(read(export))["k1"].messages
    shape = [(m.position, m.role, m.external_id) for m in messages]
    assert shape == [(0, "user", "m1"), (1, "assistant", "m2"), (2, "user", "m4")]
    attachment = "[attachment: plan.txt]\nsites A, B, C, D"
    assert messages[0].content == f"Split 10.0.0.0/24 into four\n\n{attachment}"
    assert messages[0].metadata == {"attachments": 1, "files": ["diagram.png"]}
    assert messages[1].content == "Use /26 subnets.\n\nThat gives 64 addresses each."
    assert messages[1].metadata == {"tool_uses": 1}
    assert messages[2].content == "Thanks!"
    assert messages[0].created_at == datetime(2024, 5, 1, 10, 0, 1, 500000, tzinfo=UTC)
    assert [m.parent_external_id for m in messages] == [None, "m1", "m2"]


def test_a_conversation_without_assistant_turns_is_kept(export: Path) -> None:
    record = records(read(export))["k2"]
    assert record.metadata["assistant_turns"] == 0
    assert record.title == ""  # untitled: ingest derives it after redaction
    assert fallback_title(record.messages) == "Note to self: renew the VPN certs before June"
    assert record.updated_at is None


def test_retried_replies_become_branches(export: Path) -> None:
    messages = records(read(export))["k3"].messages
    shape = [(m.position, m.branch, m.external_id, m.parent_external_id) for m in messages]
    assert shape == [
        (0, 0, "h1", None),
        (1, 0, "a1b", "h1"),
        (1, 1, "a1", "h1"),
        (2, 0, "h2", "a1b"),
    ]


def test_current_leaf_chooses_the_main_path(tmp_path: Path) -> None:
    conversation = retried() | {"current_leaf_message_uuid": "a1"}
    messages = records(read(write_export(tmp_path, [conversation])))["k3"].messages
    shape = [(m.external_id, m.branch) for m in messages]
    assert shape == [("h1", 0), ("a1", 0), ("a1b", 1), ("h2", 1)]


def test_malformed_conversations_in_the_middle_are_skipped(tmp_path: Path) -> None:
    empty = {"uuid": "k4", "chat_messages": [chat("e1", "human", "  ", content=[])]}
    broken = {"uuid": "k5", "name": "broken", "chat_messages": "oops"}
    odd = {
        "uuid": "k6",
        "chat_messages": [
            7,
            chat("o1", ["who"], "hi"),
            chat("o2", "assistant", "", content="no", attachments=[3]),
        ],
    }
    conversations = [subnetting(), empty, broken, [], {"name": "no uuid"}, odd, note_to_self()]
    items = read(write_export(tmp_path, conversations), chunk_size=128)
    assert list(records(items)) == ["k1", "k2"]
    skips = [(item.item, item.reason) for item in items if isinstance(item, Skip)]
    assert skips[0] == ("k4", "empty conversation")
    assert skips[1] == ("k5", "malformed conversation: no chat_messages list")
    assert skips[2][1] == "not a conversation (expected a JSON object)"
    assert skips[3][1] == "conversation has no uuid"
    assert skips[3][0].endswith("conversations.json[4]")
    assert skips[4] == ("k6", "empty conversation")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.zip", None, "not found"),
        ("claude.zip", b"not a zip at all", "not a readable zip"),
        ("conversations.json", b'{"uuid": "k1"}', "expected a JSON array"),
        ("conversations.json", b"[1, 2", "ends"),
    ],
)
def test_unreadable_sources_raise_connector_error_naming_the_path(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConnectorError) as error:
        read(path)
    assert str(path) in str(error.value) and message in str(error.value)
