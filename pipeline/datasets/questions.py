"""Note questions: each section of a note or runbook also as a chat, so what the notes say is learned
the way it is later asked for.

A ``text`` row teaches the model to continue a note; a question to the adapter is a chat, and
knowledge learned only as text continuation is poorly recalled there (the adaptation benchmark:
facts stated in the notes were recalled at chance with text rows alone). So the ``sft`` kind also
gets, per markdown section of a note or runbook (``pipeline.datasets.text.markdown_units``: the same
sections the text rows are cut at), one exchange::

    user:      What do my notes say about BGP session down > 2. Check the link before BGP?
    assistant: <the section's text, its heading line left out>

The question names the section's heading path (the note's title for text before the first
heading); the reply is the person's own words, verbatim. A section too long for ``max_length``
is cut at lines (then characters) into parts, asked as ``... (part 2)`` and so on. Code and
commits get none (their text rows are what they are). A document labelled bad is left out, as
for its text rows. The profile's ``note_questions = false`` turns this off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from pipeline.datasets.common import Row, Tally, Turn, turn_text
from pipeline.datasets.corpus import NOTE_KINDS
from pipeline.datasets.loop import build_rows
from pipeline.datasets.text import markdown_units, split_to_fit
from pipeline.datasets.tokens import Tokens
from storage.corpus import CorpusDocument


def question(path: str, part: int) -> str:
    return f"What do my notes say about {path}?" + (f" (part {part})" if part > 1 else "")


def build_note_questions(
    documents: Iterable[CorpusDocument], tokens: Tokens, *, max_length: int, tick: Callable[[], None] | None = None
) -> tuple[list[Row], Tally]:

    def rows_of(document: CorpusDocument, tally: Tally) -> Iterator[Row]:
        if document.kind not in NOTE_KINDS:
            return
        whole = document.label(None)
        if whole is not None and whole.value == "bad":
            return  # the text builder counts it (dropped.document_bad)
        content, _ = tokens.neutralise(document.content)
        title, _ = tokens.neutralise(document.title)
        index = 0
        for path, text in markdown_units(content):
            lines = text.split("\n")
            body = "\n".join(lines[1:] if path and lines and lines[0].lstrip().startswith("#") else lines).strip()
            if not body:
                continue
            for turns in _exchanges(path or title, body, tokens, max_length, tally):
                yield Row(
                    document.id, document.ref, document.source, (index,), {"messages": turns}, key=turn_text(turns)
                )
                index += 1
                tally.counts["note_questions"] += 1

    return build_rows(documents, rows_of, tick)


def _exchanges(path: str, body: str, tokens: Tokens, max_length: int, tally: Tally) -> Iterator[list[Turn]]:
    part = 1
    while body:

        def turns(reply: str, part: int = part) -> list[Turn]:
            return [{"role": "user", "content": question(path, part)}, {"role": "assistant", "content": reply}]

        def fits(reply: str) -> bool:
            return tokens.chat_length(turns(reply)) <= max_length

        if fits(body):
            yield turns(body)
            return
        if not fits("x" * 16):  # the question alone leaves no room for a reply
            tally.dropped["note_question_too_long"] += 1
            return
        head, body = split_to_fit(body, fits)
        tally.cut["note_question_parts"] += 1
        if head.strip():
            yield turns(head.strip())
        body = body.strip()
        part += 1


__all__ = ["build_note_questions", "question"]
