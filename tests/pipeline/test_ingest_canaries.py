"""Every supported secret type, planted in chats, notes, code and commit messages, never reaches
the SQLite file, while lookalikes (SHAs, UUIDs, checksums) survive byte for byte."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy import text

from pipeline.ingest import ingest
from pipeline.workspace import open_workspace
from tests.conftest import write_config
from tests.pipeline.test_redaction import CANARIES, LOOKALIKES, Canary, chars, pem

# Secrets in names, planted by `_plant` as a git file's path and a note's file name, and a private
# key pasted across two chat messages: traced like CANARIES (their ids, cursors, titles, headers).
PATH_TOKEN = "ghp_" + chars(36, seed=150)
NOTE_TOKEN = "xoxb-" + "2431864570123-5129876543210-" + chars(24, seed=151)
SPLIT_KEY = pem("RSA PRIVATE KEY", lines=8, seed=152)
NAME_CANARIES = [
    Canary("path-github-token", "github_token", PATH_TOKEN, "secrets/", ".txt"),
    Canary("note-name-slack-token", "slack_token", NOTE_TOKEN, "token-", ".md"),
    Canary("split-private-key", "private_key", SPLIT_KEY, "", ""),
]

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Sam",
    "GIT_AUTHOR_EMAIL": "sam@example.com",
    "GIT_COMMITTER_NAME": "Sam",
    "GIT_COMMITTER_EMAIL": "sam@example.com",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00+00:00",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00+00:00",
    "PATH": "/usr/bin:/bin",
}


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        env=GIT_ENV,
        check=True,
        capture_output=True,
    )


def _plant(tmp_path: Path) -> dict[str, Path]:
    chats = tmp_path / "chats.jsonl"
    chats.write_text(
        "\n".join(
            json.dumps(
                {
                    "id": f"c{i}",
                    "messages": [
                        {"role": "user", "content": f"why does this fail?\n{canary.text}"},
                        {"role": "assistant", "content": "Rotate it and keep it out of the repo."},
                    ],
                }
            )
            for i, canary in enumerate(CANARIES)
        )
        + "\n",
        encoding="utf-8",
    )
    vault = tmp_path / "vault"
    vault.mkdir()
    for i, canary in enumerate(CANARIES):
        (vault / f"note{i}.md").write_text(f"# Note {i}\n\n{canary.text}\n", encoding="utf-8")
    (vault / "lookalikes.md").write_text("# Lookalikes\n\n" + "\n\n".join(LOOKALIKES.values()) + "\n", encoding="utf-8")
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    for i, canary in enumerate(CANARIES):
        (repo / f"conf{i}.py").write_text(f'"""Config {i}."""\nNOTES = """\n{canary.text}\n"""\n', encoding="utf-8")
        _git(repo, "add", ".")
        _git(repo, "commit", "-q", "-m", f"add config {i}\n\n{canary.text}")
    _plant_names(chats, vault, repo)
    return {"chats": chats, "vault": vault, "repo": repo}


def _plant_names(chats: Path, vault: Path, repo: Path) -> None:
    lines = SPLIT_KEY.split("\n")
    split = {
        "id": "split-key",
        "messages": [
            {"role": "user", "content": "the deploy key, part 1:\n" + "\n".join(lines[:5])},
            {"role": "assistant", "content": "Go on."},
            {"role": "user", "content": "\n".join(lines[5:]) + "\nwhy won't ssh take it?"},
            {"role": "assistant", "content": "Never paste private keys; rotate it."},
        ],
    }
    with chats.open("a", encoding="utf-8") as f:
        f.write(json.dumps(split) + "\n")
    (vault / f"token-{NOTE_TOKEN}.md").write_text("the bot token is in the file name\n", encoding="utf-8")
    (repo / "secrets").mkdir()
    (repo / "secrets" / f"{PATH_TOKEN}.txt").write_text("the token is the file name\n", encoding="utf-8")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "add the token file")


def test_no_planted_secret_reaches_the_store(home: Path, tmp_path: Path) -> None:
    paths = _plant(tmp_path)
    write_config(
        home,
        f"""
[[sources]]
name = "chats"
type = "jsonl"
path = "{paths["chats"]}"

[[sources]]
name = "vault"
type = "markdown"
path = "{paths["vault"]}"

[[sources]]
name = "code"
type = "git"
path = "{paths["repo"]}"
""",
    )
    with open_workspace(home, check_paths=False) as workspace:
        reports = ingest(workspace)
        with workspace.store.engine.connect() as conn:
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    assert all(report.error is None for report in reports.values())
    # each canary is planted once per chat, note, code file and commit message
    assert reports["chats"].redactions >= len(CANARIES)
    assert reports["vault"].redactions >= len(CANARIES)
    assert reports["code"].redactions >= 2 * len(CANARIES)

    # The raw file bytes, and every row as SQL text (a long value is split over overflow pages).
    with sqlite3.connect(home / "plora.db") as conn:
        dump = "\n".join(conn.iterdump()).encode()
    stored = b"".join(path.read_bytes() for path in home.glob("plora.db*")) + dump
    leaked = [canary.id for canary in CANARIES if canary.secret.encode() in stored]
    assert leaked == []
    split_lines = [line for line in SPLIT_KEY.splitlines() if "-----" not in line]
    assert [c.id for c in NAME_CANARIES[:2] if c.secret.encode() in stored] == []
    assert [line for line in split_lines if line.encode() in stored] == []
    assert b"-----END RSA PRIVATE KEY-----" not in stored
    for name, lookalike in LOOKALIKES.items():
        for line in filter(None, (line.strip() for line in lookalike.splitlines())):
            assert line.encode() in stored, (name, line)


def test_secrets_in_names_give_stable_redacted_ids(home: Path, tmp_path: Path) -> None:
    """A git file and a note named after a token: stored under ids that hold no piece of it, the
    same ids on every ingest (the second finds everything unchanged), and a label by that id works."""
    from pipeline.labels import set_label

    paths = _plant(tmp_path)
    write_config(
        home,
        f'[[sources]]\nname = "vault"\ntype = "markdown"\npath = "{paths["vault"]}"\n\n'
        f'[[sources]]\nname = "code"\ntype = "git"\npath = "{paths["repo"]}"\n',
    )
    with open_workspace(home, check_paths=False) as workspace:
        first = ingest(workspace)
        with workspace.store.engine.connect() as conn:
            ids = [row[0] for row in conn.execute(text("SELECT external_id FROM documents WHERE deleted_at IS NULL"))]
            cursors = [row[0] for row in conn.execute(text("SELECT cursor FROM sources"))]
    assert all(report.error is None for report in first.values())
    named = sorted(i for i in ids if "REDACTED-" in i)
    assert len(named) == 2 and named[0].startswith("file:secrets/REDACTED-github_token-")
    assert named[1].startswith("token-REDACTED-slack_token-") and named[1].endswith(".md")
    assert not any(PATH_TOKEN in str(c) or NOTE_TOKEN in str(c) for c in cursors)
    with open_workspace(home, check_paths=False) as workspace:
        second = ingest(workspace)
        set_label(workspace, f"vault:{named[1]}", "good")
    assert second["vault"].added == second["vault"].updated == second["vault"].deleted == 0
    assert second["code"].added == second["code"].updated == second["code"].deleted == 0
    with open_workspace(home, check_paths=False) as workspace, workspace.store.engine.connect() as conn:
        again = sorted(
            row[0] for row in conn.execute(text("SELECT external_id FROM documents")) if "REDACTED-" in row[0]
        )
    assert again == named
