"""The ``text`` kind: knowledge from notes, runbooks, code and commit messages as ``text`` examples.

Each document is cut into units along its structure (markdown: at headings; Python: at top-level
functions and classes, found with ``ast``; other code: at top-level blocks, i.e. an unindented line
after a blank one; commits: at paragraphs). Units are whole lines, so a piece is a verbatim slice
of the document (leading / trailing blank lines trimmed), and consecutive units are packed into pieces that fit
``max_length`` tokens as TRL trains them (with the end-of-text token). A unit too long alone is
cut at lines, then a line too long alone at characters (``cut.split_long_units``). Each piece
starts with a header saying where it came from::

    Source: vault/runbooks/bgp-session-down.md
    Title: BGP session down
    Section: BGP session down > 2. Check the link before BGP

followed by a blank line and the text. ``Section`` (the heading path of the piece's first unit)
appears on pieces after the first; code says ``Language``, a commit its short sha and date.

A document labelled bad as a whole is left out (``dropped.document_bad``); empty ones too.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Iterator

from pipeline.datasets.common import Row, Tally
from pipeline.datasets.corpus import NOTE_KINDS, TEXT_KINDS
from pipeline.datasets.loop import build_rows
from pipeline.datasets.tokens import Tokens
from storage.corpus import CorpusDocument

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")

Unit = tuple[str, str]  # (heading path or "", text)


def build_text(
    documents: Iterable[CorpusDocument], tokens: Tokens, *, max_length: int, tick: Callable[[], None] | None = None
) -> tuple[list[Row], Tally]:

    def rows_of(document: CorpusDocument, tally: Tally) -> Iterator[Row]:
        if document.kind not in TEXT_KINDS:
            return
        whole = document.label(None)
        if whole is not None and whole.value == "bad":
            tally.dropped["document_bad"] += 1
            return
        content, count = tokens.neutralise(document.content)
        tally.counts["neutralised_special_tokens"] += count
        if not content.strip():
            tally.dropped["empty_document"] += 1
            return
        title, _ = tokens.neutralise(document.title)
        for index, (body, piece_text, length) in enumerate(pieces(document, content, title, tokens, max_length, tally)):
            yield Row(
                document.id, document.ref, document.source, (index,), {"text": piece_text}, key=body, tokens=length
            )

    return build_rows(documents, rows_of, tick)


def header(document: CorpusDocument, title: str, section: str) -> str:
    path = str(document.meta.get("path") or document.external_id.removeprefix("file:"))
    if document.kind == "commit":
        sha = str(document.meta.get("sha") or document.external_id.removeprefix("commit:"))
        lines = [f"Source: {document.source} commit {sha[:12]}"]
        when = str(document.meta.get("authored_at") or "")[:10]
        if when:
            lines.append(f"Date: {when}")
    elif document.kind == "code":
        lines = [f"Source: {document.source}/{path}"]
        if document.meta.get("language"):
            lines.append(f"Language: {document.meta['language']}")
    else:
        lines = [f"Source: {document.source}/{path}", f"Title: {title}"]
        if section:
            lines.append(f"Section: {section}")
    return "\n".join(lines) + "\n\n"


def pieces(
    document: CorpusDocument, content: str, title: str, tokens: Tokens, max_length: int, tally: Tally
) -> list[tuple[str, str, int]]:
    """(body, full text with header, tokens) per piece of the document."""
    units = _units(document, content)
    out: list[tuple[str, str, int]] = []
    queue = list(units)
    while queue:
        section = queue[0][0] if out else ""
        head, _ = tokens.neutralise(header(document, title, section))

        def fits(body: str, head: str = head) -> bool:
            return tokens.text_length(head + body) <= max_length

        if not fits("x" * 16):  # no room for text after the header
            tally.dropped["header_longer_than_max_length"] += 1
            return out
        body, consumed = _take(queue, fits, tally)
        del queue[:consumed]
        body = body.lstrip("\n").rstrip()
        if body:
            text = head + body
            out.append((body, text, tokens.text_length(text)))
    return out


def _take(queue: list[Unit], fits: Callable[[str], bool], tally: Tally) -> tuple[str, int]:
    """The longest run of units from the front of ``queue`` that fits; an oversized first unit is
    split and its remainder put back at the front."""
    body = ""
    taken = 0
    for _, text in queue:
        candidate = text if not body else body + "\n" + text
        if fits(candidate):
            body, taken = candidate, taken + 1
            continue
        break
    if taken:
        return body, taken
    section, text = queue[0]
    tally.cut["split_long_units"] += 1
    head, rest = split_to_fit(text, fits)
    queue[0] = (section, rest)
    if not rest.strip():
        return head, 1
    return head, 0


def split_to_fit(text: str, fits: Callable[[str], bool]) -> tuple[str, str]:
    """The longest prefix of ``text`` that fits, at a line break if one does, else at a character."""
    lines = text.split("\n")
    lo, hi = 0, len(lines)  # largest count of whole lines that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits("\n".join(lines[:mid])):
            lo = mid
        else:
            hi = mid - 1
    if lo > 0:
        return "\n".join(lines[:lo]), "\n".join(lines[lo:])
    first = lines[0]
    lo, hi = 1, len(first)  # at least one character, so the loop always moves on
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(first[:mid]):
            lo = mid
        else:
            hi = mid - 1
    return first[:lo], "\n".join([first[lo:], *lines[1:]])


def _units(document: CorpusDocument, content: str) -> list[Unit]:
    if document.kind in NOTE_KINDS:
        return markdown_units(content)
    if document.kind == "commit":
        return _block_units(content, top_level_only=False)
    path = str(document.meta.get("path") or document.external_id)
    if path.endswith(".py") or document.meta.get("language") == "python":
        units = _python_units(content)
        if units is not None:
            return units
    return _block_units(content)


def markdown_units(content: str) -> list[Unit]:
    lines = content.split("\n")
    units: list[Unit] = []
    stack: list[tuple[int, str]] = []
    start, path, fence = 0, "", None
    for number, line in enumerate(lines):
        match = _FENCE.match(line)
        if match:
            marker = match.group(1)[0]
            fence = None if fence == marker else (marker if fence is None else fence)
            continue
        heading = _HEADING.match(line) if fence is None else None
        if heading is None:
            continue
        if number > start:
            units.append((path, "\n".join(lines[start:number])))
        level = len(heading.group(1))
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, heading.group(2)))
        path, start = " > ".join(title for _, title in stack), number
    units.append((path, "\n".join(lines[start:])))
    return [unit for unit in units if unit[1].strip()]


def _python_units(content: str) -> list[Unit] | None:
    try:
        tree = ast.parse(content)
    except (SyntaxError, ValueError):
        return None
    lines = content.split("\n")
    starts: list[tuple[int, str]] = [(0, "")]
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
            while first > 0 and lines[first - 1].lstrip().startswith("#"):
                first -= 1  # the comment right above belongs to it
            starts.append((first, node.name))
        elif starts[-1][1]:
            starts.append((node.lineno - 1, ""))  # module code after a function starts a new unit
    units: list[Unit] = []
    for (start, name), (end, _) in zip(starts, [*starts[1:], (len(lines), "")], strict=True):
        if end > start:
            units.append((name, "\n".join(lines[start:end])))
    return [unit for unit in units if unit[1].strip()]


def _block_units(content: str, *, top_level_only: bool = True) -> list[Unit]:
    """Blocks that start after a blank line (with ``top_level_only``: at an unindented line)."""
    lines = content.split("\n")
    units: list[Unit] = []
    start = 0
    for number in range(1, len(lines)):
        line = lines[number]
        if line.strip() and not lines[number - 1].strip() and not (top_level_only and line[0].isspace()):
            units.append(("", "\n".join(lines[start:number])))
            start = number
    units.append(("", "\n".join(lines[start:])))
    return [unit for unit in units if unit[1].strip()]


__all__ = ["build_text", "header", "markdown_units", "pieces", "split_to_fit"]
