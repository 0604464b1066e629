"""Chat JSONL in the OpenAI format: one conversation per line, a file or a folder of *.jsonl.

A line is ``{"id": ..., "messages": [{"role": ..., "content": ...}], "label": "good"|"bad"}``;
``id``, ``title`` and ``label`` are optional. Rules:

- external_id is the line's ``id`` (a string or a number), or, without one, a hash of the line,
  so it stays stable while the line does. In a folder it is ``"<relative path>#<id>"``.
- ``content`` is a string or a list of parts (``{"type": "text", "text": ...}``; images become
  "[image]"). Roles are system, user, assistant and tool; "developer" is read as system and
  "function" as tool. Messages without text (an assistant turn that only calls tools) are dropped.
- A line that can't be used (bad JSON, not an object, no messages, an unknown role, an id used
  on an earlier line, over ``MAX_ITEM_MB``: "line too large", read past without being held
  whole) is a Skip whose item is ``"<path>:<line>"``; reading goes on.
- A ``label`` other than good/bad does not cost the conversation: it is kept without the label,
  and a Skip for that line says the label was ignored.
- The cursor holds a fingerprint per file and, per file, a hash of each line that made a record
  (with the record's id). When no file changed, nothing is read. Otherwise every file is read
  again, but a line with the same bytes as one that made a record last time (line ending aside)
  is ``Unchanged`` without being parsed; storage writes only the records that differ. A folder
  without any .jsonl file is an error rather than a reason to delete everything stored.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from connectors.conversations import conversation_record, is_empty
from connectors.fingerprints import cursor_state, fingerprints, unchanged
from connectors.json_stream import CHUNK_SIZE, MAX_ITEM_MB
from connectors.json_values import as_str
from connectors.records import (
    ConnectorError,
    Cursor,
    ImportedLabel,
    Item,
    LabelValue,
    Message,
    NothingChanged,
    Record,
    Role,
    Skip,
    Unchanged,
)
from connectors.settings import JsonlSource

_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}
_LABELS: dict[str, LabelValue] = {"good": "good", "bad": "bad"}
_IMAGE_PARTS = frozenset({"image", "image_url", "input_image"})


class _BadLine(ValueError):
    """A line that can't be used; the message is the Skip's reason."""


# Bump when what a line turns into changes: the line hashes of older cursors then mean nothing.
LINES_VERSION = 1

LineHashes = dict[str, str]  # hash of a line's bytes -> the id of the conversation it made


def read(settings: JsonlSource, cursor: Mapping[str, Any] | None) -> Iterator[Item]:
    """Records, Unchanged or Skips for every line of every file, then the Cursor."""
    files = jsonl_files(settings.name, settings.path)
    prints = fingerprints(settings.name, files, cursor)
    known = _line_hashes(cursor)
    if unchanged(cursor, prints):
        yield NothingChanged()
        yield Cursor(_state(prints, {key: known.get(key, {}) for key in files}))
        return
    folder = settings.path.is_dir()
    lines: dict[str, LineHashes] = {}
    for key, path in files.items():
        lines[key] = {}
        yield from _read_file(settings.name, path, f"{key}#" if folder else "", known.get(key, {}), lines[key])
    yield Cursor(_state(prints, lines))


def _state(prints: Mapping[str, Any], lines: Mapping[str, LineHashes]) -> dict[str, Any]:
    return {**cursor_state(prints), "lines": {"version": LINES_VERSION, "files": dict(lines)}}


def _line_hashes(cursor: Mapping[str, Any] | None) -> dict[str, LineHashes]:
    """The cursor's line hashes per file; a cursor without them (or of another version) has none."""
    lines = cursor.get("lines") if isinstance(cursor, Mapping) else None
    if not isinstance(lines, Mapping) or lines.get("version") != LINES_VERSION:
        return {}
    files = lines.get("files")
    if not isinstance(files, Mapping):
        return {}
    return {
        key: {h: i for h, i in hashes.items() if isinstance(h, str) and isinstance(i, str)}
        for key, hashes in files.items()
        if isinstance(key, str) and isinstance(hashes, Mapping)
    }


def _line_hash(raw: bytes) -> str:
    return hashlib.blake2b(raw.rstrip(b"\r\n"), digest_size=16).hexdigest()


def _cacheable(conversation_id: str) -> bool:
    """Whether the id can go in the cursor as it is (a JSON column on every backend)."""
    try:
        conversation_id.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape
        return False
    return "\x00" not in conversation_id


def jsonl_files(source: str, path: Path) -> dict[str, Path]:
    """The file itself (key: its name), or every *.jsonl under the folder (key: relative path)."""
    if path.is_file():
        return {path.name: path}
    if not path.is_dir():
        hint = "point `path` at a .jsonl file or a folder of them"
        raise ConnectorError(source, f"{path}: not found; {hint}")
    found = sorted(p for p in path.rglob("*.jsonl") if p.is_file())
    if not found:
        hint = "add some or remove the source"
        raise ConnectorError(source, f"{path}: no .jsonl files in this folder; {hint}")
    return {p.relative_to(path).as_posix(): p for p in found}


def _read_file(
    source: str, path: Path, prefix: str, known: LineHashes, lines: LineHashes
) -> Iterator[Record | Unchanged | Skip]:
    """The file's items. A line hashed in ``known`` is Unchanged unless its id was taken by an
    earlier line (then it is parsed, and skipped as a duplicate); ``lines`` gets the hash of every
    line that made a record (alone: a line that also made a Skip is read again every time)."""
    first_line: dict[str, int] = {}
    limit = MAX_ITEM_MB << 20
    try:
        with path.open("rb") as stream:
            for lineno, raw in enumerate(_lines(stream, limit), start=1):
                item = f"{path}:{lineno}"
                if isinstance(raw, int):
                    size = f"{raw / (1 << 20):.1f} MB"
                    limit_mb = f"lines over {MAX_ITEM_MB} MB are skipped"
                    yield Skip(item, f"line too large ({size}; {limit_mb})")
                    continue
                digest = _line_hash(raw)
                conversation_id = known.get(digest)
                if conversation_id is not None and conversation_id not in first_line:
                    first_line[conversation_id] = lineno
                    lines[digest] = conversation_id
                    yield Unchanged(prefix + conversation_id)
                    continue
                items = list(_line_items(raw, item, lineno, prefix, first_line))
                if len(items) == 1 and isinstance(items[0], Record):
                    conversation_id = items[0].external_id[len(prefix) :]
                    if _cacheable(conversation_id):
                        lines[digest] = conversation_id
                yield from items
    except OSError as e:
        raise ConnectorError(source, f"{path}: cannot read it ({e.strerror or e})") from e


def _lines(stream: IO[bytes], limit: int) -> Iterator[bytes | int]:
    """Each line of ``stream``; for a line over ``limit`` bytes its size instead, read past a
    chunk at a time so that it is never held whole."""
    while line := stream.readline(limit + 1):
        if len(line) <= limit or line.endswith(b"\n"):
            yield line
            continue
        size = len(line)
        while (rest := stream.readline(CHUNK_SIZE)) and not rest.endswith(b"\n"):
            size += len(rest)
        yield size + len(rest.rstrip(b"\n"))


def _line_items(raw: bytes, item: str, lineno: int, prefix: str, first_line: dict[str, int]) -> Iterator[Record | Skip]:
    """The Record of one line (or a Skip), and a Skip for a label that had to be ignored."""
    try:
        line = raw.decode("utf-8").lstrip("\ufeff").strip()
    except UnicodeDecodeError as e:
        yield Skip(item, f"not valid UTF-8 ({e.reason} at column {e.start + 1})")
        return
    if not line:
        return
    try:
        data = _object(line)
        conversation_id = _conversation_id(data, line)
    except _BadLine as e:
        yield Skip(item, str(e))
        return
    if conversation_id in first_line:
        first = first_line[conversation_id]
        yield Skip(item, f"duplicate id {conversation_id!r}; the first one (line {first}) was kept")
        return
    first_line[conversation_id] = lineno
    external_id = prefix + conversation_id
    try:
        messages = _messages(data.get("messages"))
    except _BadLine as e:
        yield Skip(item, str(e), external_id=external_id)
        return
    if is_empty(messages):
        yield Skip(item, "empty conversation", external_id=external_id)
        return
    label = data.get("label")
    value = _LABELS.get(label.strip().lower()) if isinstance(label, str) else None
    labels = (ImportedLabel(value),) if value else ()
    yield conversation_record(external_id, as_str(data.get("title")), messages, labels=labels)
    if label is not None and value is None:
        kept = "the conversation was kept without it"
        yield Skip(item, f'label must be "good" or "bad", not {label!r}; {kept}')


def _object(line: str) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as e:
        raise _BadLine(f"not valid JSON: {e.msg} (column {e.colno})") from e
    except (ValueError, RecursionError) as e:
        raise _BadLine(f"not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise _BadLine("not a JSON object")
    return data


def _conversation_id(data: dict[str, Any], line: str) -> str:
    value = data.get("id")
    if value is None:
        return hashlib.sha256(line.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise _BadLine(f"id must be a non-empty string or a number, not {value!r}")
    return str(value)


def _messages(value: Any) -> tuple[Message, ...]:
    if not isinstance(value, list) or not value:
        raise _BadLine('no messages (expected a non-empty list under "messages")')
    messages: list[Message] = []
    for index, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise _BadLine(f"message {index} is not an object")
        role = entry.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise _BadLine(f"message {index} has unknown role {role!r}")
        text = _content_text(entry.get("content"), index).strip()
        if text:
            weight = entry.get("weight")
            finite = isinstance(weight, float) and math.isfinite(weight)  # no NaN, Infinity
            numeric = (isinstance(weight, int) and not isinstance(weight, bool)) or finite
            metadata = {"weight": weight} if numeric else {}
            messages.append(Message(_ROLES[role], text, position=len(messages), metadata=metadata))
    return tuple(messages)


def _content_text(content: Any, index: int = 0) -> str:
    """A message's ``content``: a string, a list of parts, or null (no text)."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise _BadLine(f"message {index}: content must be a string or a list of parts")
    return "\n".join(text for text in map(_part_text, content) if text.strip())


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        return ""
    kind = part.get("type")
    if isinstance(kind, str) and kind in _IMAGE_PARTS:
        return "[image]"
    text = part.get("text")
    return text if isinstance(text, str) else ""
