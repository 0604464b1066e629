"""Scenario 7: hostile inputs for every connector never crash an ingest.

Generated with hypothesis (bounded and derandomized, so CI is reproducible): mutated and
truncated JSON exports, invalid UTF-8, UTF-16/32 and BOMs, NUL bytes and lone surrogates, deep
nesting, huge numbers and NaN, unclosed code fences, broken front matter, binary files named
``.md``, symlink loops, FIFOs, non-UTF-8 file names, git paths and messages, empty and shallow
repositories. Each connector's ``read()`` is driven directly: it may yield Skips (with a reason)
or raise ConnectorError for a wholly unreadable source; any other exception is a bug. What it
yields must be storable (strict JSON metadata and cursor, text SQLite can encode once
``pipeline.ingest.storable`` has run), and a second read with the stored cursor must work too.
Then the full ``pipeline.ingest.ingest`` (and the CLI) runs over the nastiest inputs, and two
~100 MB items check that memory stays bounded.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from connectors import chatgpt, claude, git, jsonl, markdown
from connectors.records import (
    ConnectorError,
    Cursor,
    Message,
    NothingChanged,
    Record,
    Skip,
    Unchanged,
)
from connectors.settings import ChatGPTSource, ClaudeSource, GitSource, JsonlSource, MarkdownSource
from pipeline.ingest import storable
from tests.conftest import REPO

HYPOTHESIS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
GIT_HYPOTHESIS = settings(HYPOTHESIS, max_examples=40)  # each example runs git a few times
KINDS = {"conversation", "note", "runbook", "code", "commit"}
ROLES = {"system", "user", "assistant", "tool"}


# --- checking what a connector yields -------------------------------------------------------------


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
    elif is_dataclass(value) and not isinstance(value, type):
        for f in fields(value):
            yield from _strings(getattr(value, f.name))


def _check_record(record: Record) -> None:
    assert isinstance(record.external_id, str) and record.external_id
    assert record.kind in KINDS
    assert isinstance(record.title, str) and isinstance(record.content, str)
    assert isinstance(record.content_hash, str) and len(record.content_hash) == 64
    json.dumps(record.metadata, allow_nan=False)  # a JSON column (Postgres refuses NaN)
    keys = set()
    for message in record.messages:
        assert isinstance(message, Message) and message.role in ROLES
        assert isinstance(message.content, str) and isinstance(message.position, int)
        json.dumps(message.metadata, allow_nan=False)
        keys.add((message.position, message.branch))
    assert len(keys) == len(record.messages), "(position, branch) must be unique"
    for text in _strings(storable(record)):
        text.encode("utf-8")  # what SQLite (and the JSON output) needs


def _check_items(items: list[Any]) -> None:
    assert items and isinstance(items[-1], Cursor), "the last item is the Cursor"
    assert sum(isinstance(item, Cursor) for item in items) == 1
    json.dumps(items[-1].state, allow_nan=False)
    ids: list[str] = []
    for item in items[:-1]:
        if isinstance(item, Record):
            _check_record(item)
            ids.append(item.external_id)
        elif isinstance(item, Skip):
            assert isinstance(item.item, str) and isinstance(item.reason, str) and item.reason.strip()
            for text in _strings(storable(item)):
                text.encode("utf-8")
        elif isinstance(item, Unchanged):
            assert isinstance(item.external_id, str) and item.external_id
            ids.append(item.external_id)
        else:
            assert isinstance(item, NothingChanged), f"unexpected item {item!r}"
    assert len(ids) == len(set(ids)), "an external id yielded twice"


def _event(text: str) -> None:
    """A hypothesis statistic (``--hypothesis-show-statistics``); nothing outside a hypothesis test."""
    with suppress(InvalidArgument):
        event(text)


def drive(read: Callable[..., Any], source: Any) -> list[Any] | ConnectorError:
    """Read the source, then read it again with the cursor as the store gives it back."""
    try:
        items = list(read(source, None))
    except ConnectorError as e:
        assert str(e).startswith(f"{source.name}: ")
        _event("source unreadable: ConnectorError")
        return e
    _check_items(items)
    records, skips = (sum(isinstance(i, kind) for i in items) for kind in (Record, Skip))
    _event(f"records: {records if records < 3 else '3+'}, skips: {skips if skips < 3 else '3+'}")
    cursor = json.loads(json.dumps(items[-1].state))
    again = list(read(source, cursor))
    _check_items(again)
    first = {i.external_id for i in items if isinstance(i, Record | Unchanged)}
    second = {i.external_id for i in again if isinstance(i, Record | Unchanged)}
    if not any(isinstance(i, NothingChanged) for i in again):
        assert first == second, "an unchanged source read twice yields the same items"
    return items


@contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="plora-hostile-") as folder:
        yield Path(folder)


# --- hostile building blocks ----------------------------------------------------------------------

SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff", "\ud83d"])
PIECES = st.sampled_from(
    [
        "\x00",
        "\ufeff",
        "```",
        "```python\n",
        "[[",
        "]]",
        "[[a|b]]",
        "![[x.png]]",
        "\r",
        "\n",
        "\t",
        "---\n",
        "\u202e",
        "\U0001f600",
        "\\",
        '"',
        "ghp_" + "x" * 36,
        "é",
    ]
)
TEXT = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=20),
    st.lists(st.one_of(st.text(max_size=4), SURROGATES, PIECES), max_size=8).map("".join),
)
# Raw JSON tokens json.dumps can't write; a string marker is swapped for one after dumping.
RAW_TOKENS = [
    "NaN",
    "-Infinity",
    "Infinity",
    "1e999999",
    "-1e-999999",
    "9" * 5000,
    "-0",
    "[" * 3000 + "]" * 3000,
    '{"a":' * 3000 + "1" + "}" * 3000,
    "123456789012345678901234567890",
]
RAW = st.integers(0, len(RAW_TOKENS) - 1).map(lambda i: f"@@raw{i}@@")
NUMBER = st.one_of(st.integers(), st.floats(), st.sampled_from([0, 1, 2, 3, 4, 6, 9]).map(lambda i: f"@@raw{i}@@"))
WORDS = TEXT.map(lambda text: "w " + text)  # never empty: a conversation that has something to keep
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT, RAW)
VALUE = st.recursive(
    SCALAR, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(TEXT, kids, max_size=3), max_leaves=8
)


def field(strategy: st.SearchStrategy[Any], wild: bool) -> st.SearchStrategy[Any]:
    """The well-formed value; in a wild structure, sometimes anything at all instead."""
    return st.one_of(strategy, strategy, VALUE) if wild else strategy


def words(wild: bool) -> st.SearchStrategy[Any]:
    return field(TEXT, wild) if wild else WORDS


def wild_or_tame(build: Callable[[bool], st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Tame structures (well-formed, with hostile text in them) and wild ones (any field broken)."""
    return st.one_of(build(False), build(False), build(True))


ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "latin-1"])
MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["truncate", "flip", "insert", "delete", "duplicate"]),
        st.floats(0, 1),
        st.binary(min_size=1, max_size=6),
    ),
    min_size=1,
    max_size=3,
)


def dumps(value: Any, ascii_only: bool) -> str:
    text = json.dumps(value, ensure_ascii=ascii_only)
    for index, token in enumerate(RAW_TOKENS):
        text = text.replace(f'"@@raw{index}@@"', token)
    return text


def encode(text: str, encoding: str) -> bytes:
    if encoding == "latin-1":
        return text.encode("latin-1", "replace")
    return text.encode(encoding, "surrogatepass")


def mutate(data: bytes, mutations: list[tuple[str, float, bytes]]) -> bytes:
    for op, where, junk in mutations:
        at = int(where * len(data))
        if op == "truncate":
            data = data[:at]
        elif op == "flip" and data:
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([data[at] ^ junk[0]]) + data[at + 1 :]
        elif op == "insert":
            data = data[:at] + junk + data[at:]
        elif op == "delete":
            data = data[:at] + data[at + len(junk) :]
        else:
            data = data[:at] + data[at : at + 40] + data[at:]
    return data


def damaged(draw: st.DrawFn, text: str) -> bytes:
    """``text`` as UTF-8 (half the time), or in another encoding, or with damaged bytes, or both."""
    damage = draw(st.sampled_from(["none", "none", "none", "encoding", "bytes", "both"]))
    data = encode(text, draw(ENCODINGS) if damage in ("encoding", "both") else "utf-8")
    return mutate(data, draw(MUTATIONS)) if damage in ("bytes", "both") else data


@st.composite
def serialized(draw: st.DrawFn, value: st.SearchStrategy[Any]) -> bytes:
    """``value`` as JSON bytes, maybe damaged (see ``damaged``)."""
    return damaged(draw, dumps(draw(value), draw(st.sampled_from([True, True, True, False]))))  # False: raw


# --- ChatGPT --------------------------------------------------------------------------------------

NODE_IDS = st.sampled_from(["a", "b", "c", "d", "e", "\ud800", ""])
CHATGPT_ROLES = st.sampled_from(["user", "assistant", "system", "tool", "critic", ""])


def _chatgpt_message(wild: bool) -> st.SearchStrategy[Any]:
    role = (
        st.sampled_from(["user", "assistant", "system", "tool", "critic", ""])
        if wild
        else st.sampled_from(["user", "assistant", "user", "assistant", "tool"])
    )
    content = st.one_of(
        st.fixed_dictionaries(
            {"content_type": st.just("text"), "parts": st.lists(words(wild), min_size=1, max_size=3)}
        ),
        st.fixed_dictionaries({"content_type": st.just("code"), "language": field(TEXT, wild), "text": words(wild)}),
        st.fixed_dictionaries(
            {
                "content_type": st.sampled_from(["thoughts", "tether_quote", "execution_output"]),
                "text": field(TEXT, wild),
                "result": field(TEXT, wild),
            }
        ),
    )
    return st.fixed_dictionaries(
        {
            "id": field(TEXT, wild),
            "author": field(st.fixed_dictionaries({"role": field(role, wild), "name": field(TEXT, wild)}), wild),
            "content": field(content, wild),
            "create_time": field(st.floats(0, 2e9), wild),
            "recipient": field(st.sampled_from(["all", "python"]) | TEXT, wild),
            "metadata": field(
                st.fixed_dictionaries(
                    {
                        "model_slug": field(TEXT, wild),
                        "is_visually_hidden_from_conversation": field(st.booleans(), wild),
                    }
                ),
                wild,
            ),
        }
    )


@st.composite
def _chatgpt_mapping(draw: st.DrawFn, wild: bool) -> Any:
    if wild:
        node = st.fixed_dictionaries(
            {
                "parent": field(NODE_IDS, wild),
                "children": st.lists(NODE_IDS, max_size=3),
                "message": field(_chatgpt_message(wild), wild),
            }
        )
        return draw(field(st.dictionaries(NODE_IDS, field(node, wild), max_size=5), wild))
    count = draw(st.integers(1, 6))
    mapping = {}
    for index in range(count):  # a tree: each node's parent is an earlier node
        parent = draw(st.integers(0, index - 1)) if index else None
        mapping[f"n{index}"] = {
            "id": f"n{index}",
            "parent": None if parent is None else f"n{parent}",
            "message": draw(_chatgpt_message(wild)),
        }
    return mapping


def _chatgpt_conversation(wild: bool) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {
            "id": field(st.sampled_from(["c1", "c2", "c3", "\udc00x", "c1", "", "c\x00"]), wild),
            "title": field(TEXT, wild),
            "create_time": field(NUMBER, wild),
            "update_time": field(NUMBER, wild),
            "mapping": _chatgpt_mapping(wild),
            "current_node": field(st.sampled_from(["n0", "n1", "n2", "n5", "nope"]) | NODE_IDS, wild),
            "default_model_slug": field(TEXT, wild),
        }
    )


FEEDBACK = st.lists(
    st.fixed_dictionaries(
        {
            "conversation_id": field(st.sampled_from(["c1", "c2"]), True),
            "message_id": field(st.sampled_from(["n0", "n1", "m"]), True),
            "rating": field(st.sampled_from(["thumbsUp", "thumbsDown", "meh"]), True),
            "content": field(TEXT, True),
        }
    ),
    max_size=4,
)


@st.composite
def chat_export(draw: st.DrawFn, conversation: st.SearchStrategy[Any], feedback: bool) -> dict[str, Any]:
    return {
        "conversations": draw(serialized(st.lists(conversation, max_size=5))),
        "feedback": draw(st.none() | serialized(FEEDBACK)) if feedback else None,
        "layout": draw(st.sampled_from(["file", "folder", "zip", "broken-zip"])),
        "chunk_size": draw(st.sampled_from([1, 7, 64, 1 << 20])),
        "zip_mutations": draw(MUTATIONS),
    }


def _write_export(root: Path, export: dict[str, Any]) -> Path:
    files = {"conversations.json": export["conversations"]}
    if export["feedback"] is not None:
        files["message_feedback.json"] = export["feedback"]
    if export["layout"] in ("file", "folder"):
        folder = root / "export"
        folder.mkdir()
        for name, data in files.items():
            (folder / name).write_bytes(data)
        return folder / "conversations.json" if export["layout"] == "file" else folder
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(f"export/{name}", data)
    data = buffer.getvalue()
    if export["layout"] == "broken-zip":
        data = mutate(data, export["zip_mutations"]) or b"PK"
    path = root / "export.zip"
    path.write_bytes(data)
    return path


@HYPOTHESIS
@given(chat_export(wild_or_tame(_chatgpt_conversation), feedback=True))
def test_chatgpt_survives_hostile_exports(export: dict[str, Any]) -> None:
    with scratch() as root:
        source = ChatGPTSource(name="gpt", type="chatgpt", path=_write_export(root, export))
        drive(lambda s, c: chatgpt.read(s, c, chunk_size=export["chunk_size"]), source)


# --- Claude ---------------------------------------------------------------------------------------


def _claude_conversation(wild: bool) -> st.SearchStrategy[Any]:
    block = st.fixed_dictionaries(
        {"type": field(st.sampled_from(["text", "text", "tool_use", "image"]), wild), "text": words(wild)}
    )
    attachment = st.fixed_dictionaries({"file_name": field(TEXT, wild), "extracted_content": field(TEXT, wild)})
    message = st.fixed_dictionaries(
        {
            "uuid": field(NODE_IDS, wild),
            "parent_message_uuid": field(st.none() | NODE_IDS, wild),
            "sender": field(st.sampled_from(["human", "assistant", "user", "system", ""]), wild),
            "text": words(wild),
            "content": field(st.lists(field(block, wild), max_size=3), wild),
            "attachments": field(st.lists(field(attachment, wild), max_size=2), wild),
            "files": field(st.lists(st.fixed_dictionaries({"file_name": field(TEXT, wild)}), max_size=2), wild),
            "created_at": field(
                st.sampled_from(["2024-01-02T03:04:05.123456789Z", "not a date", "9999-99-99", ""]), wild
            ),
        }
    )
    return st.fixed_dictionaries(
        {
            "uuid": field(st.sampled_from(["u1", "u2", "\ud800", "u1"]), wild),
            "name": field(TEXT, wild),
            "chat_messages": field(st.lists(message, min_size=0 if wild else 1, max_size=4), wild),
            "current_leaf_message_uuid": field(st.none() | NODE_IDS, wild),
            "created_at": field(TEXT, wild),
            "updated_at": field(st.sampled_from(["2024-01-02T03:04:05Z", "+999999-01-01", "2024-02-30"]), wild),
        }
    )


@HYPOTHESIS
@given(chat_export(wild_or_tame(_claude_conversation), feedback=False))
def test_claude_survives_hostile_exports(export: dict[str, Any]) -> None:
    with scratch() as root:
        source = ClaudeSource(name="claude", type="claude", path=_write_export(root, export))
        drive(lambda s, c: claude.read(s, c, chunk_size=export["chunk_size"]), source)


# --- chat JSONL -----------------------------------------------------------------------------------


def _jsonl_line(wild: bool) -> st.SearchStrategy[Any]:
    part = st.fixed_dictionaries({"type": field(st.sampled_from(["text", "image_url"]), wild), "text": words(wild)})
    message = st.fixed_dictionaries(
        {
            "role": field(st.sampled_from(["user", "assistant", "system", "developer", "function", "tool"]), wild)
            if not wild
            else field(st.sampled_from(["user", "assistant", "robot", ""]), wild),
            "content": field(st.one_of(words(wild), st.none(), st.lists(field(part, wild), max_size=3)), wild),
            "weight": field(NUMBER, wild),
        }
    )
    return st.fixed_dictionaries(
        {
            "id": field(st.one_of(st.sampled_from(["x1", "x2", "\udfffz", "x1", "n\x00ul"]), st.integers()), wild),
            "title": field(TEXT, wild),
            "messages": field(st.lists(message, min_size=0 if wild else 1, max_size=4), wild),
            "label": field(st.sampled_from(["good", "bad", " GOOD ", "meh"]), wild),
        }
    )


LINE = st.one_of(
    serialized(_jsonl_line(False)).map(lambda b: b.replace(b"\n", b" ")),
    serialized(_jsonl_line(False)).map(lambda b: b.replace(b"\n", b" ")),
    serialized(_jsonl_line(True)).map(lambda b: b.replace(b"\n", b" ")),
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
    st.sampled_from(
        [
            b"",
            b"   ",
            b"\xef\xbb\xbf{}",
            b"\x00\x00",
            b"[" * 100_000 + b"]" * 100_000,
            b'{"messages": ' + b"[" * 50_000,
            b"\r",
        ]
    ),
)


@st.composite
def jsonl_source(draw: st.DrawFn) -> dict[str, Any]:
    files = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["a.jsonl", "sub/b.jsonl", "c.JSONL", b"\xff\xfe.jsonl"]),
                st.lists(LINE, max_size=6),
                st.sampled_from([b"\n", b"\r\n"]),
                st.sampled_from([None, None, None, "utf-16", "utf-8-sig"]),
            ),
            min_size=1,
            max_size=3,
        )
    )
    return {"files": files, "folder": draw(st.booleans()) or len(files) > 1}


@HYPOTHESIS
@given(jsonl_source())
def test_jsonl_survives_hostile_lines(spec: dict[str, Any]) -> None:
    with scratch() as root:
        folder = root / "chats"
        folder.mkdir()
        for name, lines, newline, encoding in spec["files"]:
            path = folder / (os.fsdecode(name) if isinstance(name, bytes) else name)
            path.parent.mkdir(parents=True, exist_ok=True)
            data = newline.join(lines)
            if encoding:  # the whole file re-encoded: what an editor's "save as UTF-16" does
                data = encode(
                    data.decode("utf-8", "surrogateescape").encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
                    encoding,
                )
            path.write_bytes(data)
        target = folder if spec["folder"] else folder / os.fsdecode(spec["files"][0][0])
        drive(jsonl.read, JsonlSource(name="chats", type="jsonl", path=target))


# --- Markdown -------------------------------------------------------------------------------------

FRONT_MATTER = st.one_of(
    st.just(""),
    st.builds(
        lambda body: f"---\n{body}\n---\n",
        st.sampled_from(
            [
                "title: ok\ntags: [a, b]",
                "title: [unclosed",
                "tags: {a: [b",
                ": : :",
                "\t- tab",
                "- a list",
                "date: 2024-13-45",
                "x: !!python/object:os.system ls",
                "a: &a [*a]",
                "n: .nan\nm: -.inf\nbig: 1e999",
                'title: "\\ud800"',
                'title: "\\x00"',
                "a: " + "[" * 5000,
                "b: &b [x, x]\nc: &c [*b, *b]\nd: [*c, *c]",
                "tags: " + ",".join(["t"] * 200),
                "title:\n  nested: [1, 2]",
                "%YAML 9.9\n---",
                "---",
            ]
        ),
    ),
    st.builds(lambda body: f"---\n{body}", TEXT),  # never closed
)
BODY = st.lists(
    st.one_of(
        TEXT,
        PIECES,
        st.sampled_from(
            [
                "```\nunclosed fence [[inside]]",
                "~~~\n",
                "# Heading [[link#part]]",
                "#" * 7 + " not a heading",
                "`[[code]]`",
                "[[" * 500,
                "<!--",
                "|a|b|\n|-|-|",
                "> quote\n" * 3,
                "\\" * 50,
            ]
        ),
    ),
    max_size=8,
).map("".join)


@st.composite
def note_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["text", "text", "text", "binary", "nul"]))
    if kind == "binary":
        return draw(st.binary(max_size=300))
    data = damaged(draw, draw(FRONT_MATTER) + "w " + draw(BODY))
    return data.replace(b" ", b"\x00", 3) if kind == "nul" else data


NOTE_NAMES = st.one_of(
    st.sampled_from(
        [
            "a.md",
            "b.md",
            "dir/c.md",
            "runbooks/d.md",
            "deep/er/e.md",
            ".hidden.md",
            "templates/t.md",
            "f.MD",
            "g.md.txt",
            "sp ace.md",
            "\u00e9t\u00e9.md",
            "\U0001f600.md",
        ]
    ),
    st.text(st.characters(exclude_characters="/\x00", exclude_categories=("Cs",)), min_size=1, max_size=12)
    .filter(lambda n: n not in (".", ".."))
    .map(lambda n: n + ".md"),
    st.just(os.fsdecode(b"bad\xff\xfename.md")),
)
SPECIALS = st.lists(
    st.sampled_from(
        [
            "loop",
            "self-link",
            "broken-link",
            "outside-link",
            "outside-dir",
            "fifo",
            "dir-named-md",
            "inside-link",
            "too-large",
            "empty",
        ]
    ),
    max_size=4,
    unique=True,
)


def _add_special(vault: Path, outside: Path, special: str) -> None:
    if special == "loop":
        (vault / "loop").symlink_to(".", target_is_directory=True)
        (vault / "dir").mkdir(exist_ok=True)
        (vault / "dir" / "up").symlink_to("..", target_is_directory=True)
    elif special == "self-link":
        (vault / "self.md").symlink_to("self.md")
    elif special == "broken-link":
        (vault / "broken.md").symlink_to("nowhere.md")
    elif special == "outside-link":
        (outside / "secret.md").write_text("# outside\n", encoding="utf-8")
        (vault / "outside.md").symlink_to(outside / "secret.md")
    elif special == "outside-dir":
        (vault / "elsewhere").symlink_to(outside, target_is_directory=True)
    elif special == "fifo":
        os.mkfifo(vault / "pipe.md")
    elif special == "dir-named-md":
        (vault / "folder.md").mkdir(exist_ok=True)
    elif special == "inside-link":
        (vault / "real.md").write_text("# real\n\nbody\n", encoding="utf-8")
        (vault / "alias.md").symlink_to("real.md")
    elif special == "too-large":
        (vault / "huge.md").write_bytes(b"# big\n" + b"x" * (markdown.MAX_BYTES + 10))
    elif special == "empty":
        (vault / "empty.md").write_bytes(b"")


@HYPOTHESIS
@given(
    st.lists(st.tuples(NOTE_NAMES, note_bytes()), max_size=6),
    SPECIALS,
    st.sampled_from([[], ["templates/**"], ["**/*.md"], ["[", "**/["]]),
)
def test_markdown_survives_hostile_vaults(
    notes: list[tuple[str, bytes]], specials: list[str], exclude: list[str]
) -> None:
    with scratch() as root:
        vault, outside = root / "vault", root / "outside"
        vault.mkdir()
        outside.mkdir()
        for name, data in notes:
            path = vault / name
            if path.parent.is_symlink() or path.parent.is_file() or path.is_dir() or path.is_symlink():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        for special in specials:
            with suppress(FileExistsError):
                _add_special(vault, outside, special)
        items = drive(markdown.read, MarkdownSource(name="vault", type="markdown", path=vault, exclude=exclude))
        assert not isinstance(items, ConnectorError), items
        reasons = {i.external_id: i.reason for i in items if isinstance(i, Skip) and i.external_id}
        if "fifo" in specials and not exclude:
            assert reasons.get("pipe.md") == "not a regular file"
        if "too-large" in specials and not exclude:
            assert reasons["huge.md"].startswith("too large")


# --- git ------------------------------------------------------------------------------------------

PATH_PART = (
    st.binary(min_size=1, max_size=8)
    .map(lambda b: b.replace(b"/", b"_").replace(b"\n", b"_").replace(b"\x00", b"_").lstrip(b'"') or b"x")
    .filter(lambda b: b not in (b".", b"..") and b.lower() != b".git")
)
GIT_PATH = st.one_of(
    st.lists(PATH_PART, min_size=1, max_size=3).map(b"/".join),
    st.sampled_from(
        [b"README.md", b"src/main.py", "caf\u00e9.py".encode(), b"latin\xe9.txt", b"sp ace/x.c", b"link", b"sub/mod"]
    ),
)
BLOB = st.one_of(
    st.binary(max_size=200),
    TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [
            b"",
            b"\n\n",
            b"\x00binary\x00",
            codecs.BOM_UTF16_LE + "hi".encode("utf-16-le"),
            b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n",
            b"x" * 3000,
            "print('h\u00e9')\n".encode("latin-1"),
        ]
    ),
)
IDENT_TEXT = st.binary(max_size=12).map(lambda b: bytes(c for c in b if c not in b"<>\n\x00"))
MESSAGE = st.one_of(
    st.binary(max_size=120),
    TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"", b"\n", "r\u00e9sum\u00e9 fix".encode("latin-1"), b"\xff\xfe\x00x"]),
)
CHANGE = st.one_of(
    st.tuples(st.just("M"), st.sampled_from(["100644", "100755"]), GIT_PATH, BLOB),
    st.tuples(st.just("M"), st.just("120000"), GIT_PATH, st.sampled_from([b"target", b"../../etc/passwd", b"link"])),
    st.tuples(st.just("gitlink"), st.just("160000"), GIT_PATH, st.just(b"")),
    st.tuples(st.just("D"), st.just(""), GIT_PATH, st.just(b"")),
)
COMMIT = st.fixed_dictionaries(
    {
        "name": IDENT_TEXT,
        "email": st.one_of(IDENT_TEXT, st.sampled_from([b"me@example.com", b"ME@Example.COM"])),
        "when": st.integers(0, 2**33),
        "tz": st.sampled_from([b"+0000", b"-1200", b"+1400", b"+0530"]),
        "encoding": st.sampled_from([None, b"ISO-8859-1", b"latin-1", b"bogus-encoding", b"UTF-16"]),
        "message": MESSAGE,
        "changes": st.lists(CHANGE, min_size=1, max_size=4),
        "merge": st.booleans(),
    }
)


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", "-C", str(repo), *args], input=stdin, capture_output=True, env=env, check=False)


def _fast_import(repo: Path, commits: list[dict[str, Any]]) -> None:
    out = io.BytesIO()
    for number, commit in enumerate(commits, start=1):
        out.write(b"commit refs/heads/main\nmark :%d\n" % number)
        ident = b"%s <%s> %d %s\n" % (commit["name"], commit["email"], commit["when"], commit["tz"])
        out.write(b"author " + ident + b"committer " + ident)
        if commit["encoding"]:
            out.write(b"encoding " + commit["encoding"] + b"\n")
        out.write(b"data %d\n%s\n" % (len(commit["message"]), commit["message"]))
        if number > 1:
            out.write(b"from :%d\n" % (number - 1))
            if commit["merge"] and number > 2:
                out.write(b"merge :%d\n" % (number - 2))
        for op, mode, path, data in commit["changes"]:
            if op == "M":
                out.write(b"M %s inline %s\ndata %d\n%s\n" % (mode.encode(), path, len(data), data))
            elif op == "gitlink":
                out.write(b"M 160000 %s %s\n" % (b"1" * 40, path))
            else:
                out.write(b"D %s\n" % path)
        out.write(b"\n")
    done = _git(repo, "fast-import", "--quiet", "--force", stdin=out.getvalue())
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    _git(repo, "symbolic-ref", "HEAD", "refs/heads/main")


@GIT_HYPOTHESIS
@given(st.lists(COMMIT, max_size=4), st.sampled_from([[], ["me@example.com"]]), st.booleans())
def test_git_survives_hostile_history(commits: list[dict[str, Any]], authors: list[str], bare: bool) -> None:
    with scratch() as root:
        repo = root / "repo"
        assert _git(root, "init", "-q", *(["--bare"] if bare else []), str(repo)).returncode == 0
        if commits:
            _fast_import(repo, commits)
        source = GitSource(name="code", type="git", path=repo, authors=authors, max_file_kb=1)
        items = drive(git.read, source)
        assert not isinstance(items, ConnectorError), items
        if not commits:
            assert len(items) == 1, "an empty repository yields just its cursor"


# --- fixed cases hypothesis wouldn't find quickly -------------------------------------------------

NESTED = b"[" * 100_000 + b"]" * 100_000


def test_deep_nesting_in_every_json_source(tmp_path: Path) -> None:
    convo = {
        "id": "ok",
        "title": "ok",
        "mapping": {
            "a": {
                "parent": None,
                "message": {
                    "id": "a",
                    "author": {"role": "user"},
                    "content": {"content_type": "text", "parts": ["hi"]},
                },
            }
        },
    }
    export = tmp_path / "gpt"
    export.mkdir()
    (export / "conversations.json").write_bytes(
        b"[" + NESTED + b"," + json.dumps(convo).encode() + b"," + b'{"id": "deep", "mapping": ' + NESTED + b"}]"
    )
    (export / "message_feedback.json").write_bytes(NESTED)
    items = drive(chatgpt.read, ChatGPTSource(name="gpt", type="chatgpt", path=export))
    assert [type(i).__name__ for i in items] == ["Skip", "Skip", "Record", "Skip", "Cursor"]
    assert "thumbs up/down were not imported" in items[0].reason

    (tmp_path / "claude.json").write_bytes(b"[" + NESTED + b"]")
    items = drive(claude.read, ClaudeSource(name="claude", type="claude", path=tmp_path / "claude.json"))
    assert isinstance(items[0], Skip) and items[0].reason.startswith("not valid JSON")

    (tmp_path / "c.jsonl").write_bytes(NESTED + b"\n" + b'{"messages": ' + NESTED + b"}\n")
    items = drive(jsonl.read, JsonlSource(name="chats", type="jsonl", path=tmp_path / "c.jsonl"))
    assert [type(i).__name__ for i in items] == ["Skip", "Skip", "Cursor"]

    vault = tmp_path / "vault"
    vault.mkdir()
    (vault / "deep.md").write_bytes(
        b"---\na: " + b"[" * 100_000 + b"\n---\n" + b"> " * 50_000 + b"quote\n" + b"- " * 20_000 + b"item\n"
    )
    items = drive(markdown.read, MarkdownSource(name="vault", type="markdown", path=vault))
    assert isinstance(items[0], Record | Skip)


def test_empty_shallow_and_broken_repositories(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    _git(tmp_path, "init", "-q", str(empty))
    assert [type(i) for i in drive(git.read, GitSource(name="g", type="git", path=empty))] == [Cursor]

    origin = tmp_path / "origin"
    _git(tmp_path, "init", "-q", str(origin))
    _fast_import(
        origin,
        [
            {
                "name": b"Me",
                "email": b"me@example.com",
                "when": 1_700_000_000 + n,
                "tz": b"+0000",
                "encoding": None,
                "message": b"commit %d" % n,
                "merge": False,
                "changes": [("M", "100644", b"f%d.txt" % n, b"line\n" * n)],
            }
            for n in range(1, 4)
        ],
    )
    shallow = tmp_path / "shallow"
    assert _git(tmp_path, "clone", "-q", "--depth", "1", f"file://{origin}", str(shallow)).returncode == 0
    items = drive(git.read, GitSource(name="g", type="git", path=shallow))
    commits = [i for i in items if isinstance(i, Record) and i.kind == "commit"]
    assert len(commits) == 1 and commits[0].metadata.get("grafted") is True

    for broken in (tmp_path / "not-a-repo", tmp_path / "missing"):
        if broken.name == "not-a-repo":
            broken.mkdir()
        assert isinstance(drive(git.read, GitSource(name="g", type="git", path=broken)), ConnectorError)

    damaged = tmp_path / "damaged"  # one blob missing from the object database
    _git(tmp_path, "clone", "-q", "--no-local", str(origin), str(damaged))
    blob = _git(damaged, "rev-parse", "HEAD:f3.txt").stdout.decode().strip()
    for pack in (damaged / ".git" / "objects" / "pack").glob("*.pack"):
        moved = tmp_path / pack.name
        pack.rename(moved)
        _git(damaged, "unpack-objects", "-q", stdin=moved.read_bytes())
    for leftover in (damaged / ".git" / "objects" / "pack").glob("*"):
        leftover.unlink()
    (damaged / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    error = drive(git.read, GitSource(name="g", type="git", path=damaged))
    assert isinstance(error, ConnectorError) and blob in str(error)  # git log --numstat needs every blob
    items = drive(git.read, GitSource(name="g", type="git", path=damaged, commits=False))
    assert not isinstance(items, ConnectorError), items
    reasons = {i.external_id: i.reason for i in items if isinstance(i, Skip)}
    assert reasons["file:f3.txt"].startswith("can't read blob"), reasons
    assert sum(isinstance(i, Record) for i in items) == 2

    unborn = tmp_path / "unborn"
    _git(tmp_path, "init", "-q", str(unborn))
    (unborn / ".git" / "HEAD").write_text("ref: refs/heads/../../nowhere\n")
    assert isinstance(drive(git.read, GitSource(name="g", type="git", path=unborn)), ConnectorError | list)


def test_missing_and_wrong_paths_are_connector_errors(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    cases = [
        (chatgpt.read, ChatGPTSource(name="s", type="chatgpt", path=tmp_path / "nope.zip")),
        (chatgpt.read, ChatGPTSource(name="s", type="chatgpt", path=tmp_path)),  # folder without the file
        (claude.read, ClaudeSource(name="s", type="claude", path=tmp_path / "file.txt")),
        (jsonl.read, JsonlSource(name="s", type="jsonl", path=tmp_path)),  # no .jsonl inside
        (jsonl.read, JsonlSource(name="s", type="jsonl", path=tmp_path / "nope.jsonl")),
        (markdown.read, MarkdownSource(name="s", type="markdown", path=tmp_path / "file.txt")),
        (markdown.read, MarkdownSource(name="s", type="markdown", path=tmp_path / "nope")),
    ]
    for read, source in cases:
        assert isinstance(drive(read, source), ConnectorError), source.path


# --- the store side: the full ingest over the nastiest inputs ------------------------------------

NASTY_JSONL = b"\n".join(
    [
        b'{"id": "\\ud800", "title": "t\\udfff", "messages": [{"role": "user", "content": "nul \\u0000 and \\ud83d"},'
        b' {"role": "assistant", "content": "ok \\udc00", "weight": NaN}], "label": "good"}',
        b'{"id": "big", "messages": [{"role": "user", "content": "x", "weight": 1e999},'
        b' {"role": "assistant", "content": "y", "weight": ' + b"9" * 4000 + b"}]}",
        b'{"id": "nul\\u0000id", "messages": [{"role": "user", "content": "a"},'
        b' {"role": "assistant", "content": "b"}]}',
        b"\xff\xfe\x00garbage",
        b'{"id": "surrogate-only", "messages": [{"role": "user", "content": "\\udfff"}]}',
        NESTED,
        codecs.BOM_UTF8 + b'{"id": "bom", "messages": [{"role": "user", "content": "caf\xc3\xa9"}]}',
        b'{"id": "latin", "messages": [{"role": "user", "content": "caf\xe9"}]}',
    ]
)


def _nasty_home(root: Path) -> Path:
    (root / "chats.jsonl").write_bytes(NASTY_JSONL)
    gpt = root / "gpt"
    gpt.mkdir()
    conversation = {
        "id": "\udbffgpt",
        "title": "\ud800",
        "mapping": {
            "\ud800": {
                "parent": None,
                "message": {
                    "id": "\udc00m",
                    "author": {"role": "user"},
                    "content": {"content_type": "text", "parts": ["q \x00 \udfff"]},
                },
            },
            "b": {
                "parent": "\ud800",
                "message": {
                    "id": "b",
                    "author": {"role": "assistant", "name": "\ud800"},
                    "content": {"content_type": "code", "language": "\udc00", "text": "```unclosed"},
                    "recipient": "\ud800x",
                },
            },
        },
        "current_node": "b",
        "update_time": float("nan"),
        "create_time": 1e300,
    }
    (gpt / "conversations.json").write_text(
        "[" + json.dumps(conversation) + ', {"id": "\\udfff", "mapping": {}}, ' + "1" * 5000 + "]", encoding="utf-8"
    )
    (gpt / "message_feedback.json").write_text(
        json.dumps([{"conversation_id": "\udbffgpt", "message_id": "b", "rating": "thumbsDown", "content": "\ud800"}])
    )
    vault = root / "vault"
    vault.mkdir()
    (vault / "fm.md").write_bytes(b'---\ntitle: "\\ud800 \\x00"\nbad: [\n---\n# H\n\n```\nunclosed\n')
    (vault / "utf16.md").write_bytes("\ufeff# UTF-16 note\n\nbody \x00\n".encode("utf-16"))
    (vault / "binary.md").write_bytes(bytes(range(256)) * 10)
    (vault / os.fsdecode(b"bad\xffname.md")).write_bytes(b"# odd name\n\ntext \xff\xfe here\n")
    (vault / "loop").symlink_to(".", target_is_directory=True)
    (vault / "self.md").symlink_to("self.md")
    repo = root / "repo"
    _git(root, "init", "-q", str(repo))
    _fast_import(
        repo,
        [
            {
                "name": b"N\xe9e",
                "email": b"me@example.com",
                "when": 1_700_000_000,
                "tz": b"+0000",
                "encoding": b"bogus",
                "message": b"fix \xff\xfe\x00 stuff\n",
                "merge": False,
                "changes": [
                    ("M", "100644", b"p\xe9th/\xff.py", b"print(1)\n"),
                    ("M", "100644", b"bin.dat", b"\x00\x01\x02"),
                    ("M", "120000", b"link", b"../../etc/passwd"),
                    ("gitlink", "160000", b"sub", b""),
                ],
            }
        ],
    )
    home = root / "home"
    home.mkdir()
    (home / "plora.toml").write_text(
        f'[[sources]]\nname = "chats"\ntype = "jsonl"\npath = "{root / "chats.jsonl"}"\n\n'
        f'[[sources]]\nname = "gpt"\ntype = "chatgpt"\npath = "{gpt}"\n\n'
        f'[[sources]]\nname = "vault"\ntype = "markdown"\npath = "{vault}"\n\n'
        f'[[sources]]\nname = "code"\ntype = "git"\npath = "{repo}"\n',
        encoding="utf-8",
    )
    return home


def _no_constant(name: str) -> None:
    raise AssertionError(f"{name} stored in a JSON column")


def test_full_ingest_stores_the_nastiest_inputs(tmp_path: Path) -> None:
    import sqlite3

    from pipeline.ingest import ingest
    from pipeline.workspace import open_workspace

    home = _nasty_home(tmp_path)
    with open_workspace(home, check_paths=False) as workspace:
        first = ingest(workspace)
        second = ingest(workspace)
    for name, report in first.items():
        assert report.error is None, report.error
        assert all(skip["reason"] for skip in report.skipped)
        assert report.added > 0, name
        again = second[name]
        assert (again.added, again.updated, again.deleted, again.error) == (0, 0, 0, None), name
    chats = {skip["item"].rsplit(":", 1)[1]: skip["reason"] for skip in first["chats"].skipped}
    assert chats["4"].startswith("not valid UTF-8") and chats["6"].startswith("not valid JSON")

    conn = sqlite3.connect(home / "plora.db")
    conn.text_factory = bytes
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == b"ok"
    for table, column in (
        ("documents", "external_id"),
        ("documents", "title"),
        ("documents", "content"),
        ("documents", "metadata"),
        ("messages", "content"),
        ("messages", "metadata"),
    ):
        for (value,) in conn.execute(f"SELECT {column} FROM {table}"):
            value.decode("utf-8")  # valid UTF-8, as every reader of the store expects
    for (value,) in conn.execute("SELECT metadata FROM messages UNION ALL SELECT metadata FROM documents"):
        json.loads(value, parse_constant=_no_constant)  # strict JSON: no NaN / Infinity
    ids = {row[0].decode() for row in conn.execute("SELECT external_id FROM documents")}
    conn.close()
    assert {"\\ud800", "nul\x00id", "\\udbffgpt", "fm.md", "utf16.md", "bad\\xffname.md"} <= ids
    assert "binary.md" not in ids

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for command in (["ingest", "--json"], ["ingest"], ["status", "--json"]):
        done = subprocess.run(
            [sys.executable, "-m", "flows.cli", *command, "--home", str(home)],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode(errors="replace")
    status = json.loads(done.stdout)
    assert status["sources"]["chats"]["documents"] >= 3


# --- ~100 MB items: memory stays bounded ----------------------------------------------------------


def test_untitled_huge_message_title_costs_no_memory() -> None:
    """The fallback title (first user message, one line) must not split a whole 10 MB message."""
    import tracemalloc

    from connectors.conversation_text import fallback_title

    messages = (Message("user", "word " * 2_000_000, position=0),)
    tracemalloc.start()
    try:
        title = fallback_title(messages)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert title == ("word " * 16)[:79].rstrip() + "\u2026"
    assert peak < 1_000_000, f"{peak / 2**20:.0f} MB to make a title"


BIG_SCRIPT = r"""
import json, resource, sys, time
from pathlib import Path
from connectors.registry import reader_for
from connectors.settings import ChatGPTSource, JsonlSource
kind, path = sys.argv[1], Path(sys.argv[2])
source = (JsonlSource if kind == "jsonl" else ChatGPTSource)(name="big", type=kind, path=path)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
started = time.monotonic()
items = [(type(item).__name__, getattr(item, "external_id", None), getattr(item, "reason", None))
         for item in reader_for(kind)(source, None)]
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"items": items, "peak_delta": after - before, "seconds": time.monotonic() - started}))
"""
BIG_BYTES = 100 * 1024 * 1024


def _write_big(path: Path, head: bytes, tail: bytes) -> None:
    chunk = b"lorem ipsum dolor " * 60_000
    with path.open("wb") as out:
        out.write(head)
        written = len(head)
        while written < BIG_BYTES:
            out.write(chunk)
            written += len(chunk)
        out.write(tail)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", ["jsonl", "chatgpt"])
def test_a_100mb_item_is_skipped_with_bounded_memory(kind: str, tmp_path: Path) -> None:
    def line(cid: str) -> bytes:
        return json.dumps(
            {"id": cid, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
        ).encode()

    def conversation(cid: str, text: str) -> bytes:
        return json.dumps(
            {
                "id": cid,
                "title": cid,
                "mapping": {
                    "a": {
                        "parent": None,
                        "message": {
                            "id": "a",
                            "author": {"role": "user"},
                            "content": {"content_type": "text", "parts": [text]},
                        },
                    }
                },
            }
        ).encode()

    if kind == "jsonl":
        path = tmp_path / "big.jsonl"
        _write_big(
            path,
            line("before") + b'\n{"id": "big", "messages": [{"role": "user", "content": "',
            b'"}]}\n' + line("after") + b"\n",
        )
    else:
        path = tmp_path / "conversations.json"
        head, tail = conversation("big", "@@").split(b"@@")
        _write_big(
            path, b"[" + conversation("before", "hi") + b"," + head, tail + b"," + conversation("after", "hi") + b"]"
        )
    size = path.stat().st_size
    done = subprocess.run(
        [sys.executable, "-c", BIG_SCRIPT, kind, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    kinds = [(name, external_id) for name, external_id, _ in result["items"]]
    assert kinds == [("Record", "before"), ("Skip", None), ("Record", "after"), ("Cursor", None)]
    assert "too large" in result["items"][1][2]
    assert result["peak_delta"] < 4 * size, f"peak memory grew {result['peak_delta'] / size:.1f}x the input"
    assert result["seconds"] < 60
    print(
        f"{kind}: {size / 2**20:.0f} MB item skipped, peak +{result['peak_delta'] / 2**20:.0f} MB, "
        f"{result['seconds']:.1f}s"
    )
