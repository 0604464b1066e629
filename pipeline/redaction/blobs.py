"""Encoded text: a base64 blob or a URL-encoded run whose decoded text holds a secret is one (text
only, never binary)."""

from __future__ import annotations

import base64
import binascii
import re

BLOB = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{32,}={0,2}")
_MAX_BLOB = 1 << 18


def b64_text(blob: str) -> str | None:
    if len(blob) > _MAX_BLOB:
        return None
    body = blob.rstrip("=")
    if len(body) % 4 == 1:
        return None
    urlsafe = "-" in body or "_" in body
    if urlsafe and ("+" in body or "/" in body):
        return None
    padded = body + "=" * (-len(body) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded) if urlsafe else base64.b64decode(padded, validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    printable = sum(1 for c in text if c.isprintable() or c in "\n\r\t")
    return text if text and printable >= 0.95 * len(text) else None


# A run of URL-encoded text with at least two escapes: `data=%7B%22password%22%3A%22...%22%7D`.
PERCENT_RUN = re.compile(r"[^\s\"'<>]*%[0-9A-Fa-f]{2}[^\s\"'<>]*%[0-9A-Fa-f]{2}[^\s\"'<>]*")
_ESCAPE = re.compile(r"%([2-7][0-9A-Fa-f])")


def percent_decoded(run: str) -> tuple[str, list[int]] | None:
    """The run with its printable ASCII escapes decoded, and for each decoded character the offset
    in ``run`` where it starts (plus one at the end: where the run ends); None if nothing decodes."""
    out: list[str] = []
    starts: list[int] = []
    pos = 0
    for m in _ESCAPE.finditer(run):
        for i in range(pos, m.start()):
            out.append(run[i])
            starts.append(i)
        out.append(chr(int(m.group(1), 16)))
        starts.append(m.start())
        pos = m.end()
    if not starts or pos == 0:
        return None
    for i in range(pos, len(run)):
        out.append(run[i])
        starts.append(i)
    starts.append(len(run))
    return "".join(out), starts
