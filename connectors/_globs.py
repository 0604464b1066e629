"""Glob patterns over relative posix paths, with ``**``, for the ``include``/``exclude`` settings.

``pathlib.PurePath.match`` has no ``**`` on Python 3.11 and ``fnmatch`` lets ``*`` cross ``/``,
so patterns are translated to one regular expression here. The rules, close to ``.gitignore``:

- ``*`` matches any run of characters except ``/``; ``?`` one character except ``/``;
  ``[abc]``, ``[a-z]`` and ``[!abc]`` a character class (never ``/``).
- ``**`` as a whole path segment matches zero or more segments: ``**/*.py`` matches ``a.py``
  and ``src/pkg/a.py``; ``docs/**/index.md`` matches ``docs/index.md``; ``templates/**``
  matches everything under ``templates/``. Elsewhere (``a**b``) it is the same as ``*``.
- A pattern without ``/`` matches the file name at any depth: ``*.tmp`` is ``**/*.tmp``.
- A pattern ending in ``/`` means a folder: ``drafts/`` is ``drafts/**``.
- A leading ``/`` is dropped: patterns are always anchored at the root.
- Matching is case-sensitive (like git). Brace sets (``{a,b}``) are not supported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


def _translate_segment(segment: str) -> str:
    """Regex for one path segment (no ``/`` in it)."""
    out: list[str] = []
    i, n = 0, len(segment)
    while i < n:
        char = segment[i]
        if char == "*":
            while i + 1 < n and segment[i + 1] == "*":
                i += 1
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = i + 1
            if end < n and segment[end] in "!^":
                end += 1
            if end < n and segment[end] == "]":
                end += 1
            while end < n and segment[end] != "]":
                end += 1
            if end >= n:
                out.append(re.escape(char))
            else:
                body = segment[i + 1 : end]
                negate = body[:1] in ("!", "^")
                if negate:
                    body = body[1:]
                body = body.replace("\\", "\\\\")
                out.append(f"(?!/)[{'^' if negate else ''}{body}]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def _normalise(pattern: str) -> str:
    pattern = pattern.strip().lstrip("/")
    if pattern.endswith("/"):
        pattern += "**"
    if "/" not in pattern:
        pattern = "**/" + pattern
    return pattern


def translate(pattern: str) -> str:
    """Regex (for ``re.fullmatch``) equivalent to one glob pattern."""
    return _translate_normalised(_normalise(pattern))


def _translate_normalised(pattern: str) -> str:
    segments = pattern.split("/")
    regex: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            regex.append(".*" if last else "(?:[^/]*/)*")
        else:
            regex.append(_translate_segment(segment) + ("" if last else "/"))
    return "".join(regex)


class GlobSet:
    """A list of patterns; a path matches the set when it matches any of them."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(p for p in patterns if p.strip())
        self._regex = (
            re.compile("|".join(f"(?:{translate(p)})" for p in self.patterns), re.DOTALL) if self.patterns else None
        )
        # Patterns "X/**" (and "**"): every path under a folder matching X matches.
        prefixes = []
        for pattern in self.patterns:
            normal = _normalise(pattern)
            if normal == "**":
                prefixes.append(".*")
            elif normal.endswith("/**"):
                prefixes.append(_translate_normalised(normal[:-3]) + "(?:/.*)?")
        self._folder_regex = re.compile("|".join(f"(?:{p})" for p in prefixes), re.DOTALL) if prefixes else None

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, path: str) -> bool:
        """Whether the relative posix ``path`` matches one of the patterns."""
        return self._regex is not None and self._regex.fullmatch(path) is not None

    def covers_folder(self, folder: str) -> bool:
        """Whether every path under the relative ``folder`` matches (so a walk may prune it)."""
        return self._folder_regex is not None and self._folder_regex.fullmatch(folder) is not None
