"""``plora init``: a commented plora.toml and an empty, migrated store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.config import ConfigError
from pipeline.home import Home
from pipeline.locks import read_only_error
from pipeline.workspace import open_workspace

DEFAULT_CONFIG = """\
# plora.toml: what to learn from, and how. Relative paths are relative to this folder.
# Reference: README.md, "Config". Run `plora init --example` for a complete example.

[store]
url = "sqlite:///plora.db"          # any SQLAlchemy URL, e.g. postgresql+psycopg://user@host/plora

[base_model]
name = "builtin:tiny-llama"         # or "smollm2-135m", a .gguf file, a model folder or a hub id
quantization = "nf4"                # "nf4" (QLoRA) | "none" (full-precision LoRA)
double_quant = true

[redaction]
enabled = true                      # secrets are replaced by [REDACTED:<type>] before storage
extra_patterns = []                 # your own regexes, e.g. ['corp-[0-9a-f]{32}']

# One [[sources]] table per thing to learn from. type: chatgpt | claude | jsonl | markdown | git
#
# [[sources]]
# name = "chatgpt"
# type = "chatgpt"
# path = "exports/chatgpt.zip"      # the export .zip or its conversations.json
#
# [[sources]]
# name = "runbooks"
# type = "markdown"
# path = "vault"                    # a folder; Obsidian vaults work as they are
# exclude = ["templates/**"]
#
# [[sources]]
# name = "code"
# type = "git"
# path = "~/src/netops"
# authors = ["me@example.com"]      # only this person's commits count as theirs
# include = ["**/*.py", "**/*.md", "**/*.yaml"]
# max_file_kb = 256

# One adapter line per profile (work, creative, technical...).
#
# [profiles.work]
# sources = ["chatgpt", "runbooks", "code"]
# stages = ["sft"]                  # then optionally "dpo" or "kto"
# mode = "continue"                 # "continue" from the current adapter, or "scratch"
# eval_percent = 10
# lora = { r = 16, alpha = 32, dropout = 0.05, target_modules = ["q_proj", "v_proj"] }
# train = { max_steps = 200, learning_rate = 2e-4, batch_size = 4, max_length = 1024, packing = true }
"""


@dataclass(frozen=True)
class InitResult:
    config_path: Path
    store: str
    example_repo: Path | None


def init_home(home: Home, *, example: bool = False, force: bool = False) -> InitResult:
    if home.config_path.exists() and not force:
        raise ConfigError(home.config_path, None, "already exists (use --force to overwrite it)")
    try:
        home.root.mkdir(parents=True, exist_ok=True)
        probe = home.config_path.with_suffix(".toml.tmp")
        probe.touch()
    except OSError as e:
        raise read_only_error(home.root if home.root.exists() else home.root.parent, e) from e
    example_repo = None
    if example:
        from pipeline.examples import create_example_repo, example_config_text

        example_repo = create_example_repo(home.root / "netops-repo")
        text = example_config_text(home.root)
    else:
        text = DEFAULT_CONFIG
    temp = home.config_path.with_suffix(".toml.tmp")
    temp.write_text(text, encoding="utf-8")
    temp.replace(home.config_path)
    with open_workspace(home.root) as workspace:
        return InitResult(home.config_path, workspace.store.display_url, example_repo)
