"""The base model: the deterministic builtin tiny-llama, its tokenizer and chat template, load_base
(NF4 and plain), a real QLoRA SFT step through TRL, and the errors. CPU only, no network."""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import base_model as bm
from pipeline.errors import TrainingError

REPO = Path(__file__).resolve().parents[2]
IDS = bm.SPECIAL_TOKEN_IDS


@pytest.fixture(autouse=True)
def offline(no_network: None) -> None:
    """Every test here runs with the hub offline and no internet sockets (see tests/conftest.py)."""


@pytest.fixture(scope="module")
def built_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with the builtin already built (tests only read it)."""
    home = tmp_path_factory.mktemp("home")
    bm.ensure_builtin(home)
    return home


@pytest.fixture(scope="module")
def tokenizer(built_home: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(bm.builtin_model_dir(built_home)))


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


# --- the build ---------------------------------------------------------------------------------


def test_importing_the_module_does_not_import_torch() -> None:
    code = "import sys, pipeline.base_model; print([m for m in ('torch', 'transformers', 'numpy') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_builds_are_byte_identical_here_and_in_a_fresh_interpreter(tmp_path: Path, built_home: Path) -> None:
    first = bm.build_tiny_llama(tmp_path / "a")
    second = bm.build_tiny_llama(tmp_path / "b")
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from pipeline.base.tiny_llama import build_tiny_llama
        print(build_tiny_llama(Path({str(tmp_path / "c")!r})))
        """
    )
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    third = result.stdout.strip().splitlines()[-1]

    assert first == second == third
    builtin = bm.builtin_model_dir(built_home)
    files = _files(tmp_path / "a")
    assert files == _files(tmp_path / "b") == _files(tmp_path / "c") == _files(builtin)
    assert {
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
        "fingerprint.txt",
    } <= set(files)
    assert files["fingerprint.txt"].decode().strip() == first == bm.fingerprint_folder(tmp_path / "a")
    assert len(first) == 64 and int(first, 16) >= 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp dirs left


def test_weights_config_and_sizes(tmp_path: Path, built_home: Path) -> None:
    import json

    from safetensors.numpy import load_file

    folder = bm.builtin_model_dir(built_home)
    config = json.loads((folder / "config.json").read_text())
    assert config["vocab_size"] == 320 and config["vocab_size"] % 64 == 0
    assert (
        config["hidden_size"],
        config["intermediate_size"],
        config["num_hidden_layers"],
        config["num_attention_heads"],
        config["num_key_value_heads"],
    ) == (64, 256, 2, 4, 2)
    assert config["tie_word_embeddings"] is False and "transformers_version" not in config
    tensors = load_file(str(folder / "model.safetensors"))
    assert all(t.dtype.name == "float32" for t in tensors.values())
    assert (tensors["model.norm.weight"] == 1).all()
    embed = tensors["model.embed_tokens.weight"]
    assert embed.shape == (320, 64) and abs(float(embed.std()) - 0.02) < 0.002

    # a bigger variant from the same code; a cache built with other arguments is rebuilt
    variant = tmp_path / "variant"
    small = bm.ensure_tiny_llama(variant, hidden_size=32, intermediate_size=64, layers=1, heads=2, kv_heads=1)
    assert small != bm.ensure_builtin(built_home)[1]
    assert bm.ensure_tiny_llama(variant, hidden_size=32, intermediate_size=64, layers=1, heads=2, kv_heads=1) == small
    bigger = bm.ensure_tiny_llama(variant, hidden_size=96, layers=3, heads=6, kv_heads=3)
    assert bigger != small and json.loads((variant / "config.json").read_text())["num_hidden_layers"] == 3


# --- tokenizer and chat template -----------------------------------------------------------------


def test_special_token_ids(tokenizer) -> None:
    assert IDS == {
        "<s>": 256,
        "</s>": 257,
        "<pad>": 258,
        "<unk>": 259,
        "<|system|>": 260,
        "<|user|>": 261,
        "<|assistant|>": 262,
        "<|end|>": 263,
    }
    assert tokenizer.convert_tokens_to_ids(list(IDS)) == list(IDS.values())
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token, tokenizer.unk_token) == (
        "<s>",
        "<|end|>",
        "<pad>",
        "<unk>",
    )
    assert len(tokenizer) == 264
    assert tokenizer("plain text")["input_ids"] == list(b"plain text")  # no bos/eos added


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello world",
        "  lead and trail  ",
        "a\x00b\x00",
        "emoji 🎉👩‍💻 done",
        "中文 日本語 한국어",
        "tabs\tand\r\nnewlines\n\n",
        "e\u0301 combining",
        "\ufeffbom",
        "".join(map(chr, range(128))),
        "max \U0010ffff \u2028 \x85",
    ],
)
def test_tokenizer_round_trips_bytes(tokenizer, text: str) -> None:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids == list(text.encode("utf-8"))  # one token per byte, id == byte value
    assert tokenizer.decode(ids) == text


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_tokenizer_round_trips_any_text(tokenizer, text: str) -> None:
    if any(token in text for token in IDS):
        return  # special-token text becomes the special token; covered elsewhere
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids == list(text.encode("utf-8"))
    assert tokenizer.decode(ids) == text


CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello é🎉"},
]


def test_chat_template_renders(tokenizer) -> None:
    assert tokenizer.chat_template == bm.CHAT_TEMPLATE
    rendered = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert rendered == ("<s><|system|>\nBe brief.<|end|>\n<|user|>\nHi there<|end|>\n<|assistant|>\nHello é🎉<|end|>\n")
    prompt = tokenizer.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True)
    assert prompt == "<s><|system|>\nBe brief.<|end|>\n<|user|>\nHi there<|end|>\n<|assistant|>\n"
    with pytest.raises(Exception, match="unknown role tool"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def _expected(messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """input ids and assistant mask, built by hand: bytes are their own ids."""
    ids, mask = [IDS["<s>"]], [0]
    for message in messages:
        header = [IDS[f"<|{message['role']}|>"], ord("\n")]
        body = [*message["content"].encode("utf-8"), IDS["<|end|>"]]
        ids += header + body + [ord("\n")]
        trained = 1 if message["role"] == "assistant" else 0
        mask += [0] * len(header) + [trained] * len(body) + [0]
    return ids, mask


@pytest.mark.parametrize(
    "messages",
    [
        CONVERSATION,
        [
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": " two\n"},
            {"role": "user", "content": "три"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": "終わり\x00"},
        ],
    ],
)
def test_assistant_mask_is_exactly_assistant_content_and_end(tokenizer, messages) -> None:
    out = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    assert (out["input_ids"], out["assistant_masks"]) == _expected(messages)


def test_trl_accepts_the_template(tokenizer) -> None:
    from trl.chat_template_utils import (
        get_training_chat_template,
        has_generation_markers,
        is_chat_template_stop_token_trained,
    )

    assert has_generation_markers(tokenizer.chat_template)
    assert is_chat_template_stop_token_trained(tokenizer)
    assert get_training_chat_template(tokenizer) is None  # TRL keeps our template as it is


# --- load_base -----------------------------------------------------------------------------------


def _chat_input(tokenizer):
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )


def test_load_nf4_gives_linear4bit_and_generates(built_home: Path) -> None:
    import bitsandbytes as bnb
    import torch

    base = bm.load_base("builtin:tiny-llama", home=built_home, quantization="nf4", double_quant=True)
    assert base.quantized and base.device == "cpu" and base.name == "builtin:tiny-llama"
    assert base.fingerprint == (bm.builtin_model_dir(built_home) / "fingerprint.txt").read_text().strip()
    linears = {name: type(module) for name, module in base.model.named_modules() if name.endswith(("_proj", "lm_head"))}
    assert len(linears) == 2 * 7 + 1
    assert all(issubclass(kind, bnb.nn.Linear4bit) for name, kind in linears.items() if name != "lm_head")
    assert not issubclass(linears["lm_head"], bnb.nn.Linear4bit)
    q_weight = base.model.model.layers[0].self_attn.q_proj.weight
    assert q_weight.quant_state.quant_type == "nf4" and q_weight.quant_state.nested  # double quant

    batch = _chat_input(base.tokenizer)
    with torch.no_grad():
        logits = base.model(**batch).logits
    assert logits.shape == (1, batch["input_ids"].shape[1], 320) and torch.isfinite(logits).all()
    out = base.model.generate(**batch, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == batch["input_ids"].shape[1] + 5 or out[0, -1] == IDS["<|end|>"]
    assert (out < 264).all()


def _mapped(folder: Path) -> set[str]:
    """The files under ``folder`` this process has memory-mapped now."""
    lines = Path("/proc/self/maps").read_text().splitlines()
    return {
        line.split(maxsplit=5)[5]
        for line in lines
        if len(line.split(maxsplit=5)) == 6 and line.split(maxsplit=5)[5].startswith(str(folder))
    }


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/self/maps (Linux)")
def test_nf4_load_on_cpu_releases_the_checkpoint_mapping(built_home: Path, tmp_path: Path) -> None:
    """An NF4 base keeps no tensor in the safetensors file mapping, so the mapping (and with it every
    checkpoint page read while quantizing) is gone after loading."""
    import gc
    import mmap

    import torch

    folder = tmp_path / "model"
    shutil.copytree(bm.builtin_model_dir(built_home), folder)
    (weights,) = folder.glob("*.safetensors")
    with weights.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ):
        assert any(path.endswith(".safetensors") for path in _mapped(folder))  # the check sees a mapping
    assert _mapped(folder) == set()

    base = bm.load_base(str(folder), home=tmp_path, quantization="nf4", double_quant=True)
    gc.collect()
    assert _mapped(folder) == set()
    with torch.no_grad():  # and it still computes
        assert torch.isfinite(base.model(**_chat_input(base.tokenizer)).logits).all()


def test_load_without_quantization_and_from_a_folder(built_home: Path) -> None:
    import bitsandbytes as bnb
    import torch

    base = bm.load_base("builtin:tiny-llama", home=built_home, quantization="none", double_quant=False)
    assert not base.quantized
    q_proj = base.model.model.layers[0].self_attn.q_proj
    assert type(q_proj) is torch.nn.Linear and not isinstance(q_proj, bnb.nn.Linear4bit)
    assert base.model.dtype == bm.compute_dtype_choice("cpu")[0]  # float32, or bf16 on a CPU that has it
    batch = _chat_input(base.tokenizer)
    out = base.model.generate(**batch, max_new_tokens=5, do_sample=True)
    assert out.shape[1] <= batch["input_ids"].shape[1] + 5 and (out < 264).all()

    # the same files as a plain local folder (relative to the home): same fingerprint, same weights
    local = bm.load_base("models/tiny-llama", home=built_home, quantization="none", double_quant=False)
    assert local.fingerprint == base.fingerprint and local.path == bm.builtin_model_dir(built_home)
    torch.testing.assert_close(local.model.lm_head.weight, base.model.lm_head.weight)


def test_hub_id_loads_from_the_hub_cache_offline(
    built_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--someone--tiny"
    shutil.copytree(bm.builtin_model_dir(built_home), repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))

    base = bm.load_base("someone/tiny", home=tmp_path, quantization="none", double_quant=False)
    assert base.path == repo / "snapshots" / commit and base.name == "someone/tiny"
    assert base.fingerprint == bm.ensure_builtin(built_home)[1]


def test_quantization_config() -> None:
    import torch

    config = bm.get_quantization_config("nf4", True, "cpu")
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    dtype = bm.compute_dtype_choice("cpu")[0]
    assert dtype in (torch.float32, torch.bfloat16)
    assert config.bnb_4bit_compute_dtype == dtype and config.bnb_4bit_quant_storage == dtype
    assert not bm.get_quantization_config("nf4", False, "cpu").bnb_4bit_use_double_quant
    assert bm.get_quantization_config("none", True, "cpu") is None
    with pytest.raises(TrainingError, match="'int3'"):
        bm.get_quantization_config("int3", True, "cpu")  # type: ignore[arg-type]


def test_bitsandbytes_import_is_quiet_and_offline() -> None:
    code = (
        "import sys, logging, pipeline.base_model as bm; bm.get_quantization_config('nf4', True, 'cpu'); "
        "print('kernels' in sys.modules)"
    )
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "False"
    assert "kernels-community" not in result.stderr


# --- a real QLoRA step through TRL ---------------------------------------------------------------


def test_sft_step_with_assistant_only_loss_on_nf4(built_home: Path, tmp_path: Path) -> None:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    base = bm.load_base("builtin:tiny-llama", home=built_home, quantization="nf4", double_quant=True)
    lm_head_before = base.model.lm_head.weight.detach().clone()
    data = Dataset.from_list(
        [
            {
                "messages": [
                    {"role": "user", "content": f"question {i}"},
                    {"role": "assistant", "content": f"answer {i}"},
                ]
            }
            for i in range(8)
        ]
    )
    args = SFTConfig(
        output_dir=str(tmp_path / "run"),
        max_steps=3,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        logging_steps=1,
        assistant_only_loss=True,
        optim="paged_adamw_8bit",
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        max_length=64,
        seed=0,
        bf16=False,
    )
    trainer = SFTTrainer(
        model=base.model,
        args=args,
        train_dataset=data,
        processing_class=base.tokenizer,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    trainable = [name for name, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert len(trainable) == 2 * 2 * 2  # 2 layers x (q, v) x (A, B)

    example = trainer.train_dataset[0]
    ids, mask = _expected(data[0]["messages"])
    assert example["input_ids"] == ids
    assert example["labels"] == [i if m else -100 for i, m in zip(ids, mask, strict=True)]

    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    torch.testing.assert_close(base.model.lm_head.weight, lm_head_before)


# --- errors and the fingerprint check ------------------------------------------------------------


@pytest.mark.parametrize(
    "name, match",
    [
        ("builtin:giant-llama", "unknown built-in"),
        ("./no/such/folder", "no such folder"),
        ("/definitely/not/here", "no such folder"),
        ("no-such-org/no-such-model", "not available from the Hugging Face hub"),
    ],
)
def test_unknown_base_name_is_a_training_error(tmp_path: Path, name: str, match: str) -> None:
    with pytest.raises(TrainingError, match=match) as error:
        bm.load_base(name, home=tmp_path, quantization="none", double_quant=False)
    assert f"base_model.name: {name!r}" in str(error.value)


def test_folder_without_safetensors_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(TrainingError, match="safetensors"):
        bm.load_base("pickled", home=tmp_path, quantization="none", double_quant=False)


def test_corrupted_cache_is_detected_and_rebuilt(
    built_home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    shutil.copytree(built_home, home)
    folder = bm.builtin_model_dir(home)
    good = _files(folder)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(data))

    with pytest.raises(TrainingError, match="do not match the recorded fingerprint"):
        bm.verify_fingerprint(folder)
    with caplog.at_level(logging.WARNING):
        folder_again, fingerprint = bm.ensure_builtin(home)
    assert "do not match its recorded fingerprint" in caplog.text
    assert folder_again == folder and fingerprint == good["fingerprint.txt"].decode().strip()
    assert _files(folder) == good
    assert bm.verify_fingerprint(folder) == fingerprint

    (folder / "fingerprint.txt").unlink()
    reloaded = bm.load_base("builtin:tiny-llama", home=home, quantization="none", double_quant=False)
    assert reloaded.fingerprint == fingerprint
    assert _files(folder) == good


def test_nf4_layers_keep_one_layout_for_eval_and_training(tmp_path: Path) -> None:
    """bitsandbytes would repack NF4 weights for CPU inference (and cut LoRA gradients); load_base stops it."""
    import bitsandbytes as bnb

    loaded = bm.load_base("builtin:tiny-llama", home=tmp_path, quantization="nf4", double_quant=True)
    layers = [m for m in loaded.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and all(m.support_avx512bf16_for_cpu is False for m in layers)
