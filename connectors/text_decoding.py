"""Decoding a file's bytes as text, or telling that they are binary (notes and code files).

UTF-8 (with or without a BOM) and UTF-16/32 with a BOM decode correctly; stray undecodable bytes
are replaced and counted rather than costing the file; a NUL byte in the first 8 KB (without a
UTF-16/32 BOM), or more than 10% of odd characters there, means binary.
"""

from __future__ import annotations

import codecs
from typing import Any

SNIFF_BYTES = 8192

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_TEXT_CONTROLS = frozenset("\t\n\r\f\v\x1b")


def decode_text(data: bytes) -> tuple[str, dict[str, Any]] | None:
    """Text of ``data`` plus notes on its decoding, or None when it looks binary.

    Notes: ``encoding`` when a UTF-16/32 BOM was found, ``decode_errors`` when bytes had to be
    replaced by U+FFFD. A UTF-8 BOM is removed silently.
    """
    notes: dict[str, Any] = {}
    codec = "utf-8"
    for bom, name in _BOMS:
        if data.startswith(bom):
            codec = name
            if name != "utf-8-sig":
                notes["encoding"] = name
            break
    else:
        if b"\x00" in data[:SNIFF_BYTES]:
            return None
    try:
        text = data.decode(codec)
    except UnicodeDecodeError:
        text = data.decode(codec, "replace")
        already = data.count("\ufffd".encode("utf-8")) if codec.startswith("utf-8") else 0
        notes["decode_errors"] = max(1, text.count("\ufffd") - already)
    sample = text[:SNIFF_BYTES]
    odd = sum(1 for ch in sample if ch == "\ufffd" or (ch < " " and ch not in _TEXT_CONTROLS))
    if sample and odd > len(sample) // 10:
        return None
    return text, notes
