"""Labels against a real store built by the real connectors (chat JSONL + a ChatGPT export)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from flows.label_args import correction_argument, parse_since
from pipeline.errors import UsageError
from pipeline.ingest import ingest
from pipeline.labels import (
    AnnotationQueue,
    QueueFilter,
    export_labels,
    import_labels,
    set_label,
    stale_labels,
    undo_label,
)
from pipeline.status import status
from pipeline.workspace import open_workspace
from storage.labels import effective_labels
from storage.models import DocumentKind, Label
from tests.conftest import StoreUnderTest, write_config

# each test on SQLite and on Postgres (home_store, tests/conftest.py)
pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("home_store")]


# --- the corpus (shared with tests/flows/test_annotate.py and test_label_cli.py) ----------------------


def chat(i: int, *, label: str | None = None, reply: str | None = None) -> dict[str, Any]:
    line: dict[str, Any] = {
        "id": f"c{i}",
        "title": f"chat {i}",
        "messages": [
            {"role": "system", "content": "Answer as a network engineer."},
            {"role": "user", "content": f"Question {i}: why does BGP session {i} flap?"},
            {
                "role": "assistant",
                "content": reply or f"Answer {i}: check the **hold timer**.\n\n```bash\nbirdc show protocol s{i}\n```",
            },
        ],
    }
    if label:
        line["label"] = label
    return line


def _gpt_message(message_id: str, role: str, text: str, when: float) -> dict[str, Any]:
    return {
        "id": message_id,
        "author": {"role": role},
        "create_time": when,
        "recipient": "all",
        "metadata": {},
        "status": "finished_successfully",
        "content": {"content_type": "text", "parts": [text]},
    }


def gpt_conversation(when: float = 1_700_000_100.0) -> dict[str, Any]:
    """One ChatGPT conversation with a regenerated reply: message 1 has branches 0 (kept) and 1."""

    def node(node_id: str, parent: str | None, children: list[str], message: Any = None) -> dict[str, Any]:
        return {"id": node_id, "parent": parent, "children": children, "message": message}

    return {
        "id": "g1",
        "title": "Restart nginx",
        "create_time": when - 100,
        "update_time": when,
        "current_node": "a1b",
        "mapping": {
            "root": node("root", None, ["u1"]),
            "u1": node("u1", "root", ["a1", "a1b"], _gpt_message("u1", "user", "How do I restart nginx?", when - 90)),
            "a1": node("a1", "u1", [], _gpt_message("a1", "assistant", "Use the init script.", when - 80)),
            "a1b": node("a1b", "u1", [], _gpt_message("a1b", "assistant", "Run `systemctl restart nginx`.", when - 70)),
        },
    }


@dataclass
class Corpus:
    home: Path
    chats: Path
    gpt: Path

    def write_chats(self, lines: list[dict[str, Any]]) -> None:
        self.chats.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")

    def ingest(self) -> None:
        with open_workspace(self.home, check_paths=False) as workspace:
            reports = ingest(workspace)
        assert all(report.error is None for report in reports.values()), reports


def make_corpus(home: Path, tmp_path: Path, n: int = 4) -> Corpus:
    """``n`` chats (c1 comes with an imported ``good``) and one ChatGPT conversation, ingested."""
    corpus = Corpus(home, tmp_path / "chats.jsonl", tmp_path / "gpt" / "conversations.json")
    corpus.write_chats([chat(i, label="good" if i == 1 else None) for i in range(1, n + 1)])
    corpus.gpt.parent.mkdir(parents=True, exist_ok=True)
    corpus.gpt.write_text(json.dumps([gpt_conversation()]), encoding="utf-8")
    write_config(
        home,
        f'[[sources]]\nname = "chats"\ntype = "jsonl"\npath = "{corpus.chats}"\n\n'
        f'[[sources]]\nname = "gpt"\ntype = "chatgpt"\npath = "{corpus.gpt}"\n',
    )
    corpus.ingest()
    return corpus


def labels_in_force(home: Path) -> set[tuple[Any, ...]]:
    """Every label in force, by portable ref: comparable across stores."""
    with open_workspace(home) as workspace, workspace.store.read() as session:
        found = set()
        for (_document_id, position, branch), label in effective_labels(session).items():
            document = label.document
            found.add(
                (document.ref, position, branch, label.value.value, label.note, label.correction, label.origin.value)
            )
        return found


def event_count(home: Path) -> int:
    with open_workspace(home) as workspace, workspace.store.read() as session:
        return session.scalar(select(func.count()).select_from(Label)) or 0


@pytest.fixture
def corpus(home: Path, tmp_path: Path) -> Corpus:
    return make_corpus(home, tmp_path)


@pytest.fixture
def workspace(corpus: Corpus):
    with open_workspace(corpus.home) as workspace:
        yield workspace


# --- labelling ---------------------------------------------------------------------------------------


def test_label_a_conversation_and_a_reply(workspace, corpus: Corpus) -> None:
    whole = set_label(workspace, "chats:c2", "good", note="clear and short")
    reply = set_label(workspace, "chats:c3", "bad", position=2)
    alternative = set_label(workspace, "gpt:g1", "bad", position=1, branch=1)
    assert whole.changed and whole.state and whole.state.note == "clear and short"
    assert reply.position == 2 and alternative.branch == 1
    assert {
        ("chats:c2", None, 0, "good", "clear and short", None, "plora"),
        ("chats:c3", 2, 0, "bad", None, None, "plora"),
        ("gpt:g1", 1, 1, "bad", None, None, "plora"),
    } <= labels_in_force(corpus.home)
    report = status(workspace)["labels"]
    assert (report["good"], report["bad"], report["corrections"], report["stale"]) == (2, 2, 0, 0)
    assert report["unlabelled_conversations"] == 1  # c4; c1 came labelled with the source


def test_same_label_twice_writes_nothing(workspace, corpus: Corpus) -> None:
    set_label(workspace, "chats:c2", "good")
    before = event_count(corpus.home)
    again = set_label(workspace, "chats:c2", "good")
    assert not again.changed and again.label_id is None
    assert event_count(corpus.home) == before


def test_correction_is_bad_with_the_wanted_text_and_keeps_the_note(workspace, corpus: Corpus, tmp_path: Path) -> None:
    set_label(workspace, "chats:c2", "good", position=2, note="fine")
    wanted = tmp_path / "wanted.md"
    wanted.write_text("Check the hold timer, then `birdc show protocols all`.\n", encoding="utf-8")
    result = set_label(workspace, "chats:c2", None, position=2, correction=correction_argument(f"@{wanted}"))
    assert result.state is not None
    assert (result.state.value, result.state.note) == ("bad", "fine")
    assert result.state.correction == "Check the hold timer, then `birdc show protocols all`."
    explicit = set_label(workspace, "chats:c3", "good", position=2, correction="An even better answer.")
    assert explicit.state is not None and explicit.state.value == "good"
    assert status(workspace)["labels"]["corrections"] == 2
    relabel = set_label(workspace, "chats:c2", "good", position=2)
    assert relabel.state is not None and relabel.state.correction and relabel.state.note == "fine"
    removed = set_label(workspace, "chats:c2", "good", position=2, correction="", note="")
    assert removed.state is not None and (removed.state.note, removed.state.correction) == (None, None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("chats:nope", "good"), "unknown ref chats:nope: source 'chats' has no document 'nope'"),
        (("mail:c1", "good"), "no source named 'mail'"),
        (("c1", "good"), "expected SOURCE:EXTERNAL_ID"),
        (("chats:c1", "meh"), "expected good, bad or clear"),
        (("chats:c1", "good", {"position": 3}), "message 3 is out of range; it has messages 0-2"),
        (("chats:c1", "good", {"position": -1}), "out of range"),
        (("gpt:g1", "good", {"position": 1, "branch": 2}), "message 1 has no branch 2 (branches: 0, 1)"),
        (("chats:c1", "good", {"branch": 1}), "--branch needs --message"),
        (
            ("chats:c1", None, {"position": 1, "correction": "x"}),
            "is a user message; a correction goes on an assistant",
        ),
        (("chats:c1", None, {"correction": "x"}), "a correction goes on an assistant reply; give --message N"),
        (("chats:c2", None, {"note": "x"}), "has no label to add to; label it good or bad first"),
        (("chats:c2", "clear", {"note": "x"}), "clear removes the label"),
    ],
)
def test_clear_errors(workspace, args: tuple[Any, ...], message: str) -> None:
    kwargs = args[2] if len(args) > 2 else {}
    with pytest.raises(UsageError, match=None) as error:
        set_label(workspace, args[0], args[1], **kwargs)
    assert message in str(error.value)


def test_a_note_on_an_imported_label_confirms_it_as_the_persons(workspace, corpus: Corpus) -> None:
    result = set_label(workspace, "chats:c1", None, note="agreed")
    assert result.state is not None and result.state.value == "good"
    assert ("chats:c1", None, 0, "good", "agreed", None, "plora") in labels_in_force(corpus.home)


# --- undo ----------------------------------------------------------------------------------------------


def test_undo_appends_events_and_restores_the_previous_state(workspace, corpus: Corpus) -> None:
    first = set_label(workspace, "chats:c2", "good", note="ok")
    second = set_label(workspace, "chats:c2", "bad")
    assert first.label_id and second.label_id
    undone = undo_label(workspace, second.label_id)
    assert undone.state is not None and (undone.state.value, undone.state.note) == ("good", "ok")
    undo_label(workspace, first.label_id)
    assert not any(ref == "chats:c2" for ref, *_ in labels_in_force(corpus.home))
    with open_workspace(corpus.home) as ws, ws.store.read() as session:
        history = list(
            session.scalars(
                select(Label).where(Label.document_id == first_document_id(session, "c2")).order_by(Label.id)
            )
        )
    assert [(event.value.value, event.undoes_id) for event in history] == [
        ("good", None),
        ("bad", None),
        ("good", second.label_id),
        ("clear", first.label_id),
    ]


def first_document_id(session: Any, external_id: str) -> int:
    from storage.models import Document

    return session.scalars(select(Document.id).where(Document.external_id == external_id)).one()


def test_undo_over_an_imported_label_lets_it_show_again(workspace, corpus: Corpus) -> None:
    mine = set_label(workspace, "chats:c1", "bad")
    assert ("chats:c1", None, 0, "bad", None, None, "plora") in labels_in_force(corpus.home)
    assert mine.label_id
    undo_label(workspace, mine.label_id)
    assert ("chats:c1", None, 0, "good", None, None, "import") in labels_in_force(corpus.home)
    cleared = set_label(workspace, "chats:c1", "clear")
    assert cleared.changed and not any(ref == "chats:c1" for ref, *_ in labels_in_force(corpus.home))


# --- staleness and re-ingest ----------------------------------------------------------------------------


def test_labels_survive_reingest_and_edits_are_flagged_stale(workspace, corpus: Corpus) -> None:
    set_label(workspace, "chats:c2", "bad", position=2, correction="Better answer.")
    set_label(workspace, "chats:c3", "good", position=2)
    set_label(workspace, "chats:c4", "good")
    before = labels_in_force(corpus.home)
    corpus.ingest()
    assert labels_in_force(corpus.home) == before
    assert status(workspace)["labels"]["stale"] == 0

    lines = [chat(1, label="good"), chat(2, reply="A rewritten answer."), chat(3), chat(4, reply="Also edited.")]
    lines[2]["messages"] = lines[2]["messages"][:2]  # c3's reply is gone
    corpus.write_chats(lines)
    corpus.ingest()
    assert labels_in_force(corpus.home) == before  # kept where they were, not moved or dropped
    assert status(workspace)["labels"]["stale"] == 2  # c4's whole-conversation label is not stale
    assert [(s.ref, s.position, s.reason) for s in stale_labels(workspace)] == [
        ("chats:c2", 2, "changed"),
        ("chats:c3", 2, "gone"),
    ]
    queue = AnnotationQueue(workspace, QueueFilter(unlabelled=False, search="rewritten"))
    view = queue.current()
    assert view is not None and view.message(2) is not None
    assert view.message(2).label.stale  # type: ignore[union-attr]

    set_label(workspace, "chats:c2", "bad", position=2)  # relabelling confirms it against the new text
    assert [s.ref for s in stale_labels(workspace)] == ["chats:c3"]


# --- export / import --------------------------------------------------------------------------------------


def _label_some(workspace) -> None:
    set_label(workspace, "chats:c2", "good", note="crisp")
    set_label(workspace, "chats:c3", None, position=2, correction="The wanted reply.\n\nWith two paragraphs.")
    set_label(workspace, "gpt:g1", "bad", position=1, branch=1)
    set_label(workspace, "chats:c1", "clear")  # hides the imported label


def test_export_wipe_reingest_import_gives_the_same_labels(
    workspace, corpus: Corpus, tmp_path: Path, home_store: StoreUnderTest
) -> None:
    _label_some(workspace)
    before = labels_in_force(corpus.home)
    exported = export_labels(workspace, tmp_path / "labels.jsonl")
    assert exported.labels == 4
    lines = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert set(lines[0]) == {
        "source",
        "external_id",
        "position",
        "branch",
        "value",
        "note",
        "correction",
        "message_hash",
        "origin",
        "created_at",
    }
    assert {(line["source"], line["external_id"], line["position"], line["value"]) for line in lines} == {
        ("chats", "c1", None, "clear"),
        ("chats", "c2", None, "good"),
        ("chats", "c3", 2, "bad"),
        ("gpt", "g1", 1, "bad"),
    }
    workspace.close()

    home_store.wipe()
    corpus.ingest()
    assert labels_in_force(corpus.home) == {("chats:c1", None, 0, "good", None, None, "import")}
    with open_workspace(corpus.home) as fresh:
        report = import_labels(fresh, tmp_path / "labels.jsonl")
        assert (report.added, report.unchanged, report.conflicts, report.missing) == (4, 0, [], [])
        assert labels_in_force(corpus.home) == before
        again = import_labels(fresh, tmp_path / "labels.jsonl")
        assert (again.added, again.unchanged) == (0, 4)
        assert status(fresh)["labels"]["stale"] == 0


def test_import_reports_conflicts_and_missing_and_never_overwrites(workspace, corpus: Corpus, tmp_path: Path) -> None:
    _label_some(workspace)
    export_labels(workspace, tmp_path / "labels.jsonl")
    extra = {
        "source": "chats",
        "external_id": "c99",
        "position": None,
        "branch": 0,
        "value": "good",
        "note": None,
        "correction": None,
        "message_hash": None,
        "origin": "plora",
        "created_at": None,
    }
    with (tmp_path / "labels.jsonl").open("a") as out:
        out.write(json.dumps(extra) + "\n")
        out.write(json.dumps({**extra, "external_id": "c4", "position": 9}) + "\n")
    set_label(workspace, "chats:c2", "bad")
    report = import_labels(workspace, tmp_path / "labels.jsonl")
    assert (report.added, report.unchanged, report.overwritten) == (0, 3, 0)
    assert [(c["ref"], c["ours"]["value"], c["theirs"]["value"]) for c in report.conflicts] == [
        ("chats:c2", "bad", "good")
    ]
    assert [(m["ref"], m["reason"]) for m in report.missing] == [
        ("chats:c99", "no such document in the store"),
        ("chats:c4", "no message at position 9, branch 0"),
    ]
    assert ("chats:c2", None, 0, "bad", "crisp", None, "plora") in labels_in_force(corpus.home)
    forced = import_labels(workspace, tmp_path / "labels.jsonl", overwrite=True)
    assert forced.overwritten == 1
    assert ("chats:c2", None, 0, "good", "crisp", None, "plora") in labels_in_force(corpus.home)


def test_a_broken_import_file_imports_nothing(workspace, corpus: Corpus, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = {"source": "chats", "external_id": "c2", "value": "good"}
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "value": "meh"}) + "\n")
    before = event_count(corpus.home)
    with pytest.raises(UsageError, match=r"bad.jsonl:2: 'value' must be good, bad or clear"):
        import_labels(workspace, path)
    assert event_count(corpus.home) == before
    with pytest.raises(UsageError, match="no such file"):
        import_labels(workspace, tmp_path / "none.jsonl")


def test_export_all_includes_the_labels_from_the_sources(workspace, tmp_path: Path) -> None:
    set_label(workspace, "chats:c2", "bad")
    assert export_labels(workspace, tmp_path / "mine.jsonl").labels == 1
    everything = export_labels(workspace, tmp_path / "all.jsonl", include_imported=True)
    assert everything.labels == 2 and everything.values == {"good": 1, "bad": 1}


# --- the annotation queue -------------------------------------------------------------------------------


def test_queue_filters(workspace) -> None:
    def refs(**kwargs: Any) -> list[str]:
        queue = AnnotationQueue(workspace, QueueFilter(**kwargs))
        found = []
        while (view := queue.current()) is not None:
            found.append(view.ref)
            queue.next()
        return found

    assert refs() == ["gpt:g1", "chats:c2", "chats:c3", "chats:c4"]  # dated first; c1 is labelled
    assert refs(unlabelled=False) == ["gpt:g1", "chats:c1", "chats:c2", "chats:c3", "chats:c4"]
    assert refs(sources=("chats",), search="SESSION 3") == ["chats:c3"]
    assert refs(since=parse_since("2023-11-14")) == ["gpt:g1", "chats:c2", "chats:c3", "chats:c4"]
    assert refs(since=parse_since("2023-11-15")) == ["chats:c2", "chats:c3", "chats:c4"]  # undated: when stored
    assert refs(since=parse_since("2030-01-01")) == []
    assert refs(kind=DocumentKind.note) == []
    with pytest.raises(UsageError, match="--source 'mail': no such source"):
        AnnotationQueue(workspace, QueueFilter(sources=("mail",)))
    with pytest.raises(UsageError, match="--since 'yesterday'"):
        parse_since("yesterday")
    assert parse_since("2025-01-31") == datetime(2025, 1, 31, tzinfo=UTC)


def test_queue_actions_totals_and_undo(workspace, corpus: Corpus) -> None:
    queue = AnnotationQueue(workspace)
    assert queue.progress() == (0, 4)
    first = queue.current()
    assert first is not None and first.ref == "gpt:g1"
    queue.label("good", 1, 1)
    queue.label("bad")
    queue.next()
    queue.skip()
    assert queue.current().ref == "chats:c3"  # type: ignore[union-attr]
    queue.correct("Wanted.", 2)
    queue.note("too long", 2)
    assert queue.progress() == (2, 4)
    assert dict(queue.totals) == {"good": 1, "bad": 1, "clear": 0, "correction": 1, "note": 1, "skip": 1}

    assert queue.undo().kind == "note"  # type: ignore[union-attr]
    assert queue.undo().kind == "correction"  # type: ignore[union-attr]
    assert queue.progress() == (1, 4)
    assert queue.undo().kind == "skip"  # type: ignore[union-attr]
    assert queue.current().ref == "chats:c2"  # type: ignore[union-attr]  # back where the skip was
    assert dict(queue.totals) == {"good": 1, "bad": 1, "clear": 0, "correction": 0, "note": 0, "skip": 0}
    assert labels_in_force(corpus.home) >= {
        ("gpt:g1", 1, 1, "good", None, None, "plora"),
        ("gpt:g1", None, 0, "bad", None, None, "plora"),
    }
