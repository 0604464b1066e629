"""Model folders written atomically: built in a hidden sibling folder, synced, then renamed into place.

A crash at any point leaves either the old folder or the new one at the destination, never a half
one; the hidden folders a killed process leaves behind are removed by the next build into the same
place (only those whose process is gone)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from pathlib import Path

_LEFT_BEHIND = re.compile(r"\.(?:tmp|old)-(\d+)-[0-9a-f]+$")


def staging_folder(dest: Path) -> Path:
    """A new, empty hidden sibling of ``dest`` to build into (named with this process's id)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(dest)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def fsync_tree(folder: Path) -> None:
    """Flush every file of ``folder`` (top level) and the folder itself to disk."""
    for path in [*folder.iterdir(), folder]:
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def swap_into_place(tmp: Path, dest: Path) -> None:
    """Rename ``tmp`` to ``dest``, replacing an existing ``dest``."""
    old = None
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        dest.rename(old)
    try:
        tmp.rename(dest)
    except OSError:
        # Another process put a folder there between our two renames: keep theirs.
        if not dest.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_abandoned(dest: Path) -> None:
    """Hidden ``.tmp-`` / ``.old-`` siblings of ``dest`` left by processes that no longer run."""
    if not dest.parent.is_dir():
        return
    for path in dest.parent.glob(f".{dest.name}.*"):
        match = _LEFT_BEHIND.search(path.name)
        if match and not _alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)


__all__ = ["fsync_tree", "remove_abandoned", "staging_folder", "swap_into_place"]
