"""Markdown notes from a folder (an Obsidian vault works as it is).

``read(settings, cursor)`` walks ``settings.path`` and yields one record per note:

- ``external_id`` is the note's path relative to the folder, in posix form
  (``daily/2024-01-02.md``). A file name that is not valid UTF-8 keeps its odd bytes as
  ``\\xNN`` escapes.
- ``kind`` is ``"runbook"`` when the front matter says ``type: runbook``, its tags contain
  ``runbook``, or a folder on the note's path is named ``runbooks`` (any case; the source's own
  folder too, when the source points at a ``runbooks`` folder); else ``"note"``.
- ``content`` is the markdown body without its front matter, with wiki links made readable
  (:mod:`connectors.wikilinks`):
  ``[[target]]`` -> ``target``, ``[[target|alias]]`` -> ``alias``, ``[[note#heading]]`` ->
  ``note > heading``, ``[[note#^block]]`` -> ``note``; embeds of images, audio, video and PDFs
  (``![[photo.png]]``) are dropped and other embeds become ``[embed: name]``. Links inside code
  blocks and inline code are left alone. Leading blank lines and trailing whitespace are trimmed.
- ``title``: the front matter's ``title``, else the first H1, else the file name without ``.md``.
- ``metadata``: ``path``; ``tags`` and ``aliases`` (lists, ``tags: a, b`` strings split, ``#``
  dropped, also read from the older ``tag``/``alias`` keys); ``links`` (targets of wiki links and
  note embeds, in order); the front matter's other scalar keys (``title``, ``type``, ...; dates
  as ISO strings; lists and mappings other than tags/aliases are left out); ``sections``: one
  ``{"level", "title", "line"}`` per heading, ``line`` being the 0-based line of the heading in
  ``content``. Unparseable front matter keeps the note and sets ``front_matter_error``. A note
  that was not clean UTF-8 has ``encoding`` (when it had a UTF-16/32 BOM) and/or
  ``decode_errors`` (the number of undecodable bytes replaced by U+FFFD). The keys ``path``,
  ``sections``, ``links``, ``tags``, ``aliases``, ``front_matter_error``, ``encoding`` and
  ``decode_errors`` are computed here and win over front matter keys of the same name.
- ``updated_at`` is the file's mtime in UTC; ``content_hash`` covers content, title and metadata.

The walk (:mod:`connectors.vault_walk`) uses ``os.scandir`` in sorted order. It leaves out hidden
files and folders (name starting with ``.``, which covers ``.obsidian/`` and ``.trash/``), files
not matching ``include`` or matching ``exclude`` (gitignore patterns, see :mod:`connectors.globs`;
a folder that ``exclude`` matches is not even listed). Symlinks are resolved: a symlinked *file*
whose target is inside the folder is read under the link's path; a symlink whose target is outside
the folder, a broken symlink, and every symlinked *folder* are skipped with a reason (a folder
link inside the vault is either a loop or a second path to notes that are already read at their
real path; following it would give the same note two ids). Special files (FIFOs, sockets) are
skipped, never opened.

Skips (with ``external_id`` = the path): over 5 MB ("too large"); binary ("binary file": a NUL
byte in the first 8 KB without a UTF-16/32 BOM, or more than 10% of the first 8 KB undecodable or
control characters); an empty body ("empty note"); an OS error when reading (its message).
Invalid UTF-8 in an otherwise text note is decoded with ``errors="replace"`` and counted in
``metadata["decode_errors"]`` rather than skipped: a stray byte shouldn't cost the whole note.
UTF-8 with BOM and UTF-16/32 with BOM decode correctly.

Cursor: ``{relpath: [size, mtime_ns, content_hash]}`` for every note yielded as a record (or as
unchanged). A note whose size and mtime both equal the cursor's is yielded as ``Unchanged``
without being opened (like rsync's quick check: an edit that keeps the size and lands within the
filesystem's timestamp granularity of the previous scan goes unnoticed until the next edit).
A file skipped for its content ("binary file", "empty note") is remembered as
``{relpath: [size, mtime_ns, null, reason]}`` and, while size and mtime hold, skipped again with
the same reason without being opened. Files skipped for their size, an OS error or a symlink
are not in the cursor: they are checked again on every run.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import yaml
from markdown_it import MarkdownIt
from mdit_py_plugins.front_matter import front_matter_plugin

from connectors.globs import GlobSet
from connectors.records import (
    ConnectorError,
    Cursor,
    Item,
    Kind,
    Record,
    Skip,
    Unchanged,
    content_hash,
)
from connectors.settings import MarkdownSource
from connectors.text_decoding import decode_text
from connectors.vault_walk import display, walk
from connectors.wikilinks import convert_line

MAX_BYTES = 5 * 1024 * 1024

_COMPUTED_KEYS = frozenset(
    {"path", "sections", "links", "tags", "aliases", "front_matter_error", "encoding", "decode_errors"}
)
_LIST_KEYS = frozenset({"tags", "tag", "aliases", "alias"})


def read(settings: MarkdownSource, cursor: Mapping[str, Any] | None) -> Iterator[Item]:
    """Yield a Record, Unchanged or Skip per note under ``settings.path``, then a Cursor."""
    root = settings.path
    if not root.exists():
        raise ConnectorError(settings.name, f"{root}: folder not found; check the source's path")
    if not root.is_dir():
        raise ConnectorError(settings.name, f"{root}: not a folder; point the source's path at your notes folder")
    try:
        os.scandir(root).close()
    except OSError as error:
        raise ConnectorError(
            settings.name, f"{root}: can't list the folder ({error.strerror}); check permissions"
        ) from error

    previous = _previous_state(cursor)
    runbooks_root = root.resolve().name.lower() == "runbooks"
    state: dict[str, list[Any]] = {}
    parser = MarkdownIt("commonmark").use(front_matter_plugin)
    include = GlobSet(settings.include)
    exclude = GlobSet(settings.exclude)

    for found in walk(str(root), include, exclude):
        if isinstance(found, Skip):
            yield found
            continue
        relpath, path = found
        external_id = display(relpath)
        try:
            info = os.stat(path)
        except OSError as error:
            yield Skip(external_id, f"can't read: {error.strerror or error}", external_id)
            continue
        if not stat.S_ISREG(info.st_mode):
            yield Skip(external_id, "not a regular file", external_id)
            continue
        known = previous.get(external_id)
        if known is not None and known[0] == info.st_size and known[1] == info.st_mtime_ns:
            state[external_id] = list(known)
            if len(known) == 4:
                yield Skip(external_id, known[3], external_id)
            else:
                yield Unchanged(external_id)
            continue
        if info.st_size > MAX_BYTES:
            yield Skip(external_id, _too_large(info.st_size), external_id)
            continue
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_BYTES + 1)
        except OSError as error:
            yield Skip(external_id, f"can't read: {error.strerror or error}", external_id)
            continue
        if len(data) > MAX_BYTES:
            yield Skip(external_id, _too_large(len(data)), external_id)
            continue
        item = _parse_note(parser, external_id, data, info.st_mtime_ns)
        if isinstance(item, Record) and item.kind == "note" and runbooks_root:
            item = replace(item, kind="runbook", content_hash=content_hash(item.content_hash, "runbooks root"))
        if isinstance(item, Record):
            state[external_id] = [info.st_size, info.st_mtime_ns, item.content_hash]
        else:
            state[external_id] = [info.st_size, info.st_mtime_ns, None, item.reason]
        yield item

    yield Cursor(state)


def _previous_state(cursor: Mapping[str, Any] | None) -> dict[str, tuple[Any, ...]]:
    """The cursor's well-formed entries; anything else is ignored (the note is just re-read)."""
    entries: dict[str, tuple[Any, ...]] = {}
    for key, value in (cursor or {}).items():
        if not (
            isinstance(key, str)
            and isinstance(value, list | tuple)
            and len(value) in (3, 4)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value[:2])
        ):
            continue
        if len(value) == 3 and isinstance(value[2], str):
            entries[key] = (value[0], value[1], value[2])
        elif len(value) == 4 and value[2] is None and isinstance(value[3], str):
            entries[key] = (value[0], value[1], None, value[3])
    return entries


def _too_large(size: int) -> str:
    limit = MAX_BYTES // 1024 // 1024
    return f"too large ({size / 1024 / 1024:.1f} MB; notes over {limit} MB are skipped)"


def _parse_note(parser: MarkdownIt, relpath: str, data: bytes, mtime_ns: int) -> Record | Skip:
    """Record for one note's bytes (or a Skip for binary / empty notes)."""
    decoded = decode_text(data)
    if decoded is None:
        return Skip(relpath, "binary file", relpath)
    text, notes = decoded
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "\ufffd")
    tokens = parser.parse(text)
    lines = text.split("\n")

    body_start = 0
    front_matter: dict[str, Any] = {}
    front_matter_error: str | None = None
    if tokens and tokens[0].type == "front_matter" and tokens[0].map:
        body_start = tokens[0].map[1]
        front_matter, front_matter_error = _load_front_matter(tokens[0].content)

    protected: set[int] = set()
    for token in tokens:
        if token.type in ("fence", "code_block") and token.map:
            protected.update(range(token.map[0], token.map[1]))

    links: list[str] = []
    converted = [
        line if number in protected else convert_line(line, links)
        for number, line in enumerate(lines[body_start:], start=body_start)
    ]
    trimmed = 0
    while trimmed < len(converted) and not converted[trimmed].strip():
        trimmed += 1
    content = "\n".join(converted[trimmed:]).rstrip()
    if not content:
        return Skip(relpath, "empty note", relpath)

    sections: list[dict[str, Any]] = []
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.map and index + 1 < len(tokens):
            heading = convert_line(tokens[index + 1].content, []).strip()
            sections.append(
                {"level": int(token.tag[1:]), "title": heading, "line": token.map[0] - body_start - trimmed}
            )

    metadata = _metadata(front_matter)
    if front_matter_error is not None:
        metadata["front_matter_error"] = front_matter_error
    metadata.update(notes)
    metadata["path"] = relpath
    metadata["links"] = list(dict.fromkeys(links))
    metadata["sections"] = sections

    title = _title(front_matter, sections, relpath)
    kind: Kind = "runbook" if _is_runbook(metadata, relpath) else "note"
    digest = content_hash(content, title, json.dumps(metadata, sort_keys=True, ensure_ascii=False))
    return Record(
        external_id=relpath,
        kind=kind,
        title=title,
        content=content,
        content_hash=digest,
        updated_at=datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC),
        metadata=metadata,
    )


def _load_front_matter(source: str) -> tuple[dict[str, Any], str | None]:
    """The front matter mapping, or ({}, error message) when it isn't a YAML mapping."""
    if not source.strip():
        return {}, None
    try:
        loaded = yaml.load(source, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        where = f" (line {mark.line + 2})" if mark is not None else ""
        return {}, f"invalid YAML: {problem}{where}"
    except (ValueError, TypeError, OverflowError, RecursionError) as error:
        return {}, f"invalid YAML: {error}"
    if loaded is None:
        return {}, None
    if not isinstance(loaded, dict):
        return {}, f"front matter is a {type(loaded).__name__}, not a mapping"
    return {str(key): value for key, value in loaded.items()}, None


def _scalar(value: Any) -> tuple[bool, Any]:
    """(True, JSON-safe value) for a scalar front matter value, else (False, None)."""
    if value is None or isinstance(value, bool | int | str):
        return True, value
    if isinstance(value, float):
        return True, value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, datetime | date):
        return True, value.isoformat()
    return False, None


def _strings(value: Any, split: bool) -> list[str]:
    if isinstance(value, str):
        return [p for p in re.split(r"[,\s]+" if split else r"\n", value) if p.strip()]
    if isinstance(value, list | tuple):
        return [str(item) for item in value if _scalar(item)[0] and item is not None]
    if value is not None and _scalar(value)[0]:
        return [str(value)]
    return []


def _metadata(front_matter: Mapping[str, Any]) -> dict[str, Any]:
    tags = _strings(front_matter.get("tags"), split=True) + _strings(front_matter.get("tag"), split=True)
    aliases = _strings(front_matter.get("aliases"), split=False) + _strings(front_matter.get("alias"), split=False)
    metadata: dict[str, Any] = {}
    for key, value in front_matter.items():
        if key in _LIST_KEYS or key in _COMPUTED_KEYS:
            continue
        ok, safe = _scalar(value)
        if ok:
            metadata[key] = safe
    metadata["tags"] = list(dict.fromkeys(t.strip().lstrip("#") for t in tags if t.strip("# ")))
    metadata["aliases"] = list(dict.fromkeys(a.strip() for a in aliases if a.strip()))
    return metadata


def _title(front_matter: Mapping[str, Any], sections: list[dict[str, Any]], relpath: str) -> str:
    title = front_matter.get("title")
    if title is not None and _scalar(title)[0] and str(title).strip():
        return str(title).strip()
    for section in sections:
        if section["level"] == 1 and section["title"]:
            return section["title"]
    name = relpath.rsplit("/", 1)[-1]
    return name[:-3] if name.lower().endswith(".md") and len(name) > 3 else name


def _is_runbook(metadata: Mapping[str, Any], relpath: str) -> bool:
    if str(metadata.get("type", "")).strip().lower() == "runbook":
        return True
    if any(tag.lower() == "runbook" for tag in metadata.get("tags", [])):
        return True
    return any(part.lower() == "runbooks" for part in relpath.split("/")[:-1])
