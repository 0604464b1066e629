"""Rows as language-modelling examples: ``input_ids`` + ``labels`` (``IGNORE_INDEX`` where nothing is
learned). Datasets, training and evaluation all tokenize through here, so the loss a build verifies,
the loss training optimises and the eval loss count exactly the same tokens.

- an ``sft`` row (``messages``): through the base's chat template, labelled on the assistant mask
  only (``ChatTemplate``: each reply and its end-of-turn token); cut to ``max_length`` at the end;
- a ``text`` row (``text``): every token learned, the tokenizer's eos token appended (as TRL does);
- a completion (``prompt`` messages + ``completion`` messages, DPO / KTO scoring): only the
  completion's assistant tokens labelled; too long, the start of the prompt is cut instead.

``tokenize_dataset`` maps a whole ``datasets.Dataset`` (Arrow in, Arrow out, batched), keeps the
``source`` column and drops rows left with nothing to learn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pipeline.tokenization.template import ChatTemplate, Turns

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
NO_SOURCE = "(none)"
Example = dict[str, list[int]]


def chat_template(template: ChatTemplate | PreTrainedTokenizerBase) -> ChatTemplate:
    """``template`` itself, or the ChatTemplate of a tokenizer (its mask method is chosen on first use)."""
    return template if isinstance(template, ChatTemplate) else ChatTemplate(template)


def _labelled(ids: list[int], mask: list[int] | None) -> list[int]:
    return [t if m else IGNORE_INDEX for t, m in zip(ids, mask or [0] * len(ids), strict=True)]


def tokenize_chat(messages: Turns, template: ChatTemplate | PreTrainedTokenizerBase, max_length: int) -> Example:
    """A conversation as ``input_ids`` with ``labels`` set to ``IGNORE_INDEX`` outside the assistant mask."""
    return tokenize_rows([{"messages": messages}], chat_template(template), max_length)[0]


def tokenize_text(text: str, tokenizer: ChatTemplate | PreTrainedTokenizerBase, max_length: int) -> Example:
    """A plain document: every token is learned; the eos token is appended (as TRL does)."""
    return _texts([text], _tokenizer(tokenizer), max_length)[0]


def _tokenizer(template: ChatTemplate | PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    return template.tokenizer if isinstance(template, ChatTemplate) else template


def _texts(texts: list[str], tokenizer: PreTrainedTokenizerBase, max_length: int) -> list[Example]:
    if not texts:
        return []
    eos = tokenizer.eos_token_id
    out = []
    for encoded in tokenizer(texts, verbose=False)["input_ids"]:
        ids = list(encoded)
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(eos)
        out.append({"input_ids": ids[:max_length], "labels": ids[:max_length]})
    return out


def tokenize_lm_row(
    row: Mapping[str, Any], template: ChatTemplate | PreTrainedTokenizerBase, max_length: int
) -> Example:
    """An ``sft`` row (``messages``) or a ``text`` row (``text``) as ``input_ids`` + ``labels``."""
    return tokenize_rows([row], chat_template(template), max_length)[0]


def tokenize_rows(rows: Sequence[Mapping[str, Any]], template: ChatTemplate, max_length: int) -> list[Example]:
    """Many rows at once: the chat rows through one batched template call, the text rows through one
    batched tokenizer call; results in the rows' order."""
    chats = [i for i, row in enumerate(rows) if row.get("messages") is not None]
    texts = [i for i, row in enumerate(rows) if row.get("messages") is None and row.get("text") is not None]
    if len(chats) + len(texts) != len(rows):
        bad = next(row for row in rows if row.get("messages") is None and row.get("text") is None)
        raise ValueError(f"row {bad.get('ref', '?')}: neither 'messages' nor 'text'")
    out: list[Example] = [{}] * len(rows)
    encoded = template.encode_batch([rows[i]["messages"] for i in chats])
    for index, (ids, mask) in zip(chats, encoded, strict=True):
        out[index] = {"input_ids": ids[:max_length], "labels": _labelled(ids[:max_length], (mask or [])[:max_length])}
    documents = _texts([rows[i]["text"] for i in texts], template.tokenizer, max_length)
    for index, example in zip(texts, documents, strict=True):
        out[index] = example
    return out


def tokenize_completion(
    prompt: Turns, completion: Turns, template: ChatTemplate | PreTrainedTokenizerBase, max_length: int
) -> Example:
    """``prompt`` + ``completion`` messages with only the completion's assistant tokens labelled.

    Too long: the start of the prompt is cut (keep the end), so the completion is always scored."""
    template = chat_template(template)
    ids, mask = template.encode([*prompt, *completion])
    head = template.tokenizer(template.render(prompt, add_generation_prompt=True), add_special_tokens=False)
    start = _common_prefix(list(head["input_ids"]), ids)
    labels = [t if (m and i >= start) else IGNORE_INDEX for i, (t, m) in enumerate(zip(ids, mask or [], strict=True))]
    if len(ids) > max_length:
        ids, labels = ids[-max_length:], labels[-max_length:]
    return {"input_ids": ids, "labels": labels}


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def has_labels(example: Mapping[str, Any]) -> bool:
    """At least one token to predict: the first token is never predicted, so labels[1:] counts."""
    return any(label != IGNORE_INDEX for label in example["labels"][1:])


def tokenize_dataset(
    rows: Dataset | Sequence[Mapping[str, Any]],
    template: ChatTemplate | PreTrainedTokenizerBase,
    max_length: int,
    *,
    batch_size: int = 64,
) -> tuple[Dataset, int]:
    """``sft`` / ``text`` rows as a Dataset of ``input_ids`` / ``labels`` / ``source``, and how many rows
    were dropped because nothing was left to learn within ``max_length``.

    A Dataset is mapped as it is (in memory: nothing is written next to a snapshot's Arrow files); a
    list of rows (chat and text rows mixed) becomes one first."""
    from datasets import Dataset

    template = chat_template(template)
    data = rows if isinstance(rows, Dataset) else _from_rows(rows)
    if len(data) == 0:
        return Dataset.from_dict({"input_ids": [], "labels": [], "source": []}), 0

    def batch(columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
        count = len(next(iter(columns.values())))
        batch_rows = [{name: values[i] for name, values in columns.items()} for i in range(count)]
        kept: dict[str, list[Any]] = {"input_ids": [], "labels": [], "source": []}
        for row, example in zip(batch_rows, tokenize_rows(batch_rows, template, max_length), strict=True):
            if has_labels(example):
                kept["input_ids"].append(example["input_ids"])
                kept["labels"].append(example["labels"])
                kept["source"].append(str(row.get("source") or NO_SOURCE))
        return kept

    with _quiet():
        out = data.map(
            batch, batched=True, batch_size=batch_size, remove_columns=data.column_names, keep_in_memory=True
        )
    return out.select_columns(["input_ids", "labels", "source"]), len(data) - len(out)


def _from_rows(rows: Sequence[Mapping[str, Any]]) -> Dataset:
    """Rows that may differ in their columns (chat and text rows) as one Dataset, None where absent."""
    from datasets import Dataset

    names = list(dict.fromkeys(name for row in rows for name in row))
    return Dataset.from_dict({name: [row.get(name) for row in rows] for name in names})


class _quiet:
    """No datasets progress bar on stderr for these small in-memory maps."""

    def __enter__(self) -> None:
        import datasets

        self.shown = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()

    def __exit__(self, *_: object) -> None:
        import datasets

        if self.shown:
            datasets.enable_progress_bars()


__all__ = [
    "IGNORE_INDEX",
    "NO_SOURCE",
    "Example",
    "chat_template",
    "has_labels",
    "tokenize_chat",
    "tokenize_completion",
    "tokenize_dataset",
    "tokenize_lm_row",
    "tokenize_rows",
    "tokenize_text",
]
