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
from tests.pipeline.test_redaction import CANARIES, LOOKALIKES

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
    return {"chats": chats, "vault": vault, "repo": repo}


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
    for name, lookalike in LOOKALIKES.items():
        for line in filter(None, (line.strip() for line in lookalike.splitlines())):
            assert line.encode() in stored, (name, line)
