"""Moving labels between machines: ``export_labels`` / ``import_labels`` as JSONL.

One line per label in force, with portable refs (source, external id, position, branch) rather
than row ids. Import is idempotent and reports conflicts instead of overwriting. An imported note
or correction is typed text like any other: size-capped and redacted before it is stored
(``pipeline.labels.events.typed_text``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, computed_field, field_serializer
from sqlalchemy.orm import Session

from pipeline.errors import UsageError
from pipeline.labels.events import LabelState, clean_note, typed_text
from pipeline.labels.refs import Ref, is_utf8
from pipeline.workspace import Workspace
from storage import labels as store
from storage.models import Document, Label, LabelOrigin, LabelValue, Role


@dataclass(frozen=True)
class ExportLine:
    """One line of a labels export file (the JSONL format ``import_labels`` reads)."""

    source: str
    external_id: str
    position: int | None
    branch: int
    value: str
    note: str | None
    correction: str | None
    message_hash: str | None
    origin: str
    created_at: str | None  # ISO 8601

    @classmethod
    def of(cls, document: Document, label: Label) -> ExportLine:
        created = label.created_at.isoformat() if label.created_at else None
        return cls(
            document.source.name,
            document.external_id,
            label.position,
            label.branch,
            label.value.value,
            label.note,
            label.correction,
            label.message_hash,
            label.origin.value,
            created,
        )


@dataclass(frozen=True)
class ExportReport:
    """What ``export_labels`` wrote; the fields are the ``plora labels export --json`` document."""

    file: Path
    labels: int
    values: dict[str, int]


def export_labels(workspace: Workspace, path: Path, *, include_imported: bool = False) -> ExportReport:
    """Write the labels in force as JSONL (the person's own; with ``include_imported`` all)."""
    with workspace.store.read() as session:
        lines = [
            ExportLine.of(document, label)
            for document, label in store.export_rows(session, include_imported=include_imported)
        ]
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.writelines(json.dumps(asdict(line), ensure_ascii=False) + "\n" for line in lines)
        os.replace(tmp, path)
    except OSError as e:
        raise UsageError(f"can't write {path}: {e.strerror}") from e
    return ExportReport(path, len(lines), dict(Counter(line.value for line in lines)))


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


class ImportReport(BaseModel):
    """What ``import_labels`` did; ``model_dump()`` is the ``plora labels import --json`` document,
    where ``conflicts`` and ``missing`` are counts and the rows are under ``*_details``."""

    added: int = 0
    unchanged: int = 0
    overwritten: int = 0
    redactions: int = 0  # secrets replaced in the file's notes and corrections
    conflicts: list[dict[str, Any]] = []
    missing: list[dict[str, Any]] = []

    @field_serializer("conflicts", "missing")
    def _count(self, rows: list[dict[str, Any]]) -> int:
        return len(rows)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def conflict_details(self) -> list[dict[str, Any]]:
        return self.conflicts

    @computed_field  # type: ignore[prop-decorator]
    @property
    def missing_details(self) -> list[dict[str, Any]]:
        return self.missing


def import_labels(workspace: Workspace, path: Path, *, overwrite: bool = False) -> ImportReport:
    """Add the labels of an export file to the store, in one transaction.

    A target already holding the same label is unchanged; one holding a different label (of the
    same origin) is a conflict, reported and left alone unless ``overwrite``; a document or message
    that isn't in the store is reported as missing. Running it twice changes nothing the second time.
    """
    path = Path(path).expanduser()
    report = ImportReport()
    lines = []
    for line in _read_export(path):
        where = f"{path}:{line.number}: "
        try:
            note = typed_text(line.note, "note", workspace.config.redaction, where)
            correction = typed_text(line.correction, "correction", workspace.config.redaction, where)
        except UsageError as e:
            raise UsageError(f"{e.message}; nothing was imported", file=path) from None
        report.redactions += note.redactions + correction.redactions
        lines.append(replace(line, note=note.text, correction=correction.text))
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
                    "ours": asdict(current),
                    "theirs": asdict(wanted) if wanted else {"value": "clear"},
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
    except RecursionError:
        raise bad("nested too deeply to be a label (not a file written by plora labels export)") from None
    if not isinstance(data, dict):
        raise bad("not a JSON object")

    def text(key: str, required: bool = False) -> str | None:
        value = data.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or (required and not value):
            raise bad(f"{key!r} must be {'a non-empty' if required else 'a'} string")
        if not is_utf8(value):  # a lone surrogate escape ("\ud800") the store can't hold
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
        value = LabelValue(str(data.get("value")))
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
        clean_note(text("note")),
        text("correction"),
        text("message_hash"),
        origin,
        created_at,
    )
