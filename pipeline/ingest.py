"""Ingest: run each source's connector, redact secrets, upsert into the store.

Per source: records are redacted before anything is written, then written in batches (each
batch one transaction). The cursor and the deletions are written last, in the final
transaction, so the cursor is never ahead of the rows: a run killed half-way leaves complete
documents behind, and the next run (with the old cursor) re-reads the rest, finding the
documents already written unchanged by their hashes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

from connectors.records import (
    ConnectorError,
    Cursor,
    NothingChanged,
    Record,
    Skip,
    Unchanged,
    content_hash,
)
from connectors.registry import reader_for
from connectors.settings import Source
from pipeline.locks import hold
from pipeline.redaction import Redactor, redact_identifier, redact_record, redact_strings, settings_salt
from pipeline.workspace import Workspace
from storage import StorageError
from storage.documents import (
    Known,
    Upsert,
    ensure_source,
    mark_deleted,
    save_cursor,
    source_state,
    write_documents,
)
from storage.models import utcnow

log = logging.getLogger(__name__)
BATCH_SIZE = 200
SALT_KEY = "plora_redaction"  # kept in each source's cursor: the redaction settings it was made under

Progress = Callable[[str, int], None]  # (source name, items seen so far)


@dataclass
class SourceReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    redactions: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "skipped": self.skipped,
            "redactions": self.redactions,
            "error": self.error,
        }


def ingest(
    workspace: Workspace, names: list[str] | None = None, progress: Progress | None = None
) -> dict[str, SourceReport]:
    """Ingest the named sources (all by default); one source's failure doesn't stop the others."""
    config = workspace.config
    selected = [config.source(name) for name in names] if names else list(config.sources)
    redactor = Redactor(config.redaction.extra_patterns, enabled=config.redaction.enabled)
    salt = settings_salt(config.redaction.enabled, config.redaction.extra_patterns)
    reports = {}
    for source in selected:  # one ingest of a source at a time: a second waits, then finds it unchanged
        with hold(workspace.home.root, f"ingest-{source.name}", what=f"an ingest of source {source.name}"):
            reports[source.name] = ingest_source(workspace, source, redactor, salt, progress)
    return reports


def ingest_source(
    workspace: Workspace, settings: Source, redactor: Redactor, salt: str, progress: Progress | None = None
) -> SourceReport:
    report = SourceReport()
    started = utcnow()
    try:
        with workspace.store.read() as session:
            cursor, known = source_state(session, settings.name)
        stream = reader_for(settings.type)(settings, _reader_cursor(cursor, salt))
        outcome = _consume(workspace, settings, stream, known, redactor, salt, report, progress)
        with workspace.store.write() as session:
            source = ensure_source(session, settings.name, settings.type)
            if not outcome.nothing_changed:
                gone = [k.id for ext, k in known.items() if ext not in outcome.seen and not k.deleted]
                report.deleted = mark_deleted(session, gone)
            save_cursor(
                session,
                source,
                None if outcome.cursor is None else {**redact_strings(outcome.cursor, redactor), SALT_KEY: salt},
                started,
            )
    except ConnectorError as e:
        report.error = redactor.redact(str(e)).text  # it may name a path, and a path may hold a secret
    except StorageError:
        raise
    except Exception as e:
        log.exception("source %s failed", settings.name)
        report.error = redactor.redact(f"{settings.name}: {type(e).__name__}: {e}").text
    return report


def _reader_cursor(cursor: Mapping[str, Any] | None, salt: str) -> Mapping[str, Any] | None:
    """The connector's cursor, or None (read everything) when it was saved under other redaction
    settings: a connector skips what it knows unchanged without reading it, so only a full read
    lets the new rules reach the stored copies of unchanged files (their hashes then differ)."""
    if cursor is None or cursor.get(SALT_KEY) != salt:
        return None
    return {key: value for key, value in cursor.items() if key != SALT_KEY}


@dataclass
class _Outcome:
    seen: set[str] = field(default_factory=set)
    cursor: Mapping[str, Any] | None = None
    nothing_changed: bool = False


def _consume(
    workspace: Workspace,
    settings: Source,
    stream: Iterator[Any],
    known: dict[str, Known],
    redactor: Redactor,
    salt: str,
    report: SourceReport,
    progress: Progress | None,
) -> _Outcome:
    outcome = _Outcome()
    batch: list[Upsert] = []
    count = 0
    for item in stream:
        count += 1
        if progress and count % 25 == 0:
            progress(settings.name, count)
        if isinstance(item, Record):
            # whether it changed needs only its id and hash (storable never alters a hex hash), so a
            # record stored already costs no walk through its messages and metadata
            external_id = redact_identifier(storable(item.external_id), redactor)
            outcome.seen.add(external_id)
            stored_hash = content_hash(item.content_hash, salt)
            existing = known.get(external_id)
            if existing is not None and existing.content_hash == stored_hash and not existing.deleted:
                report.unchanged += 1
                continue
            redacted, spans = redact_record(storable(item), redactor)
            report.redactions += len(spans)
            if existing is None:
                report.added += 1
            else:
                report.updated += 1
            batch.append(Upsert(redacted, stored_hash, spans, existing))
            if len(batch) >= BATCH_SIZE:
                _write(workspace, settings, batch)
                batch.clear()
        elif isinstance(item, Unchanged):
            outcome.seen.add(redact_identifier(storable(item.external_id), redactor))
            report.unchanged += 1
        elif isinstance(item, Skip):
            skip = storable(item)
            if skip.external_id:
                outcome.seen.add(redact_identifier(skip.external_id, redactor))
            item_name = redact_identifier(skip.item, redactor)
            report.skipped.append({"item": item_name, "reason": redactor.redact(skip.reason).text})
        elif isinstance(item, NothingChanged):
            outcome.nothing_changed = True
            report.unchanged += sum(1 for k in known.values() if not k.deleted)
        elif isinstance(item, Cursor):
            outcome.cursor = item.state
    if batch:
        _write(workspace, settings, batch)
    if progress:
        progress(settings.name, count)
    return outcome


def _write(workspace: Workspace, settings: Source, batch: list[Upsert]) -> None:
    with workspace.store.write() as session:
        write_documents(session, ensure_source(session, settings.name, settings.type), batch)


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def storable(value: Any) -> Any:
    """``value`` with each lone surrogate in its strings written as a ``\\udXXX`` escape.

    JSON sources may hold escapes like ``"\\ud800"`` that decode to lone surrogates, which can't
    be encoded as UTF-8 (SQLite, JSON output): one of them must cost neither its record nor the
    rest of the source. Walks records, messages, labels, mappings and sequences; returns ``value``
    itself when nothing needs changing.
    """
    if isinstance(value, str):
        if _SURROGATE.search(value) is None:
            return value
        return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", value)
    if isinstance(value, Mapping):
        pairs = [(storable(k), storable(v)) for k, v in value.items()]
        changed = any(a is not k or b is not v for (a, b), (k, v) in zip(pairs, value.items(), strict=True))
        return dict(pairs) if changed else value
    if isinstance(value, list | tuple):
        items = [storable(v) for v in value]
        changed = any(a is not b for a, b in zip(items, value, strict=True))
        return type(value)(items) if changed else value
    if is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: new for f in fields(value) if (new := storable(old := getattr(value, f.name))) is not old}
        return replace(value, **changes) if changes else value
    return value
