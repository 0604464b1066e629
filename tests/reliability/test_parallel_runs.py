"""Issue 18: the same command twice at once on one home. Two ``plora ingest`` (on a fresh home,
whose store doesn't exist yet, and on one already ingested) both succeed: the second waits for
each source the first holds, then finds it unchanged. Two ``plora train`` of one profile train
one after the other: never two versions from the same parent, never a version number twice.
Real subprocesses of the CLI; the ingests on both store backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from pipeline.workspace import open_workspace
from storage.models import Document
from tests.conftest import REPO, write_config

NOTES = 300
CHATS = 300


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PLORA_HOME"}  # PLORA_STORE_URL stays (home_store)
    return {**env, "PYTHONPATH": str(REPO), "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}


def _start(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *map(str, args)],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _corpus(home: Path, tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    for i in range(NOTES):
        note = vault / f"d{i // 100}" / f"n{i}.md"
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text(f"# Note {i}\n\nHow to restart service {i}: " + "step " * 40 + "\n", encoding="utf-8")
    chats = tmp_path / "chats.jsonl"
    chats.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"c{i}",
                    "messages": [
                        {"role": "user", "content": f"question {i} " * 5},
                        {"role": "assistant", "content": f"answer {i} " * 20},
                    ],
                }
            )
            + "\n"
            for i in range(CHATS)
        ),
        encoding="utf-8",
    )
    write_config(
        home,
        f'[[sources]]\nname = "vault"\ntype = "markdown"\npath = "{vault}"\n\n'
        f'[[sources]]\nname = "chats"\ntype = "jsonl"\npath = "{chats}"\n',
    )


@pytest.mark.timeout(400)
@pytest.mark.usefixtures("home_store")
@pytest.mark.parametrize("round_", range(3))
def test_two_ingests_at_once_both_succeed(home: Path, tmp_path: Path, round_: int) -> None:
    _corpus(home, tmp_path)
    first, second = _start("ingest", "--home", home, "--json"), _start("ingest", "--home", home, "--json")
    results = [(proc, *proc.communicate(timeout=300)) for proc in (first, second)]
    for proc, _out, err in results:
        assert proc.returncode == 0, err
        assert "Traceback" not in err and "IntegrityError" not in err and "locked" not in err.lower(), err
    reports = [json.loads(out)["sources"] for _, out, _ in results]
    for source, total in (("vault", NOTES), ("chats", CHATS)):
        assert all(report[source]["error"] is None for report in reports)
        assert sum(report[source]["added"] for report in reports) == total  # once, by whichever came first
        assert sorted(report[source]["added"] + report[source]["unchanged"] for report in reports) == [total, total]
    with open_workspace(home) as workspace, workspace.store.read() as session:
        assert session.scalar(select(func.count()).select_from(Document)) == NOTES + CHATS
    # and both at once again, on a store that holds it all: both find everything unchanged
    again = [_start("ingest", "--home", home, "--json") for _ in range(2)]
    for proc in again:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        report = json.loads(out)["sources"]
        assert (report["vault"]["unchanged"], report["chats"]["unchanged"]) == (NOTES, CHATS)


@pytest.mark.timeout(600)
def test_two_trainings_of_one_profile_take_turns(tmp_path: Path, models_dir: Path) -> None:
    from tests.pipeline.test_train import new_home, standard_snapshots

    home = new_home(tmp_path / "home", models_dir, max_steps=30)
    with open_workspace(home, check_paths=False) as workspace:
        standard_snapshots(workspace)
    args = ("train", "--home", home, "--json", "--mode", "continue", "--max-steps", "4")
    runs = [_start(*args), _start(*args)]
    finished = [(proc, *proc.communicate(timeout=540)) for proc in runs]
    for proc, _, err in finished:
        assert proc.returncode == 0, err
    adapters = sorted(json.loads(out)["adapter"] for _, out, _ in finished)
    assert adapters == ["work@v1", "work@v2"]
    waited = [err for _, _, err in finished if "waiting for a training run of profile 'work'" in err]
    assert len(waited) == 1, [err for _, _, err in finished]
    listed = subprocess.run(
        [sys.executable, "-m", "flows.cli", "adapters", "list", "--home", str(home), "--json"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    parents = {row["ref"]: row["parent_version"] for row in json.loads(listed.stdout)["adapters"]}
    assert parents == {"work@v1": None, "work@v2": 1}  # the second continued from the first's result
