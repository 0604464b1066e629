"""The base tokenizer as the builders use it: lengths in tokens, chat-template encodings with the
assistant mask (``pipeline.tokenization.ChatTemplate``: the same encodings training and evaluation
use), and neutralising special-token text inside content.

Special-token text written inside a message or a note (``<|end|>`` pasted from a log, a template
discussed in a chat) is tokenized as the special token itself: a literal ``<|end|>`` in a reply
would teach the model to end its turn there. ``neutralise`` breaks every such substring with a
zero-width space after its first character (``<|end|>`` -> ``<\\u200b|end|>``), which keeps the
text readable and makes it plain characters to the tokenizer; the builders count how often.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.datasets.common import Turn
from pipeline.errors import DatasetError
from pipeline.tokenization import ChatTemplate, MaskMethod, TemplateError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from pipeline.workspace import Workspace

ZWSP = "\u200b"


class Tokens:
    def __init__(self, tokenizer: PreTrainedTokenizerBase, *, fingerprint: str = "", model: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.fingerprint = fingerprint
        self.template = ChatTemplate(tokenizer, model=model)
        self.special_tokens = [s for s in self.template.special_tokens if len(s) > 1]
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
        return self.template.encode(turns, masks=masks)

    @property
    def mask_method(self) -> MaskMethod:
        """How the assistant mask is found (raises AssistantMaskError when it can't be)."""
        return self.template.method

    def decode(self, ids: list[int]) -> str:
        text = self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        assert isinstance(text, str)  # one sequence of ids decodes to one string
        return text


def template_error(ref: str, error: Exception) -> DatasetError:
    return DatasetError(f"{ref}: the base model's chat template can't render this conversation ({error})")


def load_tokens(workspace: Workspace) -> Tokens:
    """The base model's tokenizer (loaded once per build; no weights) and its fingerprint."""
    from pipeline.base_model import load_tokenizer, tokenizer_fingerprint

    name = workspace.config.base_model.name
    tokenizer = load_tokenizer(name, home=workspace.home.root)
    return Tokens(
        tokenizer, fingerprint=tokenizer_fingerprint(Path(tokenizer.name_or_path)), model=f"base model {name!r}"
    )


__all__ = ["ZWSP", "TemplateError", "Tokens", "load_tokens", "template_error"]
