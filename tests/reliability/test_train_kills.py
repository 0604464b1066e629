"""Scenarios 3 and 4, the part tests/pipeline doesn't cover: SIGKILL *inside* a checkpoint write and
inside the registration at the end of a real training run, then ``--resume``.

tests/pipeline/test_train_resume.py kills a run between checkpoints and fakes a half-written one
(a copied folder without its manifest); tests/pipeline/test_registry.py kills ``register`` at each
step on its own. Here a real run (a subprocess training the builtin tiny-llama in NF4) kills itself
with SIGKILL at one point of writing its last checkpoint, ``checkpoint-8``:

- ``trainer-write``: while the Trainer writes the folder (``optimizer.pt`` half on disk, no
  scheduler, no trainer state);
- ``before-manifest``: the Trainer's folder is complete, plora's manifest not written yet;
- ``before-record``: the manifest is written, its sha256 not yet recorded in the store;

or, once training is done, inside the registration of ``work@v1``:

- ``registration-renamed``: ``v1`` is renamed into place, its row not committed;
- ``registration-committed``: ``v1``'s row is committed, the run not yet marked completed.

Then ``train_profile(resume=True)`` must set the half checkpoint aside with the reason and resume
from ``checkpoint-4`` (or, after a registration kill, train nothing more and register), the store
and the adapters folder must agree (every version row verifies, no folder without a row), and the
registered adapter and the loss trace must equal an uninterrupted run's. After the commit there is
nothing left to do: ``v1`` stays, and neither ``--resume`` nor the monthly cycle may register the
same run a second time.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pipeline.workspace import open_workspace
from tests.conftest import REPO
from tests.pipeline.test_train import new_home, offline, run, standard_snapshots  # noqa: F401
from tests.pipeline.test_train_resume import assert_same_adapter, assert_same_losses

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SETTINGS = {"max_steps": 8, "save_steps": 4, "lr": 1e-2, "dropout": 0.1}
KILLED = "checkpoint-8"

DRIVER = textwrap.dedent(f"""
    import io, os, signal, sys
    from pathlib import Path

    home, point = sys.argv[1], sys.argv[2]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "trainer-write":  # optimizer.pt of {KILLED} half written, then the end
        import torch
        real_save = torch.save

        def save(obj, f, *args, **kwargs):
            if (
                isinstance(f, (str, os.PathLike))
                and Path(f).name == "optimizer.pt"
                and Path(f).parent.name == "{KILLED}"
            ):
                buffer = io.BytesIO()
                real_save(obj, buffer, *args, **kwargs)
                Path(f).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                die()
            return real_save(obj, f, *args, **kwargs)

        torch.save = save
    elif point == "before-manifest":
        from pipeline.train import resume
        real_manifest = resume.write_manifest

        def write_manifest(folder, **kwargs):
            if Path(folder).name == "{KILLED}":
                die()
            return real_manifest(folder, **kwargs)

        resume.write_manifest = write_manifest
    elif point == "before-record":
        from storage import runs
        real_add = runs.add_checkpoint

        def add_checkpoint(session, run_id, record):
            if record["path"] == "{KILLED}":
                die()
            return real_add(session, run_id, record)

        runs.add_checkpoint = add_checkpoint
    elif point.startswith("registration-"):
        from pipeline.registry import publish
        step = point.removeprefix("registration-")
        publish._checkpoint = lambda at: die() if at == step else None

    from pipeline.train import train_profile
    from pipeline.workspace import open_workspace

    with open_workspace(home, check_paths=False) as workspace:
        train_profile(workspace, "work")
    print("finished, not killed")
""")

# kill point -> why the resumed run skips the half checkpoint (None: no checkpoint is half written)
POINTS = {
    "trainer-write": "no manifest (the checkpoint was not finished)",
    "before-manifest": "no manifest (the checkpoint was not finished)",
    "before-record": "its manifest is not recorded for this run in the store",
    "registration-renamed": None,
    "registration-committed": None,
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> dict[str, Any]:
    """The uninterrupted run every resumed run must reproduce."""
    home = new_home(tmp_path_factory.mktemp("reference") / "home", models_dir, **SETTINGS)
    with open_workspace(home, check_paths=False) as workspace:
        standard_snapshots(workspace)
    return run(home).as_dict()


def _registered(home: Path) -> list[str]:
    """Every version row verifies and has its folder, every ``v<N>`` folder has its row; the refs."""
    from pipeline import registry

    with open_workspace(home, check_paths=False) as workspace:
        versions = registry.list_versions(workspace)
        for version in versions:
            registry.verify(workspace, version.ref)
        current = registry.current(workspace, "work")
        if current is not None:
            registry.verify(workspace, current.ref)
    return [v.ref for v in versions]


def _version_folders(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "adapters" / "work").glob("*") if re.fullmatch(r"v\d+", p.name))


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_while_writing_a_checkpoint_or_registering_then_resume(
    point: str, tmp_path: Path, models_dir: Path, reference: dict[str, Any]
) -> None:
    home = new_home(tmp_path / "home", models_dir, **SETTINGS)
    with open_workspace(home, check_paths=False) as workspace:
        standard_snapshots(workspace)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(driver), str(home), point],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)},
        timeout=240,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr[-3000:]
    (run_dir,) = (home / "runs").iterdir()
    sft = run_dir / "sft"

    if point == "registration-committed":  # v1 is registered: nothing to resume, nothing to redo
        assert _registered(home) == ["work@v1"] and _version_folders(home) == ["v1"]
        from pipeline.cycle import resumable_run
        from pipeline.errors import TrainingError

        with open_workspace(home, check_paths=False) as workspace:
            assert resumable_run(workspace, "work").run_id is None
        with pytest.raises(TrainingError, match="no interrupted run"):
            run(home, resume=True)
        assert _registered(home) == ["work@v1"] and _version_folders(home) == ["v1"]
        assert_same_adapter(home / "adapters" / "work" / "v1", reference["adapter_dir"])
        return

    # what the kill left: nothing registered (a v1 folder without its row at most), the half checkpoint
    assert _registered(home) == []
    assert _version_folders(home) == (["v1"] if point == "registration-renamed" else [])
    skipped_because = POINTS[point]
    if skipped_because is not None:
        assert (sft / KILLED).is_dir() and not (sft / "adapter").exists()
        assert (sft / KILLED / "plora-manifest.json").exists() == (point == "before-record")
    else:
        assert (sft / "adapter" / "plora-manifest.json").is_file() and (run_dir / "adapter").is_dir()

    resumed = run(home, resume=True).as_dict()
    assert resumed["run_id"] == run_dir.name and resumed["resumed"]
    if skipped_because is not None:
        assert resumed["resumed_from"] == {"sft": 4}
        assert f"sft/{KILLED} skipped: {skipped_because}" in resumed["notes"]
        assert [p.name for p in (run_dir / "skipped").iterdir()] == [f"sft-{KILLED}"]
    else:
        assert resumed["resumed_from"] == {"sft": 8}  # the stage was finished: nothing trained again
    assert resumed["adapter"] == "work@v1" and resumed["current"] == "work@v1"
    assert _registered(home) == ["work@v1"] and _version_folders(home) == ["v1"]
    assert not [p for p in (home / "adapters" / "work").iterdir() if p.name.startswith(".")]
    assert_same_adapter(home / "adapters" / "work" / "v1", reference["adapter_dir"])
    assert_same_losses(resumed, reference)
