"""Length windows: a conversation longer than ``max_length`` tokens becomes several examples.

Every assistant turn of an SFT example carries loss, so windows never overlap (an overlap would
train the shared replies twice). A window is the conversation's leading system turns followed by
as many consecutive exchanges (user turn(s) + the reply) as fit; the next window starts with the
next exchange. Each trained reply keeps the prompt context it answers (its user turn and the
system prompt), never a reply without its user turn. An exchange that does not fit even alone is
dropped and counted (``cut.exchanges_too_long``): truncating it would teach the model to end its
turn mid-reply.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.datasets.chat import exchanges
from pipeline.datasets.common import Tally, Turn


def fit_windows(
    turns: list[Turn], max_length: int, length: Callable[[list[Turn]], int], tally: Tally
) -> list[list[Turn]]:
    """``turns`` as one example when it fits, else as windows that do (maybe none)."""
    if length(turns) <= max_length:
        return [turns]
    system, groups = exchanges(turns)
    sizes = [length(system + group) for group in groups]  # exact for a window of one exchange

    def exact(start: int, end: int) -> int:
        return sizes[start] if end - start == 1 else length(system + _flat(groups[start:end]))

    # Chat templates render messages one after the other, so a window's length is the sum of its
    # exchanges' lengths less what each of them repeats (BOS, the system turns): measured once on
    # the first two exchanges. Every window made from these estimates is then checked exactly.
    shared = sizes[0] + sizes[1] - exact(0, 2) if len(groups) > 1 else 0

    def estimate(start: int, end: int) -> int:
        return sum(sizes[start:end]) - (end - start - 1) * shared

    spans, dropped = _greedy(len(groups), max_length, estimate, sizes)
    if any(exact(start, end) > max_length for start, end in spans):
        spans, dropped = _greedy(len(groups), max_length, exact, sizes)
    tally.cut["exchanges_too_long"] += dropped
    tally.cut["conversations_windowed"] += 1
    tally.counts["windows"] += len(spans)
    return [system + _flat(groups[start:end]) for start, end in spans]


def _flat(groups: list[list[Turn]]) -> list[Turn]:
    return [turn for group in groups for turn in group]


def _greedy(
    count: int, max_length: int, measure: Callable[[int, int], int], sizes: list[int]
) -> tuple[list[tuple[int, int]], int]:
    """Consecutive runs of exchanges [start, end) that fit, and how many exchanges fit nowhere."""
    spans: list[tuple[int, int]] = []
    dropped = 0
    start: int | None = None
    for index in range(count):
        if start is not None and measure(start, index + 1) <= max_length:
            continue
        if start is not None:
            spans.append((start, index))
            start = None
        if sizes[index] <= max_length:
            start = index
        else:
            dropped += 1
    if start is not None:
        spans.append((start, count))
    return spans, dropped


__all__ = ["fit_windows"]
