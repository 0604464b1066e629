"""Code and commit messages from a local git repository, read with the git CLI (:mod:`connectors.git_cli`).

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
as a whole. The repository is always closed (ending its ``cat-file`` process), also when the
caller stops iterating early. Commit objects and log output are parsed in
:mod:`connectors.git_commits`; ``language`` comes from :mod:`connectors.languages`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from connectors.git_cli import GitError, NotARepository, Repository
from connectors.git_commits import LOG_FORMAT, commit_record, parse_commit, parse_numstat_log
from connectors.globs import GlobSet
from connectors.languages import language_of
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
from connectors.text_decoding import decode_text

CURSOR_VERSION = 1
LFS_POINTER_PREFIXES = (
    b"version https://git-lfs.github.com/spec/v1",
    b"version https://hawser.github.com/spec/v1",
)
_SHA = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")
# Flags that keep log output independent of the user's git config.
_LOG_FLAGS = (
    "--no-merges",
    "--no-color",
    "--no-show-signature",
    "--no-use-mailmap",
    "-z",
)
_NUMSTAT_FLAGS = ("--numstat", "-M", "--no-ext-diff", "--no-textconv", "--no-relative")
_UNREADABLE = (ValueError, OSError)  # reading one object: git_cli.MissingObject is a ValueError


def read(settings: GitSource, cursor: Mapping[str, Any] | None) -> Iterator[Item]:
    """Yield Records / Unchanged / Skips for files at HEAD and commits, then a Cursor."""
    with _open(settings) as repo:
        try:
            yield from _read(repo, settings, _usable_cursor(cursor))
        except GitError as error:
            raise ConnectorError(settings.name, f"{settings.path}: git failed: {error}") from error


def _open(settings: GitSource) -> Repository:
    path = settings.path
    if not path.exists():
        raise ConnectorError(settings.name, f"{path}: folder not found; check the source's path")
    if not path.is_dir():
        raise ConnectorError(settings.name, f"{path}: not a folder; point the source's path at a git repository")
    try:
        return Repository(path)
    except NotARepository as error:
        raise ConnectorError(
            settings.name,
            f"{path}: not a git repository; point the source's path at the repository's top "
            "folder (the one holding .git) or at a bare repository",
        ) from error
    except GitError as error:
        raise ConnectorError(settings.name, f"{path}: git can't open it: {error}") from error
    except FileNotFoundError as error:
        raise ConnectorError(settings.name, f"{path}: can't run git ({error.strerror}); install git") from error


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


def _read(repo: Repository, settings: GitSource, cursor: dict[str, Any]) -> Iterator[Item]:
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
        yield from _reported_skips(cursor)  # reported on every ingest, as the markdown connector does
        yield Cursor(cursor)
        return

    if settings.code:
        yield from _noting_skips(_files(repo, settings, head, cursor, state), state)
    if settings.commits:
        seen = cursor.get("commits_seen_head") if same_settings else None
        yield from _commits(repo, settings, head, seen if isinstance(seen, str) else None, shallow)
        state["commits_seen_head"] = head
    yield Cursor(state)


def _noting_skips(items: Iterator[Item], state: dict[str, Any]) -> Iterator[Item]:
    """Pass the file items on, keeping each Skip in the cursor (``reported``) for the next read."""
    reported: list[list[str]] = state.setdefault("reported", [])
    for item in items:
        if isinstance(item, Skip):
            reported.append([item.item, item.reason, item.external_id or ""])
        yield item


def _reported_skips(cursor: Mapping[str, Any]) -> Iterator[Skip]:
    """The file skips of the read the cursor comes from: with HEAD and the settings unchanged they
    still hold, and are reported again."""
    reported = cursor.get("reported")
    for entry in reported if isinstance(reported, list) else []:
        if isinstance(entry, list) and len(entry) == 3 and all(isinstance(part, str) for part in entry):
            yield Skip(entry[0], entry[1], entry[2] or None)


def _head(repo: Repository, source: str) -> str | None:
    """The commit at HEAD, None for an unborn branch (a repository without commits)."""
    try:
        sha = repo.git("rev-parse", "--verify", "-q", "HEAD").decode("ascii").strip()
    except GitError as error:
        if error.status == 1:
            return None
        raise
    try:
        return repo.git("rev-parse", "--verify", "-q", "HEAD^{commit}").decode("ascii").strip()
    except GitError as error:
        raise ConnectorError(
            source,
            f"{repo.path}: HEAD points at {sha}, which is not a commit in this repository; it may be "
            "damaged (see `git fsck`)",
        ) from error


def _shallow_boundary(repo: Repository) -> frozenset[str]:
    try:
        return frozenset((repo.common_dir / "shallow").read_text("ascii", "replace").split())
    except OSError:
        return frozenset()


# Files -------------------------------------------------------------------------------------


def _files(
    repo: Repository, settings: GitSource, head: str, cursor: Mapping[str, Any], state: dict[str, Any]
) -> Iterator[Item]:
    include, exclude = GlobSet(settings.include), GlobSet(settings.exclude)
    limit = settings.max_file_kb * 1024
    old_blobs, old_skips = cursor.get("blobs"), cursor.get("skipped")
    old_blobs = old_blobs if isinstance(old_blobs, dict) else {}
    old_skips = old_skips if isinstance(old_skips, dict) else {}
    blobs: dict[str, str] = state["blobs"]
    skipped: dict[str, list[str]] = state["skipped"]

    listing = repo.git("ls-tree", "-r", "-z", "-l", "--full-tree", head)
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
            data = repo.read_object(sha)
        except _UNREADABLE as error:
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


def _commits(
    repo: Repository, settings: GitSource, head: str, seen_head: str | None, shallow: frozenset[str]
) -> Iterator[Item]:
    authors = {a.strip().lower() for a in settings.authors if a.strip()}
    author_args = ["-i", "-F", *(f"--author=<{a}>" for a in sorted(authors) if "\n" not in a)]
    if not authors:
        author_args = []

    def wanted(email: str) -> bool:
        return not authors or email.lower() in authors

    if seen_head is not None and _is_ancestor(repo, seen_head, head):
        out = repo.git("log", *_LOG_FLAGS, "--format=%H%x1f%ae", *author_args, seen_head, "--")
        for line in out.split(b"\0"):
            sha, _, email = line.strip(b"\n").partition(b"\x1f")
            if sha and wanted(email.decode("utf-8", "replace")):
                yield Unchanged(f"commit:{sha.decode('ascii')}")
        revisions = [head, f"^{seen_head}"]
    else:
        revisions = [head]

    out = repo.git("log", *_LOG_FLAGS, *_NUMSTAT_FLAGS, LOG_FORMAT, *author_args, *revisions, "--")
    for entry in parse_numstat_log(out):
        if not wanted(entry.email):
            continue
        try:
            raw = repo.read_object(entry.sha)
        except _UNREADABLE as error:
            yield Skip(entry.sha, f"can't read commit: {error}", f"commit:{entry.sha}")
            continue
        yield commit_record(entry, parse_commit(raw), grafted=entry.sha in shallow)


def _is_ancestor(repo: Repository, ancestor: str, head: str) -> bool:
    if not _SHA.match(ancestor):
        return False
    try:
        repo.git("merge-base", "--is-ancestor", ancestor, head)
    except GitError:  # 1: not an ancestor; 128: commit not in the repository
        return False
    return True
