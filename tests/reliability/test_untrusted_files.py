"""Scenarios 5 and 6, the part tests/pipeline doesn't cover.

5. Pickles where plora reads data: tests/pipeline/test_registry.py damages adapter folders (a
   flipped byte, a truncated file, a pickle swapped in or added, a foreign base in the manifest, a
   missing config) with every unpickler patched to fail. Here the same kind of pickle (one that
   creates a marker folder when it is unpickled, whatever unpickles it) goes into **dataset
   snapshot folders**, next to the Arrow files and in place of one, and into a sealed **training
   checkpoint** in place of its RNG state. Training's data loading and ``plora datasets show`` read
   the snapshots untouched by the extra files; a snapshot whose Arrow file is a pickle, and a
   checkpoint that no longer matches its manifest, are each one clear error line (exit 1). The
   marker never appears.
6. Resume with a changed LoRA rank through the CLI: tests/pipeline/test_train_resume.py covers
   rank, learning rate, base name, base weights, max steps and dataset at the ``train_profile``
   level. Here ``plora train --resume`` must print one error line naming ``lora.r: 4 -> 8`` (exit 1,
   no traceback) and leave the run's files as they were; the monthly cycle must say why it starts a
   new run instead of resuming (not silently).
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.workspace import open_workspace
from tests.conftest import REPO
from tests.pipeline.test_train import new_home, offline, standard_snapshots  # noqa: F401
from tests.pipeline.test_train_resume import interrupted_home

pytestmark = pytest.mark.timeout(300)


class _Bomb:
    """Unpickling this creates ``marker``: proof that a pickle was loaded, by whatever loader."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def _plora(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PLORA_HOME", "PLORA_STORE_URL")}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args, "--home", str(home)],
        cwd=REPO,
        text=True,
        capture_output=True,
        timeout=120,
        env={**env, "PYTHONPATH": str(REPO), "COLUMNS": "200", "HF_HUB_OFFLINE": "1"},
        check=False,
    )


def _one_error_line(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and done.stdout == "", (done.returncode, done.stdout, done.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Path:
    """A home whose training run was interrupted at step 7: checkpoint-5 sealed and recorded."""
    return interrupted_home(tmp_path_factory.mktemp("interrupted") / "home", models_dir, at=7)


def _copy(home: Path, to: Path) -> Path:
    shutil.copytree(home, to)
    return to


def test_pickles_in_dataset_snapshots_are_never_loaded(tmp_path: Path, models_dir: Path) -> None:
    from pipeline.datasets import find_snapshot, show_example
    from pipeline.errors import DatasetError
    from pipeline.snapshots import latest
    from pipeline.train.data import load_run_data

    home = new_home(tmp_path / "home", models_dir)
    with open_workspace(home, check_paths=False) as workspace:
        fingerprints = standard_snapshots(workspace)
    marker = tmp_path / "unpickled"
    bomb = pickle.dumps(_Bomb(marker))
    folders = sorted((home / "datasets").glob("*/*/"))
    assert len(folders) == 2
    for folder in folders:  # next to the data, with names a loader might try
        for name in ("data/train/cache-00000.pkl", "data/dataset.pkl", "data/train/state.pt", "snapshot.pickle"):
            (folder / name).write_bytes(bomb)

    with open_workspace(home, check_paths=False) as workspace:
        data, stages, _ = load_run_data(workspace, "work", ("sft",))
        assert len(data.lm_train) == 30 + 8 and stages == ["sft"]
        view = show_example(workspace, find_snapshot(workspace, fingerprints["sft"]), 0)
        assert view.row["ref"] == "chats:router-0"
    shown = _plora(home, "datasets", "show", fingerprints["text"], "--example", "0")
    assert shown.returncode == 0 and "Runbook 0" in shown.stdout, shown.stderr[-2000:]
    assert not marker.exists()

    # the Arrow file training reads is a pickle now: one clear error, nothing unpickled
    (arrow,) = (home / "datasets" / "sft" / fingerprints["sft"] / "data" / "train").glob("*.arrow")
    arrow.write_bytes(bomb)
    with (
        open_workspace(home, check_paths=False) as workspace,
        pytest.raises(DatasetError, match=rf"snapshot sft/{fingerprints['sft'][:12]}: can't load .*rebuild it"),
    ):
        latest(workspace, "work", "sft").load()
    _one_error_line(_plora(home, "train"), f"snapshot sft/{fingerprints['sft'][:12]}", "plora datasets build")
    _one_error_line(_plora(home, "datasets", "show", fingerprints["sft"], "--example", "0"), "can't load")
    assert not marker.exists()


def test_a_pickle_swapped_into_a_checkpoint_is_never_loaded(interrupted: Path, tmp_path: Path) -> None:
    home = _copy(interrupted, tmp_path / "home")
    (run_dir,) = (home / "runs").iterdir()
    checkpoint = run_dir / "sft" / "checkpoint-5"
    assert (checkpoint / "plora-manifest.json").is_file()
    marker = tmp_path / "unpickled"
    (checkpoint / "rng_state.pth").write_bytes(pickle.dumps(_Bomb(marker)))

    _one_error_line(_plora(home, "train", "--resume"), "no interrupted run")
    assert not marker.exists()
    with open_workspace(home, check_paths=False) as workspace:
        from pipeline.train.resume import RunState, last_complete_checkpoint
        from storage import runs

        with workspace.store.read() as session:
            row = runs.get_run(session, run_dir.name)
            saved = RunState(**row.config["state"])
            recorded = {c["manifest_sha256"] for c in row.metrics["checkpoints"]}
    found, notes = last_complete_checkpoint(run_dir / "sft", saved, "sft", recorded)
    assert found is None and notes == [
        "sft/checkpoint-5 skipped: rng_state.pth does not match its sha256 in the manifest"
    ]


def test_resume_with_a_changed_rank_is_one_clear_cli_error(interrupted: Path, tmp_path: Path) -> None:
    from pipeline.cycle import resumable_run

    home = _copy(interrupted, tmp_path / "home")
    (run_dir,) = (home / "runs").iterdir()
    before = {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    config = home / "plora.toml"
    config.write_text(config.read_text().replace("r = 4,", "r = 8,"), encoding="utf-8")

    line = _one_error_line(_plora(home, "train", "--resume"), f"run {run_dir.name} can't be resumed", "lora.r: 4 -> 8")
    assert "start a new run" in line
    after = {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert after == before  # nothing restarted, nothing set aside: still resumable once r is 4 again
    with open_workspace(home, check_paths=False) as workspace:
        choice = resumable_run(workspace, "work")
    assert choice.run_id is None and choice.reason == (
        f"run {run_dir.name} was interrupted, but the training config changed since: starting a new run"
    )
