"""Issue 18: a killed dataset build's temp folder is removed by the next build (only a dead
process's), a read-only home or store says "read-only" naming the path, and a mistyped --home is
one error line that creates nothing (only ``plora init`` makes a home)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.locks import owner

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# --- killed dataset builds ---------------------------------------------------------------------------

_KILLED_BUILD = textwrap.dedent("""
    import os, signal, sys
    from datasets import DatasetDict

    real = DatasetDict.save_to_disk

    def save_then_die(self, path, *args, **kwargs):
        real(self, path, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)  # the temp folder is written, not yet renamed into place

    DatasetDict.save_to_disk = save_then_die
    sys.argv = ["plora", "datasets", "build", "--home", sys.argv[1]]
    from flows.cli import main
    main()
""")


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_build_s_temp_folder_is_removed_by_the_next_build(home: Path, cli) -> None:
    assert cli("init", "--example", "--home", home).code == 0
    assert cli("ingest", "--home", home).code == 0
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_BUILD, str(home)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    datasets = home / "datasets"
    left = sorted(p.relative_to(datasets).as_posix() for p in datasets.glob("*/.tmp-*"))
    assert len(left) == 1, left  # the first kind's temp folder, complete but never renamed

    kind = datasets / left[0].split("/")[0]
    fp = "0" * 16
    planted = {
        f".tmp-{fp}-{owner().rsplit('-', 1)[0]}-{_dead_pid()}-aaaaaaaa": False,  # a dead build here: removed
        f".tmp-{fp}-{owner()}-bbbbbbbb": True,  # a live build (this process): kept
        f".tmp-{fp}-otherhost-1-cccccccc": True,  # another machine's (a shared folder): kept
        f".tmp-{fp}-dddddddd": True,  # written before the owner was in the name, recent: kept
        f".tmp-{fp}-eeeeeeee": False,  # the same, untouched for two days: removed
        ".tmp-notes": True,  # not a name plora makes: kept
    }
    for name in planted:
        (kind / name).mkdir()
        (kind / name / "x").write_text("x")
    two_days_ago = time.time() - 2 * 86400
    os.utime(kind / f".tmp-{fp}-eeeeeeee", (two_days_ago, two_days_ago))

    built = cli("datasets", "build", "--home", home)
    assert built.code == 0, built.stderr
    remaining = {p.name for p in kind.iterdir() if p.name.startswith(".tmp-")}
    assert remaining == {name for name, kept in planted.items() if kept}
    assert not list(datasets.glob(f"*/{left[0].split('/')[1]}"))


# --- read-only home or store ---------------------------------------------------------------------------


def _read_only(path: Path, *plora: str | Path) -> subprocess.CompletedProcess[str]:
    """Run plora with ``path`` bind-mounted read-only (a private mount namespace): EROFS for real,
    which file modes can't give when the tests run as root."""
    args = " ".join(f"'{a}'" for a in plora)
    mount = f"mount --bind '{path}' '{path}' && mount -o remount,bind,ro '{path}'"
    script = f"{mount} && exec {sys.executable} -m flows.cli {args}"
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def can_mount_read_only(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    probe.mkdir()
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c", f"mount --bind {probe} {probe} && mount -o remount,bind,ro {probe}"],
        capture_output=True,
        check=False,
    )
    if shutil.which("unshare") is None or done.returncode != 0:
        pytest.skip("needs unshare --mount (a private mount namespace) to make a folder read-only")


@pytest.mark.usefixtures("can_mount_read_only")
@pytest.mark.parametrize("command", [["status"], ["ingest"], ["datasets", "build"], ["label", "chats:c1", "good"]])
def test_a_read_only_home_says_read_only_naming_it(home: Path, cli, command: list[str]) -> None:
    assert cli("init", "--example", "--home", home).code == 0
    result = _read_only(home, *command, "--home", home)
    assert result.returncode == 1, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"error: {home} is read-only: "), result.stderr


@pytest.mark.usefixtures("can_mount_read_only")
def test_a_read_only_store_folder_says_read_only_naming_it(home: Path, tmp_path: Path, cli) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (home / "plora.toml").write_text(f'[store]\nurl = "sqlite:///{store}/plora.db"\n', encoding="utf-8")
    assert cli("status", "--home", home).code == 0
    result = _read_only(store, "status", "--home", home)
    assert result.returncode == 1, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and f"{store} is read-only: SQLite writes the store" in lines[0], result.stderr


# --- no home there ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["ingest"],
        ["datasets", "build"],
        ["train"],
        ["label", "chats:c1", "good"],
        ["labels", "export", "out.jsonl"],
        ["adapters", "list"],
        ["db", "upgrade"],
    ],
)
@pytest.mark.parametrize("where", ["missing", "empty folder"])
def test_no_plora_home_there_is_one_line_and_creates_nothing(
    tmp_path: Path, cli, command: list[str], where: str
) -> None:
    typo = tmp_path / "typo" / "home"
    if where == "empty folder":
        typo.mkdir(parents=True)
    result = cli(*command, "--home", typo)
    assert result.code == 2
    why = "no such folder" if where == "missing" else "no plora.toml in it"
    assert error_lines(result.stderr) == [
        f"error: there is no plora home at {typo} ({why}): check --home or PLORA_HOME, "
        f"or create one with `plora init --home {typo}`"
    ]
    created = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert created == ([] if where == "missing" else ["typo", "typo/home"])
    assert cli("init", "--home", typo).code == 0  # plora init is the one that makes it
    assert cli("status", "--home", typo).code == 0
