"""Walking a notes folder: candidate note files in sorted order, odd entries as Skips.

Hidden names (``.obsidian/``, ``.trash/``) are left out, ``include`` / ``exclude`` applied (a
folder that ``exclude`` covers is not even listed), and symlinks are never followed out of the
folder: see :mod:`connectors.markdown` for the rules.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from connectors.globs import GlobSet
from connectors.records import Skip


def display(relpath: str) -> str:
    """The id form of a path: undecodable file name bytes (surrogate escapes) become ``\\xNN``."""
    try:
        relpath.encode("utf-8")
    except UnicodeEncodeError:
        return relpath.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return relpath


def _inside(root_real: str, target: str) -> bool:
    return target == root_real or target.startswith(root_real.rstrip(os.sep) + os.sep)


def walk(root: str, include: GlobSet, exclude: GlobSet) -> Iterator[tuple[str, str] | Skip]:
    """Candidate note files as (relpath, path), in sorted order, or Skips for odd entries."""
    root_real = os.path.realpath(root)
    stack: list[tuple[str, str]] = [("", root)]
    while stack:
        folder_rel, folder = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as error:
            shown = display(folder_rel)
            yield Skip(shown, f"can't list folder: {error.strerror or error}")
            continue
        subfolders: list[tuple[str, str]] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            relpath = f"{folder_rel}/{entry.name}" if folder_rel else entry.name
            wanted = include.matches(relpath) and not exclude.matches(relpath)
            try:
                is_link = entry.is_symlink()
                is_dir = entry.is_dir(follow_symlinks=False)
                is_file = entry.is_file(follow_symlinks=False)
            except OSError as error:
                if wanted:
                    shown = display(relpath)
                    yield Skip(shown, f"can't read: {error.strerror}", shown)
                continue
            if is_link:
                if exclude.covers_folder(relpath):
                    continue
                skip = _check_symlink(root_real, entry.path, relpath, wanted)
                if skip is not None:
                    yield skip
                elif wanted:
                    yield relpath, entry.path
            elif is_dir:
                if not exclude.covers_folder(relpath):
                    subfolders.append((relpath, entry.path))
            elif wanted:
                if is_file:
                    yield relpath, entry.path
                else:
                    yield Skip(display(relpath), "not a regular file", display(relpath))
        stack.extend(reversed(subfolders))


def _check_symlink(root_real: str, link: str, relpath: str, wanted: bool) -> Skip | None:
    """None when the link is a file inside the root (read it), else a Skip or nothing to report.

    A link that doesn't match ``include`` is only reported when it is a folder link (it could
    hold notes); file links that aren't notes are ignored like any other non-note file.
    """
    shown = display(relpath)
    target = os.path.realpath(link)
    if not os.path.exists(target):
        return Skip(shown, f"broken symlink (to {target})", shown) if wanted else None
    if os.path.isdir(target):
        if not _inside(root_real, target):
            return Skip(shown, f"symlink to a folder outside the notes folder ({target}); not followed")
        link_parent = os.path.realpath(os.path.dirname(link))
        if _inside(target, link_parent):
            return Skip(shown, f"symlink loop (points back to {target}); not followed")
        return Skip(shown, "symlink to a folder already inside the notes folder; its notes are read at their real path")
    if not wanted:
        return None
    if not _inside(root_real, target):
        return Skip(shown, f"symlink to a file outside the notes folder ({target})", shown)
    return None
