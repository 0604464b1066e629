"""Redacting a whole record: every text field, then what is derived from them, then the scrub.

Order matters: the connector yields what the source holds (a conversation's messages, a note's
text, its front matter) and leaves out what is derived from it: an untitled conversation has an
empty title, and a conversation's content is its messages' text. Here every field is redacted
first, and only then are the derived fields made, from the redacted text, so no derived field
ever holds a piece of a secret (a title cut at 80 characters used to keep the start of one).

A private key pasted across messages: when a message of the main path ends inside a key block
(BEGIN and body, no END), the key body lines (and END) that open the next message go too.

Identifiers (the record's, its messages' and parents', its labels' message ids, a git file's
`path`) are redacted too, as `REDACTED-<type>-<digest>`: a digest of the secret, so the same id
comes out on every run (incremental ingest and labels keep finding the document) and two
secrets never share one. The digest is unsalted and 40 bits: it tells nothing about a token, but
a guessable password in a file name could be confirmed by someone holding the store.

Then the scrub: a secret found in one field is replaced in every field of the record, so a copy
of it outside the context its detector needs (a heading copied into metadata, a password
repeated in prose) doesn't survive. Copies are exact; one Aho-Corasick pass per field finds all
of them, so the cost is linear in the record's size whatever the number of secrets.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, overload

import ahocorasick

from connectors.conversation_text import fallback_title, render_conversation
from connectors.records import Message, Record
from pipeline.redaction.private_keys import leading_key_body
from pipeline.redaction.redactor import Redactor
from pipeline.redaction.spans import Finding
from storage.documents import RedactionSpan

MIN_SCRUB_LENGTH = 6  # shorter matches are too likely to occur by chance elsewhere
# Bump when what is done to a record after its fields are redacted changes (derived fields, the
# scrub): like RULES_VERSION it is part of every stored hash, so the next ingest processes every
# document again. 2: copies cut short or with their whitespace changed were scrubbed too; 3: titles
# and conversation content derived after redaction, so only exact copies are scrubbed.
SCRUB_VERSION = 3
ID_DIGEST_LENGTH = 10  # hex digits of a redacted identifier's digest: 40 bits, no collision in one store

Clean = Callable[[str, str], str]  # (text, location) -> redacted text


def redact_record(record: Record, redactor: Redactor) -> tuple[Record, list[RedactionSpan]]:
    """The record with every text and identifier redacted and its derived fields made from the
    redacted text, and where each secret was (never its value)."""
    spans: list[RedactionSpan] = []
    secrets: dict[str, str] = {}

    def clean(text: str, location: str, key_tail: bool = False) -> str:
        head = leading_key_body(text) if key_tail else 0  # the rest of a key from the message before
        if head:
            spans.append(RedactionSpan(location, "private_key", 1, 0, head))
            secrets[text[:head]] = "private_key"
        result = redactor.redact(text[head:])
        for f in result.findings:
            spans.append(RedactionSpan(location, f.type, f.line, head + f.start, head + f.end))
            if f.end - f.start >= MIN_SCRUB_LENGTH:
                secrets[text[head + f.start : head + f.end]] = f.type
        self_open[0] = _ends_inside_a_key(text[head:], result.findings)
        return "[REDACTED:private_key]" + result.text if head else result.text

    self_open = [False]  # whether the text cleaned last ended inside a private key block (set by clean)
    messages: list[Message] = []
    open_key = False
    for m in record.messages:
        continues = open_key and m.branch == 0
        content = clean(m.content, f"message[{m.position}.{m.branch}]", key_tail=continues)
        if m.branch == 0:
            open_key = self_open[0]
        messages.append(
            replace(
                m,
                content=content,
                metadata=_map_strings(m.metadata, f"message[{m.position}.{m.branch}].metadata", clean),
                external_id=redact_identifier(m.external_id, redactor),
                parent_external_id=redact_identifier(m.parent_external_id, redactor),
            )
        )
    content = clean(record.content, "content") if not _rendered(record) else ""
    title = clean(record.title, "title") if record.title.strip() else ""
    metadata = _map_strings(record.metadata, "metadata", clean)
    if isinstance(record.metadata.get("path"), str):  # a path is an identifier: the record's own, in git
        metadata = {**metadata, "path": redact_identifier(record.metadata["path"], redactor)}
    labels = tuple(
        replace(
            label,
            note=clean(label.note, "label.note") if label.note else label.note,
            message_external_id=redact_identifier(label.message_external_id, redactor),
        )
        for label in record.labels
    )
    if secrets:
        scrub = _scrubber(secrets)
        messages = [
            replace(m, content=scrub(m.content, ""), metadata=_map_strings(m.metadata, "", scrub)) for m in messages
        ]
        content, title, metadata = scrub(content, ""), scrub(title, ""), _map_strings(metadata, "", scrub)
        labels = tuple(replace(label, note=scrub(label.note, "")) if label.note else label for label in labels)
    if _rendered(record):
        content = render_conversation(messages)
    if not title and record.kind == "conversation":
        title = fallback_title(messages)
    redacted = replace(
        record,
        external_id=redact_identifier(record.external_id, redactor),
        title=title,
        content=content,
        metadata=metadata,
        messages=tuple(messages),
        labels=labels,
    )
    return redacted, spans


_HASH_OR_NUMBER = re.compile(r"[0-9a-fA-F]+|[0-9.:+-]+")
_KEY_END = re.compile(r"-{4,5} ?END |Private-(?:MAC|Hash):")


def _ends_inside_a_key(text: str, findings: tuple[Finding, ...]) -> bool:
    """The text's last finding is a private key block cut short that runs to the text's end."""
    if not findings or findings[-1].type != "private_key":
        return False
    last = findings[-1]
    return not text[last.end :].strip() and _KEY_END.search(text, last.start, last.end) is None


@overload
def redact_identifier(value: str, redactor: Redactor) -> str: ...
@overload
def redact_identifier(value: None, redactor: Redactor) -> None: ...
def redact_identifier(value: str | None, redactor: Redactor) -> str | None:
    """An id or a path with each secret in it replaced by ``REDACTED-<type>-<digest>``: the same
    input gives the same id on every run (so incremental ingest and labels keep finding it), two
    different secrets give different ids, and the marker needs no quoting in a shell."""
    if not value or len(value) < 8 or _HASH_OR_NUMBER.fullmatch(value):
        return value  # too short to hold a secret; a hex hash, a sha, a number: cursors are full of them
    result = redactor.redact(value)
    if not result.findings:
        return value
    out: list[str] = []
    pos = 0
    for f in result.findings:
        secret = value[f.start : f.end].encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(b"plora-identifier\0" + secret).hexdigest()[:ID_DIGEST_LENGTH]
        out += (value[pos : f.start], f"REDACTED-{f.type}-{digest}")
        pos = f.end
    return "".join(out) + value[pos:]


def redact_strings(value: Any, redactor: Redactor) -> Any:
    """``value`` (a connector's cursor: JSON) with every string in it, keys too, redacted as an
    identifier. A key changed this way no longer matches what the connector finds, so that one
    item is read again next time (and found unchanged by its hash): slower, never wrong."""
    if isinstance(value, str):
        return redact_identifier(value, redactor)
    if isinstance(value, Mapping):
        return {redact_identifier(str(k), redactor): redact_strings(v, redactor) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_strings(v, redactor) for v in value]
    return value


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
