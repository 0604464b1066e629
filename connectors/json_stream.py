"""Streaming the elements of a large top-level JSON array (an export's conversations.json).

Why our own reader rather than ijson: an export is read one conversation at a time, and one
damaged conversation must cost only itself. ijson (like any incremental parser) stops for good at
the first syntax error, so everything after a malformed element would be lost; it also builds an
element whole before handing it over, so a 100 MB conversation would be held in memory only to be
skipped. What is ours is small: a scanner that tracks strings and bracket depth to find where each
element ends (so it also finds the end of an invalid one, and reads past an over-large one a chunk
at a time, without recursion), while the stdlib ``json.JSONDecoder`` decodes each element.
Memory holds about one chunk plus the element.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

CHUNK_SIZE = 1 << 20
MAX_ITEM_MB = 64
"""A JSONL line or conversations.json element over this many MB is skipped ("too large") without
being held whole: no real conversation is that big, and parsing one costs several times its size."""


class JsonStreamError(ValueError):
    """The stream is not a JSON array, or it breaks so that the next element can't be found."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at byte {offset})")
        self.offset = offset


@dataclass(frozen=True)
class BadElement:
    """An array element that is not valid JSON, or too large to read; reading went on after it."""

    offset: int
    error: str
    too_large: bool = False

    @property
    def reason(self) -> str:
        """Why the element can't be used, as a Skip's reason."""
        return self.error if self.too_large else f"not valid JSON: {self.error}"


_SPACE = re.compile(r"[ \t\n\r]*")
_TOP_LEVEL = re.compile(r'[",\[\]{}]')
_NESTED = re.compile(r'["\[\]{}]')
_IN_STRING = re.compile(r'["\\]')


class _Window:
    """Decoded text of a UTF-8 byte stream from ``pos`` on, read a chunk at a time."""

    def __init__(self, raw: IO[bytes], chunk_size: int) -> None:
        self.raw = raw
        self.chunk_size = max(1, chunk_size)
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.buf = ""
        self.pos = 0
        self.base = 0
        self.eof = False
        self.started = False
        self.read = 0  # bytes read from ``raw`` so far

    def fill(self) -> int:
        """Drop the text before ``pos`` and append the next chunk; return the characters dropped."""
        dropped = self.pos
        if dropped:
            self.base += len(self.buf[:dropped].encode("utf-8", "surrogatepass"))
            self.buf = self.buf[dropped:]
            self.pos = 0
        data = self.raw.read(self.chunk_size)
        self.read += len(data)
        text = self.decoder.decode(data, final=not data)
        if not self.started and text:
            self.started = True
            if text.startswith("\ufeff"):
                text = text[1:]
                self.base += 3
        self.buf += text
        self.eof = not data
        return dropped

    def skip_space(self) -> str:
        """Move past whitespace; return the next character ("" at the end)."""
        while True:
            self.pos = _SPACE.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf) or self.eof:
                return self.buf[self.pos : self.pos + 1]
            self.fill()

    def offset(self, index: int) -> int:
        return self.base + len(self.buf[:index].encode("utf-8", "surrogatepass"))


def iter_json_array(raw: IO[bytes], chunk_size: int = CHUNK_SIZE, max_bytes: int | None = None) -> Iterator[Any]:
    """Yield the elements of the JSON array in ``raw`` one at a time.

    An element that is not valid JSON but whose end can still be found is yielded as a
    :class:`BadElement`; so is one larger than about ``max_bytes`` (``too_large``), read past a
    chunk at a time and never held whole. A stream that is not an array, or that breaks so that
    the next element can't be found, raises JsonStreamError.
    """
    window = _Window(raw, chunk_size)
    decoder = json.JSONDecoder()
    first = window.skip_space()
    if first != "[":
        found = {"": "nothing (the file is empty)", "{": "an object"}.get(first, repr(first))
        problem = f"expected a JSON array (a list) but found {found}"
        raise JsonStreamError(problem, window.offset(window.pos))
    window.pos += 1
    if window.skip_space() == "]":
        return
    while True:
        yield _next_element(window, decoder, max_bytes)
        after = window.skip_space()
        if after == "]":
            return
        if after != ",":
            problem = f"expected ',' or ']' but found {after!r}"
            if not after:
                problem = "the file ends before the list is closed"
            raise JsonStreamError(problem, window.offset(window.pos))
        window.pos += 1
        window.skip_space()


def _next_element(window: _Window, decoder: json.JSONDecoder, max_bytes: int | None) -> Any:
    # Fast path: the element is whole in the window. A number might go on in the next chunk, so
    # only a value with an unambiguous end (or one at the end of the stream) is taken as it is.
    try:
        value, end = decoder.raw_decode(window.buf, window.pos)
    except (ValueError, RecursionError):
        pass
    else:
        if window.eof or isinstance(value, dict | list | str):
            window.pos = end
            return value
    offset = window.offset(window.pos)
    end, too_large = _element_end(window, offset, max_bytes)
    if too_large:
        size, limit = (window.offset(end) - offset) / (1 << 20), (max_bytes or 0) / (1 << 20)
        window.pos = end
        reason = f"too large ({size:.1f} MB; conversations over {limit:g} MB are skipped)"
        return BadElement(offset, reason, too_large=True)
    start = window.pos
    try:
        value, stop = decoder.raw_decode(window.buf, start)
    except json.JSONDecodeError as e:
        error = f"{e.msg} at byte {window.offset(e.pos)}"
    except (ValueError, RecursionError) as e:
        error = str(e) or type(e).__name__
    else:
        if _SPACE.match(window.buf, stop).end() == end:  # type: ignore[union-attr]
            window.pos = end
            return value
        error = f"unexpected text after the value at byte {window.offset(stop)}"
    window.pos = end
    return BadElement(window.offset(start), error)


def _element_end(window: _Window, start: int, max_bytes: int | None) -> tuple[int, bool]:
    """Index of the ',' or ']' that ends the element at ``window.pos`` (byte offset ``start``),
    reading on as needed, and whether the element is over ``max_bytes``.

    Tracks only strings and bracket depth, so it also finds the end of an invalid element. Once
    the element is known to be too large, the text scanned so far is dropped at each read.
    """
    too_large = False
    depth, in_string, i = 0, False, window.pos
    while True:
        buf = window.buf
        if in_string:
            match = _IN_STRING.search(buf, i)
            if match and match.group() == '"':
                in_string, i = False, match.end()
                continue
            if match and match.end() < len(buf):
                i = match.end() + 1
                continue
            i = match.start() if match else len(buf)
        else:
            match = (_TOP_LEVEL if depth == 0 else _NESTED).search(buf, i)
            if match:
                char, i = match.group(), match.end()
                if char == '"':
                    in_string = True
                elif char in "[{":
                    depth += 1
                elif depth == 0:
                    return match.start(), too_large
                else:
                    depth -= 1
                continue
            i = len(buf)
        if window.eof:
            raise JsonStreamError("the file ends inside an element that starts here", start)
        too_large = too_large or (max_bytes is not None and window.read - start > max_bytes)
        if too_large:
            window.pos = i
        i -= window.fill()
