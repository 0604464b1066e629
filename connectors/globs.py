"""A source's ``include`` / ``exclude`` patterns, matched with gitignore semantics (``pathspec``).

Paths are relative to the source's root, in posix form. The rules are git's own
(https://git-scm.com/docs/gitignore#_pattern_format), as :class:`pathspec.GitIgnoreSpec` applies
them: ``*`` and ``?`` never match ``/``; ``**/`` , ``/**/`` and ``/**`` match any number of
folders; a pattern without a ``/`` (other than a trailing one) matches a name at any depth; a
pattern with one is anchored at the root; a pattern that matches a folder matches everything in
it; a trailing ``/`` matches folders only; ``!pattern`` takes a path back out again (the last
matching pattern wins); ``#`` starts a comment. Matching is case-sensitive.
"""

from __future__ import annotations

from collections.abc import Iterable

from pathspec import GitIgnoreSpec


class GlobSet:
    """A list of patterns; a path matches when the patterns, read as a .gitignore, would ignore it."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self._spec = GitIgnoreSpec.from_lines(self.patterns)
        self._negated = any(pattern.startswith("!") for pattern in self.patterns)

    def matches(self, path: str) -> bool:
        """Whether the relative posix ``path`` (a file) matches."""
        return self._spec.match_file(path)

    def covers_folder(self, folder: str) -> bool:
        """Whether every path under the relative ``folder`` matches (so a walk may prune it).

        With a ``!`` pattern nothing is pruned: it may take a path under the folder back out.
        """
        return not self._negated and self._spec.match_file(folder.rstrip("/") + "/")
