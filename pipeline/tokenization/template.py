"""A base model's chat template as plora trains on it: token ids plus the assistant mask (the tokens that
carry loss: each assistant reply and its end-of-turn token), on any chat template.

How the mask is found (``MaskMethod``), decided once per tokenizer, in this order:

- ``generation``: the template marks assistant output with ``{% generation %}`` blocks (the builtin's
  does); transformers' ``return_assistant_tokens_mask`` reads them.
- ``trl``: TRL ships a training version of the template (``trl.chat_template_utils.
  get_training_chat_template``: Llama 3, Qwen 2.5 / 3, Gemma, Phi-3, ... recognised by their exact
  text) with those blocks. Used only when it renders the probe conversations exactly as the model's
  own template does and TRL's own check finds the end-of-turn token trained.
- ``prefix``: derived by rendering growing prefixes of the conversation with the model's own
  template: reply N's text is what rendering turns 1..N adds to rendering turns 1..N-1 with the
  generation prompt, from the reply's content up to and including the first special token after it
  (the end-of-turn token; whatever the template writes after that token, like ChatML's newline, and
  before the content, like a header, carries no loss). Every rendering must be the start of the
  next one (prefix-stable) or the conversation is refused with a ``TemplateError`` saying so.

When none applies, ``AssistantMaskError`` names the model and what to do. Masks are token-level:
a token overlapping a marked character span is marked (as transformers does for ``generation``);
the whitespace a ``generation`` block holds around the reply and its end-of-turn token (the
template's newlines) is left unmarked, so with every method exactly those carry loss.
The loss-mask verifier (``pipeline.datasets.masks``) checks the result on every dataset row.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import PloraError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Turns = Sequence[Mapping[str, Any]]
Encoded = tuple[list[int], list[int] | None]
_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")
# Conversations every template should render: with and without a system prompt (some templates refuse one).
_PROBES: tuple[list[dict[str, str]], ...] = (
    [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4"},
    ],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "See you"},
    ],
)


def _trl_may_know(template: str) -> bool:
    """Whether TRL could recognise ``template``: TRL matches templates by their exact text against the
    originals it ships as ``trl/chat_templates/*.jinja``. Comparing with those files first spares
    importing TRL (and torch with it) for every other template; without the folder, ask TRL."""
    from importlib.util import find_spec

    spec = find_spec("trl")
    folders = [Path(p) / "chat_templates" for p in (spec.submodule_search_locations or [])] if spec else []
    folders = [folder for folder in folders if folder.is_dir()]
    if not folders:
        return spec is not None
    for folder in folders:
        for path in folder.glob("*.jinja"):
            if not path.stem.endswith("_training") and path.read_text(encoding="utf-8") == template:
                return True
    return False


class MaskMethod(StrEnum):
    GENERATION = "generation"
    TRL = "trl"
    PREFIX = "prefix"


class TemplateError(Exception):
    """The chat template can't render (or mask) this conversation; callers name the conversation."""


class AssistantMaskError(PloraError):
    """No way to tell the assistant's tokens apart with this base model's chat template."""


class ChatTemplate:
    """``encode`` / ``encode_batch`` a conversation into ids and its assistant mask (see the module docstring)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, *, model: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.model = model or str(getattr(tokenizer, "name_or_path", "") or "the base model")
        specials = set(tokenizer.all_special_tokens)
        specials |= {token.content for token in tokenizer.added_tokens_decoder.values() if token.special}
        self.special_tokens = sorted((s for s in specials if s), key=lambda s: (-len(s), s))
        self._chosen: tuple[str, tuple[MaskMethod, str]] | None = None

    # --- which method -----------------------------------------------------------------------------

    @property
    def method(self) -> MaskMethod:
        return self._choice[0]

    @property
    def template(self) -> str:
        """The template conversations are rendered with (TRL's training version for ``trl``)."""
        return self._choice[1]

    def describe(self) -> dict[str, str]:
        """What decides the masks, for snapshot metadata: the method and the template it renders with."""
        return {"method": self.method.value, "template_sha256": hashlib.sha256(self.template.encode()).hexdigest()}

    @property
    def _choice(self) -> tuple[MaskMethod, str]:
        """Chosen once per template text (again when someone sets ``tokenizer.chat_template``)."""
        own = self.tokenizer.chat_template
        key = own if isinstance(own, str) else repr(own)
        if self._chosen is None or self._chosen[0] != key:
            self._chosen = (key, self._choose())
        return self._chosen[1]

    def _choose(self) -> tuple[MaskMethod, str]:
        own = self.tokenizer.chat_template
        if isinstance(own, dict):
            own = own.get("default")
        if not isinstance(own, str) or not own.strip():
            raise AssistantMaskError(
                f"{self.model}: its tokenizer has no chat template, so plora can't train it on conversations; "
                "use a chat (instruct) model, or put the model's chat_template.jinja in its folder"
            )
        if _GENERATION.search(own):
            return MaskMethod.GENERATION, own
        patched, why_not_trl = self._trl_template(own)
        if patched is not None:
            return MaskMethod.TRL, patched
        why_not_prefix = self._prefix_problem(own)
        if why_not_prefix is None:
            return MaskMethod.PREFIX, own
        raise AssistantMaskError(
            f"{self.model}: can't tell which tokens of a conversation are the assistant's: its chat template "
            f"has no {{% generation %}} blocks, {why_not_trl}, and {why_not_prefix}. Use a chat model whose "
            "template renders each turn the same whatever follows it, or put a chat_template.jinja that wraps "
            "each assistant reply and its end-of-turn token in {% generation %}...{% endgeneration %} in the "
            "model's folder"
        )

    def _trl_template(self, own: str) -> tuple[str | None, str]:
        if not _trl_may_know(own):
            return None, "TRL has no training version of it"
        from jinja2 import TemplateError as JinjaError
        from trl.chat_template_utils import get_training_chat_template, is_chat_template_stop_token_trained

        try:
            patched = get_training_chat_template(self.tokenizer)
        except ValueError:
            return None, "TRL has no training version of it"
        except (JinjaError, TypeError, KeyError, IndexError) as e:  # TRL renders it with tool calls to probe it
            return None, f"TRL could not examine it ({type(e).__name__}: {e})"
        if patched is None or not _GENERATION.search(patched):
            return None, "TRL has no training version of it"
        rendered = 0
        for probe in _PROBES:
            try:
                mine = self._render(probe, own)
            except TemplateError:
                continue  # e.g. no system prompt allowed: nothing to compare
            try:
                theirs = self._render(probe, patched)
            except TemplateError:
                theirs = None
            if theirs != mine:
                return None, "TRL's training version renders conversations differently from it"
            rendered += 1
        if not rendered:
            return None, "it renders none of the probe conversations"
        if not is_chat_template_stop_token_trained(self.tokenizer, chat_template=patched):
            return None, "TRL's training version leaves the end-of-turn token untrained"
        return patched, ""

    def _prefix_problem(self, own: str) -> str | None:
        if not self.tokenizer.is_fast:
            return "deriving the mask needs a fast (Rust) tokenizer"
        problems = []
        for probe in _PROBES:
            try:
                self._prefix_spans(probe, own)
            except TemplateError as e:
                problems.append(str(e))
                continue
            return None
        return "rendering growing prefixes does not work either (" + "; ".join(dict.fromkeys(problems)) + ")"

    # --- rendering and encoding -------------------------------------------------------------------------

    def _render(self, turns: Turns, template: str, *, add_generation_prompt: bool = False) -> str:
        try:
            text = self.tokenizer.apply_chat_template(
                [dict(t) for t in turns],
                tokenize=False,
                chat_template=template,
                add_generation_prompt=add_generation_prompt,
            )
        except Exception as e:  # jinja's TemplateError / raise_exception, ValueError, TypeError...
            raise TemplateError(f"{type(e).__name__}: {e}") from e
        return str(text)

    def render(self, turns: Turns, *, add_generation_prompt: bool = False) -> str:
        return self._render(turns, self.template, add_generation_prompt=add_generation_prompt)

    def encode(self, turns: Turns, *, masks: bool = True) -> Encoded:
        """Token ids of ``turns`` and, with ``masks``, the assistant mask (1 = carries loss)."""
        return self.encode_batch([turns], masks=masks)[0]

    def encode_batch(self, conversations: Sequence[Turns], *, masks: bool = True) -> list[Encoded]:
        if not conversations:
            return []
        if not masks:
            return self._tokenize_spans([(self.render(turns), []) for turns in conversations], masks=False)
        if self.method is MaskMethod.PREFIX:
            return self._tokenize_spans([self._prefix_spans(turns, self.template) for turns in conversations])
        return self._tokenize_spans([self._marked_spans(turns) for turns in conversations])

    def _marked_spans(self, turns: Turns) -> tuple[str, list[tuple[int, int]]]:
        """The rendered conversation and the character spans its ``{% generation %}`` blocks mark, each
        trimmed to the reply and its end-of-turn token (a block may also hold the newline after the
        header, Qwen 2.5's, or after the end-of-turn token, Gemma's: never generated, so never trained)."""
        text = self.render(turns)
        try:
            out: Any = self.tokenizer.apply_chat_template(
                [dict(t) for t in turns],
                tokenize=True,
                return_dict=True,
                return_assistant_tokens_mask=True,
                chat_template=self.template,
                tokenizer_kwargs={"return_offsets_mapping": True},
            )
        except Exception as e:
            raise TemplateError(f"{type(e).__name__}: {e}") from e
        spans: list[tuple[int, int]] = []
        previous = False
        for (start, end), marked in zip(out["offset_mapping"], out["assistant_masks"], strict=True):
            if marked and previous:
                spans[-1] = (spans[-1][0], end)
            elif marked:
                spans.append((start, end))
            previous = bool(marked)
        replies = [str(t.get("content") or "") for t in turns if t.get("role") == "assistant"]
        if len(spans) != len(replies):
            return text, spans  # the verifier says what is wrong with these
        return text, [
            self._narrow(text, span, reply, n) for n, (span, reply) in enumerate(zip(spans, replies, strict=True), 1)
        ]

    def _narrow(self, text: str, span: tuple[int, int], reply: str, number: int) -> tuple[int, int]:
        """``span`` without the whitespace around its reply + end-of-turn token; a block holding more than
        whitespace besides them (a header, say) is kept as it is, for the verifier to report."""
        try:
            start, end = self._reply_span(text[: span[1]], span[0], reply, number)
        except TemplateError:
            return span
        if text[span[0] : start].strip() or text[end : span[1]].strip():
            return span
        return start, end

    def _tokenize_spans(
        self, rendered: list[tuple[str, list[tuple[int, int]]]], *, masks: bool = True
    ) -> list[Encoded]:
        out = self.tokenizer(
            [text for text, _ in rendered], add_special_tokens=False, return_offsets_mapping=masks, verbose=False
        )
        results: list[Encoded] = []
        for index, (_, spans) in enumerate(rendered):
            ids = list(out["input_ids"][index])
            if not masks:
                results.append((ids, None))
                continue
            mask = [0] * len(ids)
            span = 0
            for position, (start, end) in enumerate(out["offset_mapping"][index]):
                while span < len(spans) and start >= spans[span][1]:
                    span += 1
                if span == len(spans):
                    break
                if end > spans[span][0]:
                    mask[position] = 1
            results.append((ids, mask))
        return results

    # --- the prefix method ------------------------------------------------------------------------------

    def _prefix_spans(self, turns: Turns, template: str) -> tuple[str, list[tuple[int, int]]]:
        """The rendered conversation and the character span of each reply + its end-of-turn token."""
        full = self._render(turns, template)
        spans: list[tuple[int, int]] = []
        number = 0
        for index, turn in enumerate(turns):
            if turn.get("role") != "assistant":
                continue
            number += 1
            head = self._render(turns[:index], template, add_generation_prompt=True) if index else ""
            upto = self._render(turns[: index + 1], template)
            if not upto.startswith(head) or not full.startswith(upto):
                raise TemplateError(
                    f"the chat template is not prefix-stable: the text before assistant turn {number} renders "
                    "differently once that turn or later ones follow, so its tokens can't be told apart"
                )
            spans.append(self._reply_span(upto, len(head), str(turn.get("content") or ""), number))
        return full, spans

    def _reply_span(self, text: str, offset: int, reply: str, number: int) -> tuple[int, int]:
        for wanted in dict.fromkeys((reply, reply.strip())):
            if not wanted:
                continue
            at = text.rfind(wanted, offset)
            while at >= offset:
                end = self._end_of_turn(text, at + len(wanted))
                if end is not None:
                    return at, end
                at = text.rfind(wanted, offset, at + len(wanted) - 1)
        if not reply.strip() and (end := self._end_of_turn(text, offset)) is not None:
            return end - len(self._special_before(text, end)), end
        if reply.strip() and reply.strip() not in text[offset:]:
            raise TemplateError(f"the chat template changes the text of assistant turn {number}")
        raise TemplateError(
            f"assistant turn {number} is not ended by a special token (the end-of-turn token the model must learn)"
        )

    def _end_of_turn(self, text: str, position: int) -> int | None:
        """The end of the special token that follows ``position`` (after whitespace), or None."""
        while position < len(text) and text[position].isspace():
            position += 1
        for special in self.special_tokens:
            if text.startswith(special, position):
                return position + len(special)
        return None

    def _special_before(self, text: str, end: int) -> str:
        return next(s for s in self.special_tokens if text.endswith(s, 0, end))


__all__ = ["AssistantMaskError", "ChatTemplate", "Encoded", "MaskMethod", "TemplateError", "Turns"]
