"""The annotation queue: the model behind ``plora annotate``, testable without the UI.

``AnnotationQueue`` holds the queue, the current document, the actions, the undo stack and the
session totals; ``DocumentView`` and friends are what the terminal UI draws. Every action is
written through :mod:`pipeline.labels.events` before the call returns.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from pipeline.errors import UsageError
from pipeline.labels.events import KEEP, Keep, LabelResult, parse_value, set_by_id, undo_label
from pipeline.workspace import Workspace
from storage import labels as store
from storage.models import DocumentKind, LabelValue, Role


@dataclass(frozen=True)
class QueueFilter:
    sources: tuple[str, ...] = ()
    unlabelled: bool = True
    search: str | None = None
    since: datetime | None = None
    kind: DocumentKind = DocumentKind.conversation


@dataclass(frozen=True)
class LabelView:
    value: str
    note: str | None
    correction: str | None
    origin: str  # "plora" or "import"
    stale: bool = False


@dataclass(frozen=True)
class MessageView:
    position: int
    branch: int
    role: str
    content: str
    label: LabelView | None


@dataclass(frozen=True)
class DocumentView:
    """A snapshot of one document and its labels in force, for display."""

    id: int
    ref: str
    title: str
    kind: str
    content: str
    when: datetime | None
    label: LabelView | None
    messages: tuple[MessageView, ...]
    orphans: tuple[tuple[int, int, LabelView], ...] = ()  # labels on messages no longer there

    def message(self, position: int, branch: int = 0) -> MessageView | None:
        return next((m for m in self.messages if (m.position, m.branch) == (position, branch)), None)

    def last_reply(self) -> MessageView | None:
        replies = [m for m in self.messages if m.role == Role.assistant.value and m.branch == 0]
        return replies[-1] if replies else None


def document_view(session: Session, document_id: int) -> DocumentView:
    document = store.load_document(session, document_id)
    hashes = {(m.position, m.branch): m.content_hash for m in document.messages}
    labels = {
        (position, branch): LabelView(
            label.value.value, label.note, label.correction, label.origin.value, store.is_stale(label, hashes)
        )
        for (_, position, branch), label in store.effective_labels(session, [document_id]).items()
    }
    messages = tuple(
        MessageView(m.position, m.branch, m.role.value, m.content, labels.get((m.position, m.branch)))
        for m in document.messages
    )
    orphans = tuple(
        sorted(
            (
                (position, branch, view)
                for (position, branch), view in labels.items()
                if position is not None and (position, branch) not in hashes
            ),
            key=lambda orphan: (orphan[0], orphan[1]),
        )
    )
    return DocumentView(
        document.id,
        document.ref,
        document.title,
        document.kind.value,
        document.content,
        document.source_updated_at,
        labels.get((None, 0)),
        messages,
        orphans,
    )


def build_queue(workspace: Workspace, queue_filter: QueueFilter) -> list[int]:
    """The ids of the documents to label, in the order they are shown."""
    with workspace.store.read() as session:
        known = set(store.source_names(session)) | set(workspace.config.source_names)
        unknown = [name for name in queue_filter.sources if name not in known]
        if unknown:
            raise UsageError(f"--source {unknown[0]!r}: no such source (known: {', '.join(sorted(known)) or 'none'})")
        return store.queue_document_ids(
            session,
            kind=queue_filter.kind,
            sources=queue_filter.sources,
            search=queue_filter.search,
            since=queue_filter.since,
            unlabelled=queue_filter.unlabelled,
        )


@dataclass(frozen=True)
class Action:
    """One thing done in an annotation session, for undo: a label event written, or a skip."""

    kind: str  # "good" | "bad" | "clear" | "note" | "correction" | "skip"
    document_id: int
    label_id: int | None = None
    position: int | None = None
    branch: int = 0


TOTAL_KEYS = ("good", "bad", "clear", "correction", "note", "skip")


class AnnotationQueue:
    """The state of one ``plora annotate`` session.

    Every action is written to the store before the call returns (one transaction each), so
    quitting, Ctrl-C or a crash loses nothing. ``undo`` undoes this session's actions, last first.
    """

    def __init__(self, workspace: Workspace, queue_filter: QueueFilter | None = None) -> None:
        self.workspace = workspace
        self.filter = queue_filter or QueueFilter()
        self.ids = build_queue(workspace, self.filter)
        self.index = 0
        self.history: list[Action] = []
        self.totals: Counter[str] = Counter(dict.fromkeys(TOTAL_KEYS, 0))

    # navigation
    @property
    def total(self) -> int:
        return len(self.ids)

    @property
    def finished(self) -> bool:
        return self.index >= len(self.ids)

    def current(self) -> DocumentView | None:
        if self.finished:
            return None
        with self.workspace.store.read() as session:
            return document_view(session, self.ids[self.index])

    def next(self) -> None:
        self.index = min(self.index + 1, len(self.ids))

    def previous(self) -> None:
        self.index = max(self.index - 1, 0)

    def progress(self) -> tuple[int, int]:
        """(documents of the queue with a label in force, documents in the queue)."""
        with self.workspace.store.read() as session:
            return len(store.labelled_document_ids(session, self.ids)), len(self.ids)

    # actions
    def skip(self) -> None:
        if self.finished:
            return
        self._done(Action("skip", self.ids[self.index]))
        self.next()

    def label(self, value: str | LabelValue, position: int | None = None, branch: int = 0) -> LabelResult:
        value = parse_value(value) if isinstance(value, str) else value
        return self._write(value.value, position, branch, value=value)

    def note(self, text: str | None, position: int | None = None, branch: int = 0) -> LabelResult:
        return self._write("note", position, branch, value=None, note=text or None)

    def correct(self, text: str, position: int, branch: int = 0) -> LabelResult:
        return self._write("correction", position, branch, value=LabelValue.bad, correction=text)

    def undo(self) -> Action | None:
        """Undo this session's last action and go back to its document; None if there is none."""
        if not self.history:
            return None
        action = self.history[-1]
        if action.label_id is not None:
            undo_label(self.workspace, action.label_id)
        self.history.pop()
        self.totals[action.kind] -= 1
        if action.document_id in self.ids:
            self.index = self.ids.index(action.document_id)
        return action

    def _write(
        self,
        kind: str,
        position: int | None,
        branch: int,
        *,
        value: LabelValue | None,
        note: str | Keep | None = KEEP,
        correction: str | Keep | None = KEEP,
    ) -> LabelResult:
        if self.finished:
            raise UsageError("nothing to label: the queue is done")
        result = set_by_id(self.workspace, self.ids[self.index], position, branch, value, note, correction)
        if result.changed:
            self._done(Action(kind, self.ids[self.index], result.label_id, position, branch))
        return result

    def _done(self, action: Action) -> None:
        self.history.append(action)
        self.totals[action.kind] += 1
