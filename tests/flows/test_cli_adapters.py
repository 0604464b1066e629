"""``plora adapters ...`` and ``plora generate`` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.workspace import open_workspace
from tests.pipeline.test_registry import (  # noqa: F401 - offline is an autouse fixture
    Kit,
    adapter_kit,
    make_home,
    offline,
    register,
)


@pytest.fixture(scope="session")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return adapter_kit(tmp_path_factory.getbasetemp() / "adapter-kit")


@pytest.fixture
def registered(home: Path, kit: Kit) -> Path:
    """A home with work@v1 (accepted), work@v2 (rejected), work@v3 (accepted, current), creative@v1."""
    make_home(home, kit)
    with open_workspace(home) as workspace:
        register(workspace, kit, "work", "a")
        register(workspace, kit, "work", "b", accepted=False, parent=1)
        register(workspace, kit, "work", "b", parent=1)
        register(workspace, kit, "creative", "b")
    return home


def _one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    return lines[0]


def test_list_show_promote_rollback(registered: Path, cli) -> None:
    listed = cli("adapters", "list", "--json", "--home", registered)
    assert listed.code == 0, listed.stderr
    rows = listed.json()["adapters"]
    assert [(r["ref"], r["status"], r["current"]) for r in rows] == [
        ("creative@v1", "accepted", True),
        ("work@v1", "accepted", False),
        ("work@v2", "rejected", False),
        ("work@v3", "accepted", True),
    ]
    assert rows[3]["parent_version"] == 1 and rows[3]["metrics"]["eval_loss"] == 1.25
    assert [
        r["ref"]
        for r in cli("adapters", "list", "--profile", "creative", "--json", "--home", registered).json()["adapters"]
    ] == ["creative@v1"]
    human = cli("adapters", "list", "--home", registered)
    assert human.code == 0 and "work@v3" in human.stdout and "rejected" in human.stdout

    shown = cli("adapters", "show", "work@v2", "--json", "--home", registered).json()
    assert shown["ref"] == "work@v2" and shown["status"] == "rejected" and not shown["current"]
    assert shown["manifest"]["gate"] == {"accepted": False, "reasons": ["no better than v1"], "improvement": 0.25}
    assert shown["manifest"]["sources"]["chatgpt"] == {"conversation": 12}
    human = cli("adapters", "show", "work", "--home", registered)
    assert human.code == 0 and "work@v3 accepted (current)" in human.stdout and "improvement=0.25" in human.stdout

    assert cli("adapters", "rollback", "work", "--json", "--home", registered).json() == {
        "profile": "work",
        "current": "work@v1",
    }
    refused = cli("adapters", "promote", "work@v2", "--home", registered)
    assert refused.code == 1 and "--force" in _one_error_line(refused)
    forced = cli("adapters", "promote", "work@v2", "--force", "--home", registered)
    assert forced.code == 0 and "current is now work@v2" in forced.stdout
    status = cli("status", "--json", "--home", registered).json()
    assert status["adapters"] == {
        "creative": {"current": "v1", "versions": 1},
        "work": {"current": "v2", "versions": 3},
    }

    for args in (("adapters", "show", "work@v9"), ("adapters", "show", "Work!"), ("adapters", "rollback", "../x")):
        result = cli(*args, "--home", registered)
        assert result.code == 2, (args, result.stderr)
        _one_error_line(result)
    nothing = cli("adapters", "rollback", "work", "--home", registered)  # v2 -> v1
    assert nothing.code == 0
    again = cli("adapters", "rollback", "work", "--home", registered)
    assert again.code == 1 and "no accepted version before v1" in _one_error_line(again)


def test_verify_reports_every_bad_file_in_one_line(registered: Path, cli) -> None:
    ok = cli("adapters", "verify", "work", "--json", "--home", registered)
    assert ok.code == 0 and {key: ok.json()[key] for key in ("ref", "ok", "files")} == {
        "ref": "work@v3",
        "ok": True,
        "files": ["README.md", "adapter_config.json", "adapter_model.safetensors"],
    }
    assert set(ok.json()["serving"]) == {"vllm", "llama_cpp", "recorded"}  # the serving check (issue 15)
    assert "ok, 3 files match" in cli("adapters", "verify", "work@v1", "--home", registered).stdout

    folder = registered / "adapters" / "work" / "v3"
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    (folder / "adapter_model.bin").write_bytes(b"not unpickled")
    bad = cli("adapters", "verify", "work", "--json", "--home", registered)
    assert bad.code == 1
    line = _one_error_line(bad)
    assert line.startswith("error: adapter work@v3") and "adapter_model.safetensors: 16 bytes" in line
    assert "adapter_model.bin: pickle-format file refused" in line
    generate = cli("generate", "--profile", "work", "hi", "--home", registered)
    assert generate.code == 1 and "failed verification" in _one_error_line(generate)


def test_export_plain_and_merged(registered: Path, cli, tmp_path: Path) -> None:
    plain = cli("adapters", "export", "work@v1", tmp_path / "plain", "--json", "--home", registered)
    assert plain.code == 0, plain.stderr
    shown = plain.json()
    assert {key: shown[key] for key in ("ref", "path", "merged")} == {
        "ref": "work@v1",
        "path": str(tmp_path / "plain"),
        "merged": False,
    }
    assert shown["format"] == "peft" and shown["merged_into"] is None and shown["export"] is None
    assert {"adapter_config.json", "adapter_model.safetensors", "plora.json"} <= {
        p.name for p in (tmp_path / "plain").iterdir()
    }

    merged = cli("adapters", "export", "work", tmp_path / "merged", "--merged", "--home", registered)
    assert merged.code == 0, merged.stderr
    assert "wrote merged model work" in merged.stdout
    files = {p.name for p in (tmp_path / "merged").iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "plora-export.json", "README.md"} <= files
    assert json.loads((tmp_path / "merged" / "plora-export.json").read_text())["adapter"] == "work@v3"

    refused = cli("adapters", "export", "work", tmp_path / "plain", "--home", registered)
    assert refused.code == 2 and "not empty" in _one_error_line(refused)


def test_generate_and_combine(registered: Path, cli) -> None:
    first = cli("generate", "--profile", "work", "--max-new-tokens", "6", "Hello", "--json", "--home", registered)
    assert first.code == 0, first.stderr
    document = first.json()
    assert document["ref"] == "work@v3" and document["prompt"] == "Hello" and isinstance(document["reply"], str)
    pinned = cli(
        "generate",
        "--profile",
        "work",
        "--version",
        "1",
        "--max-new-tokens",
        "6",
        "Hello",
        "--json",
        "--home",
        registered,
    )
    assert pinned.code == 0 and pinned.json()["ref"] == "work@v1"
    human = cli("generate", "--profile", "work", "--max-new-tokens", "6", "Hello", "--home", registered)
    assert human.code == 0 and human.stdout == document["reply"] + "\n"
    missing = cli("generate", "--profile", "nobody", "Hello", "--home", registered)
    assert missing.code == 2 and "no current version" in _one_error_line(missing)

    # --compare-base: the same adapter reply, plus the base model's own greedy reply
    both = cli(
        "generate",
        "--profile",
        "work",
        "--max-new-tokens",
        "6",
        "Hello",
        "--compare-base",
        "--json",
        "--home",
        registered,
    )
    assert both.code == 0, both.stderr
    assert both.json()["reply"] == document["reply"]
    import torch

    from pipeline.base_model import load_base

    with open_workspace(registered, check_paths=False) as workspace:
        config = workspace.config.base_model
    base = load_base(config.name, home=registered, quantization=config.quantization, double_quant=config.double_quant)
    batch = base.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hello"}], add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    with torch.inference_mode():
        out = base.model.generate(**batch, max_new_tokens=6, do_sample=False, pad_token_id=base.tokenizer.pad_token_id)
    expected = base.tokenizer.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    assert both.json()["base_reply"] == expected
    side_by_side = cli(
        "generate", "--profile", "work", "--max-new-tokens", "6", "Hello", "--compare-base", "--home", registered
    )
    assert side_by_side.code == 0 and "base" in side_by_side.stdout and "work@v3" in side_by_side.stdout

    combined = cli(
        "adapters",
        "combine",
        "work@v1",
        "creative",
        "--weight",
        "0.7",
        "--weight",
        "0.3",
        "--profile",
        "blend",
        "--promote",
        "--json",
        "--home",
        registered,
    )
    assert combined.code == 0, combined.stderr
    row = combined.json()
    assert (row["ref"], row["status"], row["current"]) == ("blend@v1", "accepted", True)
    shown = cli("adapters", "show", "blend", "--json", "--home", registered).json()
    assert [(c["ref"], c["weight"]) for c in shown["manifest"]["composition"]["components"]] == [
        ("work@v1", 0.7),
        ("creative@v1", 0.3),
    ]
    blend = cli("generate", "--profile", "blend", "--max-new-tokens", "4", "Hello", "--json", "--home", registered)
    assert blend.code == 0 and blend.json()["ref"] == "blend@v1"
    wrong = cli("adapters", "combine", "work", "creative", "--weight", "1", "--profile", "blend", "--home", registered)
    assert wrong.code == 2 and "2 adapters but 1 weights" in _one_error_line(wrong)
