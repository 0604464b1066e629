"""connectors.git against real repositories built with the git CLI in tmp_path."""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from pathlib import Path

import pytest

from connectors import git as git_connector
from connectors import git_cli
from connectors.records import ConnectorError, Cursor, NothingChanged, Record, Skip, Unchanged
from connectors.settings import GitSource

ADA = "ada@example.com"
BOB = "bob@example.com"
LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    "size 12345\n"
)
_clock = itertools.count()


@pytest.fixture(autouse=True)
def isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user or system git config, fixed identities: runs are deterministic."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Ada Lovelace")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", ADA)
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Ada Lovelace")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", ADA)


def git(repo: Path, *args: str | bytes, input: bytes | None = None, **env: str) -> str:
    moment = f"@{1_700_000_000 + 60 * next(_clock)} +0100"
    result = subprocess.run(
        ["git", "-C", str(repo), "-c", f"user.email={ADA}", *args],
        input=input,
        capture_output=True,
        check=True,
        env={**os.environ, "GIT_AUTHOR_DATE": moment, "GIT_COMMITTER_DATE": moment, **env},
    )
    return result.stdout.decode("utf-8", "replace").strip()


def commit(repo: Path, message: str, files: dict[str, str | bytes], email: str = ADA) -> str:
    for name, content in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    if files:
        git(repo, "add", "--", *files)
    git(
        repo,
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        message,
        GIT_AUTHOR_EMAIL=email,
        GIT_AUTHOR_NAME=email.split("@")[0].title(),
    )
    return git(repo, "rev-parse", "HEAD")


def init(repo: Path) -> Path:
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main")
    return repo


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Files of every kind; commits by Ada and Bob; a merge."""
    repo = init(tmp_path / "project")
    commit(
        repo,
        "Start the app\n\nWith a body.",
        {
            "src/app.py": "def main():\n    return 1\n",
            "README.md": "# App\n",
            "docs/notes.md": "excluded by a glob\n",
        },
    )
    commit(
        repo,
        "Add assets",
        {
            "assets/logo.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00" + bytes(range(256)),
            "assets/video.mp4": LFS_POINTER,
            "data/big.txt": "x" * 3000,
            "src/__init__.py": "",
        },
    )
    commit(repo, "Bob's change", {"src/bob.py": "print('bob')\n"}, email=BOB)
    git(repo, "checkout", "-q", "-b", "feature")
    commit(repo, "Feature work", {"src/feature.py": "FEATURE = True\n"})
    git(repo, "checkout", "-q", "main")
    commit(repo, "Tweak app", {"src/app.py": "def main():\n    return 2\n"})
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge branch 'feature'", "feature")
    os.symlink("src/app.py", repo / "app-link")
    git(repo, "add", "app-link")
    gitlink = "0123456789abcdef0123456789abcdef01234567"
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{gitlink},vendor/lib")
    git(repo, "commit", "-q", "-m", "Link and submodule")
    return repo


def source(repo: Path, **overrides) -> GitSource:
    values = {"authors": [ADA.upper()], "exclude": ["docs/**"], "max_file_kb": 2, **overrides}
    return GitSource(name="code", type="git", path=repo, **values)


def run(repo: Path, cursor=None, **overrides) -> list:
    items = list(git_connector.read(source(repo, **overrides), cursor))
    assert isinstance(items[-1], Cursor)
    assert not any(isinstance(item, Cursor) for item in items[:-1])
    return items


def ids(items, kind) -> set[str]:
    return {item.external_id for item in items if isinstance(item, kind)}


def records(items) -> dict[str, Record]:
    return {item.external_id: item for item in items if isinstance(item, Record)}


def commit_titles(items) -> list[str]:
    return [r.title for r in records(items).values() if r.kind == "commit"]


def test_files_and_commits(project: Path) -> None:
    items = run(project)
    found = records(items)
    assert {i for i in found if i.startswith("file:")} == {
        "file:README.md",
        "file:src/app.py",
        "file:src/bob.py",
        "file:src/feature.py",
    }
    app = found["file:src/app.py"]
    assert (app.kind, app.title) == ("code", "src/app.py")
    assert app.content == "def main():\n    return 2\n"
    assert app.metadata["language"] == "python"
    assert app.metadata["size"] == len(app.content)
    assert app.metadata["blob_sha"] == git(project, "rev-parse", "HEAD:src/app.py")
    assert found["file:README.md"].metadata["language"] == "markdown"

    reasons = {s.item: s.reason for s in items if isinstance(s, Skip)}
    assert reasons["assets/logo.png"] == "binary file"
    assert reasons["assets/video.mp4"].startswith("git-LFS pointer")
    assert reasons["data/big.txt"].startswith("too large")
    assert reasons["src/__init__.py"] == "empty file"
    assert reasons["app-link"] == "symlink"
    assert reasons["vendor/lib"].startswith("submodule")
    assert all(s.external_id == f"file:{s.item}" for s in items if isinstance(s, Skip))
    assert "docs/notes.md" not in reasons

    # Ada's commits only (case-insensitive email), newest first, merges left out.
    assert commit_titles(items) == [
        "Link and submodule",
        "Tweak app",
        "Feature work",
        "Add assets",
        "Start the app",
    ]
    first = next(r for r in found.values() if r.title == "Start the app")
    sha = first.external_id.removeprefix("commit:")
    assert first.content == (
        "Start the app\n\nWith a body.\n\nFiles changed:\nREADME.md +1 -0\ndocs/notes.md +1 -0\nsrc/app.py +2 -0"
    )
    meta = first.metadata
    assert meta["sha"] == sha and meta["parents"] == []
    assert (meta["author_name"], meta["author_email"]) == ("Ada", ADA)
    assert meta["files"] == ["README.md", "docs/notes.md", "src/app.py"]
    assert (meta["insertions"], meta["deletions"]) == (4, 0)
    assert meta["authored_at"].endswith("+01:00")
    assert first.updated_at is not None and first.updated_at.utcoffset().total_seconds() == 0
    assets = next(r for r in found.values() if r.title == "Add assets")
    assert "assets/logo.png (binary)" in assets.content
    tweak = next(r for r in found.values() if r.title == "Tweak app")
    assert "src/app.py +1 -1" in tweak.content

    everyone = run(project, authors=[])
    assert "Bob's change" in commit_titles(everyone)
    assert "Merge branch 'feature'" not in commit_titles(everyone)


def test_second_read_and_incremental(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = run(project)
    cursor = first[-1].state
    second = run(project, cursor)
    file_skips = [s for s in first if isinstance(s, Skip) and s.external_id.startswith("file:")]
    assert file_skips  # the fixture has some: the same ones are reported again (issue 18)
    assert second[0] == NothingChanged() and second[-1] == Cursor(cursor)
    assert sorted((s.item, s.reason) for s in second[1:-1]) == sorted((s.item, s.reason) for s in file_skips)

    new_sha = commit(project, "Change the app again", {"src/app.py": "def main():\n    return 3\n"})
    objects_read: list[str] = []
    real_read_object = git_cli.Repository.read_object

    def spy(repo, sha):
        objects_read.append(sha)
        return real_read_object(repo, sha)

    monkeypatch.setattr(git_cli.Repository, "read_object", spy)
    third = run(project, cursor)
    monkeypatch.setattr(git_cli.Repository, "read_object", real_read_object)
    # Only the changed blob and the new commit are read; remembered skips aren't re-read.
    assert objects_read == [git(project, "rev-parse", "HEAD:src/app.py"), new_sha]
    assert set(records(third)) == {"file:src/app.py", f"commit:{new_sha}"}
    old_commits = {i for i in records(first) if i.startswith("commit:")}
    assert ids(third, Unchanged) == (ids(first, Record) - {"file:src/app.py"})
    assert old_commits <= ids(third, Unchanged)
    # Content skips are remembered by blob sha; the others are checked again (cheaply).
    skipped = {s.item for s in first if isinstance(s, Skip)}
    assert {s.item for s in third if isinstance(s, Skip)} == skipped

    # Settings changed: files stay Unchanged by blob sha, commits are all read again.
    fourth = run(project, third[-1].state, authors=[ADA, BOB])
    assert not {i for i in records(fourth) if i.startswith("file:")}
    assert "Bob's change" in commit_titles(fourth)
    assert len(commit_titles(fourth)) == 7


def test_deleted_file_is_not_yielded(project: Path) -> None:
    cursor = run(project)[-1].state
    git(project, "rm", "-q", "src/bob.py")
    git(project, "commit", "-q", "-m", "Drop bob")
    items = run(project, cursor)
    everything = {getattr(i, "external_id", None) for i in items}
    assert "file:src/bob.py" not in everything
    assert "src/bob.py" not in items[-1].state["blobs"]


def test_force_push_rescans(project: Path) -> None:
    first = run(project)
    cursor = first[-1].state
    git(project, "reset", "-q", "--hard", "HEAD~2")
    rewritten = commit(project, "Rewritten history", {"src/app.py": "REWRITTEN = 1\n"})
    items = run(project, cursor)
    titles = commit_titles(items)
    assert titles[0] == "Rewritten history"
    assert set(titles) == {"Rewritten history", "Tweak app", "Add assets", "Start the app"}
    assert not {i for i in ids(items, Unchanged) if i.startswith("commit:")}
    assert items[-1].state["commits_seen_head"] == rewritten

    for bogus in ("f" * 40, "--output=/tmp/x", 42, None):
        again = run(project, {**cursor, "commits_seen_head": bogus, "head": "0" * 40})
        assert len(commit_titles(again)) == 4
    assert len(commit_titles(run(project, {"version": 999, "blobs": "junk"}))) == 4


def test_empty_repository(tmp_path: Path) -> None:
    repo = init(tmp_path / "empty")
    items = run(repo)
    assert len(items) == 1 and items[0].state["head"] is None
    assert run(repo, items[0].state) == items


def test_detached_head_and_bare(project: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(project), str(bare)], check=True)
    from_bare = run(bare)
    assert records(from_bare).keys() == records(run(project)).keys()

    parent = git(project, "rev-parse", "HEAD~1")
    git(project, "checkout", "-q", "--detach", "HEAD~1")
    items = run(project)
    assert items[-1].state["head"] == parent
    assert "Link and submodule" not in commit_titles(items)
    assert "file:src/app.py" in records(items)


def test_bare_repository_without_a_config_file(project: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(project), str(bare)], check=True)
    (bare / "config").unlink()  # git reads a repository without one; so must we
    assert records(run(bare)).keys() == records(run(project)).keys()


def test_a_subfolder_of_a_work_tree_is_not_a_repository(project: Path) -> None:
    with pytest.raises(ConnectorError, match="not a git repository"):
        list(git_connector.read(source(project / "src"), None))


def test_work_tree_is_ignored(project: Path) -> None:
    (project / "src" / "app.py").write_text("dirty, uncommitted\n")
    (project / "untracked.py").write_text("print('untracked')\n")
    found = records(run(project))
    assert found["file:src/app.py"].content == "def main():\n    return 2\n"
    assert "file:untracked.py" not in found


def test_shallow_clone(project: Path, tmp_path: Path) -> None:
    clone = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{project}", str(clone)], check=True)
    items = run(clone)
    (only,) = [r for r in records(items).values() if r.kind == "commit"]
    assert only.title == "Link and submodule"
    assert only.metadata["grafted"] is True
    assert only.content.endswith("Files changed: unknown (shallow clone)")
    assert "file:src/app.py" in records(items)
    assert run(clone, items[-1].state)[0] == NothingChanged()

    git(clone, "fetch", "-q", "--deepen", "2")
    deeper = run(clone, items[-1].state)
    assert NothingChanged() not in deeper
    assert "Tweak app" in commit_titles(deeper)


def test_non_utf8_paths_and_messages(tmp_path: Path) -> None:
    repo = init(tmp_path / "latin")
    blob = git(repo, "hash-object", "-w", "--stdin", input="print('caf\u00e9')\n".encode())
    git(repo, "update-index", "--add", "--cacheinfo", b"100644," + blob.encode() + b",caf\xe9.py")
    latin1 = "Caf\xe9 cr\xe8me".encode("latin-1")
    git(repo, "-c", "i18n.commitEncoding=latin-1", "commit", "-q", "-m", latin1)
    # `git commit` would convert a non-UTF-8 message; write the raw object with an unknown encoding.
    head, tree = git(repo, "rev-parse", "HEAD"), git(repo, "rev-parse", "HEAD^{tree}")
    raw = (
        f"tree {tree}\nparent {head}\n"
        f"author Ada <{ADA}> 1700000000 +0100\ncommitter Ada <{ADA}> 1700000000 +0100\n"
        "encoding no-such-encoding\n\n"
    ).encode() + b"Na\xefve raw bytes\n"
    raw_sha = git(repo, "hash-object", "-t", "commit", "-w", "--stdin", input=raw)
    git(repo, "update-ref", "refs/heads/main", raw_sha)

    items = run(repo)
    found = records(items)
    assert found["file:caf\\xe9.py"].content == "print('caf\u00e9')\n"
    assert found["file:caf\\xe9.py"].metadata["path"] == "caf\\xe9.py"
    titles = commit_titles(items)
    assert titles == ["Na\ufffdve raw bytes", "Caf\u00e9 cr\u00e8me"]
    latin = next(r for r in found.values() if r.title == "Caf\u00e9 cr\u00e8me")
    assert latin.metadata["files"] == ["caf\\xe9.py"]
    assert run(repo, items[-1].state)[0] == NothingChanged()


def git_children() -> list[int]:
    """Pids of live `git` child processes of this test process."""
    try:
        import psutil
    except ImportError:
        found = []
        for stat_file in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat_file.read_text().rsplit(")", 1)
                comm = fields[0].split("(", 1)[1]
                state, ppid = fields[1].split()[:2]
            except (OSError, IndexError):
                continue
            if comm == "git" and int(ppid) == os.getpid() and state != "Z":
                found.append(int(stat_file.parent.name))
        return found
    return [
        p.pid
        for p in psutil.Process().children(recursive=True)
        if p.name() == "git" and p.status() != psutil.STATUS_ZOMBIE
    ]


def test_no_leaked_git_processes(project: Path) -> None:
    before = git_children()
    items = run(project)
    assert git_children() == before
    run(project, items[-1].state)
    stream = git_connector.read(source(project), None)
    next(stream)  # a blob was read: the cat-file process is running now
    assert len(git_children()) > len(before)
    stream.close()
    assert git_children() == before


def test_source_errors(tmp_path: Path) -> None:
    with pytest.raises(ConnectorError, match="folder not found"):
        list(git_connector.read(source(tmp_path / "missing"), None))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConnectorError, match="not a folder"):
        list(git_connector.read(source(tmp_path / "file"), None))
    (tmp_path / "plain").mkdir()
    with pytest.raises(ConnectorError, match="not a git repository"):
        list(git_connector.read(source(tmp_path / "plain"), None))


def test_damaged_repository(project: Path) -> None:
    tree = git(project, "rev-parse", "HEAD^{tree}")
    (project / ".git" / "objects" / tree[:2] / tree[2:]).unlink()
    with pytest.raises(ConnectorError, match=r"git failed: fatal: .*"):
        list(git_connector.read(source(project), None))
    (project / ".git" / "refs" / "heads" / "main").write_text("f" * 40 + "\n")
    with pytest.raises(ConnectorError, match="not a commit in this repository"):
        list(git_connector.read(source(project), None))


def fast_import_stream(files: int, commits: int) -> bytes:
    out: list[bytes] = []

    def data(text: str) -> None:
        raw = text.encode()
        out.append(b"data %d\n" % len(raw) + raw + b"\n")

    for number in range(commits):
        who = ADA if number % 2 == 0 else BOB
        out.append(b"commit refs/heads/main\n")
        out.append(f"author Someone <{who}> {1_700_000_000 + number} +0000\n".encode())
        out.append(f"committer Someone <{who}> {1_700_000_000 + number} +0000\n".encode())
        data(f"Commit number {number}\n\nDetails of change {number}.\n")
        changed = range(files) if number == 0 else [number % files, (number * 7) % files]
        for index in changed:
            out.append(f"M 100644 inline pkg{index % 40}/module_{index}.py\n".encode())
            data(f"# module {index}\nVALUE = {number}\n" + "def f(x):\n    return x\n" * 20)
    return b"".join(out)


def test_performance(tmp_path: Path) -> None:
    repo = init(tmp_path / "big")
    subprocess.run(
        ["git", "-C", str(repo), "fast-import", "--quiet"],
        input=fast_import_stream(2000, 1000),
        check=True,
    )
    started = time.perf_counter()
    items = run(repo, authors=[], max_file_kb=256)
    elapsed = time.perf_counter() - started
    found = records(items)
    assert sum(1 for r in found.values() if r.kind == "code") == 2000
    assert sum(1 for r in found.values() if r.kind == "commit") == 1000
    assert elapsed < 20, f"full read took {elapsed:.1f}s"

    git(repo, "reset", "-q")  # fast-import leaves the index empty
    commit(repo, "One more", {"pkg0/module_0.py": "changed\n"})
    started = time.perf_counter()
    again = run(repo, items[-1].state, authors=[], max_file_kb=256)
    assert time.perf_counter() - started < 10
    assert {r.title for r in records(again).values()} == {"pkg0/module_0.py", "One more"}
