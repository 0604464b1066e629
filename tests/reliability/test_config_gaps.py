"""Issue 18's config gaps: each used to pass until a traceback mid-run, a NaN run with exit 0, or
exit 1. Now every one is caught when the config is read, by every command: exit 2, one line
naming plora.toml and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_config

SOURCE = '[[sources]]\nname = "chats"\ntype = "jsonl"\npath = "chats.jsonl"\n'
PROFILE = '[profiles.work]\nsources = ["chats"]\n'

GAPS = [
    ("max-length-1e20", "train = { max_length = 1e20 }", "profiles.work.train.max_length"),
    ("max-length-huge-int", "train = { max_length = 10000000000 }", "profiles.work.train.max_length"),
    ("learning-rate-inf", "train = { learning_rate = inf }", "profiles.work.train.learning_rate"),
    ("learning-rate-nan", "train = { learning_rate = nan }", "profiles.work.train.learning_rate"),
    ("alpha-inf", "lora = { alpha = inf }", "profiles.work.lora.alpha"),
    ("unknown-target-module", 'lora = { target_modules = ["bogus_proj"] }', "profiles.work.lora.target_modules"),
    ("no-target-module", "lora = { target_modules = [] }", "profiles.work.lora.target_modules"),
    ("empty-path", None, "sources[0].path"),
    ("unknown-base", None, "base_model.name"),
    ("base-is-a-file", None, "base_model.name"),
    ("empty-model-folder", None, "base_model.name"),
    ("store-url-not-a-url", None, "store.url"),
    ("store-url-unknown-database", None, "store.url"),
]


def _config(case: str, profile_line: str | None, home: Path) -> str:
    source, head = SOURCE, ""
    if case == "empty-path":
        source = SOURCE.replace('"chats.jsonl"', '""')
    elif case == "unknown-base":
        head = '[base_model]\nname = "llama-7b-typo"\n'
    elif case == "base-is-a-file":
        (home / "model.safetensors").write_bytes(b"\0" * 64)
        head = '[base_model]\nname = "model.safetensors"\n'
    elif case == "empty-model-folder":
        (home / "mymodel").mkdir()
        head = '[base_model]\nname = "mymodel"\n'
    elif case == "store-url-not-a-url":
        head = '[store]\nurl = "plora.db"\n'
    elif case == "store-url-unknown-database":
        head = '[store]\nurl = "mongodb://localhost/plora"\n'
    return head + source + PROFILE + (profile_line or "") + "\n"


@pytest.mark.parametrize(("case", "line", "key"), GAPS, ids=[gap[0] for gap in GAPS])
@pytest.mark.parametrize("command", [["status"], ["ingest"], ["train"], ["datasets", "build"]])
def test_config_gap_is_exit_2_naming_the_key(
    home: Path, cli, case: str, line: str | None, key: str, command: list[str]
) -> None:
    (home / "chats.jsonl").write_text("", encoding="utf-8")
    write_config(home, _config(case, line, home))
    result = cli(*command, "--home", home)
    lines = [text for text in result.stderr.splitlines() if text.strip()]
    assert result.code == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith(f"error: plora.toml: {key}: "), result.stderr
    assert not (home / "plora.db").exists()  # caught before the store is opened


def test_good_values_next_to_the_gaps_still_pass(home: Path, cli) -> None:
    (home / "chats.jsonl").write_text("", encoding="utf-8")
    write_config(
        home,
        SOURCE
        + PROFILE
        + 'lora = { target_modules = ["q_proj", "k_proj", "v_proj", "o_proj"] }\n'
        + "train = { max_length = 4096, learning_rate = 3.0 }\n",
    )
    assert cli("status", "--home", home).code == 0
    write_config(home, SOURCE + PROFILE + 'lora = { target_modules = "all-linear" }\n')
    assert cli("status", "--home", home).code == 0
