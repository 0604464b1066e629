from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config
from tests.conftest import write_config

VALID = """
[store]
url = "sqlite:///state/plora.db"

[[sources]]
name = "notes"
type = "markdown"
path = "vault"
exclude = ["templates/**"]

[[sources]]
name = "code"
type = "git"
path = "~/src-plora-test"
authors = ["me@example.com"]

[profiles.work]
sources = ["notes", "code"]
stages = ["sft", "dpo"]
lora = { r = 8, alpha = 16 }
train = { max_steps = 10 }
"""


def test_valid_config_resolves_paths_against_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "vault").mkdir()
    fake_user_home = home / "user"
    (fake_user_home / "src-plora-test").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(fake_user_home))
    write_config(home, VALID)

    config = load_config(home)

    assert config.source("notes").path == home / "vault"
    assert config.source("code").path == fake_user_home / "src-plora-test"
    assert config.store_url == f"sqlite:///{home}/state/plora.db"
    name, profile = config.profile(None)
    assert name == "work" and profile.lora.r == 8 and profile.lora.alpha == 16
    assert profile.train.max_steps == 10 and profile.train.learning_rate == 2e-4
    assert config.source("code").authors == ["me@example.com"]


def test_missing_file_gives_defaults(home: Path) -> None:
    config = load_config(home)
    assert config.sources == [] and config.base_model.name == "builtin:tiny-llama"
    assert config.base_model.quantization == "nf4"


def test_env_overrides_store_url(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLORA_STORE_URL", "sqlite:////elsewhere/x.db")
    assert load_config(home).store_url == "sqlite:////elsewhere/x.db"


SOURCE = '[[sources]]\nname = "notes"\ntype = "markdown"\npath = "."\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("colour = 1\n", "plora.toml: colour: unknown key"),
        ("[store]\nurl = 3\n", "plora.toml: store.url: Input should be a valid string"),
        (SOURCE + 'tags = ["x"]\n', "plora.toml: sources[0].tags: unknown key"),
        (SOURCE + SOURCE, "plora.toml: sources[1].name: duplicate source name 'notes' (also sources[0])"),
        (SOURCE.replace('"notes"', '"My Notes"'), "plora.toml: sources[0].name: String should match pattern"),
        (SOURCE.replace('"."', '"nowhere"'), "plora.toml: sources[0].path: "),
        (
            SOURCE + SOURCE.replace('"notes"', '"x"').replace('"markdown"', '"svn"'),
            "plora.toml: sources[1].type: unknown source type 'svn'; expected one of chatgpt, claude, jsonl",
        ),
        ('[[sources]]\nname = "a"\npath = "."\n', "plora.toml: sources[0].type: missing"),
        (
            '[[sources]]\nname = "a"\ntype = "git"\npath = "."\nmax_file_kb = "big"\n',
            "plora.toml: sources[0].max_file_kb: Input should be a valid integer",
        ),
        (
            SOURCE + '[profiles.work]\nsources = ["nope"]\n',
            "plora.toml: profiles.work.sources[0]: unknown source 'nope' (sources: notes)",
        ),
        (
            SOURCE + '[profiles.work]\nsources = ["notes"]\nstages = ["dpo"]\n',
            'plora.toml: profiles.work.stages: must start with "sft"',
        ),
        (
            SOURCE + '[profiles.work]\nsources = ["notes"]\nlora = { r = 0 }\n',
            "plora.toml: profiles.work.lora.r: Input should be greater than 0",
        ),
        (
            '[redaction]\nextra_patterns = ["ok", "(unclosed"]\n',
            "plora.toml: redaction.extra_patterns: pattern 1 ('(unclosed') is not a valid regex",
        ),
        ("[store\nurl = 1\n", "plora.toml: not valid TOML"),
        (
            '[base_model]\nquantization = "int3"\n',
            "plora.toml: base_model.quantization: Input should be 'nf4' or 'none'",
        ),
    ],
)
def test_bad_config_is_one_clear_error(home: Path, text: str, expected: str) -> None:
    write_config(home, text)
    with pytest.raises(ConfigError) as info:
        load_config(home)
    message = str(info.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_missing_path_names_the_path(home: Path) -> None:
    write_config(home, SOURCE.replace('"."', '"nowhere"'))
    with pytest.raises(ConfigError, match=r"sources\[0\]\.path: .*/nowhere does not exist"):
        load_config(home)


def test_missing_path_allowed_when_not_checking(home: Path) -> None:
    write_config(home, SOURCE.replace('"."', '"nowhere"'))
    assert load_config(home, check_paths=False).source("notes").path == home / "nowhere"
