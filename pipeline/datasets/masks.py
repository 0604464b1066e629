"""The loss-mask verifier: every SFT example is tokenized with the base model's chat template exactly
as training tokenizes it (``pipeline.tokenization``), and the build fails unless exactly the
assistant tokens carry loss.

For each example, the tokens the assistant mask marks (whichever way it was found: the template's
``{% generation %}`` blocks, TRL's training template or growing-prefix rendering, see
``pipeline.tokenization.template``) must form one span per assistant turn, in order, and each span
must be that turn's content (compared without whitespace) followed by the end-of-turn special token
(and nothing else but whitespace). So no prompt, header or system token is trained, no reply is left
fully masked, and the model learns to end its turn. Errors name the example as ``plora datasets
show`` counts it (``sft <split> example <N>``) with its ref and window.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.datasets.common import Row, Turn
from pipeline.datasets.tokens import TemplateError, Tokens
from pipeline.errors import DatasetError

_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Segment:
    text: str
    trained: bool


def example_name(split: str, index: int, row: Row) -> str:
    window = f", window {row.order[0]}" if row.order and row.order[0] else ""
    return f"sft {split} example {index} ({row.ref}{window})"


def verify_rows(split: str, rows: Iterable[Row], tokens: Tokens) -> list[tuple[int, int]]:
    """(tokens, trained tokens) per row; raises DatasetError at the first example that fails."""
    out: list[tuple[int, int]] = []
    for index, row in enumerate(rows):
        out.append(verify_example(row.data["messages"], tokens, example_name(split, index, row)))
    return out


def verify_example(turns: list[Turn], tokens: Tokens, name: str) -> tuple[int, int]:
    try:
        ids, mask = tokens.encode_chat(turns, masks=True)
    except TemplateError as e:
        raise DatasetError(f"{name}: the base model's chat template can't render it ({e})") from e
    if not mask or not any(mask):
        raise DatasetError(
            f"{name}: no token carries loss: the chat template's assistant mask "
            f"({tokens.mask_method.value}) marked none of its tokens. Assistant-only loss needs a template "
            "whose {% generation %}...{% endgeneration %} blocks wrap each assistant reply and its "
            "end-of-turn token"
        )
    spans = _spans(mask)
    replies = [turn["content"] for turn in turns if turn["role"] == "assistant"]
    if len(spans) != len(replies):
        raise DatasetError(
            f"{name}: {len(replies)} assistant turns but {len(spans)} trained spans: "
            + (
                "some reply is fully masked"
                if len(spans) < len(replies)
                else "tokens outside the assistant turns carry loss"
            )
        )
    for number, ((start, end), reply) in enumerate(zip(spans, replies, strict=True), 1):
        problem = _check_span(tokens, ids[start:end], reply)
        if problem:
            raise DatasetError(f"{name}: assistant turn {number}: {problem}")
    return len(ids), sum(mask)


def _spans(mask: list[int]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    start = None
    for i, bit in enumerate([*mask, 0]):
        if bit and start is None:
            start = i
        elif not bit and start is not None:
            spans.append((start, i))
            start = None
    return spans


def _check_span(tokens: Tokens, ids: list[int], reply: str) -> str | None:
    text = tokens.decode(ids)
    compact, wanted = _SPACE.sub("", text), _SPACE.sub("", reply)
    if not compact.startswith(wanted):
        return f"the trained tokens are {_short(text)!r}, not the reply {_short(reply)!r}"
    rest = compact[len(wanted) :]
    ends = 0
    while rest:
        special = next((s for s in tokens.special_tokens if rest.startswith(s)), None)
        if special is None:
            return f"tokens after the reply carry loss: {_short(rest)!r}"
        rest, ends = rest[len(special) :], ends + 1
    if not ends:
        return (
            "its end-of-turn token carries no loss, so the model would never learn to stop: the template's "
            "{% generation %} block must include it"
        )
    return None


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def render(turns: list[Turn], tokens: Tokens) -> list[Segment]:
    """The example as the trainer sees it, cut into runs of trained / untrained tokens."""
    ids, mask = tokens.encode_chat(turns, masks=True)
    mask = mask or [0] * len(ids)
    segments: list[Segment] = []
    start = 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or mask[i] != mask[start]:
            segments.append(Segment(tokens.decode(ids[start:i]), bool(mask[start])))
            start = i
    return segments


__all__ = ["Segment", "example_name", "render", "verify_example", "verify_rows"]
