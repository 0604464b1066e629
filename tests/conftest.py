"""Shared fixtures: a plora home in a tmp dir and a way to run the real CLI entry point."""

from __future__ import annotations

import json
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
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
