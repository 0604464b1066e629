"""Helpers shared by the chat connectors (chatgpt, claude, jsonl).

Finding an export (a .zip, a folder or the bare JSON file), fingerprinting files for the cursor,
streaming a large JSON array one element at a time, and turning a tree of turns into a
conversation's main path plus its alternative branches.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import posixpath
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from connectors.records import (
    ConnectorError,
    ImportedLabel,
    Message,
    Record,
    Role,
    Skip,
    content_hash,
    render_conversation,
)

CHUNK_SIZE = 1 << 20
TITLE_LENGTH = 80
MAX_ITEM_MB = 64
"""A JSONL line or conversations.json element over this many MB is skipped ("too large") without
being held whole: no real conversation is that big, and parsing one costs several times its size."""

Fingerprint = dict[str, Any]

# --- cursor ------------------------------------------------------------------------------------


def fingerprints(source: str, files: Mapping[str, Path], cursor: Mapping[str, Any] | None) -> dict[str, Fingerprint]:
    """size, mtime_ns and sha256 of each file; the hash is reused when size and mtime match."""
    previous = _cursor_files(cursor)
    result: dict[str, Fingerprint] = {}
    for key, path in files.items():
        try:
            result[key] = _fingerprint(path, previous.get(key))
        except OSError as e:
            problem = f"cannot read it ({e.strerror or e}); check that it exists and is readable"
            raise ConnectorError(source, f"{path}: {problem}") from e
    return result


def cursor_state(files: Mapping[str, Fingerprint]) -> dict[str, Any]:
    return {"files": dict(files)}


def unchanged(cursor: Mapping[str, Any] | None, files: Mapping[str, Fingerprint]) -> bool:
    """True when the cursor holds the same files with the same size and content.

    A file whose mtime moved but whose bytes are the same still counts as unchanged; the new
    cursor records the new mtime.
    """
    previous = _cursor_files(cursor)
    if not files or previous.keys() != files.keys():
        return False
    return all(_same_content(previous[key], fp) for key, fp in files.items())


def _same_content(old: Any, new: Fingerprint) -> bool:
    if not isinstance(old, Mapping):
        return False
    return (old.get("size"), old.get("sha256")) == (new["size"], new["sha256"])


def _cursor_files(cursor: Mapping[str, Any] | None) -> Mapping[str, Any]:
    files = cursor.get("files") if isinstance(cursor, Mapping) else None
    return files if isinstance(files, Mapping) else {}


def _fingerprint(path: Path, previous: Any) -> Fingerprint:
    stat = path.stat()
    sha = None
    current = (stat.st_size, stat.st_mtime_ns)
    if isinstance(previous, Mapping) and (previous.get("size"), previous.get("mtime_ns")) == current:
        sha = previous.get("sha256")
    if not isinstance(sha, str):
        sha = _sha256(path)
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


# --- exports -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Export:
    """Where an export's JSON file is: ``member`` inside the zip at ``path``, or ``path`` itself."""

    source: str
    path: Path
    member: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path}:{self.member}" if self.member else str(self.path)

    def sibling_where(self, name: str) -> str:
        if self.member:
            return f"{self.path}:{self._sibling_member(name)}"
        return str(self.path.with_name(name))

    def files(self, *siblings: str) -> dict[str, Path]:
        """The files to fingerprint: the zip, or the JSON file plus the siblings that exist."""
        if self.member:
            return {self.path.name: self.path}
        found = {self.path.name: self.path}
        for name in siblings:
            if self.path.with_name(name).is_file():
                found[name] = self.path.with_name(name)
        return found

    @contextmanager
    def open(self, sibling: str | None = None) -> Iterator[IO[bytes] | None]:
        """The main file, or the named file beside it (None when that one is absent)."""
        where = self.sibling_where(sibling) if sibling else self.where
        with self._errors(where):
            if self.member:
                with zipfile.ZipFile(self.path) as archive:
                    member = self._sibling_member(sibling) if sibling else self.member
                    if member not in archive.namelist():
                        yield None
                        return
                    with archive.open(member) as stream:
                        yield stream
            else:
                path = self.path.with_name(sibling) if sibling else self.path
                if sibling and not path.is_file():
                    yield None
                    return
                with path.open("rb") as stream:
                    yield stream

    def stream_array(self, chunk_size: int = CHUNK_SIZE) -> Iterator[Any]:
        """The elements of the main file's top-level JSON array (BadElement for broken ones)."""
        with self.open() as stream:
            assert stream is not None
            yield from iter_json_array(stream, chunk_size, MAX_ITEM_MB << 20)

    def _sibling_member(self, name: str) -> str:
        return posixpath.join(posixpath.dirname(self.member or ""), name)

    @contextmanager
    def _errors(self, where: str) -> Iterator[None]:
        try:
            yield
        except JsonStreamError as e:
            problem = f"{e}; check that this is a complete, unmodified export"
            raise ConnectorError(self.source, f"{where}: {problem}") from e
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
            problem = f"the zip is corrupt ({e}); download the export again"
            raise ConnectorError(self.source, f"{where}: {problem}") from e
        except OSError as e:
            raise ConnectorError(self.source, f"{where}: cannot read it ({e.strerror or e})") from e


def locate_export(source: str, path: Path, name: str) -> Export:
    """Find the export's ``name`` (conversations.json) in a .zip, in a folder, or at ``path``."""
    hint = f"point `path` at the export .zip or its {name}"
    if path.is_dir():
        if not (path / name).is_file():
            raise ConnectorError(source, f"{path}: no {name} in this folder; {hint}")
        return Export(source, path / name)
    if not path.is_file():
        raise ConnectorError(source, f"{path}: not found; {hint}")
    if not _looks_like_zip(source, path):
        return Export(source, path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        problem = f"not a readable zip ({e}); download the export again"
        raise ConnectorError(source, f"{path}: {problem}") from e
    candidates = sorted((n for n in names if posixpath.basename(n) == name), key=lambda n: (n.count("/"), n))
    if not candidates:
        raise ConnectorError(source, f"{path}: the zip holds no {name}; is this the right export?")
    return Export(source, path, candidates[0])


def _looks_like_zip(source: str, path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as e:
        raise ConnectorError(source, f"{path}: cannot read it ({e.strerror or e})") from e
    return path.suffix.lower() == ".zip" or head.startswith(b"PK")


# --- streaming JSON ----------------------------------------------------------------------------


class JsonStreamError(ValueError):
    """The stream is not a JSON array, or it breaks so that the next element can't be found."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at byte {offset})")
        self.offset = offset


@dataclass(frozen=True)
class BadElement:
    """An array element that is not valid JSON, or too large to read; reading went on after it."""

    offset: int
    error: str
    too_large: bool = False

    @property
    def reason(self) -> str:
        """Why the element can't be used, as a Skip's reason."""
        return self.error if self.too_large else f"not valid JSON: {self.error}"


_SPACE = re.compile(r"[ \t\n\r]*")
_TOP_LEVEL = re.compile(r'[",\[\]{}]')
_NESTED = re.compile(r'["\[\]{}]')
_IN_STRING = re.compile(r'["\\]')


class _Window:
    """Decoded text of a UTF-8 byte stream from ``pos`` on, read a chunk at a time."""

    def __init__(self, raw: IO[bytes], chunk_size: int) -> None:
        self.raw = raw
        self.chunk_size = max(1, chunk_size)
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.buf = ""
        self.pos = 0
        self.base = 0
        self.eof = False
        self.started = False
        self.read = 0  # bytes read from ``raw`` so far

    def fill(self) -> int:
        """Drop the text before ``pos`` and append the next chunk; return the characters dropped."""
        dropped = self.pos
        if dropped:
            self.base += len(self.buf[:dropped].encode("utf-8", "surrogatepass"))
            self.buf = self.buf[dropped:]
            self.pos = 0
        data = self.raw.read(self.chunk_size)
        self.read += len(data)
        text = self.decoder.decode(data, final=not data)
        if not self.started and text:
            self.started = True
            if text.startswith("\ufeff"):
                text = text[1:]
                self.base += 3
        self.buf += text
        self.eof = not data
        return dropped

    def skip_space(self) -> str:
        """Move past whitespace; return the next character ("" at the end)."""
        while True:
            self.pos = _SPACE.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf) or self.eof:
                return self.buf[self.pos : self.pos + 1]
            self.fill()

    def offset(self, index: int) -> int:
        return self.base + len(self.buf[:index].encode("utf-8", "surrogatepass"))


def iter_json_array(raw: IO[bytes], chunk_size: int = CHUNK_SIZE, max_bytes: int | None = None) -> Iterator[Any]:
    """Yield the elements of the JSON array in ``raw`` one at a time.

    Memory holds about one chunk plus the element being read. An element that is not valid JSON
    but whose end can still be found is yielded as a :class:`BadElement`; so is one larger than
    about ``max_bytes`` (``too_large``), read past a chunk at a time and never held whole. A
    stream that is not an array, or that breaks so that the next element can't be found, raises
    JsonStreamError.
    """
    window = _Window(raw, chunk_size)
    decoder = json.JSONDecoder()
    first = window.skip_space()
    if first != "[":
        found = {"": "nothing (the file is empty)", "{": "an object"}.get(first, repr(first))
        problem = f"expected a JSON array (a list) but found {found}"
        raise JsonStreamError(problem, window.offset(window.pos))
    window.pos += 1
    if window.skip_space() == "]":
        return
    while True:
        yield _next_element(window, decoder, max_bytes)
        after = window.skip_space()
        if after == "]":
            return
        if after != ",":
            problem = f"expected ',' or ']' but found {after!r}"
            if not after:
                problem = "the file ends before the list is closed"
            raise JsonStreamError(problem, window.offset(window.pos))
        window.pos += 1
        window.skip_space()


def _next_element(window: _Window, decoder: json.JSONDecoder, max_bytes: int | None) -> Any:
    try:
        value, end = decoder.raw_decode(window.buf, window.pos)
    except (ValueError, RecursionError):
        pass
    else:
        if window.eof or isinstance(value, dict | list | str):
            window.pos = end
            return value
    offset = window.offset(window.pos)
    end, too_large = _element_end(window, offset, max_bytes)
    if too_large:
        size, limit = (window.offset(end) - offset) / (1 << 20), (max_bytes or 0) / (1 << 20)
        window.pos = end
        reason = f"too large ({size:.1f} MB; conversations over {limit:g} MB are skipped)"
        return BadElement(offset, reason, too_large=True)
    start = window.pos
    try:
        value, stop = decoder.raw_decode(window.buf, start)
    except json.JSONDecodeError as e:
        error = f"{e.msg} at byte {window.offset(e.pos)}"
    except (ValueError, RecursionError) as e:
        error = str(e) or type(e).__name__
    else:
        if _SPACE.match(window.buf, stop).end() == end:  # type: ignore[union-attr]
            window.pos = end
            return value
        error = f"unexpected text after the value at byte {window.offset(stop)}"
    window.pos = end
    return BadElement(window.offset(start), error)


def _element_end(window: _Window, start: int, max_bytes: int | None) -> tuple[int, bool]:
    """Index of the ',' or ']' that ends the element at ``window.pos`` (byte offset ``start``),
    reading on as needed, and whether the element is over ``max_bytes``.

    Tracks only strings and bracket depth, so it also finds the end of an invalid element. Once
    the element is known to be too large, the text scanned so far is dropped at each read.
    """
    too_large = False
    depth, in_string, i = 0, False, window.pos
    while True:
        buf = window.buf
        if in_string:
            match = _IN_STRING.search(buf, i)
            if match and match.group() == '"':
                in_string, i = False, match.end()
                continue
            if match and match.end() < len(buf):
                i = match.end() + 1
                continue
            i = match.start() if match else len(buf)
        else:
            match = (_TOP_LEVEL if depth == 0 else _NESTED).search(buf, i)
            if match:
                char, i = match.group(), match.end()
                if char == '"':
                    in_string = True
                elif char in "[{":
                    depth += 1
                elif depth == 0:
                    return match.start(), too_large
                else:
                    depth -= 1
                continue
            i = len(buf)
        if window.eof:
            raise JsonStreamError("the file ends inside an element that starts here", start)
        too_large = too_large or (max_bytes is not None and window.read - start > max_bytes)
        if too_large:
            window.pos = i
        i -= window.fill()


# --- conversations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    """A turn worth keeping, before its place in the conversation is known."""

    role: Role
    content: str
    external_id: str | None = None
    created_at: datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Node:
    """A node of an export's message tree; ``turn`` is None when it holds nothing to keep."""

    id: str
    parent: str | None
    turn: Turn | None


def arrange(nodes: Sequence[Node], leaf: str | None) -> tuple[Message, ...]:
    """The path from the root to ``leaf`` as branch 0, every other subtree as branches 1, 2, ...

    Positions count kept turns only. Branch numbers are handed out per position, so (position,
    branch) is unique; ``parent_external_id`` links each message to the kept turn before it, so
    siblings (a reply and its regenerations) share a parent. Without a known ``leaf`` the main
    path follows the last child at each fork. Parent cycles end the walk instead of looping.
    """
    by_id: dict[str, Node] = {}
    for node in nodes:
        by_id.setdefault(node.id, node)
    children: dict[str | None, list[str]] = {}
    for node in by_id.values():
        parent = node.parent if node.parent in by_id and node.parent != node.id else None
        children.setdefault(parent, []).append(node.id)

    messages: list[Message] = []
    path = _main_path(by_id, children, leaf)
    forks: list[tuple[str | None, int, str | None]] = [(None, 0, None)]
    position, parent_id = 0, None
    for node_id in path:
        turn = by_id[node_id].turn
        if turn is not None:
            message = _message(turn, node_id, position, 0, parent_id)
            messages.append(message)
            position, parent_id = position + 1, message.external_id
        forks.append((node_id, position, parent_id))

    visited = set(path)
    branches: dict[int, int] = {}
    for node_id, position, parent_id in forks:
        for child in children.get(node_id, []):
            if child not in visited:
                subtree = _subtree(child, position, parent_id, by_id, children, visited, branches)
                messages.extend(subtree)
    return tuple(sorted(messages, key=lambda m: (m.position, m.branch)))


def _main_path(by_id: Mapping[str, Node], children: Mapping[str | None, list[str]], leaf: str | None) -> list[str]:
    if leaf not in by_id:
        leaf, seen = None, set()
        while children.get(leaf) and leaf not in seen:
            seen.add(leaf)
            leaf = children[leaf][-1]
    path: list[str] = []
    seen_on_path: set[str] = set()
    node_id = leaf
    while node_id is not None and node_id in by_id and node_id not in seen_on_path:
        seen_on_path.add(node_id)
        path.append(node_id)
        node_id = by_id[node_id].parent
    return path[::-1]


def _subtree(
    root: str,
    position: int,
    parent_id: str | None,
    by_id: Mapping[str, Node],
    children: Mapping[str | None, list[str]],
    visited: set[str],
    branches: dict[int, int],
) -> Iterator[Message]:
    stack = [(root, position, parent_id)]
    while stack:
        node_id, position, parent_id = stack.pop()
        if node_id in visited:
            continue
        visited.add(node_id)
        turn = by_id[node_id].turn
        if turn is not None:
            branches[position] = branches.get(position, 0) + 1
            message = _message(turn, node_id, position, branches[position], parent_id)
            yield message
            position, parent_id = position + 1, message.external_id
        stack.extend((child, position, parent_id) for child in reversed(children.get(node_id, [])))


def _message(turn: Turn, node_id: str, position: int, branch: int, parent_id: str | None) -> Message:
    return Message(
        role=turn.role,
        content=turn.content,
        position=position,
        branch=branch,
        external_id=turn.external_id or node_id,
        parent_external_id=parent_id,
        created_at=turn.created_at,
        metadata=turn.metadata,
    )


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


def is_empty(messages: Iterable[Message]) -> bool:
    """No user or assistant text at all."""
    return not any(m.role in ("user", "assistant") and m.content.strip() for m in messages)


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


def _branch_parts(messages: Iterable[Message]) -> Iterator[str]:
    for m in messages:
        if m.branch:
            yield f"branch {m.position}.{m.branch} after {m.parent_external_id} {m.role}"
            yield m.content


def _label_parts(labels: Iterable[ImportedLabel]) -> Iterator[str]:
    for label in labels:
        yield f"label {label.value} {label.message_external_id}"
        yield label.note or ""


_WORD = re.compile(r"\S+")


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
    return text or "Untitled conversation"


# --- loose JSON values -------------------------------------------------------------------------


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def from_epoch(value: Any) -> datetime | None:
    """A UTC datetime from epoch seconds (a number or numeric string); None if absent or invalid."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return from_iso(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


_FRACTION = re.compile(r"\.(\d+)")


def from_iso(value: Any) -> datetime | None:
    """A datetime from ISO 8601 ("Z" and any number of fraction digits); naive means UTC."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text, count=1)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
