"""Conversation refs: ``SOURCE:EXTERNAL_ID``, stable across re-ingest (what a label points at)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import UsageError


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
    if not is_utf8(text):  # bytes the shell passed on undecoded: no stored ref looks like that
        raise UsageError(f"{text!r} is not valid UTF-8 text; copy the ref from plora's own output")
    return Ref(source, external_id)


def is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
