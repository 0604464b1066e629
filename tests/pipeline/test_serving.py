"""The serving check in the manifest, manifests from before it, and the merge into the NF4 weights, on
the builtin tiny-llama (fast; the SmolLM2 / llama.cpp side is tests/pipeline/test_gguf_export.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import registry
from pipeline.registry import AdapterManifest, publish
from pipeline.workspace import open_workspace
from tests.pipeline.test_registry import BASE, Kit, adapter_kit, chat_batch, logits, make_home, nf4_base, register


@pytest.fixture(autouse=True)
def offline(no_network: None) -> None:
    """No network in any test here."""


@pytest.fixture(scope="session")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return adapter_kit(tmp_path_factory.getbasetemp() / "adapter-kit")


def test_registration_records_the_serving_check(tmp_path: Path, kit: Kit, cli) -> None:
    home = make_home(tmp_path / "home", kit)
    with open_workspace(home) as workspace:
        version = register(workspace, kit)
    serving = version.require_manifest().serving
    assert serving is not None
    assert serving.vllm.ok and serving.vllm.model_extra["max_lora_rank"] == 8  # r=4 -> --max-lora-rank 8
    assert not serving.llama_cpp.ok and "not a GGUF file" in serving.llama_cpp.problems[0]
    raw = json.loads((version.path / "plora.json").read_text())
    assert raw["serving"]["vllm"]["ok"] is True

    listed = cli("adapters", "list", "--json", "--home", home).json()["adapters"][0]
    assert listed["serving"] == {"vllm": True, "llama_cpp": False}
    text = cli("adapters", "list", "--home", home).stdout
    assert "vllm" in text and "not servable somewhere" in text
    verified = cli("adapters", "verify", "work", "--home", home)
    assert verified.code == 0 and "vLLM       yes (--max-lora-rank 8)" in verified.stdout
    assert "llama.cpp  no: base 'builtin:tiny-llama' is not a GGUF file" in verified.stdout

    result = cli("adapters", "export", "work", tmp_path / "g", "--format", "gguf", "--home", home)
    assert result.code == 2 and "is not a GGUF file" in result.stderr and not (tmp_path / "g").exists()
    result = cli("adapters", "export", "work", tmp_path / "g", "--format", "onnx", "--home", home)
    assert result.code == 2 and "--format 'onnx'" in result.stderr


def test_a_manifest_without_the_check_loads_and_is_checked_on_demand(
    tmp_path: Path, kit: Kit, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = make_home(tmp_path / "home", kit)
    monkeypatch.setattr(publish, "check_folder", lambda *args: None)  # as plora wrote them before
    with open_workspace(home) as workspace:
        version = register(workspace, kit)
    raw = (version.path / "plora.json").read_bytes()
    assert b'"serving"' not in raw
    manifest = AdapterManifest.from_bytes(raw)
    assert manifest.serving is None and manifest.to_bytes() == raw  # reads and writes back unchanged

    assert cli("adapters", "list", "--json", "--home", home).json()["adapters"][0]["serving"] is None
    assert "? (verify)" in cli("adapters", "list", "--home", home).stdout
    verified = cli("adapters", "verify", "work", "--json", "--home", home).json()
    assert verified["ok"] and verified["serving"]["recorded"] is False
    assert verified["serving"]["vllm"]["ok"] and not verified["serving"]["llama_cpp"]["ok"]


@pytest.mark.usefixtures("fp32_compute")
def test_merge_into_nf4_is_the_evaluated_model(tmp_path: Path, kit: Kit, cli) -> None:
    from transformers import AutoModelForCausalLM

    home = make_home(tmp_path / "home", kit)
    with open_workspace(home) as workspace:
        version = register(workspace, kit)
    nf4 = nf4_base(home)
    batch = chat_batch(nf4.tokenizer)
    evaluated = logits(registry.attach(nf4.model, version, base_fingerprint=kit.fingerprint), batch)

    result = cli(
        "adapters", "export", "work", tmp_path / "nf4", "--merged", "--merge-into", "nf4", "--json", "--home", home
    )
    assert result.code == 0, result.stderr
    assert result.json()["merged_into"] == "nf4"
    assert json.loads((tmp_path / "nf4" / "plora-export.json").read_text())["merged_into"] == "nf4"
    full = cli("adapters", "export", "work", tmp_path / "full", "--merged", "--home", home)
    assert full.code == 0 and "merged into the full base weights" in " ".join(full.stdout.split())

    into_nf4 = logits(AutoModelForCausalLM.from_pretrained(str(tmp_path / "nf4")).eval(), batch)
    into_full = logits(AutoModelForCausalLM.from_pretrained(str(tmp_path / "full")).eval(), batch)
    nf4_error = float((into_nf4 - evaluated).abs().max())
    full_error = float((into_full - evaluated).abs().max())
    assert nf4_error < 1e-3 and full_error > 10 * nf4_error, (nf4_error, full_error)
    assert version.base_model == BASE
