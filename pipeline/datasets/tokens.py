"""The base tokenizer as the builders use it: lengths in tokens, chat-template encodings with the
assistant mask, and neutralising special-token text inside content.

Special-token text written inside a message or a note (``<|end|>`` pasted from a log, a template
discussed in a chat) is tokenized as the special token itself: a literal ``<|end|>`` in a reply
would teach the model to end its turn there. ``neutralise`` breaks every such substring with a
zero-width space after its first character (``<|end|>`` -> ``<\\u200b|end|>``), which keeps the
text readable and makes it plain characters to the tokenizer; the builders count how often.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pipeline.datasets.common import Turn
from pipeline.errors import DatasetError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

ZWSP = "\u200b"
_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")


class Tokens:
    def __init__(self, tokenizer: PreTrainedTokenizerBase, *, fingerprint: str = "") -> None:
        self.tokenizer = tokenizer
        self.fingerprint = fingerprint
        specials = set(tokenizer.all_special_tokens)
        specials |= {token.content for token in tokenizer.added_tokens_decoder.values() if token.special}
        self.special_tokens = sorted((s for s in specials if len(s) > 1), key=lambda s: (-len(s), s))
        self._pattern = re.compile("|".join(map(re.escape, self.special_tokens))) if self.special_tokens else None
        self.eos = tokenizer.eos_token or ""
        # Whole documents are measured before they are cut to max_length: the tokenizer's "longer
        # than the maximum sequence length" warning would only be noise here.
        tokenizer.deprecation_warnings["sequence-length-is-longer-than-the-specified-maximum"] = True

    # --- content -----------------------------------------------------------------------------

    def neutralise(self, text: str) -> tuple[str, int]:
        """``text`` with every special-token substring broken up, and how many there were."""
        if self._pattern is None:
            return text, 0
        total = 0
        while True:  # one pass always suffices for real tokenizers; the loop makes it certain
            text, count = self._pattern.subn(lambda m: m.group(0)[0] + ZWSP + m.group(0)[1:], text)
            total += count
            if not count:
                return text, total

    def has_special(self, text: str) -> bool:
        return self._pattern is not None and self._pattern.search(text) is not None

    # --- lengths -----------------------------------------------------------------------------

    def text_length(self, text: str) -> int:
        """Tokens of a ``text`` example as TRL trains it: tokenized with the end-of-text token appended."""
        return len(self.tokenizer(text + self.eos, verbose=False)["input_ids"])

    def plain_length(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def chat_length(self, turns: list[Turn]) -> int:
        return len(self.encode_chat(turns, masks=False)[0])

    def encode_chat(self, turns: list[Turn], *, masks: bool = True) -> tuple[list[int], list[int] | None]:
        """Token ids of ``turns`` through the chat template, and the assistant mask when asked."""
        try:
            out: Any = self.tokenizer.apply_chat_template(
                turns, tokenize=True, return_dict=True, return_assistant_tokens_mask=masks
            )
        except Exception as e:
            raise TemplateError(f"{type(e).__name__}: {e}") from e
        ids = list(out["input_ids"])
        return ids, (list(out["assistant_masks"]) if masks and "assistant_masks" in out else None)

    @property
    def supports_assistant_mask(self) -> bool:
        template = self.tokenizer.chat_template
        return isinstance(template, str) and _GENERATION.search(template) is not None

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


class TemplateError(Exception):
    """The chat template refused a conversation; the builder turns it into a DatasetError naming it."""


def template_error(ref: str, error: Exception) -> DatasetError:
    return DatasetError(f"{ref}: the base model's chat template can't render this conversation ({error})")


__all__ = ["ZWSP", "TemplateError", "Tokens", "template_error"]
