"""Resume: a run killed with SIGKILL (a real subprocess) and resumed ends with the same adapter as an
uninterrupted one; incomplete or foreign checkpoints are skipped; a changed config, base or dataset
is a clear error, never a silent restart; the run state and checkpoint manifests on their own."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import TrainingError
from pipeline.workspace import open_workspace
from tests.pipeline.test_train import (  # noqa: F401 - offline is an autouse fixture
    adapter_tensors,
    new_home,
    offline,
    run,
    save_snapshot,
    standard_snapshots,
    text_rows,
)

REPO = Path(__file__).resolve().parents[2]
SETTINGS = {"max_steps": 20, "save_steps": 5, "lr": 1e-2, "dropout": 0.1}  # dropout: the RNG state must resume too


class Stop(RuntimeError):
    """Raised from the progress callback to interrupt a run in-process (as a CUDA error would)."""


def stop_at(step: int, stage: str = "sft"):
    def progress(event: Any) -> None:
        if event.stage == stage and event.step == step:
            raise Stop(f"stopped at {stage} step {step}")

    return progress


def assert_same_adapter(a: Path | str, b: Path | str) -> None:
    import torch

    left, right = adapter_tensors(a), adapter_tensors(b)
    assert set(left) == set(right)
    for name in left:
        torch.testing.assert_close(left[name], right[name], msg=name)


def assert_same_losses(a: dict[str, Any], b: dict[str, Any]) -> None:
    """The same loss trace: same stages and steps, losses equal within float tolerance."""
    assert [(e["stage"], e["step"]) for e in a["loss_history"]] == [(e["stage"], e["step"]) for e in b["loss_history"]]
    assert [e["loss"] for e in a["loss_history"]] == pytest.approx([e["loss"] for e in b["loss_history"]], rel=1e-6)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> dict[str, Any]:
    """The uninterrupted run every resumed run must reproduce."""
    home = new_home(tmp_path_factory.mktemp("reference") / "home", models_dir, **SETTINGS)
    with open_workspace(home, check_paths=False) as workspace:
        standard_snapshots(workspace)
    return run(home).as_dict()


def interrupted_home(path: Path, models_dir: Path, at: int = 12, **settings: Any) -> Path:
    home = new_home(path, models_dir, **{**SETTINGS, **settings})
    with open_workspace(home, check_paths=False) as workspace:
        standard_snapshots(workspace)
    with pytest.raises(TrainingError, match="stopped at"):
        run(home, progress=stop_at(at))
    return home


def only_run_dir(home: Path) -> Path:
    (run_dir,) = (home / "runs").iterdir()
    return run_dir


DRIVER = textwrap.dedent("""
    import sys, time
    from pipeline.train import train_profile
    from pipeline.workspace import open_workspace

    def slow(event):  # a slow machine: gives the test time to kill the run mid-training
        if event.step is not None:
            time.sleep(0.25)

    with open_workspace(sys.argv[1], check_paths=False) as workspace:
        train_profile(workspace, "work", progress=slow)
    print("finished")
""")


def test_kill_9_mid_training_then_resume_equals_an_uninterrupted_run(
    tmp_path: Path, models_dir: Path, reference: dict[str, Any]
) -> None:
    home = new_home(tmp_path / "home", models_dir, **SETTINGS)
    with open_workspace(home, check_paths=False) as workspace:
        standard_snapshots(workspace)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, str(driver), str(home)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while not list((home / "runs").glob("*/sft/checkpoint-5/plora-manifest.json")):
            assert process.poll() is None, process.communicate()[1].decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 2 minutes"
            time.sleep(0.05)
        time.sleep(0.6)  # a couple more steps, so the kill lands between checkpoints
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    run_dir = only_run_dir(home)
    assert not (run_dir / "adapter").exists()  # it did not get to the end

    from storage import runs
    from storage.models import RunStatus

    with open_workspace(home, check_paths=False) as workspace, workspace.store.read() as session:
        assert runs.get_run(session, run_dir.name).status == RunStatus.running  # killed: nobody marked it

    resumed = run(home, resume=True).as_dict()
    assert resumed["run_id"] == run_dir.name and resumed["resumed"]
    assert resumed["resumed_from"]["sft"] in (5, 10, 15)
    assert resumed["steps"] == {"sft": 20} and resumed["adapter"] == "work@v1"
    assert_same_adapter(resumed["adapter_dir"], reference["adapter_dir"])
    assert_same_losses(resumed, reference)
    assert resumed["tokens_trained"] == reference["tokens_trained"]
    assert resumed["eval_loss"]["new"] == pytest.approx(reference["eval_loss"]["new"], rel=1e-6)
    with open_workspace(home, check_paths=False) as workspace, workspace.store.read() as session:
        assert runs.get_run(session, run_dir.name).status == RunStatus.completed


def test_incomplete_and_foreign_checkpoints_are_skipped(
    tmp_path: Path, models_dir: Path, reference: dict[str, Any]
) -> None:
    home = interrupted_home(tmp_path / "home", models_dir, at=17)  # checkpoints 5, 10 and 15 sealed
    sft = only_run_dir(home) / "sft"
    assert sorted(p.name for p in sft.iterdir() if p.name.startswith("checkpoint")) == [
        "checkpoint-10",
        "checkpoint-15",
    ]
    # killed while writing checkpoint-20: a folder with the Trainer's files but no manifest
    shutil.copytree(sft / "checkpoint-15", sft / "checkpoint-20")
    (sft / "checkpoint-20" / "plora-manifest.json").unlink()
    # checkpoint-15 modified after it was sealed (a file changed): its hashes no longer match
    with open(sft / "checkpoint-15" / "trainer_state.json", "a") as handle:
        handle.write(" ")
    # a sealed checkpoint copied in from elsewhere: its manifest names another step
    shutil.copytree(sft / "checkpoint-10", sft / "checkpoint-16")

    resumed = run(home, resume=True).as_dict()
    assert resumed["resumed_from"]["sft"] == 10
    skipped = [n for n in resumed["notes"] if "skipped" in n]
    assert any("checkpoint-20" in n and "no manifest" in n for n in skipped)
    assert any("checkpoint-16" in n for n in skipped) and any("checkpoint-15" in n and "sha256" in n for n in skipped)
    assert sorted(p.name for p in (sft.parent / "skipped").iterdir()) == [
        "sft-checkpoint-15",
        "sft-checkpoint-16",
        "sft-checkpoint-20",
    ]
    assert_same_adapter(resumed["adapter_dir"], reference["adapter_dir"])
    assert_same_losses(resumed, reference)


def test_resume_with_a_changed_config_base_or_dataset_is_a_clear_error(tmp_path: Path, models_dir: Path) -> None:
    home = tmp_path / "home"
    config_path = home / "plora.toml"
    home = interrupted_home(home, models_dir, at=7)
    # the base is a local folder (a copy of the builtin) so its files can change under the same name
    shutil.copytree(home / "models" / "tiny-llama", home / "mybase")
    original = config_path.read_text()
    config_path.write_text(original.replace('name = "builtin:tiny-llama"', 'name = "mybase"'))
    with pytest.raises(TrainingError, match=r"base_model\.name: 'builtin:tiny-llama' -> 'mybase'"):
        run(home, resume=True)

    # a new run on "mybase", interrupted; then its config, base and dataset change in turn
    shutil.rmtree(home / "runs")
    with pytest.raises(TrainingError, match="stopped at"):
        run(home, progress=stop_at(7))
    run_dir = only_run_dir(home)
    before = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*"))

    changed = config_path.read_text()
    config_path.write_text(changed.replace("r = 4,", "r = 8,").replace("learning_rate = 0.01", "learning_rate = 0.02"))
    with pytest.raises(TrainingError, match=r"config changed: lora\.r: 4 -> 8; train\.learning_rate: 0\.01 -> 0\.02"):
        run(home, resume=True)
    config_path.write_text(changed)

    from pipeline.base.tiny_llama import build_tiny_llama

    saved_base = tmp_path / "saved-base"
    shutil.copytree(home / "mybase", saved_base)
    build_tiny_llama(home / "mybase", seed=999)  # same name, other weights
    with pytest.raises(TrainingError, match="the base model changed"):
        run(home, resume=True)
    shutil.rmtree(home / "mybase")
    shutil.copytree(saved_base, home / "mybase")

    with pytest.raises(TrainingError, match=r"--max-steps|config changed: train\.max_steps"):
        run(home, resume=True, max_steps=30)

    with open_workspace(home, check_paths=False) as workspace:
        save_snapshot(workspace, "text", text_rows(9), text_rows(3, offset=50))
    with pytest.raises(TrainingError, match=r"dataset snapshots changed: text"):
        run(home, resume=True)

    # nothing was restarted or touched: same run, same files, still resumable
    from storage import runs
    from storage.models import RunStatus

    assert sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")) == before
    with open_workspace(home, check_paths=False) as workspace, workspace.store.read() as session:
        rows = runs.list_runs(session, "work")
        assert [row.id for row in rows if row.id == run_dir.name] and rows[-1].status == RunStatus.failed


def test_resume_needs_an_interrupted_run_with_a_checkpoint(tmp_path: Path, models_dir: Path) -> None:
    home = new_home(tmp_path / "home", models_dir, **SETTINGS)
    with open_workspace(home, check_paths=False) as workspace:
        standard_snapshots(workspace)
    with pytest.raises(TrainingError, match="no interrupted run"):
        run(home, resume=True)
    # stopped before its first checkpoint: nothing to resume, and the run is marked failed
    with pytest.raises(TrainingError, match="stopped at"):
        run(home, progress=stop_at(3))
    with pytest.raises(TrainingError, match="no interrupted run"):
        run(home, resume=True)


def test_resume_in_the_preference_stage_after_a_finished_sft_stage(tmp_path: Path, models_dir: Path) -> None:
    settings = {"stages": '["sft", "dpo"]', "max_steps": 6, "save_steps": 2, "lr": 5e-3, "dropout": 0.1}
    whole_home = new_home(tmp_path / "whole", models_dir, **settings)
    cut_home = new_home(tmp_path / "cut", models_dir, **settings)
    for home in (whole_home, cut_home):
        with open_workspace(home, check_paths=False) as workspace:
            standard_snapshots(workspace, preference=True)
    whole = run(whole_home).as_dict()
    with pytest.raises(TrainingError, match="stopped at dpo step 5"):
        run(cut_home, progress=stop_at(5, "dpo"))
    resumed = run(cut_home, resume=True).as_dict()
    assert resumed["resumed_from"] == {"sft": 6, "dpo": 4}
    assert_same_losses(resumed, whole)
    assert_same_adapter(resumed["adapter_dir"], whole["adapter_dir"])


# --- the pieces -------------------------------------------------------------------------------------------


def _state(**changes: Any):
    from pipeline.train.resume import RunState

    values = {
        "run_id": "work-20260101T000000-abcdef12",
        "profile": "work",
        "mode": "scratch",
        "requested_mode": "continue",
        "seed": 1,
        "stages": ["sft"],
        "config": {"lora": {"r": 4}},
        "config_hash": "a" * 64,
        "dataset_fingerprint": "b" * 64,
        "snapshots": {"sft": "c" * 64},
        "base_model": "builtin:tiny-llama",
        "base_fingerprint": "d" * 64,
    }
    return RunState(**{**values, **changes})


def test_run_state_round_trips_and_validates() -> None:
    from pipeline.train.resume import RunState

    state = _state().at("sft", 5, wall_seconds=1.5, tokens=100)
    assert RunState.from_json(state.to_json()) == state
    assert json.loads(state.to_json())["step"] == 5
    for bad in ({"mode": "sideways"}, {"stages": ["dpo"]}, {"config_hash": "xyz"}, {"step": -1}, {"stage": "kto"}):
        with pytest.raises(ValueError):
            _state(**bad)
    with pytest.raises(ValueError, match="unknown keys"):
        RunState.from_json(json.dumps({**json.loads(state.to_json()), "extra": 1}))


def test_check_resumable_names_every_difference() -> None:
    from pipeline.train.resume import check_resumable

    saved = _state()
    check_resumable(saved, _state())
    with pytest.raises(TrainingError) as error:
        check_resumable(
            saved,
            _state(
                config={"lora": {"r": 8}},
                config_hash="e" * 64,
                base_fingerprint="f" * 64,
                snapshots={"sft": "c" * 64, "dpo": "1" * 64},
            ),
        )
    message = str(error.value)
    assert "lora.r: 4 -> 8" in message and "base model changed" in message and "dpo - -> 111111111111" in message


def test_manifest_verification(tmp_path: Path) -> None:
    from pipeline.train.resume import MANIFEST_FILE, verify_manifest, write_manifest

    folder = tmp_path / "checkpoint-3"
    (folder / "ref").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"one")
    (folder / "ref" / "b.safetensors").write_bytes(b"two")
    digest = write_manifest(folder, run_id="r", stage="sft", step=3)
    assert verify_manifest(folder, run_id="r", stage="sft", step=3) == (digest, "ok")
    assert verify_manifest(folder, run_id="other", stage="sft")[0] is None
    assert verify_manifest(folder, run_id="r", stage="sft", step=4)[0] is None
    (folder / "extra").write_text("x")
    assert "extra" in verify_manifest(folder, run_id="r", stage="sft")[1]
    (folder / "extra").unlink()
    (folder / "ref" / "b.safetensors").write_bytes(b"TWO")
    assert "sha256" in verify_manifest(folder, run_id="r", stage="sft")[1]
    (folder / MANIFEST_FILE).unlink()
    assert verify_manifest(folder, run_id="r", stage="sft") == (None, "no manifest (the checkpoint was not finished)")


def test_only_one_process_per_run(tmp_path: Path) -> None:
    from pipeline.locks import is_locked, run_lock

    run_dir = tmp_path / "run"
    code = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from pipeline.locks import run_lock
        with run_lock(Path({str(run_dir)!r})):
            print("locked", flush=True)
            time.sleep(30)
    """)
    holder = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    try:
        assert holder.stdout.readline().strip() == b"locked"
        assert is_locked(run_dir)
        with pytest.raises(TrainingError, match="another process"), run_lock(run_dir):
            pass
    finally:
        holder.kill()
        holder.wait()
    assert not is_locked(run_dir)
    with run_lock(run_dir):
        pass
