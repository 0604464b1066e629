"""The example corpus in the repository's ``examples/`` folder, for the demo and the tests.

``plora init --example`` writes :func:`example_config_text` to ``plora.toml`` and builds the
example git repository with :func:`create_example_repo`. The repository is replayed from
``examples/netops_history.json`` with fixed authors and dates, so its commit SHAs are the same
on every machine. Each commit in that file lists the paths it adds or changes: a plain string
takes the file's final content from ``examples/netops/``; ``{"path": ..., "content": ...}``
gives an earlier version inline. The last commit touching a file always uses the final one, so
HEAD's tree equals ``examples/netops/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from pipeline.errors import PloraError, UsageError

EXAMPLE_REPO_NAME = "netops-repo"
EXAMPLE_AUTHOR = "sam@example.com"


class ExamplesMissingError(UsageError, FileNotFoundError):
    """There is no examples/ folder next to the installed package (a wheel install)."""


class ExampleRepoExistsError(UsageError, FileExistsError):
    """The destination of the example repository holds something else."""


class ExampleRepoError(PloraError):
    """The example repository could not be built (git missing or failing)."""


def examples_dir() -> Path:
    """The repository's ``examples/`` folder (only present in a source checkout)."""
    path = Path(__file__).resolve().parents[1] / "examples"
    if not (path / "netops_history.json").is_file():
        raise ExamplesMissingError(
            f"the example corpus is not at {path}: it ships with the plora source tree, not with "
            "the wheel. Clone the repository and run plora from there to use --example."
        )
    return path


def load_history() -> list[dict[str, Any]]:
    """The commits of ``examples/netops_history.json``, oldest first."""
    return json.loads((examples_dir() / "netops_history.json").read_text(encoding="utf-8"))


def create_example_repo(dest: Path) -> Path:
    """Create the example git repository at ``dest`` and return ``dest``.

    Idempotent: if ``dest`` already is that repository (same HEAD commit), it is returned as
    it is. Any other existing ``dest``, apart from an empty folder, raises
    :class:`ExampleRepoExistsError` (a FileExistsError).
    The repository is built in a temporary sibling folder and moved into place, so a failure
    leaves nothing half-written at ``dest``.
    """
    dest = Path(dest).expanduser().absolute()
    if dest.exists() and not _is_empty_dir(dest):
        existing = _head(dest) if (dest / ".git").exists() else None
        if existing is None or existing != _expected_head():
            raise ExampleRepoExistsError(
                f"{dest} already exists and is not the example repository; remove it or choose another folder"
            )
        return dest

    dest.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        _replay(build)
        if dest.exists():
            dest.rmdir()  # the empty folder we were allowed to fill
        build.rename(dest)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return dest


def example_config_text(home: Path) -> str:
    """A commented plora.toml using the example corpus (absolute paths into ``examples/``).

    The git source is ``netops-repo`` relative to ``home``: ``plora init --example`` creates it
    there with :func:`create_example_repo`. ``home`` is part of the signature so callers need
    not know that; the text does not depend on it.
    """
    del home
    return render_config(str(examples_dir()))


def render_config(examples: str) -> str:
    """The example config with source paths under ``examples`` (a path prefix, no trailing /).

    ``examples/plora.toml`` in the repository is ``render_config("examples")``.
    """

    def path(relative: str) -> str:
        return _toml_string(f"{examples}/{relative}" if examples else relative)

    note = "" if Path(examples).is_absolute() else _REFERENCE_NOTE
    return _CONFIG_TEMPLATE.format(
        note=note,
        chatgpt=path("exports/chatgpt/conversations.json"),
        claude=path("exports/claude/conversations.json"),
        chats=path("chats/labelled.jsonl"),
        vault=path("vault"),
        repo=_toml_string(EXAMPLE_REPO_NAME),
        author=_toml_string(EXAMPLE_AUTHOR),
    )


# --- building the repository -------------------------------------------------------------


def _replay(repo: Path) -> None:
    source = examples_dir() / "netops"
    _git(repo, "init", "--quiet")
    for number, commit in enumerate(load_history(), start=1):
        paths = []
        for entry in commit["files"]:
            if isinstance(entry, str):
                relative, content = entry, (source / entry).read_bytes()
            else:
                relative, content = entry["path"], entry["content"].encode("utf-8")
            target = repo / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(0o644)
            paths.append(relative)
        env = {
            "GIT_AUTHOR_NAME": commit["author_name"],
            "GIT_AUTHOR_EMAIL": commit["author_email"],
            "GIT_AUTHOR_DATE": commit["date"],
            "GIT_COMMITTER_NAME": commit["author_name"],
            "GIT_COMMITTER_EMAIL": commit["author_email"],
            "GIT_COMMITTER_DATE": commit["date"],
        }
        identity = ["-c", f"user.name={commit['author_name']}", "-c", f"user.email={commit['author_email']}"]
        _git(repo, "add", "--", *paths)
        _git(
            repo,
            *identity,
            "commit",
            "--quiet",
            "--no-verify",
            "--cleanup=whitespace",
            "-F",
            "-",
            env=env,
            stdin=commit["message"],
            what=f"commit {number} of netops_history.json",
        )


def _expected_head() -> str | None:
    """HEAD of a fresh replay, built in a scratch folder."""
    with tempfile.TemporaryDirectory(prefix="plora-example-") as scratch:
        _replay(Path(scratch))
        return _head(Path(scratch))


def _head(repo: Path) -> str | None:
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", "HEAD").strip() or None
    except ExampleRepoError:
        return None


def _git(
    repo: Path,
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    what: str | None = None,
) -> str:
    """Run git in ``repo`` with settings pinned, so no user or system config changes a SHA."""
    command = [
        "git",
        "-c",
        "init.defaultBranch=main",
        "-c",
        "commit.gpgsign=false",
        "-c",
        "core.autocrlf=false",
        "-c",
        "core.fileMode=true",
        *args,
    ]
    full_env = {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
        **(env or {}),
    }
    for leaked in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_TEMPLATE_DIR"):
        full_env.pop(leaked, None)
    try:
        # bytes, not text mode: no newline translation or locale encoding in commit messages
        result = subprocess.run(
            command,
            cwd=repo,
            env=full_env,
            capture_output=True,
            check=False,
            input=stdin.encode("utf-8") if stdin is not None else None,
        )
    except FileNotFoundError as e:
        raise ExampleRepoError("the example repository needs the `git` command; install git and retry") from e
    stdout = result.stdout.decode("utf-8", "replace")
    if result.returncode != 0:
        detail = result.stderr.decode("utf-8", "replace").strip() or stdout.strip()
        raise ExampleRepoError(
            f"`git {' '.join(args)}` failed in {repo}" + (f" ({what})" if what else "") + f": {detail}"
        )
    return stdout


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes), including Windows backslashes.
    return json.dumps(value, ensure_ascii=False)


_REFERENCE_NOTE = """\
#
# This copy is a reference: its paths are relative to the repository root. `plora init
# --example` writes the same config with absolute paths into the home folder and creates the
# git repository netops-repo/ there from examples/netops_history.json.
"""

_CONFIG_TEMPLATE = """\
# plora.toml for the example corpus: the chats, notes and code of "Sam", an SRE / network
# engineer. Relative paths are relative to the home folder (--home, $PLORA_HOME or the
# current directory). Every secret in the corpus is a fake canary that redaction must
# remove: see examples/SECRETS.md.
{note}
[store]
url = "sqlite:///plora.db"          # any SQLAlchemy URL; relative sqlite paths -> home

[base_model]
name = "builtin:tiny-llama"         # built locally, no download; fine for a demo, not for text
quantization = "nf4"                # "nf4" | "none"
double_quant = true

[redaction]
enabled = true
extra_patterns = []                 # extra regexes to redact

# --- sources -------------------------------------------------------------------------------

[[sources]]
name = "chatgpt"                    # a ChatGPT data export (conversations.json + feedback)
type = "chatgpt"
path = {chatgpt}

[[sources]]
name = "claude"                     # an Anthropic (claude.ai) data export
type = "claude"
path = {claude}

[[sources]]
name = "chats"                      # chats in OpenAI JSONL format, some with a "label"
type = "jsonl"
path = {chats}

[[sources]]
name = "vault"                      # an Obsidian vault: runbooks, notes, a daily note
type = "markdown"
path = {vault}
exclude = ["templates/**"]

[[sources]]
name = "code"                       # Sam's tooling repo; created by `plora init --example`
type = "git"
path = {repo}
authors = [{author}]       # only Sam's commits count as his (Alex made two)
include = ["**/*.py", "**/*.md", "**/*.yaml", "**/*.yml", "Makefile"]
max_file_kb = 256

# --- profiles: one adapter line each -------------------------------------------------------

[profiles.work]
sources = ["chatgpt", "claude", "chats", "vault", "code"]
stages = ["sft", "dpo"]             # dpo pairs come from good/bad labels and regenerated replies
mode = "continue"                   # continue from the profile's current adapter
eval_percent = 10
lora = {{ r = 8, alpha = 16, dropout = 0.05, target_modules = ["q_proj", "v_proj"] }}
train = {{ max_steps = 30, learning_rate = 2e-4, batch_size = 4, max_length = 1024, packing = true }}

[profiles.creative]
sources = ["vault"]
stages = ["sft"]
mode = "scratch"                    # always start from the base model
eval_percent = 10
lora = {{ r = 8, alpha = 16, dropout = 0.05, target_modules = ["q_proj", "v_proj"] }}
train = {{ max_steps = 10, learning_rate = 2e-4, batch_size = 4, max_length = 1024, packing = true }}
"""
