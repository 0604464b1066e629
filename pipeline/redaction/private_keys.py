"""Private key blocks across lines: PEM, OpenSSH, PGP, SSH2 and PuTTY, whole or cut short."""

from __future__ import annotations

import re
from collections.abc import Iterator

from detect_secrets.plugins.private_key import PrivateKeyDetector

# detect-secrets' markers, and the generic ones it lacks (PKCS#8 "ENCRYPTED PRIVATE KEY", PuTTY v3).
_KEY_MARKERS = (*(r.pattern for r in PrivateKeyDetector.denylist), "PRIVATE KEY", "PuTTY-User-Key-File-")
_PEM_BEGIN = re.compile(r"-{4,5} ?BEGIN ((?:[A-Z0-9]+ )*?)PRIVATE KEY( BLOCK)? ?-{4,5}")
_PEM_BODY_LINE = re.compile(r"[ \t>*#/\"']*(?:[A-Za-z0-9+/=]+|[A-Za-z-]+: .*|)[ \t\"',\\n]*")
_KEY_BODY = re.compile(r"[A-Za-z0-9+/]{20}")
_PUTTY_BEGIN = re.compile(r"PuTTY-User-Key-File-\d:")
_PUTTY = re.compile(r"PuTTY-User-Key-File-\d:.*?Private-(?:MAC|Hash): *[0-9a-fA-F]+", re.DOTALL)


def find_private_keys(text: str) -> Iterator[tuple[int, int, str]]:
    if not any(marker in text for marker in _KEY_MARKERS):
        return
    pos = 0
    while (m := _PEM_BEGIN.search(text, pos)) is not None:
        label, block = re.escape(m.group(1)), re.escape(m.group(2) or "")
        end_marker = re.compile(rf"-{{4,5}} ?END {label}PRIVATE KEY{block} ?-{{4,5}}")
        end = end_marker.search(text, m.end(), m.end() + (1 << 16))
        stop = end.end() if end is not None else _unterminated_key_end(text, m.end())
        if _KEY_BODY.search(text, m.end(), stop):  # not just the markers, quoted in prose or code
            yield m.start(), stop, "private_key"
        pos = max(stop, m.end())
    pos = 0
    while (m := _PUTTY_BEGIN.search(text, pos)) is not None:
        whole = _PUTTY.match(text, m.start())
        stop = whole.end() if whole is not None else _unterminated_key_end(text, m.end())  # cut short
        if whole is not None or _KEY_BODY.search(text, m.end(), stop):
            yield m.start(), stop, "private_key"
        pos = max(stop, m.end())


def _unterminated_key_end(text: str, pos: int) -> int:
    """A block cut short (a pasted fragment): up to the last line that still looks like key body."""
    end = text.find("\n", pos)
    if end < 0:
        return len(text)
    stop = end
    while end >= 0:
        nxt = text.find("\n", end + 1)
        if not text[end + 1 : nxt if nxt >= 0 else len(text)].strip() or not _PEM_BODY_LINE.fullmatch(
            text, end + 1, nxt if nxt >= 0 else len(text)
        ):
            break
        stop = nxt if nxt >= 0 else len(text)
        end = nxt
    return stop
