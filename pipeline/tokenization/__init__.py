"""Text and conversations -> tokens, the one way datasets, training and evaluation all use:

- ``template``: ``ChatTemplate``, a base's chat template with the assistant mask on any template
  (``{% generation %}`` blocks, TRL's training templates, or growing-prefix rendering);
- ``lm``: rows as ``input_ids`` + ``labels`` (assistant-only for chats, every token for text),
  one at a time or a whole ``datasets.Dataset`` mapped in batches.
"""

from pipeline.tokenization.lm import (
    IGNORE_INDEX,
    NO_SOURCE,
    Example,
    chat_template,
    has_labels,
    tokenize_chat,
    tokenize_completion,
    tokenize_dataset,
    tokenize_lm_row,
    tokenize_rows,
    tokenize_text,
)
from pipeline.tokenization.template import AssistantMaskError, ChatTemplate, MaskMethod, TemplateError

__all__ = [
    "IGNORE_INDEX",
    "NO_SOURCE",
    "AssistantMaskError",
    "ChatTemplate",
    "Example",
    "MaskMethod",
    "TemplateError",
    "chat_template",
    "has_labels",
    "tokenize_chat",
    "tokenize_completion",
    "tokenize_dataset",
    "tokenize_lm_row",
    "tokenize_rows",
    "tokenize_text",
]
