"""Private key blocks across lines: PEM, OpenSSH, PGP, SSH2 and PuTTY, whole or cut short."""

from __future__ import annotations

import re
from collections.abc import Iterator

from detect_secrets.plugins.private_key import PrivateKeyDetector

# detect-secrets' markers, and the generic ones it lacks (PKCS#8 "ENCRYPTED PRIVATE KEY", PuTTY v3).
_KEY_MARKERS = (
    *(r.pattern for r in PrivateKeyDetector.denylist),
    "PRIVATE KEY",
    "PuTTY-User-Key-File-",
    "Private-Lines:",
)
_PEM_BEGIN = re.compile(r"-{4,5} ?BEGIN ((?:[A-Z0-9]+ )*?)PRIVATE KEY( BLOCK)? ?-{4,5}")
_PEM_BODY_LINE = re.compile(r"[ \t>*#/\"']*(?:[A-Za-z0-9+/=]+|[A-Za-z-]+: .*|)[ \t\"',\\n]*")
_KEY_BODY = re.compile(r"[A-Za-z0-9+/]{20}")
_PUTTY_BEGIN = re.compile(r"PuTTY-User-Key-File-\d:")
_PUTTY = re.compile(r"PuTTY-User-Key-File-\d:.*?Private-(?:MAC|Hash): *[0-9a-fA-F]+", re.DOTALL)
_BODY_AT_END = re.compile(r"(?<=[\s\"':=])[A-Za-z0-9+/=]{20,}[ \t\"',]*$")
_PEM_END = re.compile(r"-{4,5} ?END (?:[A-Z0-9]+ )*?PRIVATE KEY(?: BLOCK)? ?-{4,5}")
# The second half of a PuTTY key pasted on its own: its private lines and MAC.
_PUTTY_TAIL = re.compile(r"Private-Lines: *\d+\r?\n(?:[A-Za-z0-9+/=]+\r?\n)+Private-(?:MAC|Hash): *[0-9a-fA-F]+")


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
    yield from _tails(text)


def _tails(text: str) -> Iterator[tuple[int, int, str]]:
    """The second half of a key block whose first half is elsewhere (a key pasted across two chat
    messages): key body lines up to an END marker with no BEGIN before them, or an END marker
    that opens the text; a PuTTY key's private lines and MAC without its header."""
    for m in _PEM_END.finditer(text):
        start = _line_start(text, m.start())
        walk = not text[start : m.start()].strip(" \t>*#/\"'")  # nothing but indent before the marker
        first = start if walk else m.start()
        while walk and first > 0:
            previous = _line_start(text, first - (2 if text.startswith("\\n", first - 2) else 1))
            line = text[previous:first].removesuffix("\n").removesuffix("\\n").removesuffix("\r")
            if not line.strip() or _PEM_BEGIN.search(line):
                break
            if not _PEM_BODY_LINE.fullmatch(line):
                run = _BODY_AT_END.search(line)  # `"private_key": "MIIE...`: the body starts after a quote
                if run is not None and _KEY_BODY.match(line, run.start()):
                    first = previous + run.start()
                break
            first = previous
        if _PEM_BEGIN.search(text, max(0, first - 200), first):
            continue  # a whole block: found above
        if _KEY_BODY.search(text, first, m.start()) or not text[:first].strip():
            yield first, m.end(), "private_key"
    if "PuTTY-User-Key-File-" not in text:
        for m in _PUTTY_TAIL.finditer(text):
            yield m.start(), m.end(), "private_key"


def _line_start(text: str, pos: int) -> int:
    """Where the line holding ``pos`` starts: after a line break or a JSON-escaped one."""
    escaped = text.rfind("\\n", 0, pos)
    return max(text.rfind("\n", 0, pos) + 1, escaped + 2 if escaped >= 0 else 0)


def leading_key_body(text: str) -> int:
    """The end of the key body lines (and the END marker after them) that open ``text``: the rest
    of a key whose start was in the text before (a key pasted across several messages); 0 when
    it opens with neither."""
    pos = len(text) - len(text.lstrip())
    stop = 0
    while pos < len(text):
        nxt = text.find("\n", pos)
        nxt = len(text) if nxt < 0 else nxt
        line = text[pos:nxt].removesuffix("\r")
        end = _PEM_END.match(line.strip(" \t>*#/\"'"))
        if end is not None:
            return nxt
        if not line.strip() or not _PEM_BODY_LINE.fullmatch(line) or not _KEY_BODY.search(line):
            break
        stop = nxt
        pos = nxt + 1
    return stop


# An SSH public key, whole or cut short: `ssh-ed25519 AAAAC3Nza...`; the blob opens with its
# type's name, so a bare blob is known by its start (base64 of "\0\0\0\x0bssh-ed25519", ...).
PUBLIC_KEY = re.compile(
    r"(?:(?:ssh-(?:ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-(?:ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)"
    r"\s+)?AAAA(?:C3NzaC1lZDI1NTE5|B3NzaC1yc2E|B3NzaC1kc3|E2VjZHNhLXNoYTItbmlzdHA|GnNrLXNzaC1lZDI1NTE5"
    r"|InNrLWVjZHNhLXNoYTItbmlzdHAyNTZ)[A-Za-z0-9+/]*={0,2}"
)


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
