"""connectors.jsonl against small chat JSONL files written to tmp_path."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from connectors import jsonl
from connectors.conversation_text import fallback_title
from connectors.records import (
    ConnectorError,
    Cursor,
    ImportedLabel,
    Item,
    NothingChanged,
    Record,
    Skip,
    Unchanged,
)
from connectors.settings import JsonlSource


def line(**fields: Any) -> str:
    return json.dumps(fields)


def convo(conversation_id: Any = "j1", question: str = "How do I drain a node?", **extra: Any) -> str:
    messages = [
        {"role": "system", "content": "You are my ops assistant."},
        {"role": "user", "content": question},
        {"role": "assistant", "content": "kubectl drain NODE --ignore-daemonsets"},
    ]
    fields = {"messages": messages, **extra}
    if conversation_id is not None:
        fields = {"id": conversation_id, **fields}
    return json.dumps(fields)


def write(path: Path, lines: list[str], newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(newline.join(lines).encode("utf-8") + newline.encode())
    return path


def read(path: Path, cursor: Any = None) -> list[Item]:
    items = list(jsonl.read(JsonlSource(name="chats", type="jsonl", path=path), cursor))
    assert isinstance(items[-1], Cursor)
    return items


def records(items: list[Item]) -> dict[str, Record]:
    return {item.external_id: item for item in items if isinstance(item, Record)}


def skips(items: list[Item]) -> list[Skip]:
    return [item for item in items if isinstance(item, Skip)]


def unchanged(items: list[Item]) -> list[str]:
    return [item.external_id for item in items if isinstance(item, Unchanged)]


def test_reads_conversations_with_stable_ids(tmp_path: Path) -> None:
    lines = [convo("j1", label="good"), "", "   ", convo(42, "How do I cordon a node?")]
    path = write(tmp_path / "chats.jsonl", lines, newline="\r\n")
    first, second = read(path), read(path)
    assert first == second
    assert list(records(first)) == ["j1", "42"]
    assert not skips(first)
    record = records(first)["j1"]
    assert record.kind == "conversation"
    assert record.title == ""  # untitled: ingest derives it after redaction
    assert fallback_title(record.messages) == "How do I drain a node?"
    shape = [(m.position, m.role) for m in record.messages]
    assert shape == [(0, "system"), (1, "user"), (2, "assistant")]
    assert record.content.endswith("assistant: kubectl drain NODE --ignore-daemonsets")
    assert record.labels == (ImportedLabel("good"),)
    assert records(first)["42"].labels == ()


def test_a_second_read_changes_nothing_and_an_edit_reads_again(tmp_path: Path) -> None:
    path = write(tmp_path / "chats.jsonl", [convo("j1")])
    first = read(path)
    assert read(path, first[-1].state) == [NothingChanged(), first[-1]]
    write(path, [convo("j1", "How do I drain a node safely?")])
    again = records(read(path, first[-1].state))["j1"]
    assert "safely" in again.content
    assert again.content_hash != records(first)["j1"].content_hash


def test_malformed_lines_are_skipped_with_their_line_number(tmp_path: Path) -> None:
    path = write(
        tmp_path / "chats.jsonl",
        [
            convo("j1"),
            "{not json",
            "[1, 2]",
            line(id="j3"),
            line(id="j4", messages=[{"role": "wizard", "content": "hi"}]),
            line(id="j5", messages=[{"role": "user", "content": 5}]),
            line(id={"x": 1}, messages=[]),
            line(id="j7", messages=[{"role": "assistant", "content": None, "tool_calls": []}]),
            convo("j8"),
        ],
    )
    items = read(path)
    assert list(records(items)) == ["j1", "j8"]
    found = {item.item: (item.reason, item.external_id) for item in skips(items)}
    assert set(found) == {f"{path}:{n}" for n in range(2, 9)}
    assert found[f"{path}:2"][0].startswith("not valid JSON")
    assert found[f"{path}:3"] == ("not a JSON object", None)
    assert found[f"{path}:4"][0].startswith("no messages")
    assert found[f"{path}:5"] == ("message 0 has unknown role 'wizard'", "j4")
    assert "content must be a string or a list" in found[f"{path}:6"][0]
    assert found[f"{path}:7"][0].startswith("id must be")
    assert found[f"{path}:8"] == ("empty conversation", "j7")


def test_duplicate_ids_keep_the_first(tmp_path: Path) -> None:
    path = write(tmp_path / "chats.jsonl", [convo("j1"), convo("j1", "Something else")])
    items = read(path)
    assert "Something else" not in records(items)["j1"].content
    [skip] = skips(items)
    assert skip.item == f"{path}:2"
    assert "duplicate id 'j1'" in skip.reason and "line 1" in skip.reason


def test_an_invalid_label_keeps_the_conversation(tmp_path: Path) -> None:
    path = write(tmp_path / "chats.jsonl", [convo("j1", label="meh"), convo("j2", label="BAD")])
    items = read(path)
    assert records(items)["j1"].labels == ()
    assert records(items)["j2"].labels == (ImportedLabel("bad"),)
    [skip] = skips(items)
    assert skip.item == f"{path}:1" and "label must be" in skip.reason and skip.external_id is None


def test_missing_ids_use_a_stable_hash_of_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "chats.jsonl", [convo(None), convo(None, "Another question")])
    ids = list(records(read(path)))
    assert len(ids) == 2 and len(set(ids)) == 2
    write(path, [convo(None, "Another question"), convo(None)])
    assert sorted(records(read(path))) == sorted(ids)


def test_content_parts_and_role_aliases(tmp_path: Path) -> None:
    messages = [
        {"role": "developer", "content": "Be terse."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is on this screen?"},
                {"type": "image_url", "image_url": {"url": "x"}},
            ],
        },
        {"role": "assistant", "content": None, "tool_calls": [{"id": "t"}]},
        {"role": "function", "content": "42"},
        {"role": "assistant", "content": [{"type": "text", "text": "A stack trace."}], "weight": 0},
    ]
    text = "\ufeff" + line(id="p", title="Screens", messages=messages)
    path = write(tmp_path / "chats.jsonl", [text])
    record = records(read(path))["p"]
    assert record.title == "Screens"
    assert [(m.position, m.role, m.content) for m in record.messages] == [
        (0, "system", "Be terse."),
        (1, "user", "What is on this screen?\n[image]"),
        (2, "tool", "42"),
        (3, "assistant", "A stack trace."),
    ]
    assert record.messages[3].metadata == {"weight": 0}


def test_a_folder_prefixes_ids_with_the_relative_path(tmp_path: Path) -> None:
    folder = tmp_path / "chats"
    write(folder / "a.jsonl", [convo("j1")])
    write(folder / "team" / "b.jsonl", [convo("j1")])
    (folder / "notes.txt").write_text("ignored", encoding="utf-8")
    first = read(folder)
    assert list(records(first)) == ["a.jsonl#j1", "team/b.jsonl#j1"]
    assert set(first[-1].state["files"]) == {"a.jsonl", "team/b.jsonl"}
    assert read(folder, first[-1].state)[0] == NothingChanged()
    write(folder / "c.jsonl", [convo("j9")])
    again = read(folder, first[-1].state)
    assert list(records(again)) == ["c.jsonl#j9"]
    assert unchanged(again) == ["a.jsonl#j1", "team/b.jsonl#j1"]


def test_an_edit_reads_only_the_lines_that_changed(tmp_path: Path) -> None:
    path = write(tmp_path / "chats.jsonl", [convo("j1"), convo("j2"), convo("j3", label="good")])
    first = read(path)
    write(path, [convo("j3", label="bad"), convo("j1"), convo("j2", "Edited?"), convo("j4")], newline="\r\n")
    again = read(path, first[-1].state)
    assert list(records(again)) == ["j3", "j2", "j4"]
    assert unchanged(again) == ["j1"]
    assert records(again)["j3"].labels == (ImportedLabel("bad"),)
    assert "Edited?" in records(again)["j2"].content
    third = read(path, again[-1].state)
    assert third == [NothingChanged(), again[-1]]
    write(path, [convo("j1"), convo("j2", "Edited?"), convo("j3", label="bad"), convo("j4"), convo("j5")])
    assert list(records(read(path, again[-1].state))) == ["j5"]


def test_an_unchanged_line_whose_id_was_taken_by_an_earlier_one_is_a_duplicate(tmp_path: Path) -> None:
    path = write(tmp_path / "chats.jsonl", [convo("j1"), convo("j2")])
    first = read(path)
    write(path, [convo("j2", "Now first"), convo("j1"), convo("j2")])
    again = read(path, first[-1].state)
    assert "Now first" in records(again)["j2"].content
    assert unchanged(again) == ["j1"]
    [skip] = skips(again)
    assert skip.item == f"{path}:3" and "duplicate id 'j2'" in skip.reason


def test_lines_that_made_a_skip_are_read_again(tmp_path: Path) -> None:
    path = write(tmp_path / "chats.jsonl", [convo("j1", label="meh"), "{not json", convo("j2")])
    first = read(path)
    write(path, [convo("j1", label="meh"), "{not json", convo("j2"), convo("j3")])
    again = read(path, first[-1].state)
    assert list(records(again)) == ["j1", "j3"] and unchanged(again) == ["j2"]
    assert [s.item for s in skips(again)] == [f"{path}:1", f"{path}:2"]


def test_a_cursor_without_line_hashes_reads_every_line(tmp_path: Path) -> None:
    path = write(tmp_path / "chats.jsonl", [convo("j1")])
    old = {"files": read(path)[-1].state["files"]}
    assert read(path, old)[0] == NothingChanged()
    write(path, [convo("j1"), convo("j2")])
    assert list(records(read(path, old))) == ["j1", "j2"]


def test_unreadable_sources_raise_connector_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(ConnectorError, match=re.escape("nope.jsonl: not found")):
        read(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConnectorError, match=re.escape("no .jsonl files")):
        read(tmp_path / "empty")


def test_invalid_utf8_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "chats.jsonl"
    path.write_bytes(convo("j1").encode() + b"\n\xff\xfe broken\n" + convo("j2").encode())
    items = read(path)
    assert list(records(items)) == ["j1", "j2"]
    assert [s.item for s in skips(items)] == [f"{path}:2"]
