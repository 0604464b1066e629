"""Credentials named by the words around them: "the password is ...", `Authorization:` headers,
session cookies."""

from __future__ import annotations

import re
from collections.abc import Iterator

from pipeline.redaction.values import (
    CODE_CHARS,
    DOTTED_NAME,
    PASSWORD_SYMBOLS,
    has_letter_and_digit,
    is_placeholder,
    looks_random,
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


# A session cookie is a credential: whoever holds it is logged in. `Cookie:` / `Set-Cookie:`
# headers, `curl -b` / `--cookie`, `document.cookie = "..."`, a `"cookie": "..."` field.
_COOKIE_CONTEXT = re.compile(r"(?i)\bcookie\b|(?<!\S)(?:-b|--cookie)(?=[ =])")
_COOKIE_PAIR = re.compile(r"(?<![\w.%-])([A-Za-z0-9_.-]{2,64})=([^;\s\"',\\]{16,})")
_SESSION_NAME = re.compile(r"(?i)sess|sid|auth|token|jwt|remember|identity|login|user_?id\b")
_NOT_SESSION_NAME = re.compile(r"(?i)csrf|xsrf|consent|locale|lang|theme|tz|_ga|_gid|utm")


def session_cookies(line: str) -> Iterator[tuple[int, int, str]]:
    """The value of a session-like cookie (`session=`, `sessionid=`, `connect.sid=`, `auth_token=`)
    after a cookie context on the line; a base64 one that holds a named secret is named by it."""
    context = _COOKIE_CONTEXT.search(line)
    if context is None:
        return
    for m in _COOKIE_PAIR.finditer(line, context.start()):
        name, value = m.group(1), m.group(2)
        if not _SESSION_NAME.search(name) or _NOT_SESSION_NAME.search(name) or is_placeholder(value):
            continue
        if has_letter_and_digit(value) or looks_random(value, 16):
            yield m.start(2), m.end(2), "session_cookie"
