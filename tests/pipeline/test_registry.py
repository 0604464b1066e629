"""The adapter registry: atomic registration, checksums and verification, the current pointer,
refusing pickles and foreign bases, crash safety, export (plain and merged) and composition.

Adapters are made for real with PEFT on the builtin tiny-llama (NF4), with their LoRA B weights
perturbed so they change the output. CPU only, no network."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline import registry
from pipeline.errors import RegistryError, UsageError
from pipeline.registry import AdapterVersion, publish
from pipeline.workspace import Workspace, open_workspace

REPO = Path(__file__).resolve().parents[2]
BASE = "builtin:tiny-llama"
CONFIG = f'[base_model]\nname = "{BASE}"\nquantization = "nf4"\ndouble_quant = true\n'
SOURCES = {"chatgpt": {"conversation": 12}, "runbooks": {"runbook": 3, "note": 2}}


# --- shared helpers (also used by tests/pipeline/test_generate.py and tests/flows/test_cli_adapters.py)


@pytest.fixture(autouse=True)
def offline(no_network: None) -> None:
    """Every test here runs with the hub offline and no internet sockets (see tests/conftest.py)."""


@dataclass(frozen=True)
class Kit:
    models: Path  # a home's models/ folder with the builtin built, copied into every test home
    fingerprint: str
    adapters: dict[str, Path]  # name -> a PEFT save_pretrained() folder (r=4 on q_proj, v_proj)


_KIT: dict[Path, Kit] = {}


def adapter_kit(root: Path) -> Kit:
    """Build the builtin once and two real, different LoRA adapters on it (cached per test session)."""
    if root in _KIT:
        return _KIT[root]
    from pipeline.base_model import import_bitsandbytes, load_base

    import_bitsandbytes()
    import torch
    from peft import LoraConfig, get_peft_model

    home = root / "home"
    home.mkdir(parents=True)
    adapters = {}
    for name, seed in (("a", 1), ("b", 2)):
        base = load_base(BASE, home=home, quantization="nf4", double_quant=True)
        model = get_peft_model(base.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for key, parameter in model.named_parameters():
                if "lora_B" in key:
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
        model.save_pretrained(str(root / name))
        adapters[name] = root / name
    _KIT[root] = Kit(models=home / "models", fingerprint=base.fingerprint, adapters=adapters)
    return _KIT[root]


@pytest.fixture(scope="session")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return adapter_kit(tmp_path_factory.getbasetemp() / "adapter-kit")


def make_home(home: Path, kit: Kit, config: str = CONFIG) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    shutil.copytree(kit.models, home / "models")
    (home / "plora.toml").write_text(config, encoding="utf-8")
    return home


def register(
    workspace: Workspace,
    kit: Kit,
    profile: str = "work",
    adapter: str = "a",
    *,
    accepted: bool = True,
    promote: bool | None = None,
    parent: int | None = None,
    adapter_dir: Path | None = None,
    fingerprint: str | None = None,
    **overrides: Any,
) -> AdapterVersion:
    arguments: dict[str, Any] = {
        "profile": profile,
        "adapter_dir": adapter_dir or kit.adapters[adapter],
        "parent_version": parent,
        "base_model": BASE,
        "base_fingerprint": fingerprint or kit.fingerprint,
        "snapshots": {"sft": "5" * 64},
        "lora": {"r": 4, "alpha": 8},
        "train": {"max_steps": 3, "learning_rate": 1e-3},
        "metrics": {"eval_loss": 1.25, "base_eval_loss": 1.5},
        "gate": {
            "accepted": accepted,
            "reasons": ["eval loss 1.25 < 1.5" if accepted else "no better than v1"],
            "improvement": 0.25,
        },
        "run_id": None,
        "sources": SOURCES,
        "promote": accepted if promote is None else promote,
    }
    arguments.update(overrides)
    return registry.register(workspace, **arguments)


def chat_batch(tokenizer: Any, text: str = "How do I roll back a BGP change?") -> dict[str, Any]:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )


def logits(model: Any, batch: dict[str, Any]) -> Any:
    import torch

    with torch.no_grad():
        return model(**batch).logits


def nf4_base(home: Path):
    from pipeline.base_model import load_base

    return load_base(BASE, home=home, quantization="nf4", double_quant=True)


def fp32_base(home: Path):
    from pipeline.base_model import load_base

    return load_base(BASE, home=home, quantization="none", double_quant=False)


def has_lora(model: Any) -> bool:
    return any("lora_" in name for name, _ in model.named_modules())


# --- fixtures of this module -----------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path: Path, kit: Kit):
    with open_workspace(make_home(tmp_path / "home", kit)) as workspace:
        yield workspace


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- registration --------------------------------------------------------------------------------


def test_register_writes_a_checksummed_version_with_manifest_and_card(workspace: Workspace, kit: Kit) -> None:
    from pipeline.status import status
    from storage.adapters import get_adapter

    version = register(workspace, kit)
    assert version.ref == "work@v1" and version.status == "accepted" and version.parent_version is None
    assert version.path == workspace.home.root / "adapters" / "work" / "v1"
    files = sorted(path.name for path in version.path.iterdir())
    # PEFT's own README is replaced by the model card; unchanged tokenizer files are not copied
    assert files == ["README.md", "adapter_config.json", "adapter_model.safetensors", "plora.json"]
    assert (version.path / "adapter_model.safetensors").read_bytes() == (
        kit.adapters["a"] / "adapter_model.safetensors"
    ).read_bytes()
    assert [p.name for p in version.path.parent.iterdir()] == ["v1"]  # no staging left

    manifest = json.loads((version.path / "plora.json").read_text())
    assert manifest == version.manifest.dump()
    assert {
        "format",
        "profile",
        "version",
        "parent_version",
        "status",
        "base_model",
        "snapshots",
        "sources",
        "lora",
        "train",
        "metrics",
        "gate",
        "run_id",
        "composition",
        "files",
        "created_at",
        "plora_version",
    } <= manifest.keys()
    assert manifest["base_model"] == {"name": BASE, "fingerprint": kit.fingerprint}
    assert manifest["snapshots"] == {"sft": "5" * 64} and manifest["sources"] == SOURCES
    assert manifest["gate"]["improvement"] == 0.25 and manifest["metrics"]["eval_loss"] == 1.25
    assert manifest["lora"]["r"] == 4 and manifest["lora"]["target_modules"]
    assert set(manifest["files"]) == set(files) - {"plora.json"}
    for name, meta in manifest["files"].items():
        assert meta == {"sha256": _sha(version.path / name), "size": (version.path / name).stat().st_size}
    with workspace.store.read() as session:
        row = get_adapter(session, "work", 1)
        assert row.manifest_sha256 == _sha(version.path / "plora.json") == version.manifest_sha256
        assert row.path == "adapters/work/v1" and row.metrics["eval_loss"] == 1.25

    card = (version.path / "README.md").read_text()
    assert "# work@v1" in card and kit.fingerprint in card
    assert "| chatgpt | conversation | 12 |" in card and "| runbooks | runbook | 3 |" in card
    assert "eval loss 1.25 < 1.5" in card and "| improvement | 0.25 |" in card

    assert registry.verify(workspace, "work").manifest.dump() == manifest
    assert status(workspace)["adapters"] == {"work": {"current": "v1", "versions": 1}}


def test_numbering_pointer_and_refs(workspace: Workspace, kit: Kit) -> None:
    assert registry.current(workspace, "work") is None
    v1 = register(workspace, kit)
    v2 = register(workspace, kit, adapter="b", accepted=False, parent=1)  # a rejected candidate
    assert (v2.version, v2.status, v2.parent_version) == (2, "rejected", 1)
    assert registry.current(workspace, "work").version == 1  # rejected: not promoted
    v3 = register(workspace, kit, adapter="b", parent=1)
    other = register(workspace, kit, "creative", "b")
    assert other.ref == "creative@v1"

    assert registry.current(workspace, "work") == registry.resolve(workspace, "work") == v3
    assert registry.resolve(workspace, "work@v2") == registry.resolve(workspace, "work@2") == v2
    assert [v.ref for v in registry.list_versions(workspace)] == ["creative@v1", "work@v1", "work@v2", "work@v3"]
    assert registry.list_versions(workspace, "work")[0] == v1

    with pytest.raises(UsageError, match=r"no adapter work@v9 \(versions of work: v1, v2, v3\)"):
        registry.resolve(workspace, "work@v9")
    with pytest.raises(UsageError, match="no current version"):
        registry.resolve(workspace, "nobody")
    for bad in ("Work", "work@x", "../x", "work@v1@v2", ""):
        with pytest.raises(UsageError, match="expected PROFILE"):
            registry.resolve(workspace, bad)
    with pytest.raises(UsageError, match="profile"):
        register(workspace, kit, "../escape")
    with pytest.raises(RegistryError, match="won't promote a candidate the eval gate rejected"):
        register(workspace, kit, accepted=False, promote=True)
    with pytest.raises(RegistryError, match="parent version v7 is not registered"):
        register(workspace, kit, parent=7)
    assert len(registry.list_versions(workspace, "work")) == 3  # the refused ones left nothing


def test_only_peft_files_are_taken_and_tokenizer_files_only_when_changed(
    workspace: Workspace, kit: Kit, tmp_path: Path
) -> None:
    source = tmp_path / "trainer-output"
    shutil.copytree(kit.adapters["a"], source)
    models = workspace.home.root / "models" / "tiny-llama"
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copyfile(models / name, source / name)
    (source / "training_args.bin").write_bytes(pickle.dumps({"lr": 1}))
    (source / "trainer_state.json").write_text("{}")
    same = register(workspace, kit, adapter_dir=source)
    assert sorted(same.manifest.files) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]

    config = json.loads((source / "tokenizer_config.json").read_text())
    config["model_max_length"] = 512
    (source / "tokenizer_config.json").write_text(json.dumps(config))
    changed = register(workspace, kit, adapter_dir=source)
    assert {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"} <= changed.manifest.files.entries.keys()
    assert not (changed.path / "training_args.bin").exists()
    registry.verify(workspace, changed.ref)

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copyfile(source / "adapter_config.json", pickled / "adapter_config.json")
    (pickled / "adapter_model.bin").write_bytes(pickle.dumps({}))
    with pytest.raises(RegistryError, match="pickled weights are refused"):
        register(workspace, kit, adapter_dir=pickled)
    truncated = tmp_path / "truncated"
    shutil.copytree(kit.adapters["a"], truncated)
    data = (truncated / "adapter_model.safetensors").read_bytes()
    (truncated / "adapter_model.safetensors").write_bytes(data[:-10])
    with pytest.raises(RegistryError, match="truncated"):
        register(workspace, kit, adapter_dir=truncated)
    assert [v.version for v in registry.list_versions(workspace)] == [1, 2]


# --- verification: corrupted folders are refused, nothing is loaded, nothing is unpickled ----------


class _Bomb:
    """Unpickling this creates ``marker``: proof that a pickle was (or wasn't) loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def _flip_a_byte(folder: Path, marker: Path) -> list[str]:
    path = folder / "adapter_model.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x40
    path.write_bytes(bytes(data))
    return ["adapter_model.safetensors: sha256 mismatch"]


def _truncate(folder: Path, marker: Path) -> list[str]:
    path = folder / "adapter_model.safetensors"
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.truncate(size // 2)
    return [f"adapter_model.safetensors: {size // 2} bytes, the manifest says {size} (truncated or changed)"]


def _swap_in_a_pickle(folder: Path, marker: Path) -> list[str]:
    (folder / "adapter_model.safetensors").unlink()
    (folder / "adapter_model.bin").write_bytes(pickle.dumps(_Bomb(marker)))
    return ["adapter_model.bin: pickle-format file refused", "adapter_model.safetensors: missing"]


def _add_a_pickle_next_to_it(folder: Path, marker: Path) -> list[str]:
    (folder / "optimizer.pt").write_bytes(pickle.dumps(_Bomb(marker)))
    return ["optimizer.pt: pickle-format file refused"]


def _foreign_base_in_manifest(folder: Path, marker: Path) -> list[str]:
    manifest = json.loads((folder / "plora.json").read_text())
    manifest["base_model"]["fingerprint"] = "f" * 64
    (folder / "plora.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return [
        "plora.json: sha256 differs from the one recorded at registration",
        "plora.json: base fingerprint ffffffffffff... does not match the registered base fingerprint",
    ]


def _remove_the_config(folder: Path, marker: Path) -> list[str]:
    (folder / "adapter_config.json").unlink()
    return ["adapter_config.json: missing"]


@pytest.mark.parametrize(
    "damage",
    [
        _flip_a_byte,
        _truncate,
        _swap_in_a_pickle,
        _add_a_pickle_next_to_it,
        _foreign_base_in_manifest,
        _remove_the_config,
    ],
)
def test_damaged_version_fails_verify_and_refuses_to_load(
    workspace: Workspace, kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage
) -> None:
    import torch

    version = register(workspace, kit)
    base = nf4_base(workspace.home.root)
    marker = tmp_path / "unpickled"
    expected = damage(version.path, marker)

    unpickled: list[str] = []

    def forbidden(name: str):
        def call(*args: Any, **kwargs: Any) -> Any:
            unpickled.append(name)
            raise AssertionError(f"{name} called while loading an adapter")

        return call

    monkeypatch.setattr(pickle, "load", forbidden("pickle.load"))
    monkeypatch.setattr(pickle, "loads", forbidden("pickle.loads"))
    monkeypatch.setattr(pickle, "Unpickler", forbidden("pickle.Unpickler"))
    monkeypatch.setattr(torch, "load", forbidden("torch.load"))

    with pytest.raises(RegistryError) as error:
        registry.verify(workspace, "work@v1")
    message = str(error.value)
    assert message.startswith("adapter work@v1 (") and "failed verification" in message
    for part in expected:
        assert part in message
    with pytest.raises(RegistryError, match="failed verification"):
        registry.attach(base.model, registry.resolve(workspace, "work"), base_fingerprint=base.fingerprint)
    with pytest.raises(RegistryError, match="failed verification"):
        registry.promote(workspace, "work@v1")
    with pytest.raises(RegistryError, match="failed verification"):
        registry.export(workspace, "work", tmp_path / "out", merged=False)
    assert not has_lora(base.model)  # nothing was put on the base
    assert unpickled == [] and not marker.exists()
    assert not (tmp_path / "out").exists() and [p for p in tmp_path.iterdir() if "plora-tmp" in p.name] == []


def test_attach_refuses_another_base(workspace: Workspace, kit: Kit) -> None:
    version = register(workspace, kit)
    base = nf4_base(workspace.home.root)
    with pytest.raises(
        RegistryError, match=r"trained on base 'builtin:tiny-llama' \(fingerprint " + kit.fingerprint[:12]
    ):
        registry.attach(base.model, version, base_fingerprint="0" * 64)
    assert not has_lora(base.model)

    # the row and the folder agree on another base: verification passes, attaching still refuses
    foreign = register(workspace, kit, adapter="b", fingerprint="e" * 64, promote=False)
    registry.verify(workspace, foreign.ref)
    with pytest.raises(RegistryError, match="eeeeeeeeeeee"):
        registry.attach(base.model, foreign, base_fingerprint=base.fingerprint)
    assert not has_lora(base.model)


def test_attach_loads_exactly_the_registered_weights(workspace: Workspace, kit: Kit) -> None:
    import torch
    from peft import PeftModel

    version = register(workspace, kit)
    base = nf4_base(workspace.home.root)
    batch = chat_batch(base.tokenizer)
    # (no forward before attaching: on AVX512-BF16 CPUs bitsandbytes repacks NF4 weights at the first
    # inference forward, which moves later logits by ~1e-3)
    model = registry.attach(base.model, version, base_fingerprint=base.fingerprint)
    assert isinstance(model, PeftModel) and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    ours = logits(model, batch)
    with model.disable_adapter():
        plain = logits(model, batch)
    assert not torch.allclose(ours, plain, atol=1e-3)  # the adapter changes the output

    reference = PeftModel.from_pretrained(nf4_base(workspace.home.root).model, str(kit.adapters["a"]))
    torch.testing.assert_close(ours, logits(reference, batch))

    trainable = registry.attach(
        nf4_base(workspace.home.root).model, version, base_fingerprint=base.fingerprint, trainable=True
    )
    names = [name for name, p in trainable.named_parameters() if p.requires_grad]
    assert len(names) == 2 * 2 * 2 and all("lora_" in name for name in names)
    with pytest.raises(RegistryError, match="already on this model"):
        registry.attach(model, version, base_fingerprint=base.fingerprint)


# --- the pointer: promote and rollback -------------------------------------------------------------


def test_promote_and_rollback_move_only_the_pointer(workspace: Workspace, kit: Kit) -> None:
    register(workspace, kit)  # v1 accepted
    register(workspace, kit, adapter="b", accepted=False)  # v2 rejected
    v3 = register(workspace, kit, adapter="b", parent=1)  # v3 accepted, current
    before = {p.name: _sha(p) for p in (workspace.home.adapters / "work").rglob("*") if p.is_file()}

    assert registry.rollback(workspace, "work").ref == "work@v1"  # skips the rejected v2
    assert registry.current(workspace, "work").version == 1
    with pytest.raises(RegistryError, match="no accepted version before v1"):
        registry.rollback(workspace, "work")

    with pytest.raises(RegistryError, match=r"rejected by the eval gate .*no better than v1.*--force"):
        registry.promote(workspace, "work@v2")
    assert registry.promote(workspace, "work@v2", force=True).ref == "work@v2"
    assert registry.current(workspace, "work").version == 2
    assert registry.promote(workspace, "work@v3") == v3
    assert registry.rollback(workspace, "work").version == 1

    # a rollback target that fails verification: an error, the pointer stays
    registry.promote(workspace, "work@v3")
    (workspace.home.adapters / "work" / "v1" / "adapter_model.safetensors").write_bytes(b"junk")
    with pytest.raises(RegistryError, match=r"work@v1 .*failed verification"):
        registry.rollback(workspace, "work")
    assert registry.current(workspace, "work").version == 3
    with pytest.raises(RegistryError, match="no current version to roll back from"):
        registry.rollback(workspace, "creative")
    after = {p.name: _sha(p) for p in (workspace.home.adapters / "work").rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if k != "adapter_model.safetensors"} == {
        k: v for k, v in before.items() if k != "adapter_model.safetensors"
    }


# --- crash safety ----------------------------------------------------------------------------------

STEPS = ["staged", "manifest", "renamed", "row"]


def _assert_clean_after_crash(workspace: Workspace, kit: Kit) -> None:
    """Only v1 is visible and current, it verifies, and the next registration is v2 with nothing left over."""
    assert [v.ref for v in registry.list_versions(workspace)] == ["work@v1"]
    assert registry.current(workspace, "work").ref == "work@v1"
    registry.verify(workspace, "work")
    v2 = register(workspace, kit, adapter="b", parent=1)
    assert v2.ref == "work@v2" and registry.current(workspace, "work") == v2
    registry.verify(workspace, "work@v2")
    assert sorted(p.name for p in (workspace.home.adapters / "work").iterdir()) == ["v1", "v2"]


@pytest.mark.parametrize("step", STEPS)
def test_failure_at_each_step_leaves_no_half_version(
    workspace: Workspace, kit: Kit, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    register(workspace, kit)

    def fail(at: str) -> None:
        if at == step:
            raise KeyboardInterrupt(f"interrupted at {at}")

    monkeypatch.setattr(publish, "_checkpoint", fail)
    with pytest.raises(KeyboardInterrupt):
        register(workspace, kit, adapter="b", parent=1)
    assert sorted(p.name for p in (workspace.home.adapters / "work").iterdir()) == ["v1"]  # cleaned up
    monkeypatch.undo()
    _assert_clean_after_crash(workspace, kit)


def test_failure_after_commit_keeps_the_version(
    workspace: Workspace, kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(workspace, kit)

    def fail(at: str) -> None:
        if at == "committed":
            raise KeyboardInterrupt

    monkeypatch.setattr(publish, "_checkpoint", fail)
    with pytest.raises(KeyboardInterrupt):
        register(workspace, kit, adapter="b", parent=1)
    assert registry.current(workspace, "work").ref == "work@v2"
    registry.verify(workspace, "work@v2")


_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from pipeline import registry
    from pipeline.registry import publish
    from pipeline.workspace import open_workspace

    home, adapter, fingerprint, step = sys.argv[1:5]

    def die(at):
        if at == step:
            os.kill(os.getpid(), signal.SIGKILL)

    publish._checkpoint = die
    workspace = open_workspace(Path(home))
    registry.register(
        workspace, profile="work", adapter_dir=Path(adapter), parent_version=1, base_model="builtin:tiny-llama",
        base_fingerprint=fingerprint, snapshots={}, lora={}, train={}, metrics={},
        gate={"accepted": True, "reasons": []}, run_id=None, promote=True)
    print("registered, not killed")
""")


@pytest.mark.parametrize("step", STEPS)
def test_sigkill_at_each_step_leaves_no_half_version(workspace: Workspace, kit: Kit, step: str) -> None:
    register(workspace, kit)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _KILL_SCRIPT, str(workspace.home.root), str(kit.adapters["b"]), kit.fingerprint, step],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == -signal.SIGKILL, result.stdout + result.stderr
    leftovers = sorted(p.name for p in (workspace.home.adapters / "work").iterdir())
    if step in ("staged", "manifest"):
        assert len(leftovers) == 2 and leftovers[0].startswith(".staging-") and leftovers[1] == "v1"
    else:  # a v2 folder without a row and the marker of its dead registration: invisible, removed by the next one
        assert len(leftovers) == 3 and leftovers[0].startswith(".pending-v2-") and leftovers[1:] == ["v1", "v2"]
    _assert_clean_after_crash(workspace, kit)


# --- export ----------------------------------------------------------------------------------------


def test_export_plain_folder_loads_in_peft_as_is(workspace: Workspace, kit: Kit, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel

    version = register(workspace, kit)
    dest = registry.export(workspace, "work", tmp_path / "plain", merged=False)
    assert sorted(p.name for p in dest.iterdir()) == sorted([*version.manifest.files, "plora.json"])
    base = nf4_base(workspace.home.root)
    batch = chat_batch(base.tokenizer)
    loaded = PeftModel.from_pretrained(base.model, str(dest))
    ours = registry.attach(nf4_base(workspace.home.root).model, version, base_fingerprint=kit.fingerprint)
    torch.testing.assert_close(logits(loaded, batch), logits(ours, batch))

    with pytest.raises(UsageError, match="not empty"):
        registry.export(workspace, "work", dest, merged=False)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        registry.export(workspace, "work", tmp_path / "a-file", merged=False)
    (tmp_path / "empty").mkdir()
    assert registry.export(workspace, "work@v1", tmp_path / "empty", merged=False) == tmp_path / "empty"
    assert [p.name for p in tmp_path.iterdir() if "plora-tmp" in p.name] == []


@pytest.mark.usefixtures("fp32_compute")
def test_merged_export_gives_the_logits_of_base_plus_adapter(workspace: Workspace, kit: Kit, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    version = register(workspace, kit)
    dest = registry.export(workspace, "work", tmp_path / "merged", merged=True)
    names = sorted(p.name for p in dest.iterdir())
    assert "model.safetensors" in names and "config.json" in names and "tokenizer.json" in names
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in names)
    assert "quantization_config" not in json.loads((dest / "config.json").read_text())
    record = json.loads((dest / "plora-export.json").read_text())
    assert record["adapter"] == "work@v1" and record["adapter_manifest_sha256"] == version.manifest_sha256

    merged = AutoModelForCausalLM.from_pretrained(str(dest), use_safetensors=True)
    assert not has_lora(merged)
    base = fp32_base(workspace.home.root)
    batch = chat_batch(base.tokenizer)
    plain = logits(base.model, batch)
    with_adapter = logits(registry.attach(base.model, version, base_fingerprint=base.fingerprint), batch)
    merged_logits = logits(merged, batch)
    torch.testing.assert_close(merged_logits, with_adapter, atol=1e-5, rtol=1e-5)
    assert (merged_logits - plain).abs().max() > 1e-2

    with pytest.raises(RegistryError, match="needs the base in full precision"):
        registry.export(workspace, "work", tmp_path / "again", merged=True, base=nf4_base(workspace.home.root))
    assert not (tmp_path / "again").exists()


def test_merged_export_stays_float32_where_the_cpu_computes_in_bf16(
    workspace: Workspace, kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors import safe_open

    import pipeline.base.load as load

    monkeypatch.setattr(load, "cpu_has_bf16", lambda: True)  # as on a CPU with AVX512-BF16/AMX
    assert load.compute_dtype_choice("cpu")[1].startswith("bf16")
    register(workspace, kit)
    dest = registry.export(workspace, "work", tmp_path / "merged", merged=True)
    with safe_open(str(dest / "model.safetensors"), framework="pt") as weights:
        dtypes = {str(weights.get_slice(name).get_dtype()) for name in weights.keys()}  # noqa: SIM118
    assert dtypes == {"F32"}, dtypes  # bf16 would round the adapter's deltas away


# --- composition -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("fp32_compute")
def test_combine_registers_a_weighted_composition(workspace: Workspace, kit: Kit) -> None:
    import torch

    register(workspace, kit)
    register(workspace, kit, "creative", "b")
    base = nf4_base(workspace.home.root)
    batch = chat_batch(base.tokenizer)

    only_work = registry.combine(workspace, ["work", "creative@v1"], [1.0, 0.0], profile="blend", base=base)
    assert (only_work.ref, only_work.status, only_work.parent_version) == ("blend@v1", "accepted", None)
    assert registry.current(workspace, "blend") is None  # not promoted unless asked
    assert not has_lora(base.model)  # the components were taken back off the base
    composition = only_work.manifest.composition
    assert composition.combination_type == "cat"
    assert [(c.ref, c.weight) for c in composition.components] == [("work@v1", 1.0), ("creative@v1", 0.0)]
    assert only_work.manifest.lora["r"] == 8 and only_work.manifest.base_model.fingerprint == kit.fingerprint
    assert "| work@v1 | 1 |" in (only_work.path / "README.md").read_text()
    registry.verify(workspace, only_work.ref)

    half = registry.combine(workspace, ["work", "creative"], [0.5, 0.5], profile="work", promote=True, base=base)
    assert (half.ref, half.parent_version) == ("work@v2", 1) and registry.current(workspace, "work") == half

    def run(ref: str) -> Any:
        fresh = nf4_base(workspace.home.root)
        return logits(
            registry.attach(fresh.model, registry.resolve(workspace, ref), base_fingerprint=fresh.fingerprint), batch
        )

    work, creative = run("work@v1"), run("creative@v1")
    torch.testing.assert_close(run("blend@v1"), work)  # weights [1, 0]: exactly work
    mixed = run("work@v2")
    assert (mixed - work).abs().max() > 1e-3 and (mixed - creative).abs().max() > 1e-3

    with pytest.raises(UsageError, match="2 adapters but 1 weights"):
        registry.combine(workspace, ["work", "creative"], [1.0], profile="blend", base=base)
    with pytest.raises(UsageError, match="at least two"):
        registry.combine(workspace, ["work"], [1.0], profile="blend", base=base)
    register(workspace, kit, "foreign", "b", fingerprint="e" * 64)
    with pytest.raises(RegistryError, match="different bases"):
        registry.combine(workspace, ["work", "foreign"], [0.5, 0.5], profile="blend", base=base)
