"""connectors.chatgpt against small ChatGPT exports written to tmp_path (zip and bare JSON)."""

from __future__ import annotations

import io
import json
import os
import random
import re
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import pytest

from connectors import chatgpt
from connectors.conversation_text import fallback_title
from connectors.json_stream import BadElement, JsonStreamError, iter_json_array
from connectors.records import (
    ConnectorError,
    Cursor,
    ImportedLabel,
    Item,
    NothingChanged,
    Record,
    Skip,
)
from connectors.settings import ChatGPTSource

Json = dict[str, Any]


def node(node_id: str, parent: str | None, children: list[str], message: Json | None = None) -> Json:
    return {"id": node_id, "message": message, "parent": parent, "children": children}


def msg(
    message_id: str,
    role: str,
    text: str | None = None,
    *,
    content: Json | None = None,
    create_time: float | None = 1_700_000_000.0,
    name: str | None = None,
    metadata: Json | None = None,
    recipient: str = "all",
) -> Json:
    return {
        "id": message_id,
        "author": {"role": role, "name": name, "metadata": {}},
        "create_time": create_time,
        "content": content or {"content_type": "text", "parts": [text]},
        "status": "finished_successfully",
        "weight": 1.0,
        "metadata": metadata or {},
        "recipient": recipient,
    }


def nginx_conversation() -> Json:
    """Hidden system prompt, a regenerated reply (the old one continued), image, code, tool."""
    image = {"content_type": "image_asset_pointer", "asset_pointer": "file-service://f"}
    code = {"content_type": "code", "language": "python", "text": "print(1)"}
    mapping = {
        "root": node("root", None, ["sys"]),
        "sys": node(
            "sys",
            "root",
            ["u1"],
            msg("sys", "system", "", metadata={"is_visually_hidden_from_conversation": True}),
        ),
        "u1": node(
            "u1",
            "sys",
            ["a1", "a1b"],
            msg("u1", "user", "How do I restart nginx?", create_time=None),
        ),
        "a1": node("a1", "u1", ["u2old"], msg("a1", "assistant", "Use the init script.")),
        "u2old": node("u2old", "a1", [], msg("u2old", "user", "Which init script?")),
        "a1b": node("a1b", "u1", ["u2"], msg("a1b", "assistant", "Run `sudo systemctl restart nginx`.")),
        "u2": node(
            "u2",
            "a1b",
            ["a2"],
            msg(
                "u2",
                "user",
                content={
                    "content_type": "multimodal_text",
                    "parts": [image, "What about this error?"],
                },
            ),
        ),
        "a2": node("a2", "u2", ["t2"], msg("a2", "assistant", content=code, recipient="python")),
        "t2": node(
            "t2",
            "a2",
            ["a3"],
            msg("t2", "tool", content={"content_type": "execution_output", "text": "1"}, name="py"),
        ),
        "a3": node(
            "a3",
            "t2",
            [],
            msg("a3", "assistant", "The output is 1.", metadata={"model_slug": "gpt-4o"}),
        ),
    }
    return {
        "id": "c1",
        "title": "Restart nginx",
        "create_time": 1_700_000_000.5,
        "update_time": 1_700_000_100.25,
        "mapping": mapping,
        "current_node": "a3",
        "default_model_slug": "gpt-4o",
    }


def short_conversation(conversation_id: str = "c2", text: str = "Write a haiku about BGP") -> Json:
    return {
        "conversation_id": conversation_id,
        "title": None,
        "create_time": None,
        "update_time": None,
        "mapping": {
            "r": node("r", None, ["u"]),
            "u": node("u", "r", ["a"], msg("u", "user", text)),
            "a": node("a", "u", [], msg("a", "assistant", "Routes come and go")),
        },
        "current_node": "a",
    }


FEEDBACK = [
    {
        "id": "fb1",
        "conversation_id": "c1",
        "message_id": "a1b",
        "rating": "thumbsUp",
        "content": '{"text": "spot on"}',
    },
    {"id": "a1", "conversation_id": "c1", "user_id": "me", "rating": "thumbsDown", "content": "{}"},
    {"id": "fb3", "conversation_id": "other", "message_id": "x", "rating": "thumbsUp"},
]


def write_export(
    folder: Path, conversations: list[Any], *, form: str = "zip", feedback: list[Any] | None = None
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"conversations.json": json.dumps(conversations)}
    if feedback is not None:
        files["message_feedback.json"] = json.dumps(feedback)
    if form == "zip":
        path = folder / "export.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, text in files.items():
                archive.writestr(name, text)
            archive.writestr("chat.html", "<html></html>")
        return path
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder / "conversations.json"


def read(path: Path, cursor: Any = None, **kwargs: Any) -> list[Item]:
    settings = ChatGPTSource(name="chatgpt", type="chatgpt", path=path)
    items = list(chatgpt.read(settings, cursor, **kwargs))
    assert isinstance(items[-1], Cursor)
    assert not any(isinstance(item, Cursor) for item in items[:-1])
    return items


def records(items: list[Item]) -> dict[str, Record]:
    return {item.external_id: item for item in items if isinstance(item, Record)}


@pytest.fixture(params=["zip", "json"])
def export(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    conversations = [nginx_conversation(), short_conversation()]
    return write_export(tmp_path / "export", conversations, form=request.param, feedback=FEEDBACK)


def test_reads_every_conversation_with_stable_ids(export: Path) -> None:
    first, second = read(export), read(export)
    assert list(records(first)) == ["c1", "c2"]
    assert records(first) == records(second)
    c1 = records(first)["c1"]
    assert c1.kind == "conversation"
    assert c1.title == "Restart nginx"
    assert c1.updated_at is not None
    assert c1.updated_at.timestamp() == pytest.approx(1_700_000_100.25)
    assert c1.metadata["model"] == "gpt-4o"
    assert c1.metadata["branch_messages"] == 2


def test_second_read_with_the_cursor_changes_nothing(export: Path) -> None:
    cursor = read(export)[-1]
    assert read(export, cursor.state) == [NothingChanged(), cursor]
    json.dumps(cursor.state)


def test_touching_the_file_without_changing_it_changes_nothing(export: Path) -> None:
    cursor = read(export)[-1]
    stat = export.stat()
    os.utime(export, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    again = read(export, cursor.state)
    assert again[0] == NothingChanged()
    assert again[-1].state != cursor.state


def test_an_edited_export_is_read_again(tmp_path: Path) -> None:
    path = write_export(tmp_path, [short_conversation()], form="json")
    first = read(path)
    write_export(tmp_path, [short_conversation(text="A limerick about OSPF instead")], form="json")
    record = records(read(path, first[-1].state))["c2"]
    assert "limerick" in record.content
    assert record.content_hash != records(first)["c2"].content_hash


def test_a_new_feedback_file_beside_the_json_counts_as_a_change(tmp_path: Path) -> None:
    path = write_export(tmp_path, [nginx_conversation()], form="json")
    cursor = read(path)[-1]
    write_export(tmp_path, [nginx_conversation()], form="json", feedback=FEEDBACK)
    assert records(read(path, cursor.state))["c1"].labels


def test_main_path_is_branch_zero_and_regenerated_replies_are_branches(export: Path) -> None:
    record = records(read(export))["c1"]
    shape = [(m.position, m.branch, m.role, m.external_id, m.parent_external_id) for m in record.messages]
    assert shape == [
        (0, 0, "user", "u1", None),
        (1, 0, "assistant", "a1b", "u1"),
        (1, 1, "assistant", "a1", "u1"),
        (2, 0, "user", "u2", "a1b"),
        (2, 1, "user", "u2old", "a1"),
        (3, 0, "tool", "a2", "u2"),  # the assistant's call to the python tool: a tool turn (issue 18)
        (4, 0, "tool", "t2", "a2"),
        (5, 0, "assistant", "a3", "t2"),
    ]
    assert record.content.startswith("user: How do I restart nginx?\n\nassistant: Run `sudo systemctl restart nginx`.")
    assert "init script" not in record.content


def test_message_details(export: Path) -> None:
    by_id = {m.external_id: m for m in records(read(export))["c1"].messages}
    assert "sys" not in by_id
    assert by_id["u1"].created_at is None
    assert by_id["a1b"].created_at is not None
    assert by_id["u2"].content == "[image]\nWhat about this error?"
    assert by_id["a2"].content == "```python\nprint(1)\n```"
    assert by_id["a2"].metadata["recipient"] == "python" and by_id["a2"].role == "tool"
    assert by_id["t2"].role == "tool" and by_id["t2"].content == "1"
    assert by_id["t2"].metadata["tool"] == "py"
    assert by_id["a3"].metadata["model"] == "gpt-4o"


def test_title_falls_back_to_the_first_user_message(export: Path) -> None:
    """An untitled conversation comes without a title; ingest derives it after redaction."""
    record = records(read(export))["c2"]
    assert record.title == ""
    assert fallback_title(record.messages) == "Write a haiku about BGP"
    assert record.updated_at is None
    assert "create_time" not in record.metadata


def test_thumbs_become_labels_on_the_rated_messages(export: Path) -> None:
    items = read(export)
    assert records(items)["c1"].labels == (
        ImportedLabel("good", message_external_id="a1b", note="spot on"),
        ImportedLabel("bad", message_external_id="a1", note=None),
    )
    assert records(items)["c2"].labels == ()
    [skip] = [item for item in items if isinstance(item, Skip)]  # fb3: a conversation not in the export
    assert "(conversation other, message x)" in skip.reason


def test_a_changed_thumb_changes_the_content_hash(tmp_path: Path) -> None:
    one = read(write_export(tmp_path / "a", [nginx_conversation()], feedback=FEEDBACK[:1]))
    two = read(write_export(tmp_path / "b", [nginx_conversation()], feedback=FEEDBACK[:2]))
    assert records(one)["c1"].content == records(two)["c1"].content
    assert records(one)["c1"].content_hash != records(two)["c1"].content_hash


def test_an_edit_on_an_alternative_branch_changes_the_content_hash(tmp_path: Path) -> None:
    edited = nginx_conversation()
    edited["mapping"]["u2old"]["message"]["content"]["parts"] = ["Which init script, exactly?"]
    one = records(read(write_export(tmp_path / "a", [nginx_conversation()])))["c1"]
    two = records(read(write_export(tmp_path / "b", [edited])))["c1"]
    assert one.content == two.content
    assert one.content_hash != two.content_hash


def test_broken_feedback_file_is_a_skip_and_conversations_still_come(tmp_path: Path) -> None:
    path = write_export(tmp_path, [short_conversation()], form="json")
    (tmp_path / "message_feedback.json").write_text("{not json", encoding="utf-8")
    items = read(path)
    assert "c2" in records(items)
    [skip] = [item for item in items if isinstance(item, Skip)]
    assert "message_feedback.json" in skip.item


def test_a_large_feedback_file_is_streamed(tmp_path: Path) -> None:
    padding = [
        {"conversation_id": f"other{i}", "message_id": f"m{i}", "rating": "thumbsUp", "padding": "x" * 10_000}
        for i in range(3_000)
    ]
    path = write_export(tmp_path, [nginx_conversation()], feedback=[*FEEDBACK, *padding])
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo("message_feedback.json").file_size > 30_000_000
    tracemalloc.start()
    try:
        items = read(path, chunk_size=1 << 16)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000  # the file is never held whole
    assert len(records(items)["c1"].labels) == 2
    assert len([item for item in items if isinstance(item, Skip)]) == 3_001  # fb3 and the padding: no message


def test_a_broken_entry_in_the_feedback_file_imports_no_thumbs(tmp_path: Path) -> None:
    path = write_export(tmp_path, [nginx_conversation()], form="json")
    good = json.dumps(FEEDBACK[0])
    (tmp_path / "message_feedback.json").write_text(f'[{good}, {{"id": }}, {good}]', encoding="utf-8")
    items = read(path, chunk_size=16)
    assert not records(items)["c1"].labels
    [skip] = [item for item in items if isinstance(item, Skip)]
    assert skip.item.endswith("message_feedback.json")
    assert skip.reason.startswith("not valid JSON") and "(entry 1); thumbs up/down were not imported" in skip.reason


def test_content_types(tmp_path: Path) -> None:
    def content(content_type: str, **fields: Any) -> Json:
        return {"content_type": content_type, **fields}

    mapping = {
        "r": node("r", None, ["u"]),
        "u": node("u", "r", ["th"], msg("u", "user", "Find the RFC for BGP")),
        "th": node("th", "u", ["q"], msg("th", "assistant", content=content("thoughts"))),
        "q": node("q", "th", ["b"], msg("q", "tool", content=content("tether_quote", text="RFC 4271"))),
        "b": node(
            "b",
            "q",
            ["x"],
            msg("b", "tool", content=content("tether_browsing_display", result="x" * 5000)),
        ),
        "x": node("x", "b", ["ctx"], msg("x", "assistant", content=content("mystery", blob=3))),
        "ctx": node(
            "ctx",
            "x",
            ["a"],
            msg("ctx", "user", content=content("user_editable_context", user_profile="me")),
        ),
        "a": node(
            "a",
            "ctx",
            [],
            msg("a", "assistant", content=content("new", parts=["RFC 4271.", {"text": "And 4760."}, 7])),
        ),
    }
    conversation = {"id": "c", "title": "t", "mapping": mapping, "current_node": "a"}
    messages = records(read(write_export(tmp_path, [conversation])))["c"].messages
    assert [(m.external_id, m.role, m.position) for m in messages] == [
        ("u", "user", 0),
        ("q", "tool", 1),
        ("b", "tool", 2),
        ("a", "assistant", 3),
    ]
    assert messages[1].content == "RFC 4271"
    assert len(messages[2].content) < 2100 and "more characters" in messages[2].content
    assert messages[3].content == "RFC 4271.\nAnd 4760."


def test_odd_trees_do_not_hang_or_crash(tmp_path: Path) -> None:
    cyclic = {
        "id": "cyc",
        "mapping": {
            "a": node("a", "b", ["b"], msg("a", "user", "loop one")),
            "b": node("b", "a", ["a"], msg("b", "assistant", "loop two")),
        },
        "current_node": "a",
    }
    no_current = short_conversation("nocur")
    no_current["mapping"]["a2"] = node("a2", "u", [], msg("a2", "assistant", "A regeneration"))
    del no_current["current_node"]
    broken = short_conversation("weird")
    broken["mapping"]["junk"] = "not a node"
    broken["mapping"]["u"]["message"]["author"] = ["not", "a", "dict"]
    broken["mapping"]["a"]["message"]["content"] = {"content_type": ["x"], "parts": "nope"}
    empty = {"id": "empty", "title": "nothing", "mapping": {"r": node("r", None, [])}}
    no_mapping = {"id": "nomap", "title": "x"}
    items = read(write_export(tmp_path, [cyclic, no_current, broken, empty, no_mapping]))

    found = records(items)
    cycle = [(m.role, m.content) for m in found["cyc"].messages]
    assert cycle == [("assistant", "loop two"), ("user", "loop one")]
    latest_first = [(m.external_id, m.branch) for m in found["nocur"].messages]
    assert latest_first == [("u", 0), ("a2", 0), ("a", 1)]
    skips = {item.external_id: item.reason for item in items if isinstance(item, Skip)}
    assert skips == {
        "weird": "empty conversation",
        "empty": "empty conversation",
        "nomap": "malformed conversation: no message mapping",
    }


def test_malformed_conversations_in_the_middle_are_skipped(tmp_path: Path) -> None:
    c0, c1, c2 = (json.dumps(short_conversation(f"c{i}")) for i in range(3))
    bad = ['"just a string"', '{"title": "no id"}', '{"id": "x", "mapping": {,}}']
    path = tmp_path / "conversations.json"
    path.write_text(f"[{c0}, {', '.join(bad)}, {c1}, {c1}, {c2}]", encoding="utf-8")
    items = read(path, chunk_size=64)
    assert list(records(items)) == ["c0", "c1", "c2"]
    reasons = [item.reason for item in items if isinstance(item, Skip)]
    assert len(reasons) == 4
    assert reasons[0] == "not a conversation (expected a JSON object)"
    assert reasons[1] == "conversation has no id"
    assert reasons[2].startswith("not valid JSON: Expecting property name") and "byte" in reasons[2]
    assert reasons[3].startswith("duplicate conversation id 'c1'")


def test_a_break_the_reader_cannot_resync_from_raises_with_the_offset(tmp_path: Path) -> None:
    path = tmp_path / "conversations.json"
    path.write_text(f"[{json.dumps(short_conversation())}}}, {{}}]", encoding="utf-8")
    with pytest.raises(ConnectorError, match=r"conversations\.json.*at byte \d+"):
        read(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        (b"PK\x03\x04 this is not really a zip", "zip"),
        (b'{"conversations": []}', "expected a JSON array"),
        (b"", "empty"),
        (b"<html>export page</html>", "expected a JSON array"),
        (b'[{"id": "c1", "mapping": {}', "ends inside an element"),
    ],
)
def test_unreadable_sources_raise_connector_error_naming_the_path(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    zipped = content is not None and content.startswith(b"PK")
    path = tmp_path / ("export.zip" if zipped else "conversations.json")
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConnectorError) as error:
        read(path)
    assert str(path) in str(error.value)
    assert message in str(error.value)
    assert error.value.source == "chatgpt"


def test_zip_without_conversations_and_corrupt_member(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("chat.html", "<html></html>")
    with pytest.raises(ConnectorError, match=re.escape("holds no conversations.json")):
        read(path)

    good = write_export(tmp_path / "corrupt", [short_conversation(f"c{i}") for i in range(50)])
    data = bytearray(good.read_bytes())
    start = data.index(b"conversations.json") + len("conversations.json") + 40
    data[start : start + 30] = b"\x00" * 30
    good.write_bytes(bytes(data))
    with pytest.raises(ConnectorError, match=re.escape("export.zip")):
        read(good)


def test_an_encrypted_zip_member_is_one_clear_error(tmp_path: Path) -> None:
    path = write_export(tmp_path, [short_conversation()], form="zip")
    data = bytearray(path.read_bytes())
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local and central headers
        start = 0
        while (start := data.find(signature, start)) >= 0:
            data[start + flags_at] |= 0x1  # general purpose bit 0: encrypted
            start += 4
    path.write_bytes(bytes(data))
    with pytest.raises(ConnectorError) as error:
        read(path)
    message = str(error.value)
    assert "export.zip:conversations.json" in message and "encrypted" in message
    assert "\n" not in message


def test_export_folder_and_nested_zip_member(tmp_path: Path) -> None:
    write_export(tmp_path / "unzipped", [short_conversation()], form="json", feedback=[])
    assert list(records(read(tmp_path / "unzipped"))) == ["c2"]
    nested = tmp_path / "nested.zip"
    with zipfile.ZipFile(nested, "w") as archive:
        archive.writestr("export-2024/conversations.json", json.dumps([nginx_conversation()]))
        archive.writestr("export-2024/message_feedback.json", json.dumps(FEEDBACK))
    assert len(records(read(nested))["c1"].labels) == 2


def test_damaged_data_never_raises_anything_but_connector_error(tmp_path: Path) -> None:
    rnd = random.Random(5)
    junk: list[Any] = [None, 0, -1, 1.5, 1e300, True, "", "x", [], {}, [1, None], {"a": 1}]

    def damage(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: rnd.choice(junk) if rnd.random() < 0.1 else damage(v) for k, v in value.items()}
        if isinstance(value, list):
            return [damage(v) for v in value if rnd.random() > 0.05]
        return rnd.choice(junk) if rnd.random() < 0.05 else value

    path = tmp_path / "conversations.json"
    for _ in range(150):
        conversations = [damage(c) for c in (nginx_conversation(), short_conversation())]
        path.write_text(json.dumps(conversations), encoding="utf-8")
        (tmp_path / "message_feedback.json").write_text(json.dumps(damage(FEEDBACK)))
        try:
            items = read(path, chunk_size=rnd.choice([16, 4096]))
        except ConnectorError:
            continue
        for item in items:
            if isinstance(item, Record):
                places = [(m.position, m.branch) for m in item.messages]
                assert len(places) == len(set(places))
                json.dumps([dict(item.metadata), *(dict(m.metadata) for m in item.messages)])


# --- the streaming reader ----------------------------------------------------------------------


def big_export(target_bytes: int) -> list[Json]:
    rnd = random.Random(7)
    conversations: list[Json] = []
    size = 0
    while size < target_bytes:
        turns = rnd.choice([1, 3, 10, 40])
        mapping = {}
        for j in range(turns):
            text = 'héllo "wörld" ✓ \\n ' * rnd.randint(1, 60) + "🦜"
            role = "user" if j % 2 else "assistant"
            parent = f"n{j - 1}" if j else None
            mapping[f"n{j}"] = node(f"n{j}", parent, [f"n{j + 1}"], msg(f"n{j}", role, text))
            size += len(json.dumps(mapping[f"n{j}"], ensure_ascii=False).encode())
        conversation = {"id": f"c{len(conversations)}", "title": "t", "mapping": mapping}
        conversations.append(conversation)
    return conversations


def test_stream_reader_matches_json_load_on_a_big_file(tmp_path: Path) -> None:
    path = tmp_path / "conversations.json"
    text = json.dumps(big_export(20_000_000), ensure_ascii=False, indent=1)
    path.write_text(text, encoding="utf-8-sig")
    assert path.stat().st_size > 20_000_000
    with path.open("rb") as stream:
        streamed = list(iter_json_array(stream, chunk_size=8192))
    with path.open(encoding="utf-8-sig") as f:
        assert streamed == json.load(f)


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 4096])
def test_stream_reader_handles_elements_split_anywhere(chunk_size: int) -> None:
    data = [
        {"a": 'ü "\\ ✓🦜' * 3, "b": [1, 2.5, None, True, {"c": "]},["}]},
        12,
        -3.5e10,
        "x",
        [],
        {},
        False,
        None,
    ]
    raw = ("\ufeff" + json.dumps(data, ensure_ascii=False)).encode()
    assert list(iter_json_array(io.BytesIO(raw), chunk_size)) == data


def test_stream_reader_skips_bad_elements_and_reports_offsets() -> None:
    raw = '[{"id": "a"}, {"id": "ü",}, 12x, {"id": "c"}]'.encode()
    items = list(iter_json_array(io.BytesIO(raw), 3))
    assert items[0] == {"id": "a"} and items[3] == {"id": "c"}
    assert isinstance(items[1], BadElement) and items[1].offset == raw.index(b'{"id": "\xc3')
    assert isinstance(items[2], BadElement) and items[2].offset == raw.index(b"12x")
    with pytest.raises(JsonStreamError) as error:
        list(iter_json_array(io.BytesIO(b'[{"a": 1}} , {}]'), 4))
    assert error.value.offset == 9


def test_connector_output_does_not_depend_on_chunk_size(export: Path) -> None:
    assert read(export, chunk_size=5) == read(export)
