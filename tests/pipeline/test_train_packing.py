"""Per-row packing (pipeline.train.packing): the same loss and gradients as training on each sequence
alone, and as TRL's padding-free packing, with attention computed per batch row."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.pipeline.test_train import chat_rows, new_home, text_rows

MAX_LENGTH = 160


@pytest.fixture
def base(tmp_path: Path, models_dir: Path) -> Any:
    from pipeline.base_model import load_base

    home = new_home(tmp_path / "home", models_dir)
    return load_base("builtin:tiny-llama", home=home, quantization="none", double_quant=False, device="cpu")


def _rows(base: Any) -> Any:
    from pipeline.train.data import tokenize_lm

    rows, _ = tokenize_lm(chat_rows(9) + text_rows(5), base.tokenizer, MAX_LENGTH)
    return rows


def _loss_and_grads(model: Any, batch: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    model.zero_grad(set_to_none=True)
    loss = model(**batch, use_cache=False).loss  # as TRL calls it: with a cache, packed masks are not built
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_packing_mode_follows_the_attention_implementation() -> None:
    from pipeline.train.packing import packing_mode

    def model(attention: str) -> Any:
        return SimpleNamespace(config=SimpleNamespace(_attn_implementation=attention))

    assert packing_mode(False, model("flash_attention_2")) == "off"
    assert packing_mode(True, model("flash_attention_2")) == "padding_free"
    assert packing_mode(True, model("kernels-community/flash-attn3")) == "padding_free"
    assert packing_mode(True, model("sdpa")) == "rows"
    assert packing_mode(True, model("eager")) == "rows"


def test_blocks_hold_every_labelled_row_within_max_length(base: Any) -> None:
    from pipeline.train.packing import pack_rows

    rows = _rows(base)
    packed = pack_rows(rows, MAX_LENGTH)
    assert len(packed) < len(rows)  # short rows share blocks
    assert all(
        len(ids) <= MAX_LENGTH and sum(lengths) == len(ids)
        for ids, lengths in zip(packed["input_ids"], packed["seq_lengths"], strict=True)
    )
    assert sorted(t for ids in packed["input_ids"] for t in ids) == sorted(t for ids in rows["input_ids"] for t in ids)


def test_row_packed_batch_trains_like_each_sequence_alone(base: Any) -> None:
    """Loss and gradients of a batch of packed rows equal those of the same sequences run one by one
    (no attention across sequences, positions restarting, the padding inert), and those of TRL's
    padding-free batch of the same blocks."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from pipeline.train.packing import PackedRowsCollator, pack_rows

    model = base.model.float().train()
    torch.manual_seed(0)
    for p in model.parameters():  # the builtin's weights are small: make attention matter
        p.data.normal_(0, 0.2)
    packed = pack_rows(_rows(base), MAX_LENGTH)
    blocks = [packed[i] for i in range(min(4, len(packed)))]
    assert any(len(b["seq_lengths"]) > 1 for b in blocks)
    assert len({len(b["input_ids"]) for b in blocks}) > 1  # rows of different widths: padding is exercised

    pad = base.tokenizer.pad_token_id
    rows_loss, rows_grads = _loss_and_grads(model, PackedRowsCollator(pad)(blocks))
    batch = PackedRowsCollator(pad)(blocks)
    assert "attention_mask" not in batch

    trl_batch = DataCollatorForLanguageModeling(pad_token_id=pad, padding_free=True)(blocks)
    trl_loss, trl_grads = _loss_and_grads(model, {k: trl_batch[k] for k in ("input_ids", "labels", "position_ids")})

    # each sequence alone: sum of token losses over all labelled tokens (first token of a sequence excluded)
    model.zero_grad(set_to_none=True)
    total, count = 0.0, 0
    for block in blocks:
        start = 0
        for length in block["seq_lengths"]:
            ids = torch.tensor([block["input_ids"][start : start + length]])
            labels = torch.tensor([block["labels"][start : start + length]])
            start += length
            logits = model(input_ids=ids).logits[0, :-1]
            target = labels[0, 1:]
            keep = target != -100
            if keep.any():
                loss = torch.nn.functional.cross_entropy(logits[keep].float(), target[keep], reduction="sum")
                loss.backward()
                total, count = total + loss.item(), count + int(keep.sum())
    alone_loss = total / count
    alone_grads = {n: p.grad.clone() / count for n, p in model.named_parameters() if p.grad is not None}

    assert rows_loss == pytest.approx(alone_loss, rel=1e-4)
    assert rows_loss == pytest.approx(trl_loss, rel=1e-4)
    for name, grad in rows_grads.items():
        torch.testing.assert_close(grad, alone_grads[name], rtol=1e-3, atol=1e-5, msg=name)
        torch.testing.assert_close(grad, trl_grads[name], rtol=1e-3, atol=1e-5, msg=name)
