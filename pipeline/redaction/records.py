"""Redacting a whole record: every text field, then what is derived from them, then the scrub.

Order matters: the connector yields what the source holds (a conversation's messages, a note's
text, its front matter) and leaves out what is derived from it: an untitled conversation has an
empty title, and a conversation's content is its messages' text. Here every field is redacted
first, and only then are the derived fields made, from the redacted text, so no derived field
ever holds a piece of a secret (a title cut at 80 characters used to keep the start of one).

Then the scrub: a secret found in one field is replaced in every field of the record, so a copy
of it outside the context its detector needs (a heading copied into metadata, a password
repeated in prose) doesn't survive. Copies are exact; one Aho-Corasick pass per field finds all
of them, so the cost is linear in the record's size whatever the number of secrets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import ahocorasick

from connectors._files import fallback_title
from connectors.records import Record, render_conversation
from pipeline.redaction.redactor import Redactor
from storage.documents import RedactionSpan

MIN_SCRUB_LENGTH = 6  # shorter matches are too likely to occur by chance elsewhere
# Bump when what is done to a record after its fields are redacted changes (derived fields, the
# scrub): like RULES_VERSION it is part of every stored hash, so the next ingest processes every
# document again. 2: copies cut short or with their whitespace changed were scrubbed too; 3: titles
# and conversation content derived after redaction, so only exact copies are scrubbed.
SCRUB_VERSION = 3

Clean = Callable[[str, str], str]  # (text, location) -> redacted text


def redact_record(record: Record, redactor: Redactor) -> tuple[Record, list[RedactionSpan]]:
    """The record with every text redacted and its derived fields made from the redacted text,
    and where each secret was (never its value)."""
    spans: list[RedactionSpan] = []
    secrets: dict[str, str] = {}

    def clean(text: str, location: str) -> str:
        result = redactor.redact(text)
        for f in result.findings:
            spans.append(RedactionSpan(location, f.type, f.line, f.start, f.end))
            if f.end - f.start >= MIN_SCRUB_LENGTH:
                secrets[text[f.start : f.end]] = f.type
        return result.text

    messages = tuple(
        replace(
            m,
            content=clean(m.content, f"message[{m.position}.{m.branch}]"),
            metadata=_map_strings(m.metadata, f"message[{m.position}.{m.branch}].metadata", clean),
        )
        for m in record.messages
    )
    content = clean(record.content, "content") if not _rendered(record) else ""
    title = clean(record.title, "title") if record.title.strip() else ""
    metadata = _map_strings(record.metadata, "metadata", clean)
    labels = tuple(
        replace(label, note=clean(label.note, "label.note")) if label.note else label for label in record.labels
    )
    if secrets:
        scrub = _scrubber(secrets)
        messages = tuple(
            replace(m, content=scrub(m.content, ""), metadata=_map_strings(m.metadata, "", scrub)) for m in messages
        )
        content, title, metadata = scrub(content, ""), scrub(title, ""), _map_strings(metadata, "", scrub)
        labels = tuple(replace(label, note=scrub(label.note, "")) if label.note else label for label in labels)
    if _rendered(record):
        content = render_conversation(messages)
    if not title and record.kind == "conversation":
        title = fallback_title(messages)
    redacted = replace(record, title=title, content=content, metadata=metadata, messages=messages, labels=labels)
    return redacted, spans


def _rendered(record: Record) -> bool:
    """A conversation's content is its messages' text, rendered from the redacted messages."""
    return record.kind == "conversation" and bool(record.messages)


def _scrubber(secrets: Mapping[str, str]) -> Clean:
    """A function replacing every copy of each secret by its marker, the longest copy first where
    two overlap, in one pass over the text."""
    automaton = ahocorasick.Automaton()
    for value, kind in secrets.items():
        automaton.add_word(value, (len(value), f"[REDACTED:{kind}]"))
    automaton.make_automaton()

    def scrub(text: str, _location: str = "") -> str:
        out: list[str] = []
        pos = 0
        for end, (length, marker) in automaton.iter_long(text):
            start = end + 1 - length
            out += (text[pos:start], marker)
            pos = end + 1
        return "".join(out) + text[pos:] if out else text

    return scrub


def _map_strings(value: Any, location: str, clean: Clean) -> Any:
    if isinstance(value, str):
        return clean(value, location)
    if isinstance(value, Mapping):
        return {k: _map_strings(v, f"{location}.{k}"[:64], clean) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_map_strings(v, location, clean) for v in value]
    return value
