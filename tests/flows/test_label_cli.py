"""``plora label`` and ``plora labels export|import|stale`` through the real CLI entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.label_args import correction_argument
from pipeline.errors import UsageError
from tests.pipeline.test_labels import Corpus, chat, labels_in_force, make_corpus

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def corpus(home: Path, tmp_path: Path) -> Corpus:
    return make_corpus(home, tmp_path)


def test_label_in_scripts_shows_up_in_status(corpus: Corpus, cli, tmp_path: Path) -> None:
    home = corpus.home
    assert cli("label", "chats:c2", "good", "--home", home).code == 0
    result = cli(
        "label",
        "chats:c3",
        "--message",
        "2",
        "--correction",
        "The reply I wanted.",
        "--note",
        "too vague",
        "--home",
        home,
        "--json",
    )
    assert result.code == 0, result.stderr
    assert result.json() == {
        "ref": "chats:c3",
        "position": 2,
        "branch": 0,
        "value": "bad",
        "note": "too vague",
        "correction": "The reply I wanted.",
        "changed": True,
        "label_id": result.json()["label_id"],
        "previous": None,
        "redactions": 0,
    }
    (tmp_path / "wanted.md").write_text("# Wanted\n\nRun `systemctl restart nginx`.\n")
    alt = cli(
        "label", "gpt:g1", "-m", "1", "--branch", "1", "--correction", f"@{tmp_path / 'wanted.md'}", "--home", home
    )
    assert alt.code == 0 and "gpt:g1 message 1 (branch 1): bad, correction" in alt.stdout
    same = cli("label", "chats:c2", "good", "--home", home)
    assert "(unchanged)" in same.stdout

    labels = cli("status", "--json", "--home", home).json()["labels"]
    assert labels == {"good": 2, "bad": 2, "corrections": 2, "unlabelled_conversations": 1, "stale": 0}
    human = cli("status", "--home", home).stdout
    assert "labels: good 2, bad 2, corrections 2, unlabelled conversations 1, stale 0" in human


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["chats:c404", "good"], "error: unknown ref chats:c404: source 'chats' has no document 'c404'"),
        (["chats:c2", "good", "--message", "7"], "error: chats:c2: message 7 is out of range; it has messages 0-2"),
        (
            ["chats:c2", "--message", "1", "--correction", "x"],
            "error: chats:c2 message 1 is a user message; a correction goes on an assistant reply",
        ),
        (
            ["chats:c2", "--message", "2", "--correction", "@/nonexistent/wanted.md"],
            "error: --correction @/nonexistent/wanted.md: no such file",
        ),
        (["chats:c2", "great"], "error: label 'great': expected good, bad or clear"),
    ],
)
def test_label_errors_are_one_line_and_exit_2(corpus: Corpus, cli, args: list[str], message: str) -> None:
    result = cli("label", *args, "--home", corpus.home, "--json")
    assert result.code == 2
    assert result.stdout == ""
    assert [line for line in result.stderr.splitlines() if line.strip()] == [message]


def test_export_import_round_trip_and_conflicts(corpus: Corpus, cli, tmp_path: Path) -> None:
    home, path = corpus.home, tmp_path / "labels.jsonl"
    cli("label", "chats:c2", "good", "--note", "crisp", "--home", home)
    cli("label", "chats:c3", "-m", "2", "--correction", "Wanted.", "--home", home)
    exported = cli("labels", "export", path, "--home", home, "--json")
    assert exported.code == 0 and exported.json()["labels"] == 2
    assert len(path.read_text().splitlines()) == 2
    assert cli("labels", "export", tmp_path / "all.jsonl", "--all", "--home", home, "--json").json()["labels"] == 3

    again = cli("labels", "import", path, "--home", home, "--json").json()
    assert (again["added"], again["unchanged"], again["conflicts"], again["missing"]) == (0, 2, 0, 0)
    cli("label", "chats:c2", "bad", "--home", home)
    conflict = cli("labels", "import", path, "--home", home)
    assert conflict.code == 0
    assert "conflicts 1" in conflict.stdout and "chats:c2: here bad, in the file good" in conflict.stdout
    forced = cli("labels", "import", path, "--overwrite", "--home", home, "--json").json()
    assert forced["overwritten"] == 1
    assert ("chats:c2", None, 0, "good", "crisp", None, "plora") in labels_in_force(home)

    path.write_text("{not json\n")
    broken = cli("labels", "import", path, "--home", home)
    assert broken.code == 2 and "labels.jsonl:1: not JSON" in broken.stderr


def test_stale_labels_listed(corpus: Corpus, cli) -> None:
    cli("label", "chats:c2", "bad", "-m", "2", "--home", corpus.home)
    corpus.write_chats([chat(1, label="good"), chat(2, reply="edited"), chat(3), chat(4)])
    corpus.ingest()
    assert cli("status", "--json", "--home", corpus.home).json()["labels"]["stale"] == 1
    listed = cli("labels", "stale", "--home", corpus.home, "--json").json()
    assert listed == {"stale": [{"ref": "chats:c2", "position": 2, "branch": 0, "value": "bad", "reason": "changed"}]}


def test_annotate_needs_a_terminal(corpus: Corpus, cli) -> None:
    result = cli("annotate", "--home", corpus.home)
    assert result.code == 2 and "needs a terminal" in result.stderr


def test_label_help_lists_the_options(cli) -> None:
    result = cli("label", "--help")
    assert result.code == 0
    for option in ("--message", "--branch", "--note", "--correction", "--home", "--json"):
        assert option in result.stdout


def test_correction_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--correction @.*missing\.md: no such file"):
        correction_argument(f"@{tmp_path / 'missing.md'}")
    assert correction_argument("@@handle") == "@handle"
    assert correction_argument("plain") == "plain"
