"""Issue 18: no store mistake deletes an adapter, and a store that isn't one (0 bytes, another
application's, damaged) is one error line, never a new store or a traceback.

Pointing the home at another (empty) store and registering used to delete every registered
version folder as "left by an interrupted registration". Now only plora's own leftovers are ever
removed (a staging folder, or a ``v<N>`` folder with the pending marker of a dead registration);
a folder the store doesn't know is kept, reported, skipped by the numbering, and ``plora adapters
adopt`` imports it. Real PEFT adapters on the builtin tiny-llama; both store backends where the
store matters."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from pipeline import registry
from pipeline.workspace import open_workspace
from tests.conftest import StoreUnderTest
from tests.pipeline.test_registry import Kit, adapter_kit, make_home, register

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("no_network")]


@pytest.fixture(scope="session")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return adapter_kit(tmp_path_factory.getbasetemp() / "adapter-kit")


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path -> sha256)."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


PROGRESS_LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] ")  # flows.output.LogProgress, when stderr is not a terminal


def error_lines(stderr: str) -> list[str]:
    """What stderr says besides progress lines (a command may report progress before the error)."""
    return [line for line in stderr.splitlines() if line.strip() and not PROGRESS_LINE.match(line)]


def test_another_empty_store_never_deletes_registered_adapters(
    home_store: StoreUnderTest, store_url: str, home: Path, kit: Kit, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_home(home, kit)
    with open_workspace(home) as workspace:
        register(workspace, kit)
        register(workspace, kit, adapter="b", parent=1)
    before = tree(home / "adapters")
    assert {path.split("/")[1] for path in before} == {"v1", "v2"}

    monkeypatch.setenv("PLORA_STORE_URL", store_url)  # another database, empty: what a typo in store.url does
    with open_workspace(home) as workspace:
        new = register(workspace, kit)
    assert new.ref == "work@v3"  # the numbers of the folders it doesn't know are not reused
    after = tree(home / "adapters")
    assert {path: sha for path, sha in after.items() if not path.startswith("work/v3/")} == before

    listed = cli("adapters", "list", "--home", home, "--json")
    assert listed.code == 0 and [row["ref"] for row in listed.json()["adapters"]] == ["work@v3"]
    notes = error_lines(listed.stderr)
    assert len(notes) == 2 and all("is not in this store (kept); `plora adapters adopt work`" in n for n in notes)

    adopted = cli("adapters", "adopt", "--home", home, "--json")
    assert adopted.code == 0, adopted.stderr
    assert adopted.json() == {"adopted": ["work@v1", "work@v2"], "refused": [], "current": {}}
    assert cli("adapters", "verify", "work@v1", "--home", home).code == 0
    assert cli("adapters", "adopt", "--home", home, "--json").json()["adopted"] == []  # idempotent

    monkeypatch.setenv("PLORA_STORE_URL", home_store.url)  # back to the first store: v3 is the stranger there
    with open_workspace(home) as workspace:
        assert [v.ref for v in registry.unregistered(workspace)] == ["work@v3"]
        assert register(workspace, kit, adapter="b", parent=2).ref == "work@v4"
    assert {path: sha for path, sha in tree(home / "adapters").items() if not path.startswith("work/v4/")} == after


def test_only_plora_s_own_leftovers_are_removed(home_store: StoreUnderTest, home: Path, kit: Kit, cli) -> None:
    make_home(home, kit)
    with open_workspace(home) as workspace:
        register(workspace, kit)
    profile = home / "adapters" / "work"
    (profile / "v5").mkdir()  # no manifest: not a version anyone can load, but not ours to delete
    (profile / "v5" / "notes.txt").write_text("mine\n")
    (profile / ".staging-otherhost-1-abc").mkdir()  # another machine's registration (shared folder)
    (profile / "my-backup").mkdir()
    with open_workspace(home) as workspace:
        assert register(workspace, kit, adapter="b", parent=1).ref == "work@v6"
    names = sorted(path.name for path in profile.iterdir())
    assert names == [".staging-otherhost-1-abc", "my-backup", "v1", "v5", "v6"]
    refused = cli("adapters", "adopt", "work", "--home", home, "--json")
    assert refused.code == 1
    assert refused.json()["refused"] == [
        {"ref": "work@v5", "path": str(profile / "v5"), "reason": "plora.json: no manifest"}
    ]
    assert (profile / "v5" / "notes.txt").read_text() == "mine\n"


@pytest.mark.parametrize("command", [["status"], ["ingest"], ["datasets", "build"], ["train"]])
@pytest.mark.parametrize("kind", ["empty", "foreign"])
def test_an_empty_or_foreign_plora_db_is_an_error_not_a_new_store(
    home: Path, kit: Kit, cli, command: list[str], kind: str
) -> None:
    import sqlite3

    make_home(home, kit)
    with open_workspace(home) as workspace:
        register(workspace, kit)
    for path in home.glob("plora.db*"):
        path.unlink()
    if kind == "empty":
        (home / "plora.db").write_bytes(b"")
        expected = "is an empty file (0 bytes), not a plora store"
    else:
        with sqlite3.connect(home / "plora.db") as other:
            other.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        expected = "not a plora store (it holds other tables: users)"
    db = (home / "plora.db").read_bytes()
    adapters = tree(home / "adapters")
    result = cli(*command, "--home", home)
    assert result.code == 1
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert (home / "plora.db").read_bytes() == db
    assert tree(home / "adapters") == adapters


def _damage(db: Path) -> None:
    """Overwrite part of every page in the second half of the file (the data, not the schema)."""
    size = db.stat().st_size
    with db.open("r+b") as file:
        for offset in range(size // 2, size, 4096):
            file.seek(offset + 100)
            file.write(b"\xde\xad\xbe\xef" * 64)


@pytest.mark.parametrize("command", [["status"], ["ingest"], ["datasets", "build"]])
def test_a_damaged_store_is_one_line_saying_what_to_do(home: Path, cli, command: list[str]) -> None:
    assert cli("init", "--example", "--home", home).code == 0
    assert cli("ingest", "--home", home).code == 0
    assert cli("status", "--home", home).code == 0  # checkpoints the WAL into plora.db on close
    for wal in home.glob("plora.db-*"):
        wal.unlink()
    _damage(home / "plora.db")
    result = cli(*command, "--home", home)
    assert result.code == 1, result.stdout + result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "is damaged: restore it from a backup" in lines[0] and ".recover" in lines[0]
    assert "SELECT" not in lines[0] and "Traceback" not in result.stderr
