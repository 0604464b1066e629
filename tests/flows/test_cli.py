from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import write_config

STATUS_KEYS = {"sources", "documents_by_kind", "labels", "redactions", "datasets", "adapters"}


def test_init_then_status_json_in_an_empty_folder(home: Path, cli) -> None:
    result = cli("init", "--home", home)
    assert result.code == 0, result.stderr
    assert (home / "plora.toml").exists() and (home / "plora.db").exists()

    status = cli("status", "--json", "--home", home)
    assert status.code == 0, status.stderr
    report = status.json()
    assert report.keys() >= STATUS_KEYS
    assert report["documents_by_kind"] == {"conversation": 0, "note": 0, "runbook": 0, "code": 0, "commit": 0}
    assert {"good": 0, "bad": 0, "corrections": 0, "unlabelled_conversations": 0}.items() <= report["labels"].items()
    assert report["datasets"] == 0 and report["adapters"] == {} and report["redactions"] == {}


def test_default_config_written_by_init_loads(home: Path, cli) -> None:
    cli("init", "--home", home)
    text = (home / "plora.toml").read_text()
    assert "[base_model]" in text and "# [[sources]]" in text
    assert cli("status", "--home", home).code == 0


def test_init_refuses_to_overwrite(home: Path, cli) -> None:
    assert cli("init", "--home", home).code == 0
    (home / "plora.toml").write_text("# mine\n")
    again = cli("init", "--home", home)
    assert again.code == 2
    assert "already exists" in again.stderr
    assert (home / "plora.toml").read_text() == "# mine\n"


def test_home_from_environment(home: Path, cli, monkeypatch) -> None:
    monkeypatch.setenv("PLORA_HOME", str(home))
    assert cli("init").code == 0
    assert (home / "plora.toml").exists()


def test_broken_config_is_one_line_and_exit_2(home: Path, cli) -> None:
    write_config(home, '[[sources]]\nname = "a"\ntype = "svn"\npath = "."\n')
    result = cli("status", "--json", "--home", home)
    assert result.code == 2
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "error: plora.toml: sources[0].type: unknown source type 'svn'; expected one of "
        "chatgpt, claude, jsonl, markdown, git"
    ]


def test_db_upgrade(home: Path, cli) -> None:
    write_config(home, "")
    result = cli("db", "upgrade", "--home", home)
    assert result.code == 0 and "latest schema" in result.stdout


def test_unreachable_store_is_exit_1(home: Path, cli) -> None:
    blocker = home / "file"
    blocker.write_text("not a folder")
    write_config(home, f'[store]\nurl = "sqlite:///{blocker}/sub/plora.db"\n')
    result = cli("status", "--home", home)
    assert result.code == 1 and result.stderr.startswith("error: store.url: can't create the folder")
    assert "Traceback" not in result.stderr


def test_typer_runner_status_and_help(home: Path) -> None:
    write_config(home, "")
    runner = CliRunner()
    result = runner.invoke(app, ["status", "--json", "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout).keys() >= STATUS_KEYS
    helped = runner.invoke(app, ["--help"])
    assert helped.exit_code == 0 and "init" in helped.stdout and "status" in helped.stdout


def test_installed_console_script(home: Path) -> None:
    plora = shutil.which("plora", path=str(Path(sys.executable).parent))
    assert plora, "the plora console script is not installed (pip install -e .)"
    env = {**os.environ, "PLORA_HOME": str(home)}
    version = subprocess.run([plora, "--version"], capture_output=True, text=True, env=env, check=True)
    assert version.stdout.startswith("plora ")
    subprocess.run([plora, "init"], capture_output=True, text=True, env=env, check=True)
    status = subprocess.run([plora, "status", "--json"], capture_output=True, text=True, env=env, check=True)
    assert json.loads(status.stdout).keys() >= STATUS_KEYS
