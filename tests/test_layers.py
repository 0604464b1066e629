"""The import-layer contract (connectors <- storage <- pipeline <- flows), checked by import-linter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_layers_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--config", str(REPO / "pyproject.toml")], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_heavy_libraries_are_not_imported_by_the_cli_at_start() -> None:
    code = (
        "import sys, flows.cli, pipeline.config, storage, connectors.records; "
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'trl', 'datasets', 'prefect') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
