"""Credentials named by the words around them: "the password is ...", `Authorization:` headers."""

from __future__ import annotations

import re
from collections.abc import Iterator

from pipeline.redaction.values import (
    CODE_CHARS,
    DOTTED_NAME,
    PASSWORD_SYMBOLS,
    has_letter_and_digit,
    is_placeholder,
)

_PROSE_PASSWORD = re.compile(
    r"\b(?:pass(?:word|wd|phrase)|pwd)\s+(?:is|was|set to|(?=\S+\s*$)|(?=\S+\s+(?:machine|login)\b))\s*"
    r"[\"'`]?([^\s\"'`]+)"
)
_HASH_NAME = re.compile(r"(?i)(?:sha\d*|md5|bcrypt|scrypt|argon2\w*|pbkdf2\w*)$")


def prose_passwords(line: str, low: str) -> Iterator[tuple[int, int, str]]:
    """ "the wifi password is Hx7!pq2Lw", a `.netrc`'s "login alex password s3cr3t-x": only a value
    that cannot be a word ("the password is expired" stays)."""
    for m in _PROSE_PASSWORD.finditer(low):
        start, end = m.span(1)
        while end > start and line[end - 1] in ".,;:!?)]}'\"`":
            end -= 1
        value = line[start:end]
        if len(value) < 6 or is_placeholder(value) or _HASH_NAME.match(value) or CODE_CHARS.intersection(value):
            continue
        symbols = PASSWORD_SYMBOLS.intersection(value) and not DOTTED_NAME.fullmatch(value)
        if has_letter_and_digit(value) or symbols:
            yield start, end, "env_credential"


_HEADER = re.compile(
    r"(?i)\b(?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?(?:bearer|basic|token|bot|digest|apikey)"
    r"\s+([A-Za-z0-9._~+/=-]{8,})"
)


def auth_headers(line: str) -> Iterator[tuple[int, int, str]]:
    for m in _HEADER.finditer(line):
        if not is_placeholder(m.group(1)):
            yield m.start(1), m.end(1), "auth_header"
