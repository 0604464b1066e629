"""The import contracts, checked by import-linter (config in pyproject.toml): the layers
(connectors <- storage <- pipeline <- flows) and no import circle among the modules of a package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_layers_hold_and_no_package_has_an_import_circle() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--config", str(REPO / "pyproject.toml")], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_heavy_libraries_are_not_imported_by_the_cli_at_start() -> None:
    code = (
        "import sys, flows.cli, pipeline.config, storage, connectors.records; "
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'trl', 'datasets', 'prefect') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_circle_check_sees_an_engine_migrate_circle(tmp_path: Path) -> None:
    """The acyclic contract is not vacuous: the old storage circle (migrate importing the engine
    back, with the engine's lazy import of migrate) is reported as broken."""
    import shutil

    copy = tmp_path / "tree"
    for package in ("connectors", "storage", "pipeline", "flows"):
        shutil.copytree(REPO / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    migrate = copy / "storage" / "migrate.py"
    migrate.write_text(migrate.read_text(encoding="utf-8") + "\nfrom storage.engine import Store\n")
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--config", str(copy / "pyproject.toml"), "--no-cache"],
        cwd=copy,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert ".migrate -> .engine" in result.stdout
