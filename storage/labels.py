"""Label queries.

Labels are append-only events. For each target (document, message position, branch) the label in
force is the latest event made in plora, else the latest imported one (imported labels never
override the person's own); a ``clear`` in force means no label.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.models import Label, LabelOrigin, LabelValue

Target = tuple[int, int | None, int]


def effective_labels(session: Session, document_ids: Iterable[int] | None = None) -> dict[Target, Label]:
    latest = select(func.max(Label.id)).group_by(Label.document_id, Label.position, Label.branch, Label.origin)
    query = select(Label).where(Label.id.in_(latest))
    if document_ids is not None:
        query = query.where(Label.document_id.in_(list(document_ids)))
    chosen: dict[Target, Label] = {}
    for label in session.scalars(query):
        target = (label.document_id, label.position, label.branch)
        held = chosen.get(target)
        if held is None or (held.origin == LabelOrigin.imported and label.origin == LabelOrigin.plora):
            chosen[target] = label
    return {target: label for target, label in chosen.items() if label.value != LabelValue.clear}
