"""Scenario 1: ``plora ingest`` killed (SIGKILL) at random points, then run again.

Each seed kills the real CLI (``python -m flows.cli ingest``) three times in a row on the same
home, at a seeded point: once a seeded number of new documents is in the store, or after a seeded
delay (which can land in start-up, the migration, a batch or the final transaction). After every
kill the store must pass ``PRAGMA integrity_check``, hold no duplicate, hold only complete
documents (the hash and message count of a clean run), and no source's cursor may be ahead of its
rows: the cursor is absent, or it is exactly the one a completed run stores and every row of that
source is there. A last run must end with exactly the documents of a clean run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

SEEDS = (1, 2, 3)
KILLS_PER_SEED = 3
NOTES, CHATS, CONVERSATIONS = 600, 600, 200
GITHUB_TOKEN = "ghp_" + "r8Tq2LmZ7vXk3NwP9sYb4HcJ6dFg1QeRt5U"  # made up; assembled, not a literal


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PLORA_HOME", "PLORA_STORE_URL")}
    return {**env, "PYTHONPATH": str(REPO), "COLUMNS": "200"}


def _plora(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "flows.cli", *map(str, args)]


def _chatgpt_conversation(i: int) -> dict[str, Any]:
    nodes = {"root": {"id": "root", "parent": None, "children": ["u"], "message": None}}
    nodes["u"] = {
        "id": "u",
        "parent": "root",
        "message": {
            "id": f"u{i}",
            "author": {"role": "user"},
            "content": {"content_type": "text", "parts": [f"q{i} " * 15]},
        },
    }
    nodes["a"] = {
        "id": "a",
        "parent": "u",
        "message": {
            "id": f"a{i}",
            "author": {"role": "assistant"},
            "content": {"content_type": "text", "parts": [f"a{i} " * 40]},
        },
    }
    if i % 7 == 0:  # a regenerated reply: a branch
        nodes["b"] = {
            "id": "b",
            "parent": "u",
            "message": {
                "id": f"b{i}",
                "author": {"role": "assistant"},
                "content": {"content_type": "text", "parts": ["alt"]},
            },
        }
    return {
        "id": f"conv-{i}",
        "title": f"Conversation {i}",
        "create_time": 1.7e9 + i,
        "update_time": 1.7e9 + i,
        "mapping": nodes,
        "current_node": "a",
    }


@dataclass(frozen=True)
class Corpus:
    config: str
    documents: int  # live documents a completed ingest stores


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    root = tmp_path_factory.mktemp("kill-corpus")
    vault = root / "vault"
    for i in range(NOTES):
        note = vault / f"d{i // 100}" / f"note{i}.md"
        note.parent.mkdir(parents=True, exist_ok=True)
        secret = f"\n\ntoken {GITHUB_TOKEN}{i % 10}\n" if i % 40 == 0 else ""
        note.write_text(
            f"---\ntags: [t{i % 5}]\n---\n# Note {i}\n\n" + f"BGP and CDN notes {i}. " * 25 + secret, encoding="utf-8"
        )
    chats = root / "chats.jsonl"
    with chats.open("w", encoding="utf-8") as out:
        for i in range(CHATS):
            line = {
                "id": f"c{i}",
                "messages": [
                    {"role": "user", "content": f"question {i} " * 10},
                    {"role": "assistant", "content": f"answer {i} " * 30},
                ],
            }
            if i % 3:
                line["label"] = "good" if i % 3 == 1 else "bad"
            out.write(json.dumps(line) + "\n")
        out.write("not json\n")
    export = root / "chatgpt"
    export.mkdir()
    conversations = [_chatgpt_conversation(i) for i in range(CONVERSATIONS)]
    (export / "conversations.json").write_text(json.dumps(conversations), encoding="utf-8")
    feedback = [
        {"conversation_id": f"conv-{i}", "message_id": f"a{i}", "rating": "thumbsUp"}
        for i in range(0, CONVERSATIONS, 9)
    ]
    (export / "message_feedback.json").write_text(json.dumps(feedback), encoding="utf-8")
    config = (
        f'[[sources]]\nname = "vault"\ntype = "markdown"\npath = "{vault}"\n\n'
        f'[[sources]]\nname = "chats"\ntype = "jsonl"\npath = "{chats}"\n\n'
        f'[[sources]]\nname = "gpt"\ntype = "chatgpt"\npath = "{export}"\n'
    )
    return Corpus(config, NOTES + CHATS + CONVERSATIONS)


def _new_home(parent: Path, name: str, corpus: Corpus) -> Path:
    home = parent / name
    home.mkdir()
    (home / "plora.toml").write_text(corpus.config, encoding="utf-8")
    return home


@dataclass(frozen=True)
class Snapshot:
    integrity: str
    documents: dict[str, tuple[str, bool, int]]  # ref -> (hash, deleted, messages)
    cursors: dict[str, Any]  # source -> cursor (None: not saved)
    labels: Counter[tuple[str, Any, ...]]
    redactions: Counter[str]
    duplicates: int


def _connect(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)


def _snapshot(home: Path) -> Snapshot:
    with _connect(home / "plora.db") as conn:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        rows = conn.execute(
            "SELECT s.name || ':' || d.external_id, d.content_hash, d.deleted_at IS NOT NULL, "
            "(SELECT count(*) FROM messages m WHERE m.document_id = d.id) "
            "FROM documents d JOIN sources s ON s.id = d.source_id"
        ).fetchall()
        documents = {ref: (hash_, bool(deleted), messages) for ref, hash_, deleted, messages in rows}
        duplicates = len(rows) - len(documents)
        duplicates += conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM messages GROUP BY document_id, position, branch HAVING count(*) > 1)"
        ).fetchone()[0]
        cursors = {
            name: json.loads(cursor) if cursor is not None else None
            for name, cursor in conn.execute("SELECT name, cursor FROM sources")
        }
        labels = Counter(
            conn.execute(
                "SELECT s.name || ':' || d.external_id, l.position, l.branch, l.value, l.origin FROM labels l "
                "JOIN documents d ON d.id = l.document_id JOIN sources s ON s.id = d.source_id"
            ).fetchall()
        )
        redactions = Counter(
            ref
            for (ref,) in conn.execute(
                "SELECT s.name || ':' || d.external_id FROM redactions r JOIN documents d ON d.id = r.document_id "
                "JOIN sources s ON s.id = d.source_id"
            )
        )
    conn.close()
    return Snapshot(integrity, documents, cursors, labels, redactions, duplicates)


def _live_documents(home: Path) -> int:
    """Documents in the store now; 0 while it doesn't exist yet."""
    db = home / "plora.db"
    if not db.exists():
        return 0
    try:
        conn = _connect(db)
        try:
            return conn.execute("SELECT count(*) FROM documents").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:  # not created / migrated yet
        return 0


@pytest.fixture(scope="module")
def clean(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    home = _new_home(tmp_path_factory.mktemp("clean"), "home", corpus)
    done = subprocess.run(
        _plora("ingest", "--json", "--home", home),
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["sources"]
    assert report["chats"]["skipped"] and report["vault"]["redactions"] > 0
    snapshot = _snapshot(home)
    assert len(snapshot.documents) == corpus.documents and snapshot.integrity == "ok"
    assert all(cursor is not None for cursor in snapshot.cursors.values())
    return snapshot


def _kill_once(home: Path, rng: random.Random, first: bool, total: int) -> tuple[str, bool]:
    """Start an ingest and SIGKILL it at a seeded point; (what the point was, whether it died)."""
    before = _live_documents(home)
    left = total - before
    if first or (left > 2 and rng.random() < 0.5):
        target = before + rng.randint(1, max(1, left - 1))
        point, ready = f"after {target} documents", lambda: _live_documents(home) >= target
    else:
        delay = rng.uniform(0.3, 2.2)
        started = time.monotonic()
        point, ready = f"after {delay:.2f}s", lambda: time.monotonic() - started >= delay
    proc = subprocess.Popen(
        _plora("ingest", "--home", home), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and not ready() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    killed = proc.returncode == -signal.SIGKILL
    assert killed or proc.returncode == 0, stderr.decode(errors="replace")
    return point, killed


def _check_after_kill(home: Path, clean: Snapshot, point: str) -> None:
    if not (home / "plora.db").exists():
        return  # killed before the store was created: nothing to check
    now = _snapshot(home)
    assert now.integrity == "ok", point
    assert now.duplicates == 0, point
    for ref, (hash_, deleted, messages) in now.documents.items():
        assert (hash_, deleted, messages) == clean.documents[ref], f"{ref} is incomplete ({point})"
    for source, cursor in now.cursors.items():
        if cursor is None:
            continue
        assert cursor == clean.cursors[source], f"{source}: a cursor other than a completed run's ({point})"
        expected = {ref: doc for ref, doc in clean.documents.items() if ref.startswith(f"{source}:")}
        stored = {ref: doc for ref, doc in now.documents.items() if ref.startswith(f"{source}:")}
        assert stored == expected, f"{source}: cursor saved but rows missing ({point})"
    assert set(now.labels) <= set(clean.labels), point


@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", SEEDS)
def test_killed_ingest_recovers(seed: int, corpus: Corpus, clean: Snapshot, tmp_path: Path) -> None:
    home = _new_home(tmp_path, "home", corpus)
    rng = random.Random(seed)
    points = []
    for index in range(KILLS_PER_SEED):
        point, killed = _kill_once(home, rng, first=index == 0, total=corpus.documents)
        points.append((point, killed, _live_documents(home)))
        _check_after_kill(home, clean, point)
    landed = [p for p in points if p[1] and 0 < p[2] < corpus.documents]
    assert landed, f"no kill landed mid-ingest: {points}"

    done = subprocess.run(
        _plora("ingest", "--json", "--home", home),
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    final = _snapshot(home)
    assert final.integrity == "ok" and final.duplicates == 0
    assert final.documents == clean.documents, f"differs from a clean run after kills {points}"
    assert final.cursors == clean.cursors
    assert final.labels == clean.labels  # imported labels written once, not once per attempt
    assert final.redactions == clean.redactions
    print(f"seed {seed}: kills {points}")
