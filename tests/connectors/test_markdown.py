"""connectors.markdown against a small Obsidian-like vault built in tmp_path."""

from __future__ import annotations

import builtins
import os
from pathlib import Path

import pytest

from connectors import markdown
from connectors.globs import GlobSet
from connectors.records import ConnectorError, Cursor, Record, Skip, Unchanged
from connectors.settings import MarkdownSource

NOTES = {
    "Home.md": (
        "---\n"
        "title: My home\n"
        "tags: [projects, '#ideas']\n"
        "aliases: Start page\n"
        "created: 2024-03-01\n"
        "rating: 4\n"
        "nested: {a: 1}\n"
        "---\n"
        "\n"
        "# Welcome\n"
        "Links: [[Project X]], [[Project X|the project]], [[Deploy#Rollback]], "
        "[[Deploy#^abc123]].\n"
        "Embeds: ![[diagram.png]] ![[Snippet]] and `[[not a link]]`.\n"
        "\n"
        "## Next steps\n"
        "- do things\n"
    ),
    "projects/Project X.md": "# Project X\n\nSome text about X.\n",
    "projects/untitled.md": "No heading here, just text.\n",
    "runbooks/Deploy.md": "# Deploy\n\n## Rollback\n\nRun `make rollback`.\n",
    "ops/Restart.md": "---\ntype: runbook\n---\nRestart the thing.\n",
    "ops/Tagged.md": "---\ntags: runbook, ops\n---\nTagged as a runbook.\n",
    "broken-front-matter.md": "---\ntitle: [unclosed\n---\n# Still here\n\nBody text.\n",
    "bad-date.md": "---\ndate: 2023-02-30\n---\nBody.\n",
    "unclosed-fence.md": "# Code\n\n```python\nprint('hi')\n# not a heading [[Kept]]\n",
    "empty.md": "   \n\n",
    "only-front-matter.md": "---\ntitle: Nothing\n---\n",
    "templates/Daily.md": "# {{date}}\n",
    "notes.txt": "not markdown\n",
    ".obsidian/workspace.md": "# internal\n",
    ".trash/old.md": "# deleted\n",
    "sub/.hidden.md": "# hidden\n",
}


def write_vault(root: Path) -> None:
    for relpath, text in NOTES.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (root / "binary.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (root / "utf16.md").write_bytes("# Café\n\nÉté [[Home]]\n".encode("utf-16"))
    (root / "bom8.md").write_bytes(b"\xef\xbb\xbf---\ntitle: With BOM\n---\nText.\n")
    latin1 = "# Notes\n\nCaf\xe9 cr\xe8me, mostly ASCII text.\n".encode("latin-1")
    (root / "latin1.md").write_bytes(latin1)
    (root / "crlf.md").write_bytes(b"# Windows\r\n\r\nline one\r\n## Two\r\nline two\r\n")
    os.symlink(root, root / "sub" / "loop")  # a folder link back to the vault: a loop
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\n")
    os.symlink(outside, root / "elsewhere")
    os.symlink(outside / "secret.md", root / "secret-link.md")
    os.symlink(root / "projects" / "Project X.md", root / "sub" / "x-link.md")


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    root = tmp_path / "vault"
    root.mkdir()
    write_vault(root)
    return root


def settings(root: Path, **overrides) -> MarkdownSource:
    overrides.setdefault("exclude", ["templates/**"])
    return MarkdownSource(name="notes", type="markdown", path=root, **overrides)


def run(root: Path, cursor=None, **overrides):
    items = list(markdown.read(settings(root, **overrides), cursor))
    assert isinstance(items[-1], Cursor)
    assert not any(isinstance(item, Cursor) for item in items[:-1])
    return items


def by_id(items, kind):
    return {item.external_id: item for item in items if isinstance(item, kind)}


def test_vault_records(vault: Path) -> None:
    items = run(vault)
    records = by_id(items, Record)
    assert sorted(records) == sorted(
        [
            "Home.md",
            "projects/Project X.md",
            "projects/untitled.md",
            "runbooks/Deploy.md",
            "ops/Restart.md",
            "ops/Tagged.md",
            "broken-front-matter.md",
            "bad-date.md",
            "unclosed-fence.md",
            "utf16.md",
            "bom8.md",
            "latin1.md",
            "crlf.md",
            "sub/x-link.md",
        ]
    )
    home = records["Home.md"]
    assert home.kind == "note"
    assert home.title == "My home"
    assert home.content.startswith("# Welcome\n")
    assert "---" not in home.content and "rating" not in home.content
    assert "Links: Project X, the project, Deploy > Rollback, Deploy." in home.content
    assert "Embeds:  [embed: Snippet] and `[[not a link]]`." in home.content
    assert "diagram.png" not in home.content
    meta = home.metadata
    assert meta["tags"] == ["projects", "ideas"]
    assert meta["aliases"] == ["Start page"]
    assert meta["title"] == "My home"
    assert meta["created"] == "2024-03-01"
    assert meta["rating"] == 4
    assert "nested" not in meta
    assert meta["links"] == ["Project X", "Deploy", "Snippet"]
    assert meta["sections"] == [
        {"level": 1, "title": "Welcome", "line": 0},
        {"level": 2, "title": "Next steps", "line": 4},
    ]
    lines = home.content.split("\n")
    for section in meta["sections"]:
        assert lines[section["line"]].lstrip("#").strip() == section["title"]
    assert home.updated_at is not None and home.updated_at.tzinfo is not None
    assert len(home.content_hash) == 64


def test_titles_kinds_and_odd_notes(vault: Path) -> None:
    records = by_id(run(vault), Record)
    assert records["projects/Project X.md"].title == "Project X"
    assert records["projects/untitled.md"].title == "untitled"
    assert records["runbooks/Deploy.md"].kind == "runbook"
    assert records["ops/Restart.md"].kind == "runbook"
    assert records["ops/Tagged.md"].kind == "runbook"
    assert records["projects/Project X.md"].kind == "note"

    broken = records["broken-front-matter.md"]
    assert "front_matter_error" in broken.metadata
    assert broken.title == "Still here"
    assert broken.content.startswith("# Still here")
    assert "front_matter_error" in records["bad-date.md"].metadata

    fence = records["unclosed-fence.md"]
    assert "[[Kept]]" in fence.content  # inside the (unclosed) code block: left alone
    assert fence.metadata["sections"] == [{"level": 1, "title": "Code", "line": 0}]

    utf16 = records["utf16.md"]
    assert utf16.title == "Café"
    assert "Été Home" in utf16.content
    assert utf16.metadata["encoding"] == "utf-16"
    assert records["bom8.md"].title == "With BOM"
    assert "encoding" not in records["bom8.md"].metadata

    latin1 = records["latin1.md"]
    assert latin1.metadata["decode_errors"] == 2
    assert "Caf\ufffd cr\ufffdme" in latin1.content

    crlf = records["crlf.md"]
    assert "\r" not in crlf.content
    assert crlf.metadata["sections"] == [
        {"level": 1, "title": "Windows", "line": 0},
        {"level": 2, "title": "Two", "line": 3},
    ]
    assert records["sub/x-link.md"].content == records["projects/Project X.md"].content


def test_skips_and_left_out(vault: Path) -> None:
    items = run(vault)
    skips = by_id([i for i in items if isinstance(i, Skip)], Skip)
    reasons = {s.item: s.reason for s in items if isinstance(s, Skip)}
    assert reasons["binary.md"] == "binary file"
    assert reasons["empty.md"] == "empty note"
    assert reasons["only-front-matter.md"] == "empty note"
    assert "loop" in reasons["sub/loop"]
    assert "outside" in reasons["elsewhere"]
    assert "outside" in reasons["secret-link.md"]
    assert skips["binary.md"].external_id == "binary.md"
    every_id = {getattr(i, "external_id", None) for i in items} | set(reasons)
    for left_out in (
        "templates/Daily.md",
        ".obsidian/workspace.md",
        ".trash/old.md",
        "sub/.hidden.md",
        "notes.txt",
        "elsewhere/secret.md",
    ):
        assert left_out not in every_id
    assert not any("secret" in getattr(i, "content", "").lower() for i in items)


def test_odd_files(tmp_path: Path) -> None:
    (tmp_path / "ok.md").write_text("# Fine\n")
    os.mkfifo(tmp_path / "pipe.md")  # opening it would block: must never be opened
    with open(os.fsencode(tmp_path) + b"/caf\xe9.md", "wb") as handle:
        handle.write(b"# Latin-1 name\n")
    os.symlink(tmp_path / "nowhere.md", tmp_path / "dangling.md")
    items = run(tmp_path)
    reasons = {s.item: s.reason for s in items if isinstance(s, Skip)}
    assert reasons["pipe.md"] == "not a regular file"
    assert reasons["dangling.md"].startswith("broken symlink")
    assert by_id(items, Record)["caf\\xe9.md"].title == "Latin-1 name"
    assert "caf\\xe9.md" in items[-1].state


def test_large_and_unreadable(vault: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (vault / "huge.md").write_bytes(b"# big\n" + b"x" * markdown.MAX_BYTES)
    locked = vault / "locked.md"
    locked.write_text("# locked\n")
    locked.chmod(0)
    real_open = builtins.open

    def deny(file, *args, **kwargs):  # root ignores file modes: refuse it here too
        if str(file) == str(locked):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    reasons = {s.item: s.reason for s in run(vault) if isinstance(s, Skip)}
    assert reasons["huge.md"].startswith("too large")
    assert "Permission denied" in reasons["locked.md"]
    locked.chmod(0o644)


def test_incremental(vault: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = run(vault)
    cursor = first[-1].state
    records = by_id(first, Record)
    assert {key for key, entry in cursor.items() if len(entry) == 3} == set(records)
    assert cursor["binary.md"][2:] == [None, "binary file"]

    opened: list[str] = []
    real_open = builtins.open

    def spy(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    second = run(vault, cursor)
    monkeypatch.setattr(builtins, "open", real_open)
    assert not by_id(second, Record)
    assert set(by_id(second, Unchanged)) == set(records)
    assert not [path for path in opened if path.startswith(str(vault))]
    assert second[-1].state == cursor
    # Content skips are remembered and repeated without opening the file; others re-checked.
    first_skips = {(s.item, s.reason) for s in first if isinstance(s, Skip)}
    assert {(s.item, s.reason) for s in second if isinstance(s, Skip)} == first_skips

    note = vault / "runbooks" / "Deploy.md"
    note.write_text("# Deploy\n\n## Rollback\n\nRun `make rollback` twice.\n")
    (vault / "projects" / "untitled.md").unlink()
    third = run(vault, second[-1].state)
    changed = by_id(third, Record)
    assert list(changed) == ["runbooks/Deploy.md"]
    assert changed["runbooks/Deploy.md"].content_hash != records["runbooks/Deploy.md"].content_hash
    assert "projects/untitled.md" not in by_id(third, Unchanged)
    assert "projects/untitled.md" not in third[-1].state
    assert len(by_id(third, Unchanged)) == len(records) - 2

    # Same content, same ids, same hashes from scratch: ids and hashes are stable.
    again = by_id(run(vault), Record)
    assert again["Home.md"].content_hash == records["Home.md"].content_hash


def test_garbage_cursor_is_ignored(vault: Path) -> None:
    items = run(vault, {"Home.md": "nonsense", "x": [1], "ops/Restart.md": [None, None, None]})
    assert "Home.md" in by_id(items, Record)


def test_source_errors(tmp_path: Path) -> None:
    with pytest.raises(ConnectorError, match="folder not found"):
        list(markdown.read(settings(tmp_path / "missing"), None))
    file = tmp_path / "file.md"
    file.write_text("x")
    with pytest.raises(ConnectorError, match="not a folder"):
        list(markdown.read(settings(file), None))


def test_include_and_exclude(vault: Path) -> None:
    items = run(vault, include=["projects/**", "*.txt"], exclude=["**/untitled.md"])
    assert set(by_id(items, Record)) == {"projects/Project X.md", "notes.txt"}


def test_exclude_with_gitignore_rules(tmp_path: Path) -> None:
    for name in (
        "a.md",
        "drafts/b.md",
        "x/drafts/c.md",
        "templates/t.md",
        "templates/keep.md",
        "README.md",
        "x/README.md",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"# {name}\n\ntext\n")
    items = run(tmp_path, exclude=["drafts/", "templates/**", "!templates/keep.md", "/README.md"])
    assert set(by_id(items, Record)) == {"a.md", "templates/keep.md", "x/README.md"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("```\nunclosed\n[[a]]", "```\nunclosed\n[[a]]"),
        ("[[a|b|c]] [[]] [[ ]] [[#Top]] ![[x.PDF]]", "b|c [[]]  Top"),
        ("> quote [[n#h1#h2]]\n\n| t | [[a\\|b]] |", "> quote n > h1 > h2\n\n| t | b |"),
        ("<div>\n[[html]]\n</div>", "<div>\nhtml\n</div>"),
        ("````\n```\n[[x]]\n````\n[[y]]", "````\n```\n[[x]]\n````\ny"),
    ],
)
def test_odd_markdown(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "n.md").write_text(text)
    (record,) = by_id(run(tmp_path), Record).values()
    assert record.content == expected


def test_globs() -> None:
    assert GlobSet(["**/*.py"]).matches("a.py")
    assert GlobSet(["**/*.py"]).matches("x/y/a.py")
    assert not GlobSet(["**/*.py"]).matches("a.pyc")
    assert GlobSet(["templates/**"]).matches("templates/a/b.md")
    assert not GlobSet(["templates/**"]).matches("x/templates/a.md")
    assert GlobSet(["templates/**"]).covers_folder("templates/sub")
    assert GlobSet(["*.tmp"]).matches("a/b/c.tmp")
    assert GlobSet(["docs/**/index.md"]).matches("docs/index.md")
    assert not GlobSet(["a/*.md"]).matches("a/b/c.md")
    assert not GlobSet(["a?c"]).matches("a/c")
    assert GlobSet(["[!a]*.md"]).matches("b.md") and not GlobSet(["[!a]*.md"]).matches("a.md")
    assert not GlobSet([]).matches("anything")


def test_globs_follow_gitignore() -> None:
    assert GlobSet(["drafts"]).matches("a/drafts/b.md") and GlobSet(["drafts/"]).matches("a/drafts/b.md")
    assert not GlobSet(["drafts/"]).matches("drafts") and GlobSet(["drafts/"]).covers_folder("x/drafts")
    assert GlobSet(["/README.md"]).matches("README.md") and not GlobSet(["/README.md"]).matches("a/README.md")
    kept = GlobSet(["templates/**", "!templates/keep.md"])
    assert kept.matches("templates/a.md") and not kept.matches("templates/keep.md")
    assert not kept.covers_folder("templates")  # a "!" pattern may take something under it back
    assert not GlobSet(["# a comment"]).matches("# a comment") and GlobSet(["\\#x.md"]).matches("#x.md")
