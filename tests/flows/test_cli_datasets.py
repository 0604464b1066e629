"""``plora datasets build | list | show`` on the example corpus, through the real entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.cli_datasets import CLOSE, OPEN


@pytest.fixture
def example_home(home: Path, cli, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli("init", "--example", "--home", home).code == 0
    assert cli("ingest", "--home", home, "--json").code == 0
    return home


def test_build_list_show(example_home: Path, cli) -> None:
    home = example_home
    built = cli("datasets", "build", "--home", home, "--json")
    assert built.code == 0, built.stderr
    report = built.json()
    assert report["profile"] == "work" and set(report["snapshots"]) == {"sft", "text", "dpo"}
    for kind, row in report["snapshots"].items():
        assert row.keys() == {"fingerprint", "path", "rows", "tokens", "new"}
        assert row["new"] is True and set(row["rows"]) == {"train", "eval"} == set(row["tokens"])
        assert Path(row["path"]) == home / "datasets" / kind / row["fingerprint"]
    assert report["snapshots"]["sft"]["rows"]["train"] > 0

    again = cli("datasets", "build", "--home", home, "--json", "--profile", "work").json()
    assert all(row["new"] is False for row in again["snapshots"].values())
    assert {k: r["fingerprint"] for k, r in again["snapshots"].items()} == {
        k: r["fingerprint"] for k, r in report["snapshots"].items()
    }
    forced = cli("datasets", "build", "--home", home, "--json", "--force").json()  # built again: same rows
    assert forced == again and forced["snapshots"]["sft"].keys() == {"fingerprint", "path", "rows", "tokens", "new"}

    listed = cli("datasets", "list", "--home", home, "--json").json()
    assert {row["fingerprint"] for row in listed} == {r["fingerprint"] for r in report["snapshots"].values()}
    assert all(row["latest"] and row["profile"] == "work" for row in listed)

    sft = report["snapshots"]["sft"]["fingerprint"]
    meta = cli("datasets", "show", sft[:8], "--home", home, "--json").json()
    assert meta["fingerprint"] == sft and meta["kind"] == "sft" and meta["rows"] == report["snapshots"]["sft"]["rows"]
    human = cli("datasets", "show", sft[:8], "--home", home)
    assert human.code == 0 and sft in human.stdout and "dropped:" in human.stdout

    example = cli("datasets", "show", sft[:8], "--example", "0", "--home", home)
    assert example.code == 0, example.stderr
    assert f"{OPEN}" in example.stdout and f"<|end|>{CLOSE}" in example.stdout and "<|user|>" in example.stdout
    segments = cli("datasets", "show", sft, "--example", "0", "--home", home, "--json").json()["segments"]
    assert any(s["trained"] for s in segments) and not segments[0]["trained"]

    text = report["snapshots"]["text"]["fingerprint"]
    assert cli("datasets", "show", text[:12], "--example", "0", "--split", "eval", "--home", home).code == 0
    out_of_range = cli("datasets", "show", sft, "--example", "999", "--home", home)
    assert out_of_range.code == 2 and "--example must be" in out_of_range.stderr


def test_unknown_and_ambiguous_prefixes_are_usage_errors(example_home: Path, cli) -> None:
    from pipeline.workspace import open_workspace
    from storage.snapshots import record_snapshot

    with open_workspace(example_home) as workspace, workspace.store.write() as session:
        for fingerprint in ("ab" + "1" * 62, "ab" + "2" * 62):
            record_snapshot(
                session,
                profile="work",
                kind="sft",
                fingerprint=fingerprint,
                path=f"datasets/sft/{fingerprint}",
                rows=0,
                meta={},
            )
    unknown = cli("datasets", "show", "ffff0000", "--home", example_home)
    assert unknown.code == 2 and "no dataset snapshot matches" in unknown.stderr
    ambiguous = cli("datasets", "show", "ab", "--home", example_home)
    assert ambiguous.code == 2 and "matches 2 snapshots" in ambiguous.stderr


def test_unknown_profile_is_a_config_error(example_home: Path, cli) -> None:
    result = cli("datasets", "build", "--profile", "nope", "--home", example_home, "--json")
    assert result.code == 2 and "no profile named 'nope'" in result.stderr and result.stdout == ""


def test_list_with_nothing_built(home: Path, cli) -> None:
    assert cli("init", "--home", home).code == 0
    assert cli("datasets", "list", "--home", home, "--json").json() == []
    assert "no dataset snapshots yet" in cli("datasets", "list", "--home", home).stdout
