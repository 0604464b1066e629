"""High-entropy strings, only in a credential context: a random quoted string assigned to a key
that is not a hash or an id, or a random string right after a credential word; never a
free-floating random-looking string."""

from __future__ import annotations

import re
from collections.abc import Iterator

from pipeline.redaction.blobs import b64_text
from pipeline.redaction.credentials import KEY_CHARS, key_parts
from pipeline.redaction.values import looks_random

_QUOTED_RUN = re.compile(r"([\"'])([A-Za-z0-9+/=_-]{20,})\1")
_HASH_PREFIX = re.compile(r"(?i)(?:sha\d+|md5)[-:]")
# Keys whose random-looking values are hashes, ids or names.
_HASHISH_KEY = frozenset(
    {
        "id",
        "ids",
        "uuid",
        "guid",
        "sha",
        "sha1",
        "sha256",
        "sha384",
        "sha512",
        "md5",
        "hash",
        "hashes",
        "digest",
        "checksum",
        "checksums",
        "sum",
        "integrity",
        "etag",
        "fingerprint",
        "commit",
        "rev",
        "revision",
        "ref",
        "version",
        "nonce",
        "kid",
        "crc",
        "oid",
        "cid",
        "tag",
        "image",
        "key",
        "path",
        "url",
        "name",
        "file",
        "class",
        "icon",
        "font",
        "color",
        "data",
        "src",
        "href",
        "checkpoint",
        "model",
        "repo",
        "dataset",
        "branch",
    }
)
_ESCAPE_TAIL = re.compile(r"[0-9A-Fa-f]{2}")
_FLAG = re.compile(r"(?<!\S)-+[A-Za-z](?=[A-Za-z0-9+/_-])")
_RUN = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}")


def high_entropy(line: str, keywords: list[re.Match[str]], long_run: bool) -> Iterator[tuple[int, int, str]]:
    for m in _QUOTED_RUN.finditer(line) if long_run else ():
        # `signing_material = "q8Xk..."`: a random quoted string assigned to a key that is not a hash.
        key = _key_before(line, m.start(2))
        value = m.group(2)
        if key is None or _HASHISH_KEY.intersection(key_parts(key)) or _HASH_PREFIX.match(value):
            continue
        if looks_random(value.rstrip("="), 20, 16) and b64_text(value) is None:
            yield m.start(2), m.end(2), "high_entropy"
    for km in keywords:
        # "the staging token is 8fKd93...": a random string soon after a credential word.
        for r in _RUN.finditer(line, km.end(), min(len(line), km.end() + 48)):
            start = r.start()
            if line[start - 1] == "%" and _ESCAPE_TAIL.match(line, start):
                start += 2  # URL-encoded: `%22<value>` is a quote, then the value
            elif flag := _FLAG.match(line, start):
                start = flag.end()  # an attached flag: `-p<value>`
            value = line[start : r.end()].rstrip("=")
            if looks_random(value, 16, 16) and b64_text(value) is None:
                yield start, r.end(), "high_entropy"


def _key_before(line: str, pos: int) -> str | None:
    """The key a quoted value at `pos` is assigned to (`key = "`, `"key": "`, `key => '`), if any."""
    i = pos - 1  # the opening quote
    while i > 0 and line[i - 1] in " \t":
        i -= 1
    if i > 1 and line[i - 2 : i] in (":=", "=>"):
        i -= 2
    elif i > 0 and line[i - 1] in ":=":
        i -= 1
    else:
        return None
    while i > 0 and line[i - 1] in " \t":
        i -= 1
    for _ in range(2):
        if i > 0 and line[i - 1] in "\"']":
            i -= 1
    end = i
    while i > 0 and line[i - 1] in KEY_CHARS and end - i < 100:
        i -= 1
    return line[i:end] or None
