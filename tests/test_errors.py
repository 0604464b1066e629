"""One error root per layer, with its context as fields; the CLI maps the roots to exit codes."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import storage
import storage.engine
from connectors.records import ConnectorError
from flows.cli import _exit_code
from pipeline.config import ConfigError
from pipeline.cycle import CycleFailed, SourceFailed
from pipeline.errors import (
    DatasetError,
    IngestError,
    PipelineError,
    PloraError,
    RegistryError,
    TrainingError,
    UsageError,
)
from pipeline.examples import ExampleRepoError, ExampleRepoExistsError, ExamplesMissingError
from pipeline.home import UnsafeNameError
from storage.errors import StorageError
from tests.conftest import write_config

MISTAKES = [
    UsageError("unknown ref"),
    ConfigError(Path("/h/plora.toml"), "sources[2].type", "unknown source type 'svn'"),
    UnsafeNameError("'..' is not a valid name here"),
    ExamplesMissingError("no examples/"),
    ExampleRepoExistsError("taken"),
]
FAILED_WORK = [
    PloraError("failed"),
    IngestError("chats: failed", source="chats"),
    SourceFailed("chats", {"error": "chats: corrupt zip"}),
    CycleFailed("1 source failed", {"sources": {}}),
    DatasetError("snapshot gone"),
    TrainingError("run r1 failed", run_id="r1"),
    RegistryError("work@v2 failed verification", ref="work@v2"),
    ExampleRepoError("git failed"),
    ConnectorError("chats", "/x.zip: not a zip file", item="/x.zip"),
    StorageError("sqlite:////x.db: disk I/O error", url="sqlite:////x.db"),
]


@pytest.mark.parametrize("error", MISTAKES, ids=lambda e: type(e).__name__)
def test_mistakes_exit_2(error: Exception) -> None:
    assert isinstance(error, UsageError) and isinstance(error, PipelineError)
    assert _exit_code(error) == 2


@pytest.mark.parametrize("error", FAILED_WORK, ids=lambda e: type(e).__name__)
def test_failed_work_exits_1(error: Exception) -> None:
    assert not isinstance(error, UsageError)
    assert _exit_code(error) == 1


@pytest.mark.parametrize("error", [ValueError("x"), KeyError("k"), RuntimeError("bug"), AssertionError()])
def test_anything_else_is_a_bug_and_raises(error: Exception) -> None:
    assert _exit_code(error) is None


def test_old_import_paths_name_the_same_classes() -> None:
    assert storage.StorageError is storage.engine.StorageError is StorageError
    assert issubclass(UnsafeNameError, ValueError)  # callers that catch ValueError still do
    assert not issubclass(UsageError, PloraError) and not issubclass(PloraError, UsageError)


def test_context_is_in_fields_and_the_message_stays_one_line() -> None:
    config = ConfigError(Path("/h/plora.toml"), "sources[2].type", "unknown source type 'svn'")
    assert str(config) == "plora.toml: sources[2].type: unknown source type 'svn'"
    assert (config.file, config.key) == (Path("/h/plora.toml"), "sources[2].type")
    connector = ConnectorError("chats", "/x.zip: not a zip file", item="/x.zip")
    assert str(connector) == "chats: /x.zip: not a zip file"
    assert (connector.source, connector.item) == ("chats", "/x.zip")
    assert TrainingError("run r1 failed", run_id="r1").run_id == "r1"
    assert RegistryError("bad", ref="work@v2", file="a/b").file == Path("a/b")
    assert StorageError("x", url="sqlite:///a.db").url == "sqlite:///a.db"


@pytest.mark.parametrize("error", MISTAKES + FAILED_WORK, ids=lambda e: type(e).__name__)
def test_errors_survive_pickling_with_their_context(error: Exception) -> None:
    """Prefect may persist a task's exception: type, message and fields come back."""
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error)
    assert again.__dict__ == error.__dict__


def test_a_foreign_file_as_the_store_is_one_clear_line(home: Path, cli) -> None:
    (home / "plora.db").write_bytes(b"this is not sqlite at all\n" * 200)
    write_config(home, "")
    result = cli("status", "--home", home)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.code == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: sqlite:///") and "is not a SQLite file" in lines[0]
    assert (home / "plora.db").read_bytes() == b"this is not sqlite at all\n" * 200  # left as it was
