"""Packing SFT rows into ``max_length`` blocks, kept one block per batch row.

TRL's best-fit-decreasing packing is padding-free: the blocks of a batch are concatenated into one
sequence and the sequence boundaries go to FlashAttention's variable-length kernels through
``position_ids``. Without those kernels (PyTorch SDPA, eager: every CPU, and GPUs without
flash-attn) transformers masks the concatenation block-diagonally but still computes attention over
its whole length: a batch of 4 blocks of 1,024 tokens costs (4 x 1,024)^2 instead of 4 x 1,024^2,
which on a CPU made packing slower than padding.

So, unless the model runs a FlashAttention variant, plora packs the same way (TRL's ``pack_dataset``,
strategy ``"bfd"``) but keeps each block a row of its own: ``PackedRowsCollator`` pads the rows of a
batch to the longest and gives each row ``position_ids`` that restart at every packed sequence (the
padding is a sequence of its own), and no ``attention_mask``, so transformers builds the same
block-diagonal causal mask per row. The batches, positions and loss are the ones TRL's padding-free
collator gives (the first token of each sequence carries no loss, as there), only the attention is
computed per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from datasets import Dataset

PackingMode = Literal["off", "rows", "padding_free"]
IGNORE = -100


def packing_mode(packing: bool, model: Any) -> PackingMode:
    """How to pack for ``model``: TRL's padding-free packing when its attention is a FlashAttention
    variant (variable-length kernels), plora's per-row packing otherwise, or nothing."""
    if not packing:
        return "off"
    attention = str(getattr(getattr(model, "config", None), "_attn_implementation", "") or "")
    return "padding_free" if "flash" in attention else "rows"


def pack_rows(dataset: Dataset, max_length: int) -> Dataset:
    """Tokenized rows (``input_ids``, ``labels``) cut to ``max_length``, rows without any label dropped
    (as TRL does before training), then packed best-fit-decreasing into blocks of at most
    ``max_length`` tokens with a ``seq_lengths`` column."""
    from trl.data_utils import pack_dataset

    def cut(row: dict[str, Any]) -> dict[str, Any]:
        return {"input_ids": row["input_ids"][:max_length], "labels": row["labels"][:max_length]}

    dataset = dataset.select_columns(["input_ids", "labels"]).map(cut)
    dataset = dataset.filter(lambda row: any(label != IGNORE for label in row["labels"]))
    return pack_dataset(dataset, max_length, strategy="bfd")


@dataclass
class PackedRowsCollator:
    """A batch of packed blocks: one row each, right-padded to the longest, with per-sequence
    ``position_ids`` (see the module docstring)."""

    pad_token_id: int

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(example["input_ids"]) for example in examples)
        input_ids, labels, positions = [], [], []
        for example in examples:
            ids = list(example["input_ids"])
            lengths = list(example.get("seq_lengths") or [len(ids)])
            padding = width - len(ids)
            position = [p for length in lengths for p in range(length)] + list(range(padding))
            label = [IGNORE if p == 0 else tag for p, tag in zip(position, list(example["labels"]), strict=False)]
            input_ids.append(ids + [self.pad_token_id] * padding)
            labels.append(label + [IGNORE] * padding)
            positions.append(position)
        return {
            "input_ids": torch.tensor(input_ids),
            "labels": torch.tensor(labels),
            "position_ids": torch.tensor(positions),
        }


__all__ = ["PackedRowsCollator", "PackingMode", "pack_rows", "packing_mode"]
