"""Issue 18: text a person types into plora (label notes, corrections, imported label files) goes
through the same redaction as ingested text, is capped in size, and a hostile labels file is one
error line. On both store backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from bench.secret_families import secrets
from pipeline.labels import set_label
from pipeline.labels.events import MAX_CORRECTION_CHARS, MAX_NOTE_CHARS
from pipeline.redaction import redact_text
from pipeline.workspace import open_workspace
from storage.models import Label
from tests.pipeline.test_labels import Corpus, make_corpus
from tests.pipeline.test_redaction import CANARIES

pytestmark = [pytest.mark.usefixtures("home_store"), pytest.mark.timeout(300)]

# Every secret type plora detects (one canary each) and one variant of every issue-18 family.
TEXTS = [canary.text for canary in CANARIES] + [case.text for case in secrets(1, seed=181)]
PIECES = [canary.secret for canary in CANARIES] + [case.secret for case in secrets(1, seed=181)]


@pytest.fixture
def corpus(home: Path, tmp_path: Path) -> Corpus:
    return make_corpus(home, tmp_path)


def stored_label_text(home: Path) -> list[str]:
    with open_workspace(home) as workspace, workspace.store.read() as session:
        rows = session.execute(select(Label.note, Label.correction)).all()
    return [text for row in rows for text in row if text]


def leaked(texts: list[str]) -> list[str]:
    blob = "\n".join(texts)
    return [piece for piece in PIECES if piece in blob]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_notes_and_corrections_are_redacted_like_ingested_text(corpus: Corpus) -> None:
    with open_workspace(corpus.home) as workspace:
        results = [
            set_label(workspace, "chats:c3", "bad", position=2, note=f"note {i}: {text}", correction=f"{i}: {text}")
            for i, text in enumerate(TEXTS)
        ]
    assert all(result.redactions >= 2 for result in results), [r.ref for r in results if r.redactions < 2]
    last = results[-1]
    assert last.note == redact_text(f"note {len(TEXTS) - 1}: {TEXTS[-1]}").text
    assert leaked(stored_label_text(corpus.home)) == []
    if (corpus.home / "plora.db").exists():  # the SQLite file itself (and its WAL) never held them
        raw = b"".join(p.read_bytes() for p in corpus.home.glob("plora.db*"))
        assert [piece for piece in PIECES if piece.encode() in raw] == []


def test_label_cli_redacts_note_and_correction_file(corpus: Corpus, cli, tmp_path: Path) -> None:
    wanted = tmp_path / "wanted.md"
    wanted.write_text(f"Use this instead:\n{TEXTS[0]}\n", encoding="utf-8")
    result = cli(
        "label", "chats:c3", "-m", "2", "--note", TEXTS[1], "--correction", f"@{wanted}", "--home", corpus.home
    )
    assert result.code == 0, result.stderr
    assert "secret(s) redacted" in result.stdout
    as_json = cli("label", "chats:c2", "good", "--note", TEXTS[2], "--home", corpus.home, "--json").json()
    assert as_json["redactions"] == 1 and "[REDACTED:" in as_json["note"]
    assert leaked(stored_label_text(corpus.home)) == []


def test_labels_import_redacts_notes_and_corrections(corpus: Corpus, cli, tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    lines = [
        {"source": "chats", "external_id": "c2", "position": None, "value": "good", "note": TEXTS[0]},
        {"source": "chats", "external_id": "c3", "position": 2, "value": "bad", "correction": TEXTS[1]},
        {"source": "chats", "external_id": "c4", "position": 2, "value": "bad", "note": TEXTS[2], "origin": "import"},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    result = cli("labels", "import", path, "--home", corpus.home, "--json")
    assert result.code == 0, result.stderr
    assert (result.json()["added"], result.json()["redactions"]) == (3, 3)
    assert leaked(stored_label_text(corpus.home)) == []
    again = cli("labels", "import", path, "--home", corpus.home, "--json").json()  # idempotent once redacted
    assert (again["added"], again["unchanged"]) == (0, 3)


@pytest.mark.parametrize(
    ("option", "limit"),
    [("--note", MAX_NOTE_CHARS), ("--correction", MAX_CORRECTION_CHARS)],
)
def test_oversized_note_or_correction_is_one_error_line(corpus: Corpus, cli, option: str, limit: int) -> None:
    result = cli("label", "chats:c3", "bad", "-m", "2", option, "x" * (limit + 1), "--home", corpus.home)
    assert result.code == 2
    assert error_lines(result.stderr) == [
        f"error: {option}: {option[2:]} is {limit + 1:,} characters; the limit is {limit:,} "
        f"(a {option[2:]} is {'a remark on a label' if option == '--note' else 'one reply'}; shorten it)"
    ]
    assert stored_label_text(corpus.home) == []
    # exactly at the limit is fine
    assert cli("label", "chats:c3", "bad", "-m", "2", option, "y" * limit, "--home", corpus.home).code == 0


def test_a_10_mb_note_in_a_labels_file_imports_nothing(corpus: Corpus, cli, tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    ok = {"source": "chats", "external_id": "c2", "value": "good", "note": "fine"}
    big = {"source": "chats", "external_id": "c3", "value": "bad", "note": "z" * 10_000_000}
    path.write_text(json.dumps(ok) + "\n" + json.dumps(big) + "\n", encoding="utf-8")
    result = cli("labels", "import", path, "--home", corpus.home)
    assert result.code == 2
    assert error_lines(result.stderr) == [
        f"error: {path}:2: note is 10,000,000 characters; the limit is {MAX_NOTE_CHARS:,} "
        "(a note is a remark on a label; shorten it); nothing was imported"
    ]
    assert stored_label_text(corpus.home) == []


def test_deeply_nested_labels_line_is_one_error_line(corpus: Corpus, cli, tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    result = cli("labels", "import", path, "--home", corpus.home)
    assert result.code == 2
    assert error_lines(result.stderr) == [
        f"error: {path}:1: nested too deeply to be a label (not a file written by plora labels export); "
        "nothing was imported"
    ]
    assert "Traceback" not in result.stderr
