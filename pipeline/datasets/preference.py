"""The preference kinds, from labels in force on assistant replies (any branch):

``dpo`` (``prompt`` / ``chosen`` / ``rejected``, conversational):
- every correction: chosen = the correction, rejected = the original reply
  (``counts.pairs_from_corrections``; a correction equal to its reply is skipped);
- sibling replies (same position, same parent turn: a reply and its regenerations) where one is
  labelled good and another bad: chosen = good, rejected = bad, every good x bad combination
  (``counts.pairs_from_siblings``).

``kto`` (``prompt`` / ``completion`` / ``label``), unpaired:
- every labelled reply, ``label`` = (value is good); a correction adds the correction as a
  desirable completion (``counts.desirable_corrections``);
- the last reply on the kept path of a conversation labelled as a whole, unless that reply has its
  own label, which wins (``counts.from_conversation_labels``).

The prompt is the reply's full history on its own path, as it happened (earlier replies as
written, not as corrected: the person's next turn answered those), cleaned like SFT turns
(chat.py), and must end with a user turn (``dropped.prompt_not_ending_with_user``). Preference
rows come from every conversation of the profile's sources, whatever its SFT fate: a conversation
labelled bad still says which reply was wanted. When prompt + completion is longer than
``max_length`` the oldest exchanges of the history are left out (system turns stay,
``cut.history_trimmed``); a row that doesn't fit even with the last user turn alone is dropped
(``dropped.too_long``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

from pipeline.datasets.chat import ends_with_user, exchanges, history, main_path, to_turns
from pipeline.datasets.common import Row, Tally, Turn, turn_text
from pipeline.datasets.loop import build_rows
from pipeline.datasets.tokens import Tokens
from storage.corpus import CorpusDocument, CorpusMessage


def build_dpo(
    documents: Iterable[CorpusDocument], tokens: Tokens, *, max_length: int, tick: Callable[[], None] | None = None
) -> tuple[list[Row], Tally]:
    return build_rows(documents, lambda document, tally: _dpo_rows(document, tokens, max_length, tally), tick)


def build_kto(
    documents: Iterable[CorpusDocument], tokens: Tokens, *, max_length: int, tick: Callable[[], None] | None = None
) -> tuple[list[Row], Tally]:
    return build_rows(documents, lambda document, tally: _kto_rows(document, tokens, max_length, tally), tick)


def _replies(document: CorpusDocument) -> list[CorpusMessage]:
    return [m for m in document.messages if m.role == "assistant"]


def _dpo_rows(document: CorpusDocument, tokens: Tokens, max_length: int, tally: Tally) -> list[Row]:
    pairs: list[tuple[tuple[int, ...], CorpusMessage, str, str]] = []
    for reply in _replies(document):
        label = document.label(reply.position, reply.branch)
        if label is None or not label.correction:
            continue
        if label.correction.strip() == reply.content.strip():
            tally.dropped["correction_same_as_reply"] += 1
            continue
        pairs.append(((0, reply.position, reply.branch, 0), reply, label.correction, reply.content))
        tally.counts["pairs_from_corrections"] += 1
    siblings: dict[tuple[int, str | None], list[CorpusMessage]] = defaultdict(list)
    for reply in _replies(document):
        siblings[(reply.position, reply.parent_external_id)].append(reply)
    for group in siblings.values():
        labelled = [(m, document.label(m.position, m.branch)) for m in group]
        good = [m for m, label in labelled if label is not None and label.value == "good" and not label.correction]
        bad = [m for m, label in labelled if label is not None and label.value == "bad"]
        for chosen in good:
            for rejected in bad:
                if chosen.content.strip() == rejected.content.strip():
                    continue
                pairs.append(
                    ((1, chosen.position, chosen.branch, rejected.branch), chosen, chosen.content, rejected.content)
                )
                tally.counts["pairs_from_siblings"] += 1
    rows: list[Row] = []
    for order, reply, chosen_text, rejected_text in pairs:
        chosen_turns = _completion(chosen_text, tokens, tally)
        rejected_turns = _completion(rejected_text, tokens, tally)
        prompt = _prompt(document, reply, tokens, tally)
        if prompt is None:
            continue
        fitted = _fit(prompt, [chosen_turns, rejected_turns], tokens, max_length, tally)
        if fitted is None:
            continue
        prompt, lengths = fitted
        data = {"prompt": prompt, "chosen": chosen_turns, "rejected": rejected_turns}
        key = f"{turn_text(prompt)}\nchosen: {chosen_text}\nrejected: {rejected_text}"
        rows.append(Row(document.id, document.ref, document.source, order, data, key, sum(lengths), max(lengths)))
    return rows


def _kto_rows(document: CorpusDocument, tokens: Tokens, max_length: int, tally: Tally) -> list[Row]:
    by_target = {(m.position, m.branch): m for m in document.messages}
    items: list[tuple[tuple[int, ...], CorpusMessage, str, bool]] = []
    for (position, branch), label in sorted(document.labels.items(), key=lambda kv: (kv[0][0] is None, kv[0])):
        if position is None:
            continue
        reply = by_target.get((position, branch))
        if reply is None or reply.role != "assistant":
            tally.dropped["label_not_on_a_reply"] += 1
            continue
        items.append(((position, branch, 0), reply, reply.content, label.value == "good"))
        if label.correction and label.correction.strip() != reply.content.strip():
            items.append(((position, branch, 1), reply, label.correction, True))
            tally.counts["desirable_corrections"] += 1
    whole = document.label(None)
    last = next((m for m in reversed(main_path(document)) if m.role == "assistant"), None)
    if whole is not None and last is not None and document.label(last.position, 0) is None:
        items.append(((last.position, 0, 0), last, last.content, whole.value == "good"))
        tally.counts["from_conversation_labels"] += 1
    rows: list[Row] = []
    for order, reply, text, desirable in items:
        completion = _completion(text, tokens, tally)
        prompt = _prompt(document, reply, tokens, tally)
        if prompt is None:
            continue
        fitted = _fit(prompt, [completion], tokens, max_length, tally)
        if fitted is None:
            continue
        prompt, lengths = fitted
        data = {"prompt": prompt, "completion": completion, "label": desirable}
        key = f"{turn_text(prompt)}\ncompletion: {text}\nlabel: {desirable}"
        rows.append(Row(document.id, document.ref, document.source, order, data, key, lengths[0]))
    return rows


def _completion(text: str, tokens: Tokens, tally: Tally) -> list[Turn]:
    content, count = tokens.neutralise(text)
    tally.counts["neutralised_special_tokens"] += count
    return [{"role": "assistant", "content": content}]


def _prompt(document: CorpusDocument, reply: CorpusMessage, tokens: Tokens, tally: Tally) -> list[Turn] | None:
    turns = to_turns(history(document, reply), tokens, tally)
    if not ends_with_user(turns):
        tally.dropped["prompt_not_ending_with_user"] += 1
        return None
    return turns


def _fit(
    prompt: list[Turn], completions: list[list[Turn]], tokens: Tokens, max_length: int, tally: Tally
) -> tuple[list[Turn], list[int]] | None:
    """The prompt, trimmed of its oldest exchanges if needed, and the length of prompt + each
    completion, or None when even the last user turn is too long."""

    def lengths(candidate: list[Turn]) -> list[int]:
        return [tokens.chat_length(candidate + completion) for completion in completions]

    measured = lengths(prompt)
    if max(measured) <= max_length:
        return prompt, measured
    last_reply = max((i for i, t in enumerate(prompt) if t["role"] == "assistant"), default=-1)
    system, groups = exchanges(prompt[: last_reply + 1])
    tail = prompt[last_reply + 1 :]

    def trimmed(start: int) -> list[Turn]:
        return system + [turn for group in groups[start:] for turn in group] + tail

    # Fewer exchanges, fewer tokens: binary search for the most history that fits.
    low, high, best = 1, len(groups), None
    while low <= high:
        middle = (low + high) // 2
        measured = lengths(trimmed(middle))
        if max(measured) <= max_length:
            best, high = (middle, measured), middle - 1
        else:
            low = middle + 1
    if best is None:
        tally.dropped["too_long"] += 1
        return None
    tally.cut["history_trimmed"] += 1
    return trimmed(best[0]), best[1]


__all__ = ["build_dpo", "build_kto"]
