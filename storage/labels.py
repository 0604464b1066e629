"""Label queries.

Labels are append-only events. For each target (document, message position, branch) the label in
force is the latest event made in plora, else the latest imported one (imported labels never
override the person's own); a ``clear`` in force means no label.

An undo is an event too: it carries ``undoes_id`` and a copy of the state before the undone event
(or ``clear`` if there was none). To decide what is in force, an undo is followed back to the state
before the event it undid, so undoing the person's only label lets an imported label underneath
show again instead of hiding it behind a ``clear``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from storage.models import Document, DocumentKind, Label, LabelOrigin, LabelValue, Message, Source

Target = tuple[int, int | None, int]
_CHUNK = 500


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start : start + _CHUNK])


def resolve(events: Sequence[Label]) -> Label | None:
    """The event whose state is in force among one target's events of one origin (ordered by id).

    None means nothing is in force for that origin: no event, or undos back to before the first.
    """
    ids = [event.id for event in events]
    index = len(events) - 1
    while index >= 0:
        event = events[index]
        if event.undoes_id is None:
            return event
        index = bisect_left(ids, event.undoes_id) - 1  # the state right before the undone event
    return None


def origin_states(
    session: Session, document_ids: Iterable[int] | None = None
) -> dict[tuple[Target, LabelOrigin], Label | None]:
    """Per (target, origin): the event in force for that origin, clears included (None: none)."""
    latest = select(func.max(Label.id)).group_by(Label.document_id, Label.position, Label.branch, Label.origin)
    rows: list[Label] = []
    if document_ids is None:
        rows = list(session.scalars(select(Label).where(Label.id.in_(latest))))
    else:
        for chunk in _chunks(sorted(set(document_ids))):
            rows.extend(session.scalars(select(Label).where(Label.id.in_(latest.where(Label.document_id.in_(chunk))))))
    states: dict[tuple[Target, LabelOrigin], Label | None] = {
        ((label.document_id, label.position, label.branch), label.origin): label for label in rows
    }
    undone = sorted({label.document_id for label in rows if label.undoes_id is not None})
    if undone:
        for key, events in _histories(session, undone).items():
            held = states.get(key)
            if held is not None and held.undoes_id is not None:
                states[key] = resolve(events)
    return states


def _histories(session: Session, document_ids: Sequence[int]) -> dict[tuple[Target, LabelOrigin], list[Label]]:
    history: dict[tuple[Target, LabelOrigin], list[Label]] = defaultdict(list)
    for chunk in _chunks(document_ids):
        for label in session.scalars(select(Label).where(Label.document_id.in_(chunk)).order_by(Label.id)):
            history[((label.document_id, label.position, label.branch), label.origin)].append(label)
    return history


def effective_labels(session: Session, document_ids: Iterable[int] | None = None) -> dict[Target, Label]:
    """The label in force per target: plora's own state first, else the imported one; no clears."""
    chosen: dict[Target, Label] = {}
    for (target, origin), label in origin_states(session, document_ids).items():
        if label is None:
            continue
        held = chosen.get(target)
        if held is None or (held.origin == LabelOrigin.imported and origin == LabelOrigin.plora):
            chosen[target] = label
    return {target: label for target, label in chosen.items() if label.value != LabelValue.clear}


def target_state(
    session: Session, document_id: int, position: int | None, branch: int, origin: LabelOrigin
) -> Label | None:
    """The event in force for one target and origin (a clear included), or None."""
    events = list(
        session.scalars(
            select(Label)
            .where(
                Label.document_id == document_id, _position_is(position), Label.branch == branch, Label.origin == origin
            )
            .order_by(Label.id)
        )
    )
    return resolve(events)


def event_before(session: Session, label: Label) -> Label | None:
    """The state of ``label``'s target (same origin) right before ``label`` was written."""
    events = list(
        session.scalars(
            select(Label)
            .where(
                Label.document_id == label.document_id,
                _position_is(label.position),
                Label.branch == label.branch,
                Label.origin == label.origin,
                Label.id < label.id,
            )
            .order_by(Label.id)
        )
    )
    return resolve(events)


def _position_is(position: int | None):
    return Label.position.is_(None) if position is None else Label.position == position


def add_event(
    session: Session,
    document_id: int,
    position: int | None,
    branch: int,
    value: LabelValue,
    *,
    origin: LabelOrigin = LabelOrigin.plora,
    note: str | None = None,
    correction: str | None = None,
    message_hash: str | None = None,
    undoes_id: int | None = None,
    created_at: datetime | None = None,
) -> Label:
    label = Label(
        document_id=document_id,
        position=position,
        branch=branch,
        value=value,
        origin=origin,
        note=note,
        correction=correction,
        message_hash=message_hash,
        undoes_id=undoes_id,
    )
    if created_at is not None:
        label.created_at = created_at
    session.add(label)
    session.flush()
    return label


def find_document(session: Session, source: str, external_id: str) -> Document | None:
    return session.scalars(
        select(Document)
        .join(Source)
        .where(Source.name == source, Document.external_id == external_id)
        .options(selectinload(Document.messages))
    ).one_or_none()


def source_names(session: Session) -> list[str]:
    return list(session.scalars(select(Source.name).order_by(Source.name)))


def labelled_document_ids(session: Session, document_ids: Iterable[int] | None = None) -> set[int]:
    """Documents with at least one label in force (on the whole or on a message)."""
    return {document_id for document_id, _, _ in effective_labels(session, document_ids)}


def queue_document_ids(
    session: Session,
    *,
    kind: DocumentKind,
    sources: Sequence[str] = (),
    search: str | None = None,
    since: datetime | None = None,
    unlabelled: bool = True,
) -> list[int]:
    """Live documents to label, newest first (undated ones last, in the order they were stored)."""
    when = Document.source_updated_at
    query = select(Document.id).join(Source).where(Document.deleted_at.is_(None), Document.kind == kind)
    if sources:
        query = query.where(Source.name.in_(list(sources)))
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(Document.title.ilike(pattern, escape="\\"), Document.content.ilike(pattern, escape="\\"))
        )
    if since is not None:
        query = query.where(func.coalesce(when, Document.created_at) >= since)
    ids = list(session.scalars(query.order_by(when.desc().nulls_last(), Document.id)))
    if unlabelled:
        labelled = labelled_document_ids(session, ids)
        ids = [document_id for document_id in ids if document_id not in labelled]
    return ids


def load_document(session: Session, document_id: int) -> Document:
    return session.scalars(
        select(Document)
        .where(Document.id == document_id)
        .options(selectinload(Document.messages), selectinload(Document.source))
    ).one()


def is_stale(label: Label, message_hashes: dict[tuple[int, int], str]) -> bool:
    """A plora label on a message whose text changed since (or that is gone) is stale.

    Imported labels are re-asserted by their source at every ingest, so they are never stale;
    labels on a whole document carry no message hash and are never stale either.
    """
    if label.position is None or label.origin != LabelOrigin.plora or label.message_hash is None:
        return False
    return message_hashes.get((label.position, label.branch)) != label.message_hash


def stale_labels(session: Session, labels: dict[Target, Label] | None = None) -> list[tuple[Document, Label]]:
    """Labels in force on live documents whose message changed or disappeared since labelling.

    ``labels``: the labels in force, when the caller already has them.
    """
    labels = effective_labels(session) if labels is None else labels
    candidates = [
        label
        for label in labels.values()
        if label.position is not None and label.origin == LabelOrigin.plora and label.message_hash
    ]
    by_document: dict[int, list[Label]] = defaultdict(list)
    for label in candidates:
        by_document[label.document_id].append(label)
    stale: list[tuple[Document, Label]] = []
    for chunk in _chunks(sorted(by_document)):
        hashes: dict[int, dict[tuple[int, int], str]] = defaultdict(dict)
        for document_id, position, branch, hash_ in session.execute(
            select(Message.document_id, Message.position, Message.branch, Message.content_hash).where(
                Message.document_id.in_(chunk)
            )
        ):
            hashes[document_id][(position, branch)] = hash_
        documents = session.scalars(
            select(Document)
            .where(Document.id.in_(chunk), Document.deleted_at.is_(None))
            .options(selectinload(Document.source))
        )
        for document in documents:
            stale.extend(
                (document, label) for label in by_document[document.id] if is_stale(label, hashes[document.id])
            )
    stale.sort(key=lambda pair: (pair[0].source.name, pair[0].external_id, pair[1].position or 0, pair[1].branch))
    return stale


def export_rows(session: Session, *, include_imported: bool = False) -> list[tuple[Document, Label]]:
    """What ``plora labels export`` writes: the labels in force (plora's only, by default).

    A plora ``clear`` that hides an imported label is exported too, so moving the labels to
    another machine doesn't bring the hidden label back.
    """
    states = origin_states(session)
    rows: list[Label] = []
    for label in effective_labels(session).values():
        if include_imported or label.origin == LabelOrigin.plora:
            rows.append(label)
    for (target, origin), state in states.items():
        imported = states.get((target, LabelOrigin.imported))
        if (
            origin == LabelOrigin.plora
            and state is not None
            and state.value == LabelValue.clear
            and imported is not None
            and imported.value != LabelValue.clear
        ):
            rows.append(state)
    documents = {
        d.id: d
        for chunk in _chunks(sorted({r.document_id for r in rows}))
        for d in session.scalars(select(Document).where(Document.id.in_(chunk)).options(selectinload(Document.source)))
    }
    pairs = [(documents[label.document_id], label) for label in rows]
    pairs.sort(
        key=lambda pair: (
            pair[0].source.name,
            pair[0].external_id,
            -1 if pair[1].position is None else pair[1].position,
            pair[1].branch,
            pair[1].origin.value,
        )
    )
    return pairs


__all__ = [
    "Target",
    "add_event",
    "effective_labels",
    "event_before",
    "export_rows",
    "find_document",
    "is_stale",
    "labelled_document_ids",
    "load_document",
    "origin_states",
    "queue_document_ids",
    "resolve",
    "source_names",
    "stale_labels",
    "target_state",
]
