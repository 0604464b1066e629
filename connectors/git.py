"""Code and commit messages from a local git repository (through GitPython and the git CLI).

``read(settings, cursor)`` opens ``settings.path`` (a work tree's top folder or a bare
repository) and reads what is committed at ``HEAD``; the work tree is never looked at, so a
dirty, sparse or absent work tree changes nothing. A detached ``HEAD`` is read like a branch.

Files (``settings.code``), one record each, kind ``"code"``:

- every path tracked at ``HEAD`` that matches ``include`` and no ``exclude`` pattern
  (see :mod:`connectors.globs`); ``external_id`` ``"file:<path>"``, ``title`` the path,
  ``content`` the text, ``metadata`` ``{path, language, blob_sha, size}`` (``language`` from the
  extension or file name, None when unknown), plus ``encoding`` / ``decode_errors`` as in
  :func:`connectors.markdown.decode_text` when the file wasn't clean UTF-8. ``updated_at`` is
  None: finding the last commit of every path would cost a history walk per file.
- Paths that aren't valid UTF-8 keep their odd bytes as ``\\xNN`` escapes.
- Blobs are read from the object database (one persistent ``git cat-file --batch`` process).
- Skipped with a reason (``external_id`` set): submodules (gitlinks, mode 160000: their commits
  aren't in this repository, so they are reported rather than read; add the submodule as a git
  source of its own), symlinks (mode 120000), files over ``max_file_kb`` (decided from the size
  ``git ls-tree -l`` reports, without reading the blob), empty files, git-LFS pointer files,
  binary files (NUL byte in the first 8 KB, or mostly undecodable), unreadable objects.

Commits (``settings.commits``), one record each, kind ``"commit"``:

- the non-merge commits reachable from ``HEAD`` whose author email is in ``authors`` (compared
  case-insensitively, on the raw email of the commit, no ``.mailmap``). **An empty ``authors``
  list means every author's commits.** Merge commits are left out: their message is mostly
  "Merge branch ..." and their diff repeats the merged commits.
- ``external_id`` ``"commit:<sha>"``, ``title`` the first line of the message, ``content`` the
  message + ``"\\n\\nFiles changed:\\n"`` + one ``"<path> +<added> -<deleted>"`` line per file
  (``"<old> => <new> ..."`` for renames, ``"<path> (binary)"`` for binaries). ``metadata``
  ``{sha, author_name, author_email, authored_at (ISO, author's offset), committed_at, files,
  insertions, deletions, parents}``. ``updated_at`` is the committer date (UTC).
- Messages and names are decoded with the commit's ``encoding`` header (UTF-8 when absent or
  unknown) and ``errors="replace"``: non-UTF-8 history never fails a run.
- Stats come from one ``git log --numstat -z`` over the whole range, not one ``git diff`` per
  commit; commit objects are read through the same ``cat-file --batch`` process.
- In a shallow clone the boundary commits have no parents here, so their diff is unknown: they
  get ``metadata["grafted"] = True``, no files and ``"Files changed: unknown (shallow clone)"``.

Cursor ``{"version", "head", "blobs": {path: blob_sha}, "skipped": {path: [blob_sha, reason]},
"commits_seen_head", "settings", "shallow"}``:

- Same ``HEAD``, same settings (hash of include, exclude, authors, max_file_kb, code, commits)
  and same shallow boundary: one ``NothingChanged``, then the cursor again.
- Otherwise a path whose blob sha equals the cursor's is ``Unchanged`` (not read); a path
  skipped for its content (binary, LFS pointer, empty) with the same blob sha is skipped again
  without being read. Blob shas name content, so this holds even when the settings changed.
- If the cursor's ``commits_seen_head`` is an ancestor of ``HEAD`` (and settings and shallow
  boundary are unchanged), the commits it reaches are ``Unchanged`` (listed by one ``git log``)
  and only ``commits_seen_head..HEAD`` is read. Otherwise (history rewritten, cursor commit gone,
  settings changed, clone deepened) every matching commit is read again; ingest dedups by hash.

An empty repository (no commit yet) yields just a Cursor. A path that is missing, not a folder or
not a git repository raises ``ConnectorError``; so does a git command failing on the repository
as a whole. The repository is always closed (ending GitPython's ``cat-file`` processes), also when
the caller stops iterating early.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from connectors.globs import GlobSet
from connectors.markdown import decode_text
from connectors.records import (
    ConnectorError,
    Cursor,
    Item,
    NothingChanged,
    Record,
    Skip,
    Unchanged,
    content_hash,
)
from connectors.settings import GitSource

if TYPE_CHECKING:
    from git import Repo

CURSOR_VERSION = 1
LFS_POINTER_PREFIXES = (
    b"version https://git-lfs.github.com/spec/v1",
    b"version https://hawser.github.com/spec/v1",
)
_SHA = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")
_NUMSTAT = re.compile(rb"\n?(\d+|-)\t(\d+|-)\t(.*)", re.DOTALL)
# Flags that keep log output independent of the user's git config.
_LOG_FLAGS = (
    "--no-merges",
    "--no-color",
    "--no-show-signature",
    "--no-use-mailmap",
    "-z",
)
_NUMSTAT_FLAGS = ("--numstat", "-M", "--no-ext-diff", "--no-textconv", "--no-relative")
_LANGUAGES = {
    ".py": "python",
    ".pyi": "python",
    ".ipynb": "jupyter",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".kt": "kotlin",
    ".kts": "kotlin",
    ".scala": "scala",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".cs": "csharp",
    ".fs": "fsharp",
    ".swift": "swift",
    ".m": "objective-c",
    ".mm": "objective-c",
    ".rb": "ruby",
    ".php": "php",
    ".pl": "perl",
    ".pm": "perl",
    ".lua": "lua",
    ".r": "r",
    ".jl": "julia",
    ".dart": "dart",
    ".ex": "elixir",
    ".exs": "elixir",
    ".erl": "erlang",
    ".hs": "haskell",
    ".ml": "ocaml",
    ".clj": "clojure",
    ".el": "emacs-lisp",
    ".vim": "vim",
    ".zig": "zig",
    ".nim": "nim",
    ".sh": "shell",
    ".bash": "shell",
    ".zsh": "shell",
    ".fish": "fish",
    ".ps1": "powershell",
    ".sql": "sql",
    ".html": "html",
    ".htm": "html",
    ".css": "css",
    ".scss": "scss",
    ".sass": "sass",
    ".less": "less",
    ".vue": "vue",
    ".svelte": "svelte",
    ".md": "markdown",
    ".markdown": "markdown",
    ".rst": "rst",
    ".tex": "latex",
    ".txt": "text",
    ".json": "json",
    ".jsonl": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
    ".ini": "ini",
    ".cfg": "ini",
    ".xml": "xml",
    ".proto": "protobuf",
    ".graphql": "graphql",
    ".tf": "terraform",
    ".hcl": "hcl",
    ".nix": "nix",
    ".cmake": "cmake",
    ".gradle": "gradle",
    ".bzl": "starlark",
    ".csv": "csv",
    ".diff": "diff",
    ".patch": "diff",
}
_FILE_NAMES = {
    "dockerfile": "dockerfile",
    "makefile": "make",
    "gnumakefile": "make",
    "cmakelists.txt": "cmake",
    "justfile": "just",
    "rakefile": "ruby",
    "gemfile": "ruby",
    "build": "starlark",
    "workspace": "starlark",
    "vagrantfile": "ruby",
    "jenkinsfile": "groovy",
}


def read(settings: GitSource, cursor: Mapping[str, Any] | None) -> Iterator[Item]:
    """Yield Records / Unchanged / Skips for files at HEAD and commits, then a Cursor."""
    try:
        import git as gitpython
    except ImportError as error:  # GitPython refuses to import without a git executable
        raise ConnectorError(settings.name, f"{settings.path}: can't run git ({error}); install git") from error
    repo = _open(settings, gitpython)
    with repo:
        try:
            yield from _read(repo, settings, _usable_cursor(cursor))
        except gitpython.CommandError as error:
            raise ConnectorError(settings.name, f"{settings.path}: git failed: {_first_line(error)}") from error


def language_of(path: str) -> str | None:
    """A language name from a path's extension or file name, None when unknown."""
    name = PurePosixPath(path).name.lower()
    if name in _FILE_NAMES:
        return _FILE_NAMES[name]
    return _LANGUAGES.get(PurePosixPath(name).suffix)


def _open(settings: GitSource, gitpython: Any) -> Repo:
    path: Path = settings.path
    if not path.exists():
        raise ConnectorError(settings.name, f"{path}: folder not found; check the source's path")
    if not path.is_dir():
        raise ConnectorError(settings.name, f"{path}: not a folder; point the source's path at a git repository")
    try:
        return gitpython.Repo(path)
    except (gitpython.InvalidGitRepositoryError, gitpython.NoSuchPathError) as error:
        raise ConnectorError(
            settings.name,
            f"{path}: not a git repository; point the source's path at the repository's top "
            "folder (the one holding .git) or at a bare repository",
        ) from error


def _first_line(error: Exception) -> str:
    """The first line git wrote to stderr (GitPython wraps it as ``stderr: '...'``)."""
    stderr = str(getattr(error, "stderr", "") or "")
    match = re.search(r"stderr: '(.*)'", stderr, re.DOTALL)
    text = (match.group(1) if match else stderr).strip() or str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _usable_cursor(cursor: Mapping[str, Any] | None) -> dict[str, Any]:
    if not cursor or cursor.get("version") != CURSOR_VERSION:
        return {}
    return dict(cursor)


def _settings_key(settings: GitSource) -> str:
    relevant = {
        "version": CURSOR_VERSION,
        "include": list(settings.include),
        "exclude": list(settings.exclude),
        "authors": sorted({a.strip().lower() for a in settings.authors if a.strip()}),
        "max_file_kb": settings.max_file_kb,
        "code": settings.code,
        "commits": settings.commits,
        "patterns": "gitignore",  # include/exclude semantics: a cursor of the older glob rules reads again
    }
    return content_hash(json.dumps(relevant, sort_keys=True))


def _read(repo: Repo, settings: GitSource, cursor: dict[str, Any]) -> Iterator[Item]:
    settings_key = _settings_key(settings)
    head = _head(repo, settings.name)
    shallow = _shallow_boundary(repo)
    shallow_key = content_hash(*sorted(shallow)) if shallow else None
    state: dict[str, Any] = {
        "version": CURSOR_VERSION,
        "head": head,
        "blobs": {},
        "skipped": {},
        "commits_seen_head": None,
        "settings": settings_key,
        "shallow": shallow_key,
    }
    if head is None:  # empty repository: nothing exists yet
        yield Cursor(state)
        return
    same_settings = cursor.get("settings") == settings_key and cursor.get("shallow") == shallow_key
    if same_settings and cursor.get("head") == head:
        yield NothingChanged()
        yield Cursor(cursor)
        return

    if settings.code:
        yield from _files(repo, settings, head, cursor, state)
    if settings.commits:
        seen = cursor.get("commits_seen_head") if same_settings else None
        yield from _commits(repo, settings, head, seen if isinstance(seen, str) else None, shallow)
        state["commits_seen_head"] = head
    yield Cursor(state)


def _git(repo: Repo, *args: str) -> bytes:
    """Raw stdout of one git command (no decoding, nothing stripped)."""
    return repo.git.execute(
        [repo.git.GIT_PYTHON_GIT_EXECUTABLE or "git", *args],
        stdout_as_string=False,
        strip_newline_in_stdout=False,
    )


def _head(repo: Repo, source: str) -> str | None:
    """The commit at HEAD, None for an unborn branch (a repository without commits)."""
    import git as gitpython

    try:
        sha = _git(repo, "rev-parse", "--verify", "-q", "HEAD").decode("ascii").strip()
    except gitpython.GitCommandError as error:
        if error.status == 1:
            return None
        raise
    try:
        return _git(repo, "rev-parse", "--verify", "-q", "HEAD^{commit}").decode("ascii").strip()
    except gitpython.GitCommandError as error:
        raise ConnectorError(
            source,
            f"{repo.working_tree_dir or repo.git_dir}: HEAD points at {sha}, which is not a "
            "commit in this repository; it may be damaged (see `git fsck`)",
        ) from error


def _shallow_boundary(repo: Repo) -> frozenset[str]:
    shallow_file = Path(repo.common_dir) / "shallow"
    try:
        return frozenset(shallow_file.read_text("ascii", "replace").split())
    except OSError:
        return frozenset()


def _read_object(repo: Repo, sha: str) -> bytes:
    return repo.odb.stream(bytes.fromhex(sha)).read()


# Files -------------------------------------------------------------------------------------


def _files(
    repo: Repo, settings: GitSource, head: str, cursor: Mapping[str, Any], state: dict[str, Any]
) -> Iterator[Item]:
    include, exclude = GlobSet(settings.include), GlobSet(settings.exclude)
    limit = settings.max_file_kb * 1024
    old_blobs = cursor.get("blobs") if isinstance(cursor.get("blobs"), dict) else {}
    old_skips = cursor.get("skipped") if isinstance(cursor.get("skipped"), dict) else {}
    blobs: dict[str, str] = state["blobs"]
    skipped: dict[str, list[str]] = state["skipped"]

    listing = _git(repo, "ls-tree", "-r", "-z", "-l", "--full-tree", head)
    for entry in listing.split(b"\0"):
        if not entry:
            continue
        info, _, raw_path = entry.partition(b"\t")
        fields = info.split()
        if len(fields) != 4:
            continue
        mode, object_type, sha_bytes, size_field = fields
        path = raw_path.decode("utf-8", "backslashreplace")
        if not include.matches(path) or exclude.matches(path):
            continue
        external_id = f"file:{path}"
        sha = sha_bytes.decode("ascii", "replace")
        if object_type == b"commit" or mode == b"160000":
            yield Skip(path, "submodule: not read (add it as a git source of its own)", external_id)
            continue
        if mode == b"120000":
            yield Skip(path, "symlink", external_id)
            continue
        if object_type != b"blob":
            continue
        if old_blobs.get(path) == sha:
            blobs[path] = sha
            yield Unchanged(external_id)
            continue
        remembered = old_skips.get(path)
        if isinstance(remembered, list) and len(remembered) == 2 and remembered[0] == sha:
            skipped[path] = remembered
            yield Skip(path, str(remembered[1]), external_id)
            continue
        size = int(size_field) if size_field.isdigit() else 0
        if size > limit:
            yield Skip(
                path,
                f"too large ({size // 1024} KB; max_file_kb is {settings.max_file_kb})",
                external_id,
            )
            continue
        try:
            data = _read_object(repo, sha)
        except (ValueError, OSError, AssertionError) as error:
            yield Skip(path, f"can't read blob {sha}: {error}", external_id)
            continue
        item = _file_record(path, external_id, sha, data)
        if isinstance(item, Record):
            blobs[path] = sha
        else:
            skipped[path] = [sha, item.reason]
        yield item


def _file_record(path: str, external_id: str, sha: str, data: bytes) -> Record | Skip:
    if not data.strip():
        return Skip(path, "empty file", external_id)
    if data.startswith(LFS_POINTER_PREFIXES):
        return Skip(path, "git-LFS pointer (the content isn't in the repository)", external_id)
    decoded = decode_text(data)
    if decoded is None:
        return Skip(path, "binary file", external_id)
    text, notes = decoded
    metadata: dict[str, Any] = {
        "path": path,
        "language": language_of(path),
        "blob_sha": sha,
        "size": len(data),
        **notes,
    }
    return Record(
        external_id=external_id,
        kind="code",
        title=path,
        content=text,
        content_hash=content_hash(text, path, json.dumps(metadata, sort_keys=True)),
        metadata=metadata,
    )


# Commits -----------------------------------------------------------------------------------


@dataclass
class _FileStat:
    path: str
    added: int | None  # None for binary files
    deleted: int | None
    old_path: str | None = None


@dataclass
class _LogEntry:
    sha: str
    email: str
    files: list[_FileStat] = field(default_factory=list)


def _commits(
    repo: Repo, settings: GitSource, head: str, seen_head: str | None, shallow: frozenset[str]
) -> Iterator[Item]:
    authors = {a.strip().lower() for a in settings.authors if a.strip()}
    author_args = ["-i", "-F", *(f"--author=<{a}>" for a in sorted(authors) if "\n" not in a)]
    if not authors:
        author_args = []

    def wanted(email: str) -> bool:
        return not authors or email.lower() in authors

    if seen_head is not None and _is_ancestor(repo, seen_head, head):
        out = _git(repo, "log", *_LOG_FLAGS, "--format=%H%x1f%ae", *author_args, seen_head, "--")
        for entry in out.split(b"\0"):
            sha, _, email = entry.strip(b"\n").partition(b"\x1f")
            if sha and wanted(email.decode("utf-8", "replace")):
                yield Unchanged(f"commit:{sha.decode('ascii')}")
        revisions = [head, f"^{seen_head}"]
    else:
        revisions = [head]

    out = _git(
        repo,
        "log",
        *_LOG_FLAGS,
        *_NUMSTAT_FLAGS,
        "--format=%x01%H%x1f%ae",
        *author_args,
        *revisions,
        "--",
    )
    for entry in _parse_numstat_log(out):
        if wanted(entry.email):
            yield _commit_record(repo, entry, grafted=entry.sha in shallow)


def _is_ancestor(repo: Repo, ancestor: str, head: str) -> bool:
    import git as gitpython

    if not _SHA.match(ancestor):
        return False
    try:
        _git(repo, "merge-base", "--is-ancestor", ancestor, head)
    except gitpython.GitCommandError:  # 1: not an ancestor; 128: commit not in the repository
        return False
    return True


def _parse_numstat_log(out: bytes) -> Iterator[_LogEntry]:
    """Entries of ``git log -z --numstat --format=%x01%H%x1f%ae``.

    The stream is NUL-separated: a header ``\\x01<sha>\\x1f<email>``, then per file
    ``[\\n]<added>\\t<deleted>\\t<path>`` or, for a rename, ``<added>\\t<deleted>\\t`` followed
    by two more fields, the old and the new path.
    """
    tokens = out.split(b"\0")
    current: _LogEntry | None = None
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token.startswith(b"\x01"):
            if current is not None:
                yield current
            sha, _, email = token[1:].partition(b"\x1f")
            current = _LogEntry(sha.decode("ascii", "replace"), email.decode("utf-8", "replace"))
            continue
        match = _NUMSTAT.fullmatch(token)
        if current is None or match is None:
            continue
        added, deleted, raw_path = match.groups()
        old_path = None
        if not raw_path:
            old_raw, raw_path = [*tokens[index : index + 2], b"", b""][:2]
            index += 2
            old_path = _decode_path(old_raw)
        current.files.append(
            _FileStat(
                path=_decode_path(raw_path),
                added=None if added == b"-" else int(added),
                deleted=None if deleted == b"-" else int(deleted),
                old_path=old_path,
            )
        )
    if current is not None:
        yield current


def _decode_path(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _commit_record(repo: Repo, entry: _LogEntry, grafted: bool) -> Record | Skip:
    external_id = f"commit:{entry.sha}"
    try:
        raw = _read_object(repo, entry.sha)
    except (ValueError, OSError, AssertionError) as error:
        return Skip(entry.sha, f"can't read commit: {error}", external_id)
    commit = _parse_commit(raw)
    message = commit["message"]
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
        "author_name": commit["author_name"],
        "author_email": commit["author_email"],
        "authored_at": _iso(commit["authored"]),
        "committed_at": _iso(commit["committed"]),
        "files": [stat.path for stat in files],
        "insertions": None if grafted else sum(s.added or 0 for s in files),
        "deletions": None if grafted else sum(s.deleted or 0 for s in files),
        "parents": commit["parents"],
    }
    if grafted:
        metadata["grafted"] = True
    committed = commit["committed"]
    return Record(
        external_id=external_id,
        kind="commit",
        title=title,
        content=content,
        content_hash=content_hash(content, title, json.dumps(metadata, sort_keys=True, ensure_ascii=False)),
        updated_at=committed.astimezone(UTC) if committed else None,
        metadata=metadata,
    )


def _parse_commit(raw: bytes) -> dict[str, Any]:
    """Fields of a raw commit object; total (never raises on odd bytes)."""
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
    return {
        "parents": parents,
        "author_name": author_name,
        "author_email": author_email,
        "authored": authored,
        "committed": committed,
        "message": body.decode(encoding, "replace"),
    }


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
        if len(rest) > 1 and re.fullmatch(rb"[+-]\d{4}", rest[1]):
            zone = rest[1]
            minutes = int(zone[1:3]) * 60 + int(zone[3:5])
            offset = timedelta(minutes=-minutes if zone[:1] == b"-" else minutes)
        try:
            when = datetime.fromtimestamp(int(rest[0]), timezone(offset))
        except (OverflowError, OSError, ValueError):
            when = None
    return name, email, when


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
