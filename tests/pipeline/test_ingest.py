"""Ingest through the real connectors into a real SQLite store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from pipeline.ingest import ingest
from pipeline.labels import set_label
from pipeline.workspace import open_workspace
from storage.labels import effective_labels
from storage.models import Document, Label, Redaction, Source
from tests.conftest import REPO, write_config

pytestmark = pytest.mark.usefixtures("home_store")  # each test on SQLite and on Postgres (tests/conftest.py)

# Made-up canaries, assembled so this file itself holds no secret-shaped literal.
AWS_KEY = "AKIA" + "QX7TLM2ZR9WB4KPD"
GITHUB_TOKEN = "ghp_" + "r8Tq2LmZ7vXk3NwP9sYb4HcJ6dFg1QeRt5Ua"
PASSWORD = "Zq8!" + "vN3rLp0sWx"
SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"
UUID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def _config(home: Path, vault: Path, chats: Path) -> None:
    write_config(
        home,
        f"""
[[sources]]
name = "vault"
type = "markdown"
path = "{vault}"
exclude = ["templates/**"]

[[sources]]
name = "chats"
type = "jsonl"
path = "{chats}"
""",
    )


def _note(vault: Path, name: str, body: str) -> Path:
    path = vault / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    return path


@pytest.fixture
def corpus(home: Path, tmp_path: Path) -> tuple[Path, Path]:
    vault = tmp_path / "vault"
    _note(
        vault, "runbooks/bgp.md", "---\ntype: runbook\ntags: [bgp]\n---\n# BGP down\n\n1. Check [[peers|the peers]].\n"
    )
    _note(vault, "notes/edge.md", f"# Edge\n\nDeployed commit {SHA} to request {UUID}.\n")
    _note(vault, "notes/creds.md", f"# Creds\n\ntoken {GITHUB_TOKEN} leaked\n\nexport DB_PASSWORD={PASSWORD}\n")
    _note(vault, "templates/t.md", "# Template\n")
    chats = tmp_path / "chats.jsonl"
    lines = [
        {
            "id": "c1",
            "messages": [
                {"role": "user", "content": f"my key is {AWS_KEY}, why 403?"},
                {"role": "assistant", "content": "Rotate it."},
            ],
            "label": "good",
        },
        {
            "id": "c2",
            "messages": [{"role": "user", "content": "anycast?"}, {"role": "assistant", "content": "No idea."}],
            "label": "bad",
        },
    ]
    chats.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n", encoding="utf-8")
    _config(home, vault, chats)
    return vault, chats


def _ingest(home: Path, names: list[str] | None = None):
    with open_workspace(home, check_paths=False) as workspace:
        return ingest(workspace, names)


def _documents(home: Path) -> dict[str, tuple[str, bool]]:
    with open_workspace(home) as workspace, workspace.store.read() as session:
        return {
            f"{d.source.name}:{d.external_id}": (d.content_hash, d.deleted_at is not None)
            for d in session.scalars(select(Document))
        }


def test_first_ingest_then_unchanged(home: Path, corpus) -> None:
    first = _ingest(home)
    assert first["vault"].added == 3 and first["vault"].error is None
    assert first["chats"].added == 2
    assert first["chats"].skipped and first["chats"].skipped[0]["item"].endswith(":3")

    before = _documents(home)
    second = _ingest(home)
    assert second["vault"].as_dict() | {"skipped": []} == {
        "added": 0,
        "updated": 0,
        "unchanged": 3,
        "deleted": 0,
        "skipped": [],
        "redactions": 0,
        "error": None,
    }
    assert second["chats"].added == second["chats"].updated == 0
    assert _documents(home) == before


def test_edits_and_deletions_are_picked_up(home: Path, corpus) -> None:
    vault, _ = corpus
    _ingest(home)
    time.sleep(0.01)
    (vault / "notes/edge.md").write_text("# Edge\n\nNew anycast design.\n", encoding="utf-8")
    (vault / "runbooks/bgp.md").unlink()
    report = _ingest(home)["vault"]
    assert (report.added, report.updated, report.deleted) == (0, 1, 1)
    documents = _documents(home)
    assert documents["vault:runbooks/bgp.md"][1] is True  # kept, marked deleted
    _note(
        vault, "runbooks/bgp.md", "---\ntype: runbook\ntags: [bgp]\n---\n# BGP down\n\n1. Check [[peers|the peers]].\n"
    )
    revived = _ingest(home)["vault"]
    assert revived.updated == 1 and _documents(home)["vault:runbooks/bgp.md"][1] is False


@pytest.mark.stores("sqlite")  # reads the bytes of the SQLite files
def test_secrets_never_reach_the_store_and_lookalikes_survive(home: Path, corpus) -> None:
    reports = _ingest(home)
    assert reports["vault"].redactions >= 2 and reports["chats"].redactions >= 1
    with open_workspace(home) as workspace:
        workspace.store.engine.dispose()
        with workspace.store.engine.connect() as conn:
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        with workspace.store.read() as session:
            types = set(session.scalars(select(Redaction.secret_type)))
            edge = session.scalars(select(Document).where(Document.external_id == "notes/edge.md")).one()
            assert SHA in edge.content and UUID in edge.content
            creds = session.scalars(select(Document).where(Document.external_id == "notes/creds.md")).one()
            assert "[REDACTED:" in creds.content and "DB_PASSWORD=" in creds.content
    assert len(types) >= 3
    blob = b"".join(p.read_bytes() for p in home.glob("plora.db*"))
    for secret in (AWS_KEY, GITHUB_TOKEN, PASSWORD):
        assert secret.encode() not in blob


def test_imported_labels_and_relabel_idempotent(home: Path, corpus) -> None:
    _ingest(home)
    _ingest(home)
    with open_workspace(home) as workspace, workspace.store.read() as session:
        labels = effective_labels(session)
        assert sorted(label.value.value for label in labels.values()) == ["bad", "good"]
        assert session.scalar(select(func.count()).select_from(Label)) == 2


def test_an_edited_export_replaces_changed_documents_in_one_batch(home: Path, corpus) -> None:
    _, chats = corpus
    _ingest(home)
    with open_workspace(home) as workspace:
        set_label(workspace, "chats:c2", "good", position=1)  # the person's own: stays whatever the source says
    lines = [
        {
            "id": "c1",
            "messages": [{"role": "user", "content": "why 403?"}, {"role": "assistant", "content": "Rotate it now."}],
            "label": "bad",
        },
        {
            "id": "c2",
            "messages": [{"role": "user", "content": "anycast?"}, {"role": "assistant", "content": "No idea."}],
        },
        {
            "id": "c3",
            "messages": [{"role": "user", "content": f"is {AWS_KEY} live?"}, {"role": "assistant", "content": "Yes."}],
            "label": "good",
        },
    ]
    chats.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    report = _ingest(home)["chats"]
    assert (report.added, report.updated, report.unchanged) == (1, 2, 0)
    with open_workspace(home) as workspace, workspace.store.read() as session:
        documents = {
            d.external_id: d for d in session.scalars(select(Document).join(Source).where(Source.name == "chats"))
        }
        assert [m.content for m in documents["c1"].messages] == ["why 403?", "Rotate it now."]
        assert [r.secret_type for r in documents["c1"].redactions] == []
        assert len(documents["c3"].redactions) == report.redactions >= 1  # the message and the title made of it
        assert AWS_KEY not in documents["c3"].content + documents["c3"].title
        labels = {
            (documents_id, position): label.value.value
            for (documents_id, position, _), label in effective_labels(session).items()
        }
        ids = {name: d.id for name, d in documents.items()}
        assert labels == {(ids["c1"], None): "bad", (ids["c2"], 1): "good", (ids["c3"], None): "good"}
        imported = [
            (label.document_id, label.value.value)
            for label in session.scalars(select(Label).where(Label.origin == "import").order_by(Label.id))
        ]
        assert imported == [
            (ids["c1"], "good"),
            (ids["c2"], "bad"),
            (ids["c1"], "bad"),
            (ids["c2"], "clear"),
            (ids["c3"], "good"),
        ]


def test_missing_source_path_is_an_error_but_others_ingest(home: Path, corpus, cli) -> None:
    write_config(
        home,
        (home / "plora.toml").read_text() + '\n[[sources]]\nname = "gone"\ntype = "claude"\npath = "nowhere.zip"\n',
    )
    result = cli("ingest", "--json", "--home", home)
    assert result.code == 1
    report = result.json()["sources"]
    assert report["gone"]["error"] and "nowhere.zip" in report["gone"]["error"]
    assert report["vault"]["added"] == 3 and report["vault"]["error"] is None
    status = cli("status", "--json", "--home", home).json()
    assert status["sources"]["vault"]["documents"] == 3
    assert status["sources"]["chats"]["conversations"] == 2 and status["sources"]["chats"]["messages"] == 4
    assert status["labels"]["good"] == 1 and status["labels"]["bad"] == 1
    assert sum(status["redactions"].values()) >= 3


@pytest.mark.stores("sqlite")  # PRAGMA integrity_check, and a second home on its own plora.db
def test_kill_during_ingest_then_rerun_completes(home: Path, tmp_path: Path) -> None:
    vault = tmp_path / "big"
    for i in range(3000):
        _note(vault, f"n{i // 100}/note{i}.md", f"# Note {i}\n\n" + f"line {i} about BGP and CDN caches. " * 20)
    write_config(home, f'[[sources]]\nname = "vault"\ntype = "markdown"\npath = "{vault}"\n')
    clean_home = tmp_path / "clean"
    clean_home.mkdir()
    (clean_home / "plora.toml").write_text((home / "plora.toml").read_text())
    plora = [sys.executable, "-m", "flows.cli"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    proc = subprocess.Popen(
        [*plora, "ingest", "--home", str(home)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            with open_workspace(home) as workspace, workspace.store.read() as session:
                if (session.scalar(select(func.count()).select_from(Document)) or 0) >= 400:
                    break
        except Exception:  # noqa: BLE001 - the store may not exist yet
            continue
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    with open_workspace(home) as workspace, workspace.store.read() as session:
        assert session.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        partial = session.scalar(select(func.count()).select_from(Document))
        assert 0 < partial < 3000, "the kill should land mid-ingest"
        cursors = list(session.scalars(select(Source.cursor)))
        assert cursors in ([], [None]), "the cursor must never be ahead of the rows"
    subprocess.run([*plora, "ingest", "--home", str(home)], cwd=REPO, env=env, check=True, capture_output=True)
    subprocess.run([*plora, "ingest", "--home", str(clean_home)], cwd=REPO, env=env, check=True, capture_output=True)
    assert _documents(home) == _documents(clean_home)


def test_new_redaction_patterns_reach_documents_already_stored(home: Path, corpus) -> None:
    """A pattern added to [redaction] after a first ingest redacts the stored copies of unchanged
    files too: the next ingest re-reads every source from scratch (their cursors are of other rules)."""
    vault, _ = corpus
    _note(vault, "notes/badge.md", "# Door\n\nbadge pin 7731-ALPHA at the back door\n")
    _ingest(home)
    config = home / "plora.toml"
    config.write_text(
        config.read_text(encoding="utf-8") + '\n[redaction]\nextra_patterns = ["7731-ALPHA"]\n', encoding="utf-8"
    )
    reports = _ingest(home)
    assert reports["vault"].updated == 4  # every document re-processed under the new rules
    assert reports["chats"].updated == 2 and reports["chats"].error is None
    with open_workspace(home) as workspace, workspace.store.read() as session:
        badge = session.scalars(select(Document).where(Document.external_id == "notes/badge.md")).one()
        assert "7731-ALPHA" not in badge.content and "[REDACTED:custom]" in badge.content
    again = _ingest(home)  # the new rules are now the cursor's: back to incremental
    assert again["vault"].updated == 0 and again["vault"].unchanged == 4


def test_an_untitled_chat_gets_its_title_from_the_redacted_first_message(home: Path, tmp_path: Path) -> None:
    """The connector yields no title; ingest makes it from the first message after redacting it, so
    a title cut at 80 characters can't keep the start of a secret (the token starts at 60 here)."""
    from connectors.conversation_text import fallback_title
    from connectors.records import Message

    chats = tmp_path / "untitled.jsonl"
    first = "why does the runner still get a 401 from the API when I set " + GITHUB_TOKEN + " in CI?"
    messages = [{"role": "user", "content": first}, {"role": "assistant", "content": "Rotate it."}]
    line = {"id": "u1", "messages": messages}
    chats.write_text(json.dumps(line) + "\n", encoding="utf-8")
    write_config(home, f'[[sources]]\nname = "chats"\ntype = "jsonl"\npath = "{chats}"\n')
    assert _ingest(home)["chats"].redactions == 1  # the message only: the title holds no secret to find
    with open_workspace(home) as workspace, workspace.store.read() as session:
        document = session.scalars(select(Document).where(Document.external_id == "u1")).one()
        stored_first = document.messages[0].content
        assert stored_first == first.replace(GITHUB_TOKEN, "[REDACTED:github_token]")
        assert document.title == fallback_title((Message("user", stored_first, 0),))
        assert document.title.startswith("why does the runner") and document.title.endswith("…")
        assert GITHUB_TOKEN[:6] not in document.title and "[REDACTED:" in document.title
        assert document.content.startswith(f"user: {stored_first}")


def test_a_secret_found_in_one_field_is_scrubbed_from_every_field() -> None:
    """A password only recognisable in its `.env` line, copied into a heading and the metadata."""
    from connectors.records import Record
    from pipeline.redaction import Redactor, redact_record

    record = Record(
        external_id="notes/db.md",
        kind="note",
        title=f"{PASSWORD} rotation",
        content=f"# {PASSWORD} rotation\n\nexport DB_PASSWORD={PASSWORD}\n",
        content_hash="h",
        metadata={"sections": [{"title": f"{PASSWORD} rotation"}], "aliases": [PASSWORD]},
    )
    redacted, spans = redact_record(record, Redactor())
    assert [(s.location, s.secret_type) for s in spans] == [("content", "env_credential")]
    marker = "[REDACTED:env_credential]"
    assert redacted.title == f"{marker} rotation"
    assert redacted.content == f"# {marker} rotation\n\nexport DB_PASSWORD={marker}\n"
    assert redacted.metadata == {"sections": [{"title": f"{marker} rotation"}], "aliases": [marker]}
