"""Running the git CLI on one repository: one-shot commands, and objects read through one
persistent ``git cat-file --batch`` process.

Every command gets ``--git-dir`` explicitly, so a bare repository (even one without a ``config``
file) reads like any other and git never searches the folders above. The environment is the
caller's without the variables that would point git at another repository, with messages in
English (``LC_ALL=C``) and no prompts. :class:`Repository` is a context manager; leaving it ends
the ``cat-file`` process, also when the generator reading the repository is closed early.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import TracebackType
from typing import IO

_REDIRECTING = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_COMMON_DIR",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
)


class GitError(Exception):
    """A git command exited non-zero; the message is the first line it wrote to stderr."""

    def __init__(self, status: int, stderr: bytes) -> None:
        lines = stderr.decode("utf-8", "replace").strip().splitlines()
        super().__init__(lines[0] if lines else f"git exited with status {status}")
        self.status = status
        self.stderr = stderr


class NotARepository(GitError):
    """The folder is not a git repository (nor a work tree's top folder)."""


class MissingObject(ValueError):
    """``cat-file`` has no such object (a damaged or partial object database)."""


def _environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _REDIRECTING}
    return {**env, "LC_ALL": "C", "LANGUAGE": "C", "GIT_TERMINAL_PROMPT": "0"}


class Repository:
    """A git repository found at ``path`` (a work tree's top folder or the repository itself)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._env = _environment()
        ceiling = {**self._env, "GIT_CEILING_DIRECTORIES": str(path.resolve().parent)}  # look at path only
        try:
            found = _run(["rev-parse", "--absolute-git-dir", "--git-common-dir"], path, ceiling)
        except GitError as error:
            if b"not a git repository" in error.stderr:
                raise NotARepository(error.status, error.stderr) from error
            raise
        git_dir, common_dir = found.decode("utf-8", "surrogateescape").splitlines()[:2]
        self.git_dir = Path(git_dir)
        self.common_dir = (path.resolve() / common_dir).resolve()
        self._batch: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def git(self, *args: str) -> bytes:
        """Raw stdout of one git command (no decoding, nothing stripped); GitError if it fails."""
        return _run(["--git-dir", str(self.git_dir), *args], self.path, self._env)

    def read_object(self, sha: str) -> bytes:
        """The content of the object ``sha`` (a blob or a commit); MissingObject if absent."""
        batch = self._cat_file()
        stdin, stdout = batch.stdin, batch.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(sha.encode("ascii") + b"\n")
            stdin.flush()
        except BrokenPipeError as error:
            raise OSError(f"git cat-file ended ({error})") from error
        header = stdout.readline().split()
        if len(header) == 2 and header[1] in (b"missing", b"ambiguous"):
            raise MissingObject(f"object {sha} is {header[1].decode()} in the object database")
        if len(header) != 3 or not header[2].isdigit():
            raise OSError(f"git cat-file gave an unexpected answer for {sha}")
        data = _read_exactly(stdout, int(header[2]))
        _read_exactly(stdout, 1)  # the newline after the content
        return data

    def close(self) -> None:
        """End the cat-file process, if one was started."""
        batch, self._batch = self._batch, None
        if batch is None:
            return
        for stream in (batch.stdin, batch.stdout):
            if stream is not None:
                stream.close()
        try:
            batch.wait(timeout=10)
        except subprocess.TimeoutExpired:
            batch.kill()
            batch.wait()

    def _cat_file(self) -> subprocess.Popen[bytes]:
        if self._batch is None:
            self._batch = subprocess.Popen(
                ["git", "--git-dir", str(self.git_dir), "cat-file", "--batch"],
                cwd=self.path,
                env=self._env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        return self._batch


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> bytes:
    done = subprocess.run(["git", *args], check=False, cwd=cwd, env=env, capture_output=True, stdin=subprocess.DEVNULL)
    if done.returncode:
        raise GitError(done.returncode, done.stderr)
    return done.stdout


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise OSError("git cat-file ended in the middle of an object")
    return data
