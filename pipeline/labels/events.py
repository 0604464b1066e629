"""Label events: set, undo, and the labels that went stale.

A target is a whole document (``position`` None) or one message, addressed by its position on
the conversation's kept path and its branch (0 = kept, 1, 2... = alternative replies), never by
row id, so labels survive re-ingest. Every change is one append-only event written in its own
transaction; nothing is ever deleted or updated in place:

- ``set_label``: good / bad / clear, with an optional note and correction. Unless given, the note
  and correction already on the target are kept; a correction alone means "bad".
- ``undo_label``: an event restoring the state before the undone one (history stays).

A message label remembers the message's content hash; when the message's text changes (or it
disappears) the label is kept where it was and counted as stale (``stale_labels``), never moved.

A note and a correction are text the person typed; corrections become training rows. Both go
through the same redaction as ingested text (``typed_text``: ``pipeline.redaction.redact_text``
under the config's ``[redaction]``) and are capped in size (``MAX_NOTE_CHARS``,
``MAX_CORRECTION_CHARS``) before anything is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy.orm import Session

from pipeline.config import RedactionConfig
from pipeline.errors import UsageError
from pipeline.labels.refs import Ref, parse_ref
from pipeline.redaction import redact_text
from pipeline.workspace import Workspace
from storage import labels as store
from storage.models import Document, Label, LabelOrigin, LabelValue, Message, Role


class Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = Keep()
"""Leave the target's note / correction as it is."""


def parse_value(text: str) -> LabelValue:
    try:
        return LabelValue(text.strip().lower())
    except ValueError:
        raise UsageError(f"label {text!r}: expected good, bad or clear") from None


def clean_correction(text: str) -> str:
    return text.rstrip().lstrip("\r\n")


def clean_note(text: str | None) -> str | None:
    return text.strip() or None if text is not None else None


MAX_NOTE_CHARS: Final = 10_000
"""A note is a remark on a label, not a document."""
MAX_CORRECTION_CHARS: Final = 200_000
"""A correction is one reply: far above any training max_length, far below a whole export."""


@dataclass(frozen=True)
class Typed:
    """A note or correction as it is stored: checked for size, then redacted."""

    text: str | None
    redactions: int


def typed_text(text: str | None, what: str, settings: RedactionConfig, where: str = "") -> Typed:
    """``text`` (a ``note`` or ``correction``, already cleaned) checked against its size cap and
    redacted as ingest redacts; a UsageError naming ``what`` (and ``where``) when it is too long."""
    if text is None:
        return Typed(None, 0)
    limit = MAX_NOTE_CHARS if what == "note" else MAX_CORRECTION_CHARS
    if len(text) > limit:
        raise UsageError(
            f"{where}{what} is {len(text):,} characters; the limit is {limit:,} "
            f"(a {what} is {'a remark on a label' if what == 'note' else 'one reply'}; shorten it)"
        )
    redacted = redact_text(text, settings)
    return Typed(redacted.text, len(redacted.findings))


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


@dataclass(frozen=True)
class LabelResult:
    """What one labelling call left in force for its target (plora's own state).

    The fields are the ``plora label --json`` document as they stand (``dataclasses.asdict``):
    ``value`` is "clear" when no label of the person's is in force.
    """

    ref: str
    position: int | None
    branch: int
    value: str
    note: str | None
    correction: str | None
    changed: bool
    label_id: int | None  # the event written; None when nothing changed
    previous: LabelState | None
    redactions: int = 0  # secrets replaced in the note and correction given

    @classmethod
    def of(
        cls,
        ref: str,
        position: int | None,
        branch: int,
        state: LabelState | None,
        previous: LabelState | None,
        changed: bool,
        label_id: int | None,
        redactions: int = 0,
    ) -> LabelResult:
        held = state or LabelState(LabelValue.clear.value, None, None)
        return cls(
            ref, position, branch, held.value, held.note, held.correction, changed, label_id, previous, redactions
        )

    @property
    def state(self) -> LabelState | None:
        """The label in force; None: no label of the person's (cleared, or never labelled)."""
        if self.value == LabelValue.clear.value:
            return None
        return LabelState(self.value, self.note, self.correction)


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


def _typed(
    note: str | Keep | None, correction: str | Keep | None, settings: RedactionConfig
) -> tuple[str | Keep | None, str | Keep | None, int]:
    """The note and correction cleaned, size-checked and redacted (``KEEP`` stays ``KEEP``)."""
    redactions = 0
    if isinstance(correction, str):
        typed = typed_text(clean_correction(correction) or None, "correction", settings, "--correction: ")
        correction, redactions = typed.text, redactions + typed.redactions
    if isinstance(note, str):
        typed = typed_text(clean_note(note), "note", settings, "--note: ")
        note, redactions = typed.text, redactions + typed.redactions
    return note, correction, redactions


def _set(
    session: Session,
    target: _Target,
    value: LabelValue | None,
    note: str | Keep | None,
    correction: str | Keep | None,
    settings: RedactionConfig,
) -> LabelResult:
    document, position, branch = target.document, target.position, target.branch
    current = store.target_state(session, document.id, position, branch, LabelOrigin.plora)
    imported = store.target_state(session, document.id, position, branch, LabelOrigin.imported)
    mine, theirs = LabelState.of(current), LabelState.of(imported)
    base = mine or theirs  # what "keep" keeps: the person's own state, else the source's
    note, correction, redactions = _typed(note, correction, settings)
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
            kept_note if isinstance(note, Keep) else note,
            kept_correction if isinstance(correction, Keep) else correction,
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
        return LabelResult.of(document.ref, position, branch, mine, mine, False, None, redactions)
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
    return LabelResult.of(document.ref, position, branch, wanted, mine, True, event.id, redactions)


def set_label(
    workspace: Workspace,
    ref: str | Ref,
    value: str | LabelValue | None,
    *,
    position: int | None = None,
    branch: int = 0,
    note: str | Keep | None = KEEP,
    correction: str | Keep | None = KEEP,
) -> LabelResult:
    """Label a document (or one of its messages) as the person, in one transaction.

    ``value`` None keeps the value in force (to add a note), or means bad with a correction.
    Writes nothing when the target already holds exactly that (re-labelling a stale label
    does write: it confirms the label against the message's new text).
    """
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    value = parse_value(value) if isinstance(value, str) else value
    with workspace.store.write() as session:
        target = _target(_document(session, ref), position, branch)
        return _set(session, target, value, note, correction, workspace.config.redaction)


def set_by_id(
    workspace: Workspace,
    document_id: int,
    position: int | None,
    branch: int,
    value: LabelValue | None,
    note: str | Keep | None = KEEP,
    correction: str | Keep | None = KEEP,
) -> LabelResult:
    with workspace.store.write() as session:
        document = store.load_document(session, document_id)
        return _set(session, _target(document, position, branch), value, note, correction, workspace.config.redaction)


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
        return LabelResult.of(
            ref, label.position, label.branch, LabelState.of(restored), LabelState.of(label), True, event.id
        )


@dataclass(frozen=True)
class StaleLabel:
    ref: str
    position: int
    branch: int
    value: str
    reason: str  # "changed" or "gone"


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
