"""Locks between plora processes on one machine, and who owns a leftover.

``hold(home, name, what=...)`` takes the lock file ``<home>/.locks/<name>.lock`` (``filelock``: an
OS lock, released when the process ends, however it ends; a stale file is never mistaken for a
held lock). When another process holds it, a message says what is being waited for, then it waits,
up to ``timeout`` seconds; after that a ``LockTimeout`` (exit 1) names the lock and what to do.
What each lock serializes:

- ``store``: opening the store and migrating it (``pipeline.workspace``); a fresh home's first
  migration is done once, by one process;
- ``ingest-<source>``: one ingest of a source at a time; a second ``plora ingest`` waits and then
  finds the source unchanged (``pipeline.ingest``);
- ``train-<profile>``: one training run per profile per home (the training entry point): two
  ``plora run`` at once train one after the other, never two versions from the same parent;
- ``runs/<id>/.lock`` (``run_lock``): one process per training run; a second one (``plora train
  --resume`` of a run being trained) fails at once instead of waiting.

``owner()`` tags a folder a process leaves behind while it works (``<host>-<pid>``; registration
staging folders, dataset build temp folders); ``left_by_dead_process(tag)`` is true only for a tag
of this host whose process is gone: what may be removed as a crash's leftover.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from filelock import FileLock, Timeout

from pipeline.errors import PloraError, TrainingError

log = logging.getLogger(__name__)

LOCKS_DIR: Final = ".locks"
RUN_LOCK_FILE: Final = ".lock"
DEFAULT_TIMEOUT_S: Final = 6 * 3600.0  # a training run may hold one for hours
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


class LockTimeout(PloraError):
    """Waited ``timeout`` seconds for a lock another plora process holds (exit 1)."""


def read_only_error(path: Path, error: OSError) -> PloraError:
    """The one line for a home or store that can't be written: read-only, naming the path."""
    why = "is read-only" if error.errno == errno.EROFS else f"is not writable ({error.strerror})"
    return PloraError(
        f"{path} {why}: plora writes its store, locks, snapshots, runs and adapters under the home; "
        "make it writable, or copy the home somewhere writable and use --home",
        file=path,
    )


def lock_path(home: Path, name: str) -> Path:
    return home / LOCKS_DIR / f"{name}.lock"


@contextmanager
def hold(home: Path, name: str, *, what: str, timeout: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
    """Hold the home's lock ``name`` for the block; ``what`` says what holds it ("an ingest of
    source chats"), for the message shown while waiting."""
    path = lock_path(home, name)
    try:
        path.parent.mkdir(exist_ok=True)
    except OSError as e:
        if e.errno in _READ_ONLY:
            raise read_only_error(home, e) from e
        raise PloraError(f"can't create the lock folder {path.parent}: {e.strerror}", file=path.parent) from e
    lock = FileLock(path)
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.warning("waiting for %s in another plora process to finish (lock %s)...", what, path)
            lock.acquire(timeout=timeout)
    except Timeout:
        raise LockTimeout(
            f"gave up after {timeout:.0f} s waiting for {what} in another plora process (lock {path}); "
            "try again when it is done",
            file=path,
        ) from None
    except OSError as e:
        if e.errno in _READ_ONLY:
            raise read_only_error(home, e) from e
        raise
    try:
        yield
    finally:
        lock.release()


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``runs/<id>/.lock`` while working on the run; a second process gets a TrainingError at
    once instead of training the same run twice."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir / RUN_LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise TrainingError(
            f"run {run_dir.name} is being trained by another process; "
            "wait for it to finish (or stop it) before resuming"
        ) from None
    try:
        yield
    finally:
        lock.release()


def is_locked(run_dir: Path) -> bool:
    """Whether a process holds the run's lock right now."""
    path = run_dir / RUN_LOCK_FILE
    if not path.exists():
        return False
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def owner() -> str:
    """``<host>-<pid>`` of this process, for the names of folders it leaves while it works."""
    return f"{_host()}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def left_by_dead_process(tag: str) -> bool:
    """``tag`` starts with ``<host>-<pid>`` (as ``owner()`` makes it) of this host, and that
    process is gone. Anything else (another host, a live process, another shape) is not ours to remove."""
    host = _host()
    if not tag.startswith(host + "-"):
        return False
    pid = tag[len(host) + 1 :].split("-", 1)[0]
    return pid.isdigit() and not _pid_alive(int(pid))
