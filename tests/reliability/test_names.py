"""Scenario 9: names from config or the command line can't leave the home folder.

Source and profile names in plora.toml, conversation refs, snapshot fingerprints, adapter refs,
profiles and sources given on the command line: a name with ``../``, an absolute path, a NUL or
bytes that aren't UTF-8 gets one clear error line and exit code 2 (nothing is created anywhere),
and ``Home.child`` (which every path built from a name goes through) refuses whatever would
resolve outside the home. Commands that aren't registered yet are skipped until they are.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.home import Home, UnsafeNameError
from tests.conftest import REPO, write_config

NAMES = ["../x", "../../etc", "/etc/passwd", "a/../../b", "..", ".", "a\x00b", "x\udcff"]
# (command path, argv with {name} where the hostile name goes)
COMMANDS = [
    (("ingest",), ["ingest", "--source", "{name}"]),
    (("label",), ["label", "{name}:1", "good"]),
    (("label",), ["label", "chats:{name}", "good"]),
    (("datasets", "show"), ["datasets", "show", "{name}"]),
    (("datasets", "build"), ["datasets", "build", "--profile", "{name}"]),
    (("adapters", "show"), ["adapters", "show", "{name}"]),
    (("adapters", "show"), ["adapters", "show", "work@v1/{name}"]),
    (("adapters", "list"), ["adapters", "list", "--profile", "{name}"]),
    (("adapters", "verify"), ["adapters", "verify", "{name}"]),
    (("adapters", "promote"), ["adapters", "promote", "{name}"]),
    (("adapters", "rollback"), ["adapters", "rollback", "{name}"]),
    (("adapters", "export"), ["adapters", "export", "{name}", "{out}"]),
    (("train",), ["train", "--profile", "{name}"]),
    (("generate",), ["generate", "--profile", "{name}", "hello"]),
]
CONFIG = """
[[sources]]
name = "chats"
type = "jsonl"
path = "chats.jsonl"

[profiles.work]
sources = ["chats"]
"""


def registered(*path: str) -> bool:
    """Whether ``plora PATH...`` exists yet (other commands are being written alongside these tests)."""
    from flows.cli import app

    command = typer.main.get_command(app)
    for name in path:
        commands = getattr(command, "commands", None)  # a group (typer vendors its own click)
        if not isinstance(commands, dict) or name not in commands:
            return False
        command = commands[name]
    return True


def _tree(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if "plora.db" not in p.name}


def _one_error_line(result, code: int = 2) -> str:
    assert result.code == code, (result.code, result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def store_home(home: Path, cli) -> Path:
    (home / "chats.jsonl").write_text(
        '{"id": "c1", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n',
        encoding="utf-8",
    )
    write_config(home, CONFIG)
    assert cli("ingest", "--home", home).code == 0
    return home


@pytest.mark.parametrize(("path", "argv"), COMMANDS, ids=[" ".join(argv[:3]) for _, argv in COMMANDS])
def test_hostile_names_on_the_command_line(
    path: tuple[str, ...], argv: list[str], store_home: Path, tmp_path: Path, cli
) -> None:
    if not registered(*path):
        pytest.skip(f"plora {' '.join(path)} isn't registered yet")
    before = _tree(tmp_path)
    for name in NAMES:
        args = [part.format(name=name, out=tmp_path / "out") for part in argv]
        _one_error_line(cli(*args, "--home", store_home))
    assert _tree(tmp_path) == before, "a hostile name created something"


def test_plora_run_with_a_hostile_profile(store_home: Path) -> None:
    if not registered("run"):
        pytest.skip("plora run isn't registered yet")
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--profile", "../x", "--home", str(store_home)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == "", done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr  # checked before the flow starts


def test_label_files_with_hostile_refs(store_home: Path, tmp_path: Path, cli) -> None:
    if not registered("labels", "import"):
        pytest.skip("plora labels import isn't registered yet")
    lines = tmp_path / "labels.jsonl"
    lines.write_text('{"source": "../x", "external_id": "../../etc/passwd", "value": "good"}\n', encoding="utf-8")
    result = cli("labels", "import", lines, "--json", "--home", store_home)
    assert result.code == 0 and result.json()["missing"] == 1  # reported, never looked up on disk
    lines.write_text('{"source": "chats", "external_id": "\\ud800", "value": "good"}\n', encoding="utf-8")
    line = _one_error_line(cli("labels", "import", lines, "--home", store_home))
    assert "'external_id' is not valid UTF-8 text" in line


def test_a_home_path_that_is_not_utf8(tmp_path: Path, cli) -> None:
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/h\xff"))
    odd.mkdir()
    (odd / "plora.toml").write_text("", encoding="utf-8")
    line = _one_error_line(cli("status", "--home", odd), code=1)
    assert "not valid UTF-8" in line and "h\\xff" in line
    nul = cli("status", "--home", f"{tmp_path}/a\x00b")
    assert nul.code == 2 and "null byte" in nul.stderr and "Traceback" not in nul.stderr


@pytest.mark.parametrize(
    "name",
    ["../x", "/abs", "a/b", "..", ".", "", "UPPER", "a b", "x" * 65, "a\\u0000b", "\\u00e9t\\u00e9", "~", "\\\\x"],
)
def test_source_and_profile_names_in_the_config(name: str, home: Path, cli) -> None:
    write_config(home, f'[[sources]]\nname = "{name}"\ntype = "jsonl"\npath = "c.jsonl"\n')
    line = _one_error_line(cli("status", "--home", home))
    assert line.startswith("error: plora.toml: sources[0].name: ")

    write_config(
        home, f'[[sources]]\nname = "ok"\ntype = "jsonl"\npath = "c.jsonl"\n\n[profiles."{name}"]\nsources = ["ok"]\n'
    )
    line = _one_error_line(cli("status", "--home", home))
    assert line.startswith("error: plora.toml: profiles")
    assert sorted(p.name for p in home.iterdir()) == ["plora.toml"], "nothing written for a bad config"


# --- Home.child, directly -------------------------------------------------------------------------

NAME_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=8),
    st.lists(st.sampled_from(["..", ".", "/", "\\", "\x00", "a", "~", "%2e", "\udcff", ""]), max_size=5).map("".join),
)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.lists(NAME_TEXT, min_size=1, max_size=3))
def test_home_child_never_leaves_the_home(names: list[str]) -> None:
    home = Home(Path("/tmp/plora-home-check").resolve())
    try:
        path = home.child(home.adapters, *names)
    except UnsafeNameError as e:
        assert str(e)
        return
    assert path.resolve().is_relative_to(home.root)
    assert len(path.relative_to(home.adapters).parts) == len(names)
    assert all(part not in ("..", ".", "") and "\x00" not in part for part in path.relative_to(home.root).parts)


def test_home_child_refuses_symlinks_and_bases_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    home = Home((tmp_path / "home").resolve())
    home.root.mkdir()
    home.adapters.symlink_to(outside, target_is_directory=True)  # adapters/ points out of the home
    with pytest.raises(UnsafeNameError, match="outside the plora home"):
        home.child(home.adapters, "work")
    with pytest.raises(UnsafeNameError, match="outside the plora home"):
        home.child(tmp_path, "x")
    for bad in ("..", "../x", "/etc", "a\x00", "", ".", "a\\b"):
        with pytest.raises(UnsafeNameError):
            home.child(home.runs, bad)
    assert home.child(home.runs, "run-1", "checkpoint-5") == home.runs / "run-1" / "checkpoint-5"


def test_accepted_profiles_and_adapter_refs_are_safe_paths() -> None:
    registry = pytest.importorskip("pipeline.registry")
    from pipeline.errors import UsageError

    home = Home(Path("/tmp/plora-home-check").resolve())

    @settings(max_examples=200, deadline=None, derandomize=True, database=None)
    @given(NAME_TEXT, st.sampled_from(["", "@v1", "@2", "@v0", "@v-1", "@vx", "@v1/.."]))
    def check(name: str, version: str) -> None:
        try:
            profile, number = registry.parse_ref(name + version)
        except UsageError:
            return
        home.child(home.adapters, profile, f"v{number or 1}")  # never raises for an accepted ref

    check()
