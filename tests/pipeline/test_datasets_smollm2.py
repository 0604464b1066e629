"""``plora datasets build`` on the example corpus with the real SmolLM2-135M-Instruct as the base (a ChatML
template without ``{% generation %}`` blocks): the build passes the loss-mask verifier on every row, records
how the mask was found, and what carries loss is exactly each reply and its ``<|im_end|>``."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.snapshots import read_snapshot
from pipeline.tokenization import ChatTemplate
from tests.pipeline.conftest import SMOLLM2, link_models

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def offline(no_network: None) -> None:
    """Every test here runs with the hub offline and no internet sockets (see tests/conftest.py)."""


def test_build_on_the_example_corpus_with_smollm2(home: Path, cli, smollm2_models: Path, smollm2_tokenizer) -> None:
    assert cli("init", "--example", "--home", home).code == 0
    config = home / "plora.toml"
    text = config.read_text(encoding="utf-8")
    assert 'name = "builtin:tiny-llama"' in text
    config.write_text(text.replace('name = "builtin:tiny-llama"', f'name = "{SMOLLM2}"'), encoding="utf-8")
    link_models(smollm2_models, home)
    assert cli("ingest", "--home", home, "--json").code == 0

    built = cli("datasets", "build", "--home", home, "--json")
    assert built.code == 0, built.stderr
    report = built.json()["snapshots"]
    assert report["sft"]["rows"]["train"] > 0 and not (home / "models" / "tiny-llama").exists()

    sft = read_snapshot(Path(report["sft"]["path"]))
    settings = sft.meta["settings"]
    assert settings["base_model"] == SMOLLM2 and settings["assistant_mask"]["method"] == "prefix"
    template = ChatTemplate(smollm2_tokenizer)
    end = smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")
    data = sft.load()
    checked = 0
    for split in ("train", "eval"):
        trained = 0
        for row in data[split]:
            ids, mask = template.encode(row["messages"])
            replies = [t["content"] for t in row["messages"] if t["role"] == "assistant"]
            spans: list[list[int]] = []
            for i, (token, bit) in enumerate(zip(ids, mask or [], strict=True)):
                if bit:
                    if not i or not mask[i - 1]:
                        spans.append([])
                    spans[-1].append(token)
            assert [smollm2_tokenizer.decode(s, skip_special_tokens=False) for s in spans] == [
                reply + "<|im_end|>" for reply in replies
            ]
            assert all(s[-1] == end for s in spans)
            trained += sum(mask or [])
            checked += 1
        assert sft.meta["trained_tokens"][split] == trained  # what the build's verifier counted
    assert checked == sum(sft.rows.values())

    again = cli("datasets", "build", "--home", home, "--json").json()["snapshots"]
    assert all(not row["new"] for row in again.values())  # nothing changed: reused
