"""``plora train`` through the real entry point: the --json document, human output, exit codes."""

from __future__ import annotations

import json
import math
from pathlib import Path

from pipeline.workspace import open_workspace
from tests.pipeline.test_train import new_home, offline, standard_snapshots  # noqa: F401 - fixtures

KEYS = {
    "run_id",
    "adapter",
    "adapter_status",
    "promoted",
    "current",
    "why",
    "eval_loss",
    "source_eval_loss",
    "preference_accuracy",
    "gate",
    "trainable_parameters",
    "tokens_trained",
    "wall_seconds",
    "stages",
    "steps",
    "mode",
    "resumed",
    "loss_history",
    "notes",
    "replay",
    "snapshots",
}


def test_train_json(tmp_path: Path, models_dir: Path, cli) -> None:
    home = new_home(tmp_path / "home", models_dir, max_steps=30)
    with open_workspace(home, check_paths=False) as workspace:
        standard_snapshots(workspace)
    result = cli("train", "--home", home, "--json", "--max-steps", "6")
    assert result.code == 0, result.stderr
    out = json.loads(result.stdout)  # one JSON document and nothing else on stdout
    assert set(out) >= KEYS
    assert out["adapter"] == "work@v1" and out["promoted"] and out["why"] is None
    assert set(out["eval_loss"]) == {"base", "previous", "new"} and out["eval_loss"]["previous"] is None
    assert all(math.isfinite(out["eval_loss"][k]) for k in ("base", "new"))
    assert out["steps"] == {"sft": 6} and out["trainable_parameters"] > 0 and out["tokens_trained"] > 0
    assert out["wall_seconds"] > 0 and out["gate"]["decision"] == "accepted"

    # human output; --mode continue from v1 on the same data, with a destructive learning rate: rejected
    (home / "plora.toml").write_text(
        (home / "plora.toml").read_text().replace("learning_rate = 0.01", "learning_rate = 3.0")
    )
    human = cli("train", "--home", home, "--mode", "continue", "--max-steps", "6")
    assert human.code == 0, human.stderr
    assert "registered as a rejected candidate" in human.stdout and "work@v2" in human.stdout
    assert "current stays work@v1" in human.stdout


def test_train_errors_and_exit_codes(tmp_path: Path, models_dir: Path, cli) -> None:
    home = new_home(tmp_path / "home", models_dir)
    no_data = cli("train", "--home", home, "--json")
    assert no_data.code == 1 and no_data.stdout == ""
    assert "plora datasets build" in no_data.stderr

    assert cli("train", "--home", home, "--mode", "sideways").code == 2
    assert cli("train", "--home", home, "--max-steps", "0").code == 2
    assert cli("train", "--home", home, "--profile", "nope").code == 2

    with open_workspace(home, check_paths=False) as workspace:
        standard_snapshots(workspace)
    nothing = cli("train", "--home", home, "--resume")
    assert nothing.code == 1 and "no interrupted run" in nothing.stderr
