"""The pipeline layer's one error root, and its two branches the CLI maps to exit codes.

``PipelineError`` is the root. Below it:

- ``UsageError``: a mistake of the person (an argument, a reference, the config): exit 2.
  ``ConfigError`` (pipeline/config.py) and ``UnsafeNameError`` (pipeline/home.py) are usage errors.
- ``PloraError``: work that failed (a source, a dataset build, a training run, a registry step):
  exit 1. ``IngestError``, ``DatasetError``, ``TrainingError``, ``RegistryError`` are failed work.

The message is the one line the CLI prints (``error: <message>``); the context is in fields for
code to read: ``source``, ``file``, ``key``, ``run_id``, ``ref`` (None when it doesn't apply).
Raise them ``from e`` when they wrap another exception. The other layers have their own roots:
``connectors.records.ConnectorError`` and ``storage.errors.StorageError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class PipelineError(Exception):
    """Root of the pipeline layer's errors; catch UsageError or PloraError, not this, in pipeline code."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        file: Path | str | None = None,
        key: str | None = None,
        run_id: str | None = None,
        ref: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.file = None if file is None else Path(file)
        self.key = key
        self.run_id = run_id
        self.ref = ref

    def __reduce__(self) -> tuple[Any, ...]:
        # picklable whatever a subclass's __init__ takes (Prefect may persist a task's exception)
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(cls: type[PipelineError], args: tuple[Any, ...], state: dict[str, Any]) -> PipelineError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class UsageError(PipelineError):
    """A wrong argument, reference or setting given by the person (unknown ref, bad option value): exit 2."""


class PloraError(PipelineError):
    """Work that failed: a source, a build, a run (exit 1)."""


class IngestError(PloraError):
    """A source's ingest failed (``source``)."""


class TrainingError(PloraError):
    """A training run failed (``run_id``, and ``ref`` of the adapter involved, if any)."""


class RegistryError(PloraError):
    """An adapter version can't be registered, verified, loaded or moved (``ref``, ``file``)."""


class DatasetError(PloraError):
    """A dataset snapshot can't be built or read (``file``: its folder)."""
