"""Shared fixtures: a plora home in a tmp dir, a way to run the real CLI entry point, and the store
on each backend (SQLite and a real PostgreSQL server), described below at "The store on each backend"."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.postgres import PostgresMissing, PostgresServer

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    # Under pytest-xdist (`-n auto`: one worker per core) each worker gets its share of the cores for
    # torch, or the training tests oversubscribe them. Set before anything imports torch; the
    # subprocesses the tests start inherit it.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The long tests (marked slow) first, in their order: with `--dist worksteal` the workers share
    # out the short ones behind them instead of one worker ending the run alone on a long one.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


EXAMPLES = REPO / "examples"


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.delenv("PLORA_HOME", raising=False)
    monkeypatch.delenv("PLORA_STORE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return path


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run ``plora ARGS`` through flows.cli.main, exactly as the console script does."""
    from flows.cli import main

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["plora", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


def write_config(home: Path, text: str) -> Path:
    path = home / "plora.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch):
    """Hub offline, and any attempt to open an internet socket fails the test."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    attempts: list[object] = []
    real_connect = socket.socket.connect

    def guarded_connect(self: socket.socket, address: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError(f"test: network access attempted to {address!r}")
        return real_connect(self, address)

    def guarded_getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host not in (None, "localhost", "127.0.0.1", "::1"):
            attempts.append(host)
            raise OSError(f"test: name lookup attempted for {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    yield
    assert attempts == [], f"network access attempted: {attempts}"


_MODELS: dict[str, Path] = {}


def builtin_models(root: Path) -> Path:
    """A models/ folder with the builtin built once per session (copied into each test home)."""
    if "models" not in _MODELS:
        from pipeline.base_model import ensure_builtin

        models_home = root / "models-home"
        models_home.mkdir(parents=True, exist_ok=True)
        ensure_builtin(models_home)
        _MODELS["models"] = models_home / "models"
    return _MODELS["models"]


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The builtin tiny-llama's models/ folder, shared by the training tests (copy it into a home)."""
    return builtin_models(tmp_path_factory.mktemp("plora-train-models"))


@pytest.fixture
def fp32_compute(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compute in float32 on this CPU even where it has native bf16 (AVX512-BF16/AMX), for the tests
    that compare logits at float32 precision (merges, compositions): bf16 rounding is ~1e-2 there."""
    import pipeline.base.load as load

    monkeypatch.setattr(load, "cpu_has_bf16", lambda: False)


# --- The store on each backend ---------------------------------------------------------------------
# A test that uses ``store_kind`` (directly, or through ``store_url``, ``store`` or ``home_store``) runs
# once per backend, with ids ``[sqlite]`` and ``[postgres]``; Postgres is a real server that the tests
# start on loopback (tests/postgres.py, once per session, on first use).
#
# - ``store_url``:  the URL of an empty database (no tables) of that kind, this test's own.
# - ``store``:      a ``Store`` on such a database, migrated to the schema's head; disposed after.
# - ``home_store``: the ``home`` fixture's store is of that kind. SQLite: ``home/plora.db`` as always;
#                   Postgres: ``PLORA_STORE_URL`` points at a database of this test's (at the schema's
#                   head), which subprocesses inherit. A ``StoreUnderTest``: ``kind``, ``url``, ``wipe()``
#                   (empties the store, as deleting plora.db does).
# - ``postgres_server``: the session's server, for tests that need Postgres itself.
#
# Whole module on both backends: ``pytestmark = pytest.mark.usefixtures("home_store")`` (usefixtures
# sets the store up before the fixtures that open the home; a test that takes ``home_store`` as an
# argument must list it before those). A test that
# only makes sense on some backends (it reads the SQLite file, say): ``@pytest.mark.stores("sqlite")``.
# No PostgreSQL installed is a set-up error naming the command to run, never a skipped test.

STORE_KINDS = ("sqlite", "postgres")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_kind" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("stores")
        kinds = marker.args if marker else STORE_KINDS
        assert set(kinds) <= set(STORE_KINDS), f"unknown store kinds in {marker}"
        metafunc.parametrize("store_kind", kinds)


@dataclass(frozen=True)
class StoreUnderTest:
    kind: str
    url: str
    wipe: Callable[[], None]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer.start()
    except PostgresMissing as e:
        pytest.fail(str(e), pytrace=False)
    try:
        server.migrate_template()
        yield server
    finally:
        server.stop()


@pytest.fixture
def store_url(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    if store_kind == "sqlite":
        yield f"sqlite:///{tmp_path}/store/plora.db"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.database(migrated=False)
    yield server.url(name)
    server.drop(name)


@pytest.fixture
def store(store_url: str) -> Iterator[Any]:
    from storage import Store

    opened = Store(store_url)
    opened.upgrade()
    yield opened
    opened.dispose()


@pytest.fixture
def home_store(
    store_kind: str, home: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[StoreUnderTest]:
    if store_kind == "sqlite":

        def wipe_file() -> None:
            for path in home.glob("plora.db*"):
                path.unlink()

        yield StoreUnderTest("sqlite", f"sqlite:///{home}/plora.db", wipe_file)
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.database()
    monkeypatch.setenv("PLORA_STORE_URL", server.url(name))
    yield StoreUnderTest("postgres", server.url(name), lambda: server.wipe(name))
    server.drop(name)
