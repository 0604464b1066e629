"""The ``sft`` kind: conversations as TRL ``messages`` examples.

Which conversations (labels in force, see storage.labels.effective_labels):

- labelled bad as a whole: dropped (``dropped.conversation_bad``);
- labelled good as a whole: kept;
- no label on the whole, but a reply labelled good or corrected (on any branch): kept (the person
  reviewed it);
- otherwise unlabelled: kept only with the profile's ``include_unlabelled = true``
  (``dropped.unlabelled``). Only bad reply labels don't make a conversation reviewed.

Inside a kept conversation, along its kept path (branch 0):

- a reply with a correction is replaced by the correction (``counts.corrections_applied``) and the
  conversation goes on;
- a reply labelled bad (without correction) cuts the conversation right before it
  (``cut.before_bad_reply``); if no reply is left before it the conversation is dropped
  (``dropped.bad_first_reply``). A bad reply is never a target. When a regenerated sibling of
  the bad reply (same parent turn) is labelled good, it takes the bad reply's place as the last
  turn (``counts.good_siblings_substituted``): it answers the same user turn;
- system turns are kept, tool messages dropped, same-role neighbours merged (see chat.py);
  replies before the first user turn and turns after the last reply are cut;
- a conversation longer than ``max_length`` tokens is split into windows (see windows.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from pipeline.datasets.chat import main_path, to_turns
from pipeline.datasets.common import Row, Tally, Turn, turn_text
from pipeline.datasets.loop import build_rows
from pipeline.datasets.tokens import Tokens
from pipeline.datasets.windows import fit_windows
from storage.corpus import CorpusDocument, CorpusMessage


def build_sft(
    documents: Iterable[CorpusDocument],
    tokens: Tokens,
    *,
    max_length: int,
    include_unlabelled: bool,
    tick: Callable[[], None] | None = None,
) -> tuple[list[Row], Tally]:

    def rows_of(document: CorpusDocument, tally: Tally) -> Iterator[Row]:
        turns = conversation_turns(document, tokens, tally, include_unlabelled=include_unlabelled)
        if not turns:
            return
        windows = fit_windows(turns, max_length, tokens.chat_length, tally)
        if not windows:
            tally.dropped["conversation_too_long"] += 1
        for index, window in enumerate(windows):
            yield Row(document.id, document.ref, document.source, (index,), {"messages": window}, key=turn_text(window))

    return build_rows(documents, rows_of, tick)


def is_selected(document: CorpusDocument, *, include_unlabelled: bool, tally: Tally) -> bool:
    whole = document.label(None)
    if whole is not None:
        if whole.value == "bad":
            tally.dropped["conversation_bad"] += 1
            return False
        return True
    reviewed = any(
        position is not None and (label.value == "good" or label.correction)
        for (position, _), label in document.labels.items()
    )
    if not reviewed and not include_unlabelled:
        tally.dropped["unlabelled"] += 1
        return False
    return True


def _good_sibling(document: CorpusDocument, reply: CorpusMessage) -> CorpusMessage | None:
    """A reply at the same place (same parent turn) labelled good, without a correction."""
    for other in document.messages:
        if (
            other.position == reply.position
            and other.branch != reply.branch
            and other.role == "assistant"
            and other.parent_external_id == reply.parent_external_id
        ):
            label = document.label(other.position, other.branch)
            if label is not None and label.value == "good" and not label.correction:
                return other
    return None


def conversation_turns(
    document: CorpusDocument, tokens: Tokens, tally: Tally, *, include_unlabelled: bool
) -> list[Turn] | None:
    """The turns to train on, or None when the conversation is dropped (the tally says why)."""
    if not is_selected(document, include_unlabelled=include_unlabelled, tally=tally):
        return None
    kept: list[CorpusMessage | Turn] = []
    cut = False
    for message in main_path(document):
        if message.role == "assistant":
            label = document.label(message.position, 0)
            if label is not None and label.correction:
                kept.append({"role": "assistant", "content": label.correction})
                tally.counts["corrections_applied"] += 1
                continue
            if label is not None and label.value == "bad":
                cut = True
                better = _good_sibling(document, message)
                if better is not None:  # the regenerated reply the person preferred answers the same turn
                    kept.append(better)
                    tally.counts["good_siblings_substituted"] += 1
                break
        kept.append(message)
    turns = to_turns(kept, tokens, tally)
    first_user = next((i for i, t in enumerate(turns) if t["role"] == "user"), len(turns))
    leading = [t for t in turns[:first_user] if t["role"] == "assistant"]
    if leading:
        tally.cut["replies_before_first_user_turn"] += len(leading)
        turns = [t for t in turns[:first_user] if t["role"] != "assistant"] + turns[first_user:]
    last_reply = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=-1)
    if last_reply < 0:
        tally.dropped["bad_first_reply" if cut else "no_reply"] += 1
        return None
    if last_reply < len(turns) - 1 and not cut:
        tally.cut["turns_after_last_reply"] += len(turns) - 1 - last_reply
    if cut:
        tally.cut["before_bad_reply"] += 1
    return turns[: last_reply + 1]


__all__ = ["build_sft", "conversation_turns", "is_selected"]
