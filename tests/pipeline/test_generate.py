"""Hot-swapping profiles on one NF4 base, and one-shot generation. CPU only, no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import generate as gen
from pipeline import registry
from pipeline.base_model import SPECIAL_TOKEN_IDS as IDS
from pipeline.errors import RegistryError, UsageError
from pipeline.workspace import Workspace, open_workspace
from tests.pipeline.test_registry import (  # noqa: F401 - offline is an autouse fixture
    Kit,
    adapter_kit,
    chat_batch,
    has_lora,
    logits,
    make_home,
    nf4_base,
    offline,
    register,
)


@pytest.fixture(scope="session")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return adapter_kit(tmp_path_factory.getbasetemp() / "adapter-kit")


@pytest.fixture
def workspace(tmp_path: Path, kit: Kit):
    with open_workspace(make_home(tmp_path / "home", kit)) as workspace:
        register(workspace, kit, "work", "a")
        register(workspace, kit, "creative", "b")
        yield workspace


def _alone(workspace: Workspace, ref: str, batch):
    """Logits of one adapter on its own freshly loaded base: the reference for hot-swapping."""
    base = nf4_base(workspace.home.root)
    return logits(
        registry.attach(base.model, registry.resolve(workspace, ref), base_fingerprint=base.fingerprint), batch
    )


def test_two_profiles_hot_swap_on_one_base(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    import bitsandbytes as bnb
    import torch

    loads: list[str] = []
    real_load_base = gen.load_base

    def counting_load_base(name: str, **kwargs):
        loads.append(name)
        return real_load_base(name, **kwargs)

    monkeypatch.setattr(gen, "load_base", counting_load_base)
    profiles = gen.load_profiles(workspace, ["work", "creative"])
    assert loads == ["builtin:tiny-llama"]  # the base is loaded once for both
    assert profiles.active == "work" and profiles.profiles == ["work", "creative"]
    assert set(profiles.model.peft_config) == {"work", "creative"}
    assert {v.ref for v in profiles.versions.values()} == {"work@v1", "creative@v1"}
    q_proj = profiles.model.base_model.model.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj.base_layer, bnb.nn.Linear4bit)  # real NF4 underneath
    weight = q_proj.base_layer.weight

    batch = chat_batch(profiles.base.tokenizer)
    work = logits(profiles.model, batch)
    creative = logits(profiles.use("creative").model, batch)
    assert profiles.active == "creative"
    work_again = logits(profiles.use("work").model, batch)
    assert not any(p.requires_grad for p in profiles.model.parameters())  # switching keeps adapters frozen
    with profiles.model.disable_adapter():  # (PEFT makes the active adapter trainable again on exit)
        plain = logits(profiles.model, batch)

    torch.testing.assert_close(work_again, work)
    assert (work - creative).abs().max() > 1e-2 and (work - plain).abs().max() > 1e-2
    assert q_proj.base_layer.weight is weight  # switching never touched or reloaded the base

    torch.testing.assert_close(work, _alone(workspace, "work", batch))
    torch.testing.assert_close(creative, _alone(workspace, "creative", batch))
    assert loads == ["builtin:tiny-llama"]

    reply = profiles.generate("Hi", max_new_tokens=6, profile="creative")
    assert isinstance(reply, str) and profiles.active == "creative"
    assert profiles.generate("Hi", max_new_tokens=6) == reply  # greedy: the same again
    with pytest.raises(UsageError, match="not loaded"):
        profiles.use("nobody")


def test_encode_uses_the_chat_template_with_the_generation_prompt(workspace: Workspace) -> None:
    profiles = gen.load_profiles(workspace, ["work"])
    ids = profiles.encode("Hi")["input_ids"][0].tolist()
    assert ids == [
        IDS["<s>"],
        IDS["<|user|>"],
        ord("\n"),
        *b"Hi",
        IDS["<|end|>"],
        ord("\n"),
        IDS["<|assistant|>"],
        ord("\n"),
    ]


def test_generate_uses_the_current_version_or_the_one_asked_for(workspace: Workspace, kit: Kit) -> None:
    register(workspace, kit, "work", "b", parent=1)  # work@v2, now current
    first = gen.load_profiles(workspace, ["work"], versions={"work": 1})
    second = gen.load_profiles(workspace, ["work"])
    assert first.versions["work"].ref == "work@v1" and second.versions["work"].ref == "work@v2"
    prompt = "What changed last month?"
    assert gen.generate(workspace, "work", prompt, version=1, max_new_tokens=8) == first.generate(
        prompt, max_new_tokens=8
    )
    assert gen.generate(workspace, "work", prompt, max_new_tokens=8) == second.generate(prompt, max_new_tokens=8)


def test_loading_refuses_unknown_corrupted_or_foreign_adapters(
    workspace: Workspace, kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UsageError, match="no current version"):
        gen.load_profiles(workspace, ["nobody"])
    with pytest.raises(UsageError, match="no adapter work@v5"):
        gen.generate(workspace, "work", "hi", version=5)
    with pytest.raises(UsageError, match="named twice"):
        gen.load_profiles(workspace, ["work", "work"])

    bases = []
    real_load_base = gen.load_base
    monkeypatch.setattr(gen, "load_base", lambda name, **kw: bases.append(real_load_base(name, **kw)) or bases[-1])
    register(workspace, kit, "foreign", "a", fingerprint="e" * 64)
    with pytest.raises(RegistryError, match="trained on base"):
        gen.load_profiles(workspace, ["work", "foreign"])

    assert len(bases) == 1

    weights = registry.resolve(workspace, "creative").path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(RegistryError, match=r"creative@v1 .*failed verification.*truncated or changed"):
        gen.generate(workspace, "creative", "hi")
    assert len(bases) == 1  # refused before any base was loaded

    # a version that goes bad between the check and the load is still refused by attach
    real_verify = gen.verify
    monkeypatch.setattr(gen, "verify", registry.resolve)
    with pytest.raises(RegistryError, match=r"creative@v1 .*failed verification"):
        gen.load_profiles(workspace, ["creative"])
    assert len(bases) == 2 and not has_lora(bases[-1].model)
    monkeypatch.setattr(gen, "verify", real_verify)
