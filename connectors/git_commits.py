"""Commit records from git's own output: raw commit objects and ``git log --numstat -z``.

Pure functions over bytes (no git process here): :func:`parse_numstat_log` splits the log into
one :class:`LogEntry` per commit with its file stats, :func:`parse_commit` reads a raw commit
object (total: odd bytes never raise), and :func:`commit_record` makes the ``commit`` Record.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from connectors.json_values import iso
from connectors.records import Record, content_hash

_NUMSTAT = re.compile(rb"\n?(\d+|-)\t(\d+|-)\t(.*)", re.DOTALL)
_ZONE = re.compile(rb"[+-]\d{4}")

LOG_FORMAT = "--format=%x01%H%x1f%ae"
"""The ``git log`` format :func:`parse_numstat_log` reads."""


@dataclass(frozen=True)
class FileStat:
    path: str
    added: int | None  # None for binary files
    deleted: int | None
    old_path: str | None = None


@dataclass
class LogEntry:
    sha: str
    email: str
    files: list[FileStat] = field(default_factory=list)


@dataclass(frozen=True)
class Commit:
    """The fields of a raw commit object that a record needs."""

    parents: list[str]
    author_name: str
    author_email: str
    authored: datetime | None
    committed: datetime | None
    message: str


def parse_numstat_log(out: bytes) -> Iterator[LogEntry]:
    """Entries of ``git log -z --numstat`` with :data:`LOG_FORMAT`.

    The stream is NUL-separated: a header ``\\x01<sha>\\x1f<email>``, then per file
    ``[\\n]<added>\\t<deleted>\\t<path>`` or, for a rename, ``<added>\\t<deleted>\\t`` followed
    by two more fields, the old and the new path.
    """
    tokens = out.split(b"\0")
    current: LogEntry | None = None
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token.startswith(b"\x01"):
            if current is not None:
                yield current
            sha, _, email = token[1:].partition(b"\x1f")
            current = LogEntry(sha.decode("ascii", "replace"), email.decode("utf-8", "replace"))
            continue
        match = _NUMSTAT.fullmatch(token)
        if current is None or match is None:
            continue
        added, deleted, raw_path = match.groups()
        old_path = None
        if not raw_path:
            old_raw, raw_path = [*tokens[index : index + 2], b"", b""][:2]
            index += 2
            old_path = decode_path(old_raw)
        current.files.append(
            FileStat(
                path=decode_path(raw_path),
                added=None if added == b"-" else int(added),
                deleted=None if deleted == b"-" else int(deleted),
                old_path=old_path,
            )
        )
    if current is not None:
        yield current


def decode_path(raw: bytes) -> str:
    """A path git printed raw: bytes that aren't UTF-8 become ``\\xNN`` escapes."""
    return raw.decode("utf-8", "backslashreplace")


def parse_commit(raw: bytes) -> Commit:
    """The fields of a raw commit object, decoded with its ``encoding`` header (UTF-8 by default)."""
    header, _, body = raw.partition(b"\n\n")
    parents: list[str] = []
    author = committer = b""
    encoding = "utf-8"
    for line in header.split(b"\n"):
        if line.startswith(b" "):  # continuation of a multi-line header (gpgsig, mergetag)
            continue
        key, _, value = line.partition(b" ")
        if key == b"parent":
            parents.append(value.decode("ascii", "replace").strip())
        elif key == b"author":
            author = value
        elif key == b"committer":
            committer = value
        elif key == b"encoding":
            name = value.decode("ascii", "replace").strip()
            try:
                encoding = codecs.lookup(name).name
            except LookupError:
                encoding = "utf-8"
    author_name, author_email, authored = _ident(author, encoding)
    _, _, committed = _ident(committer, encoding)
    return Commit(parents, author_name, author_email, authored, committed, body.decode(encoding, "replace"))


def _ident(value: bytes, encoding: str) -> tuple[str, str, datetime | None]:
    """(name, email, date) of ``Name <email> 1700000000 +0100``."""
    start, end = value.find(b"<"), value.rfind(b">")
    if start == -1 or end < start:
        return value.decode(encoding, "replace").strip(), "", None
    name = value[:start].decode(encoding, "replace").strip()
    email = value[start + 1 : end].decode(encoding, "replace").strip()
    rest = value[end + 1 :].split()
    when = None
    if rest and rest[0].isdigit():
        offset = timedelta(0)
        if len(rest) > 1 and _ZONE.fullmatch(rest[1]):
            zone = rest[1]
            minutes = int(zone[1:3]) * 60 + int(zone[3:5])
            offset = timedelta(minutes=-minutes if zone[:1] == b"-" else minutes)
        try:
            when = datetime.fromtimestamp(int(rest[0]), timezone(offset))
        except (OverflowError, OSError, ValueError):
            when = None
    return name, email, when


def commit_record(entry: LogEntry, commit: Commit, grafted: bool) -> Record:
    """The ``commit`` Record: the message, then one line per changed file (see connectors.git)."""
    message = commit.message
    title = next((line.strip() for line in message.splitlines() if line.strip()), "(no message)")

    files = [] if grafted else entry.files
    lines = []
    for stat in files:
        name = f"{stat.old_path} => {stat.path}" if stat.old_path else stat.path
        if stat.added is None:
            lines.append(f"{name} (binary)")
        else:
            lines.append(f"{name} +{stat.added} -{stat.deleted}")
    if grafted:
        changes = "Files changed: unknown (shallow clone)"
    elif lines:
        changes = "Files changed:\n" + "\n".join(lines)
    else:
        changes = "Files changed: none"
    content = f"{message.rstrip()}\n\n{changes}"

    metadata: dict[str, Any] = {
        "sha": entry.sha,
        "author_name": commit.author_name,
        "author_email": commit.author_email,
        "authored_at": iso(commit.authored),
        "committed_at": iso(commit.committed),
        "files": [stat.path for stat in files],
        "insertions": None if grafted else sum(s.added or 0 for s in files),
        "deletions": None if grafted else sum(s.deleted or 0 for s in files),
        "parents": commit.parents,
    }
    if grafted:
        metadata["grafted"] = True
    return Record(
        external_id=f"commit:{entry.sha}",
        kind="commit",
        title=title,
        content=content,
        content_hash=content_hash(content, title, json.dumps(metadata, sort_keys=True, ensure_ascii=False)),
        updated_at=commit.committed.astimezone(UTC) if commit.committed else None,
        metadata=metadata,
    )
