"""Labelling: the person's good/bad judgements, notes and corrections, and the annotation queue.

A target is a whole document (``position`` None) or one message, addressed by its position on
the conversation's kept path and its branch (0 = kept, 1, 2... = alternative replies), never by
row id, so labels survive re-ingest. Every change is one append-only event written in its own
transaction; nothing is ever deleted or updated in place:

- ``set_label``: good / bad / clear, with an optional note and correction. Unless given, the note
  and correction already on the target are kept; a correction alone means "bad".
- ``undo_label``: an event restoring the state before the undone one (history stays).
- ``export_labels`` / ``import_labels``: JSONL with portable refs (source, external id,
  position, branch); import is idempotent and reports conflicts instead of overwriting.
- ``AnnotationQueue``: the model behind ``plora annotate`` (queue, current document, actions,
  undo stack, session totals); the terminal UI only draws it and forwards keys.

A message label remembers the message's content hash; when the message's text changes (or it
disappears) the label is kept where it was and counted as stale, never moved.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy.orm import Session

from pipeline.errors import UsageError
from pipeline.workspace import Workspace
from storage import labels as store
from storage.models import Document, DocumentKind, Label, LabelOrigin, LabelValue, Message, Role


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep()
"""Leave the target's note / correction as it is."""

EXPORT_FIELDS = (
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
)


# --- refs and arguments ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    source: str
    external_id: str

    def __str__(self) -> str:
        return f"{self.source}:{self.external_id}"


def parse_ref(text: str) -> Ref:
    """``SOURCE:EXTERNAL_ID``; the id may itself contain colons (source names can't)."""
    source, sep, external_id = text.partition(":")
    if not sep or not source or not external_id:
        raise UsageError(f"{text!r} is not a conversation ref; expected SOURCE:EXTERNAL_ID (e.g. chats:c1)")
    if not _is_utf8(text):  # bytes the shell passed on undecoded: no stored ref looks like that
        raise UsageError(f"{text!r} is not valid UTF-8 text; copy the ref from plora's own output")
    return Ref(source, external_id)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_value(text: str) -> LabelValue:
    try:
        return LabelValue(text.strip().lower())
    except ValueError:
        raise UsageError(f"label {text!r}: expected good, bad or clear") from None


def correction_argument(text: str) -> str:
    """``--correction TEXT`` or ``@FILE`` (the text read from FILE); ``@@...`` is a literal ``@...``."""
    if text.startswith("@@"):
        return text[1:]
    if not text.startswith("@"):
        return text
    path = Path(text[1:]).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--correction @{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"--correction @{path}: is a folder, not a file") from None
    except UnicodeDecodeError:
        raise UsageError(f"--correction @{path}: not UTF-8 text") from None
    except OSError as e:
        raise UsageError(f"--correction @{path}: {e.strerror}") from None


def parse_since(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--since {text!r}: expected a date like 2025-01-31 (or an ISO date and time)") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_kind(text: str) -> DocumentKind:
    try:
        return DocumentKind(text.strip().lower())
    except ValueError:
        kinds = ", ".join(kind.value for kind in DocumentKind)
        raise UsageError(f"--kind {text!r}: expected one of {kinds}") from None


def correction_from_edit(original: str, edited: str) -> str | None:
    """The correction a person wrote in the editor, or None when they left it empty or as it was."""
    text = _clean_correction(edited)
    if not text or text == _clean_correction(original):
        return None
    return text


def _clean_correction(text: str) -> str:
    return text.rstrip().lstrip("\r\n")


def _clean_note(text: str | None) -> str | None:
    return text.strip() or None if text is not None else None


# --- results ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelState:
    value: str
    note: str | None
    correction: str | None

    @classmethod
    def of(cls, label: Label | None) -> LabelState | None:
        if label is None or label.value == LabelValue.clear:
            return None
        return cls(label.value.value, label.note, label.correction)

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "note": self.note, "correction": self.correction}


@dataclass(frozen=True)
class LabelResult:
    """What one labelling call left in force for its target (plora's own state)."""

    ref: str
    position: int | None
    branch: int
    state: LabelState | None  # None: no label of the person's (cleared, or never labelled)
    previous: LabelState | None
    changed: bool
    label_id: int | None  # the event written; None when nothing changed

    def as_dict(self) -> dict[str, Any]:
        state = self.state.as_dict() if self.state else {"value": "clear", "note": None, "correction": None}
        return {
            "ref": self.ref,
            "position": self.position,
            "branch": self.branch,
            **state,
            "changed": self.changed,
            "label_id": self.label_id,
            "previous": self.previous.as_dict() if self.previous else None,
        }


# --- labelling ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    document: Document
    position: int | None
    branch: int
    message: Message | None


def _document(session: Session, ref: Ref) -> Document:
    document = store.find_document(session, ref.source, ref.external_id)
    if document is None:
        known = store.source_names(session)
        if ref.source not in known:
            raise UsageError(
                f"unknown ref {ref}: no source named {ref.source!r} in the store "
                f"(known: {', '.join(known) or 'none; run plora ingest'})"
            )
        raise UsageError(f"unknown ref {ref}: source {ref.source!r} has no document {ref.external_id!r}")
    if document.deleted_at is not None:
        raise UsageError(f"{ref} was deleted from its source; it can't be labelled")
    return document


def _target(document: Document, position: int | None, branch: int) -> _Target:
    ref = document.ref
    if position is None:
        if branch:
            raise UsageError(f"{ref}: --branch needs --message (the position of the reply)")
        return _Target(document, None, 0, None)
    if not document.messages:
        raise UsageError(f"{ref} is a {document.kind.value} without messages; label it as a whole (without --message)")
    positions = sorted({m.position for m in document.messages})
    if position < 0 or position > positions[-1]:
        raise UsageError(f"{ref}: message {position} is out of range; it has messages 0-{positions[-1]}")
    message = next((m for m in document.messages if (m.position, m.branch) == (position, branch)), None)
    if message is None:
        branches = sorted(m.branch for m in document.messages if m.position == position)
        raise UsageError(
            f"{ref}: message {position} has no branch {branch} (branches: {', '.join(map(str, branches)) or 'none'})"
        )
    return _Target(document, position, branch, message)


def _where(target: _Target) -> str:
    if target.position is None:
        return target.document.ref
    branch = f" (branch {target.branch})" if target.branch else ""
    return f"{target.document.ref} message {target.position}{branch}"


def _set(
    session: Session,
    target: _Target,
    value: LabelValue | None,
    note: str | _Keep | None,
    correction: str | _Keep | None,
) -> LabelResult:
    document, position, branch = target.document, target.position, target.branch
    current = store.target_state(session, document.id, position, branch, LabelOrigin.plora)
    imported = store.target_state(session, document.id, position, branch, LabelOrigin.imported)
    mine, theirs = LabelState.of(current), LabelState.of(imported)
    base = mine or theirs  # what "keep" keeps: the person's own state, else the source's
    if isinstance(correction, str):
        correction = _clean_correction(correction) or None
    if isinstance(note, str):
        note = _clean_note(note)
    if value is None:
        if isinstance(correction, str):
            value = LabelValue.bad
        elif base is None:
            raise UsageError(f"{_where(target)} has no label to add to; label it good or bad first")
        else:
            value = LabelValue(base.value)
    if value == LabelValue.clear:
        if isinstance(note, str) or isinstance(correction, str):
            raise UsageError(
                "clear removes the label with its note and correction; give no --note or --correction with it"
            )
        wanted = None
    else:
        kept_note, kept_correction = (base.note, base.correction) if base else (None, None)
        wanted = LabelState(
            value.value,
            kept_note if isinstance(note, _Keep) else note,
            kept_correction if isinstance(correction, _Keep) else correction,
        )
    if wanted and wanted.correction is not None:
        if target.message is None:
            raise UsageError(f"{document.ref}: a correction goes on an assistant reply; give --message N")
        if target.message.role != Role.assistant:
            raise UsageError(
                f"{_where(target)} is a {target.message.role.value} message; a correction goes on an assistant reply"
            )
    message_hash = target.message.content_hash if target.message is not None else None
    if wanted is None:
        unchanged = mine is None and (current is not None or theirs is None)
    else:
        unchanged = wanted == mine and (current is None or current.message_hash == message_hash)
    if unchanged:
        return LabelResult(document.ref, position, branch, mine, mine, False, None)
    event = store.add_event(
        session,
        document.id,
        position,
        branch,
        value,
        note=wanted.note if wanted else None,
        correction=wanted.correction if wanted else None,
        message_hash=message_hash,
    )
    return LabelResult(document.ref, position, branch, wanted, mine, True, event.id)


def set_label(
    workspace: Workspace,
    ref: str | Ref,
    value: str | LabelValue | None,
    *,
    position: int | None = None,
    branch: int = 0,
    note: str | _Keep | None = KEEP,
    correction: str | _Keep | None = KEEP,
) -> LabelResult:
    """Label a document (or one of its messages) as the person, in one transaction.

    ``value`` None keeps the value in force (to add a note), or means bad with a correction.
    Writes nothing when the target already holds exactly that (re-labelling a stale label
    does write: it confirms the label against the message's new text).
    """
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    value = parse_value(value) if isinstance(value, str) else value
    with workspace.store.write() as session:
        return _set(session, _target(_document(session, ref), position, branch), value, note, correction)


def _set_by_id(
    workspace: Workspace,
    document_id: int,
    position: int | None,
    branch: int,
    value: LabelValue | None,
    note: str | _Keep | None = KEEP,
    correction: str | _Keep | None = KEEP,
) -> LabelResult:
    with workspace.store.write() as session:
        document = store.load_document(session, document_id)
        return _set(session, _target(document, position, branch), value, note, correction)


def undo_label(workspace: Workspace, label_id: int) -> LabelResult:
    """Append an event that puts the target back as it was before event ``label_id``."""
    with workspace.store.write() as session:
        label = session.get(Label, label_id)
        if label is None:
            raise UsageError(f"no label event {label_id}")
        if label.origin != LabelOrigin.plora:
            raise UsageError(f"label event {label_id} came with the source; only the person's own can be undone")
        before = store.event_before(session, label)
        restored = before if before is not None and before.value != LabelValue.clear else None
        event = store.add_event(
            session,
            label.document_id,
            label.position,
            label.branch,
            restored.value if restored else LabelValue.clear,
            note=restored.note if restored else None,
            correction=restored.correction if restored else None,
            message_hash=restored.message_hash if restored else None,
            undoes_id=label.id,
        )
        ref = store.load_document(session, label.document_id).ref
        return LabelResult(
            ref, label.position, label.branch, LabelState.of(restored), LabelState.of(label), True, event.id
        )


# --- staleness ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaleLabel:
    ref: str
    position: int
    branch: int
    value: str
    reason: str  # "changed" or "gone"

    def as_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "position": self.position,
            "branch": self.branch,
            "value": self.value,
            "reason": self.reason,
        }


def stale_labels(workspace: Workspace) -> list[StaleLabel]:
    """The person's message labels whose message changed (or is gone) since they were made."""
    with workspace.store.read() as session:
        found = []
        for document, label in store.stale_labels(session):
            present = any((m.position, m.branch) == (label.position, label.branch) for m in document.messages)
            found.append(
                StaleLabel(
                    document.ref, label.position or 0, label.branch, label.value.value, "changed" if present else "gone"
                )
            )
        return found


# --- export / import --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportReport:
    path: Path
    labels: int
    values: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {"file": str(self.path), "labels": self.labels, "values": self.values}


def export_labels(workspace: Workspace, path: Path, *, include_imported: bool = False) -> ExportReport:
    """Write the labels in force as JSONL (the person's own; with ``include_imported`` all)."""
    with workspace.store.read() as session:
        lines = [
            _export_line(document, label)
            for document, label in store.export_rows(session, include_imported=include_imported)
        ]
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        os.replace(tmp, path)
    except OSError as e:
        raise UsageError(f"can't write {path}: {e.strerror}") from e
    return ExportReport(path, len(lines), dict(Counter(line["value"] for line in lines)))


def _export_line(document: Document, label: Label) -> dict[str, Any]:
    return {
        "source": document.source.name,
        "external_id": document.external_id,
        "position": label.position,
        "branch": label.branch,
        "value": label.value.value,
        "note": label.note,
        "correction": label.correction,
        "message_hash": label.message_hash,
        "origin": label.origin.value,
        "created_at": label.created_at.isoformat() if label.created_at else None,
    }


@dataclass(frozen=True)
class _Line:
    number: int
    ref: Ref
    position: int | None
    branch: int
    value: LabelValue
    note: str | None
    correction: str | None
    message_hash: str | None
    origin: LabelOrigin
    created_at: datetime | None

    def where(self) -> dict[str, Any]:
        return {"line": self.number, "ref": str(self.ref), "position": self.position, "branch": self.branch}

    def state(self) -> LabelState | None:
        return None if self.value == LabelValue.clear else LabelState(self.value.value, self.note, self.correction)


@dataclass
class ImportReport:
    added: int = 0
    unchanged: int = 0
    overwritten: int = 0
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "unchanged": self.unchanged,
            "overwritten": self.overwritten,
            "conflicts": len(self.conflicts),
            "missing": len(self.missing),
            "conflict_details": self.conflicts,
            "missing_details": self.missing,
        }


def import_labels(workspace: Workspace, path: Path, *, overwrite: bool = False) -> ImportReport:
    """Add the labels of an export file to the store, in one transaction.

    A target already holding the same label is unchanged; one holding a different label (of the
    same origin) is a conflict, reported and left alone unless ``overwrite``; a document or message
    that isn't in the store is reported as missing. Running it twice changes nothing the second time.
    """
    lines = _read_export(Path(path).expanduser())
    report = ImportReport()
    with workspace.store.write() as session:
        for line in lines:
            _import_line(session, line, overwrite, report)
    return report


def _import_line(session: Session, line: _Line, overwrite: bool, report: ImportReport) -> None:
    document = store.find_document(session, line.ref.source, line.ref.external_id)
    if document is None:
        report.missing.append({**line.where(), "reason": "no such document in the store"})
        return
    message = None
    if line.position is not None:
        message = next((m for m in document.messages if (m.position, m.branch) == (line.position, line.branch)), None)
        if message is None:
            report.missing.append(
                {**line.where(), "reason": f"no message at position {line.position}, branch {line.branch}"}
            )
            return
        if line.correction and message.role != Role.assistant:
            report.missing.append({**line.where(), "reason": f"a correction on a {message.role.value} message"})
            return
    held = store.target_state(session, document.id, line.position, line.branch, line.origin)
    current, wanted = LabelState.of(held), line.state()
    if wanted is None:  # a clear: only needed to hide an imported label that isn't hidden yet
        imported = LabelState.of(
            store.target_state(session, document.id, line.position, line.branch, LabelOrigin.imported)
        )
        needed = line.origin == LabelOrigin.plora and imported is not None and held is None
        if current is None and not needed:
            report.unchanged += 1
            return
    elif current == wanted:
        report.unchanged += 1
        return
    if current is not None and current != wanted:
        if not overwrite:
            report.conflicts.append(
                {
                    **line.where(),
                    "ours": current.as_dict(),
                    "theirs": wanted.as_dict() if wanted else {"value": "clear"},
                }
            )
            return
        report.overwritten += 1
    else:
        report.added += 1
    message_hash = line.message_hash or (message.content_hash if message is not None else None)
    store.add_event(
        session,
        document.id,
        line.position,
        line.branch,
        line.value,
        origin=line.origin,
        note=line.note,
        correction=line.correction,
        message_hash=message_hash,
        created_at=line.created_at,
    )


def _read_export(path: Path) -> list[_Line]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: can't read it: {e}") from None
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.strip():
            lines.append(_parse_line(path, number, raw))
    return lines


def _parse_line(path: Path, number: int, raw: str) -> _Line:
    def bad(reason: str) -> UsageError:
        return UsageError(f"{path}:{number}: {reason}; nothing was imported")

    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise bad(f"not JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise bad("not a JSON object")

    def text(key: str, required: bool = False) -> str | None:
        value = data.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or (required and not value):
            raise bad(f"{key!r} must be {'a non-empty' if required else 'a'} string")
        if not _is_utf8(value):  # a lone surrogate escape ("\ud800") the store can't hold
            raise bad(f"{key!r} is not valid UTF-8 text")
        return value

    def number_(key: str, default: int | None) -> int | None:
        value = data.get(key, default)
        if value is None and default is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise bad(f"{key!r} must be a whole number >= 0")
        return value

    try:
        value = LabelValue(data.get("value"))
        origin = LabelOrigin(data.get("origin") or LabelOrigin.plora.value)
    except ValueError:
        raise bad("'value' must be good, bad or clear and 'origin' plora or import") from None
    created = text("created_at")
    try:
        created_at = datetime.fromisoformat(created) if created else None
    except ValueError:
        raise bad(f"'created_at' {created!r} is not an ISO date") from None
    position = number_("position", None)
    if position is None and data.get("correction"):
        raise bad("a correction needs a message position")
    return _Line(
        number,
        Ref(text("source", True) or "", text("external_id", True) or ""),
        position,
        number_("branch", 0) or 0,
        value,
        _clean_note(text("note")),
        text("correction"),
        text("message_hash"),
        origin,
        created_at,
    )


# --- the annotation queue -------------------------------------------------------------------------------


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
        note: str | _Keep | None = KEEP,
        correction: str | _Keep | None = KEEP,
    ) -> LabelResult:
        if self.finished:
            raise UsageError("nothing to label: the queue is done")
        result = _set_by_id(self.workspace, self.ids[self.index], position, branch, value, note, correction)
        if result.changed:
            self._done(Action(kind, self.ids[self.index], result.label_id, position, branch))
        return result

    def _done(self, action: Action) -> None:
        self.history.append(action)
        self.totals[action.kind] += 1


__all__ = [
    "KEEP",
    "Action",
    "AnnotationQueue",
    "DocumentView",
    "ExportReport",
    "ImportReport",
    "LabelResult",
    "LabelState",
    "LabelView",
    "MessageView",
    "QueueFilter",
    "Ref",
    "StaleLabel",
    "build_queue",
    "correction_argument",
    "correction_from_edit",
    "document_view",
    "export_labels",
    "import_labels",
    "parse_kind",
    "parse_ref",
    "parse_since",
    "parse_value",
    "set_label",
    "stale_labels",
    "undo_label",
]
