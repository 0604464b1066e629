"""Shared fixtures: a plora home in a tmp dir and a way to run the real CLI entry point."""

from __future__ import annotations

import json
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
