"""``plora eval REF [--against REF]`` through the real entry point: the numbers are the ones the run
measured, the comparison and the gate's verdict, the table, and one-line errors for bad refs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.workspace import open_workspace
from tests.pipeline.test_train import new_home, offline, standard_snapshots  # noqa: F401 - fixtures


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> tuple[Path, dict, dict]:
    """A home with work@v1 (scratch) and work@v2 (continued from v1, with a DPO stage), and both runs' JSON."""
    from typer.testing import CliRunner

    from flows.cli import app

    home = new_home(tmp_path_factory.mktemp("eval") / "home", models_dir, stages='["sft", "dpo"]')
    with open_workspace(home, check_paths=False) as workspace:
        standard_snapshots(workspace, preference=True)
    runner = CliRunner()
    outs = []
    for mode in ("scratch", "continue"):
        result = runner.invoke(app, ["train", "--home", str(home), "--json", "--mode", mode, "--max-steps", "6"])
        assert result.exit_code == 0, result.output
        outs.append(json.loads(result.stdout))
    assert [o["adapter"] for o in outs] == ["work@v1", "work@v2"]
    return home, outs[0], outs[1]


def test_eval_against_the_base_gives_the_numbers_the_run_measured(trained, cli) -> None:
    home, v1, _v2 = trained
    out = cli("eval", "work@v1", "--home", home, "--json")
    assert out.code == 0, out.stderr
    doc = out.json()
    assert doc["ref"] == "work@v1" and doc["against"] == "base" and set(doc["models"]) == {"work@v1", "base"}
    # same eval split, same base, same measurement as at training time (v2's run measured v1 as "previous")
    assert doc["models"]["work@v1"]["eval_loss"] == pytest.approx(v1["eval_loss"]["new"], rel=1e-4)
    assert doc["models"]["base"]["eval_loss"] == pytest.approx(v1["eval_loss"]["base"], rel=1e-4)
    assert doc["models"]["work@v1"]["general_loss"] == pytest.approx(v1["general_loss"]["new"], rel=1e-4)
    assert doc["models"]["base"]["general_loss"] == pytest.approx(v1["general_loss"]["base"], rel=1e-4)
    assert doc["preference_pairs"] == 4 and doc["eval_rows"] > 0
    new, base = doc["models"]["work@v1"]["eval_loss"], doc["models"]["base"]["eval_loss"]
    assert doc["change"]["eval_loss"] == pytest.approx((new - base) / base, abs=1e-5)
    assert set(doc["change"]["sources"]) == set(doc["models"]["work@v1"]["sources"])
    assert doc["gate"]["accepted"] is (new < base) and doc["gate"]["compared_with"] == "base"


def test_eval_one_version_against_another_and_the_table(trained, cli) -> None:
    home, _v1, v2 = trained
    out = cli("eval", "work", "--against", "work@v1", "--home", home, "--json")  # work: the current version
    assert out.code == 0, out.stderr
    doc = out.json()
    current = v2["current"]
    assert doc["ref"] == current and doc["against"] == "work@v1"
    assert set(doc["models"]) == {current, "work@v1", "base"}  # the base is measured for the forgetting limit
    assert doc["models"]["work@v1"]["eval_loss"] == pytest.approx(v2["eval_loss"]["previous"], rel=1e-4)
    acc = doc["models"][current]["preference_accuracy"]
    assert 0.0 <= acc <= 1.0
    assert doc["change"]["preference_accuracy"] == pytest.approx(acc - doc["models"]["work@v1"]["preference_accuracy"])
    assert any("general-text loss" in line for line in doc["gate"]["checks"] + doc["gate"]["reasons"])

    table = cli("eval", "work@v2", "--against", "work@v1", "--home", home)
    assert table.code == 0, table.stderr
    for row in ("eval loss", "general text", "preference accuracy", "eval gate (work@v2 vs work@v1)"):
        assert row in table.stdout
    assert "work@v2" in table.stdout and "work@v1" in table.stdout and "base" in table.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["work@v9"], "work@v9"),
        (["nope@v1"], "nope"),
        (["work@v1", "--against", "work@v1"], "same version"),
        (["base"], "REF must be an adapter"),
        (["work@vx"], "work@vx"),
    ],
)
def test_bad_refs_are_one_line_errors_with_exit_2(trained, cli, args: list[str], says: str) -> None:
    home, _, _ = trained
    out = cli("eval", *args, "--home", home, "--json")
    assert out.code == 2 and out.stdout == ""
    assert says in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
