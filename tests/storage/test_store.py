from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from storage import Store
from storage.labels import effective_labels
from storage.models import Document, DocumentKind, Label, LabelOrigin, LabelValue, Message, Role, Source


def _conversation(source: Source, external_id: str = "c1") -> Document:
    return Document(
        source=source,
        external_id=external_id,
        kind=DocumentKind.conversation,
        title="BGP flap",
        content="user: why?\n\nassistant: because",
        content_hash="0" * 64,
        meta={"model": "x", "n": [1, 2]},
        messages=[
            Message(position=0, role=Role.user, content="why?", content_hash="1" * 64),
            Message(position=1, role=Role.assistant, content="because", content_hash="2" * 64),
            Message(position=1, branch=1, role=Role.assistant, content="dunno", content_hash="3" * 64),
        ],
    )


def test_round_trip_on_a_real_database(store: Store) -> None:
    when = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with store.write() as session:
        source = Source(name="chatgpt", type="chatgpt", cursor={"size": 10})
        document = _conversation(source)
        document.source_updated_at = when
        session.add(document)

    reopened = Store(store.url)
    with reopened.read() as session:
        document = session.scalars(select(Document)).one()
        assert document.ref == "chatgpt:c1"
        assert document.kind is DocumentKind.conversation
        assert document.meta == {"model": "x", "n": [1, 2]}
        assert document.source_updated_at == when and document.source_updated_at.tzinfo is not None
        assert [(m.position, m.branch, m.role) for m in document.messages] == [
            (0, 0, Role.user),
            (1, 0, Role.assistant),
            (1, 1, Role.assistant),
        ]
        assert document.source.cursor == {"size": 10}


def test_unique_external_id_per_source(store: Store) -> None:
    with pytest.raises(IntegrityError), store.write() as session:
        source = Source(name="s", type="jsonl")
        session.add_all([_conversation(source, "same"), _conversation(source, "same")])
    with store.read() as session:
        assert session.scalar(select(func.count()).select_from(Document)) == 0


def test_labels_are_events_and_plora_wins_over_import(store: Store) -> None:
    with store.write() as session:
        document = _conversation(Source(name="s", type="jsonl"))
        session.add(document)
        session.flush()
        session.add_all(
            [
                Label(document_id=document.id, value=LabelValue.bad, origin=LabelOrigin.imported),
                Label(document_id=document.id, value=LabelValue.good, origin=LabelOrigin.plora),
                Label(document_id=document.id, position=1, value=LabelValue.bad),
                Label(document_id=document.id, position=1, value=LabelValue.clear),
            ]
        )
    with store.read() as session:
        labels = effective_labels(session)
        assert [(target[1:], label.value) for target, label in labels.items()] == [((None, 0), LabelValue.good)]
        assert session.scalar(select(func.count()).select_from(Label)) == 4


WRITER = textwrap.dedent("""
    import sys
    from sqlalchemy import select
    from storage import Store
    from storage.models import Source
    store = Store(sys.argv[1])
    for i in range(int(sys.argv[3])):
        with store.write() as session:  # read-then-write: fails without BEGIN IMMEDIATE / the write lock
            source = session.scalars(select(Source).where(Source.name == "shared")).one()
            source.cursor = {"n": (source.cursor or {}).get("n", 0) + 1}
            session.add(Source(name=f"{sys.argv[2]}-{i}", type="jsonl"))
""")


def test_two_processes_writing_at_once_both_succeed(store: Store) -> None:
    with store.write() as session:
        session.add(Source(name="shared", type="jsonl", cursor={"n": 0}))
    n = 150
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, store.url, name, str(n)],
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        for name in ("a", "b")
    ]
    errors = [proc.communicate(timeout=120)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errors
    with store.read() as session:
        shared = session.scalars(select(Source).where(Source.name == "shared")).one()
        assert shared.cursor == {"n": 2 * n}  # no lost update
        assert session.scalar(select(func.count()).select_from(Source)) == 2 * n + 1
