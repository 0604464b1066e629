"""Base64 blobs: one whose decoded text holds a secret is one (text only, never binary)."""

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
