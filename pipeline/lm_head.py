"""Log-probabilities of the labelled tokens without the full ``batch x length x vocab`` logits.

A causal LM's output head is the costliest and most memory-hungry layer of a small model with a
large vocabulary: SmolLM2's 49,152 x 576 head costs a fifth of the forward pass, and its float32
logits for a batch of 4 x 512 tokens take 400 MB before the softmax and the backward pass double
that. Training and evaluation only need the log-probability of each *labelled* next token, and an
assistant-only loss labels a fraction of the positions. ``labelled_logprobs`` therefore runs the
model's backbone, keeps the hidden states of the labelled positions only, and projects them through
the head in chunks of ``CHUNK`` positions; with gradients on, each chunk is checkpointed, so the
backward pass recomputes one chunk's logits at a time instead of keeping them all. (TRL's fused head
does the same on Triton devices; on a CPU it scores every position, padding included.)

Logit scaling and final soft-capping of the architecture (Gemma 2, Cohere, Granite) are applied as
its own forward does; a model whose head isn't a plain ``Linear`` on the backbone's last hidden state
goes through its own forward and full logits (``has_plain_head`` says which).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

CHUNK = 256  # positions projected at once: 256 x 49k float32 logits = 50 MB (with its exp and, in the
# backward pass, its recomputation and gradient: ~4x that at the peak)
IGNORE_INDEX = -100


def _language_model(model: Any) -> Any:
    """The ``*ForCausalLM`` under a PeftModel (LoRA layers are injected into it in place)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _logit_transform(config: Any) -> tuple[float, float | None] | None:
    """(scale, soft-cap) the architecture applies to its logits, or None for a head we don't know."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    scale = 1.0
    if getattr(text, "logit_scale", None) is not None:  # Cohere: logits * logit_scale
        scale = float(text.logit_scale)
    if getattr(text, "logits_scaling", None) is not None:  # Granite: logits / logits_scaling
        if getattr(text, "model_type", "") not in ("granite", "granitemoe", "granitemoeshared"):
            return None
        scale = 1.0 / float(text.logits_scaling)
    for unknown in ("output_multiplier", "lm_head_multiplier"):
        if getattr(text, unknown, None) is not None:
            return None
    cap = getattr(text, "final_logit_softcapping", None)
    return scale, (float(cap) if cap else None)


def has_plain_head(model: Any) -> bool:
    """Whether ``labelled_logprobs`` can score ``model`` through its backbone and a linear head."""
    import torch

    lm = _language_model(model)
    head = lm.get_output_embeddings() if hasattr(lm, "get_output_embeddings") else None
    backbone = getattr(lm, "base_model", None)
    return (
        isinstance(head, torch.nn.Linear)
        and backbone is not None
        and backbone is not lm
        and _logit_transform(lm.config) is not None
    )


def _chunk_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    target: torch.Tensor,
    scale: float,
    cap: float | None,
) -> torch.Tensor:
    import torch

    logits = torch.nn.functional.linear(hidden.to(weight.dtype), weight, bias).float()
    if scale != 1.0:
        logits = logits * scale
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits.gather(-1, target.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def labelled_logprobs(
    model: Any, input_ids: torch.Tensor, labels: torch.Tensor, **inputs: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logprobs, mask)``: log p(labels[:, t+1] | ids[:, :t+1]) at every position whose next label is
    not ``IGNORE_INDEX`` (float32, 1-D, in row-major order of ``mask``), and that ``batch x (length-1)``
    mask. ``inputs`` go to the backbone (attention_mask, position_ids, ...)."""
    import torch
    from torch.utils.checkpoint import checkpoint

    target = labels[:, 1:]
    mask = target != IGNORE_INDEX
    if not has_plain_head(model):
        logits = model(input_ids=input_ids, use_cache=False, **inputs).logits[:, :-1]
        picked = torch.log_softmax(logits[mask].float(), dim=-1).gather(-1, target[mask].unsqueeze(-1))
        return picked.squeeze(-1), mask
    lm = _language_model(model)
    scale, cap = _logit_transform(lm.config)  # type: ignore[misc]  # has_plain_head checked it
    head = lm.get_output_embeddings()
    hidden = lm.base_model(input_ids=input_ids, use_cache=False, **inputs).last_hidden_state[:, :-1]
    hidden, wanted = hidden[mask.to(hidden.device)], target[mask].to(head.weight.device)
    hidden = hidden.to(head.weight.device)
    parts = []
    for start in range(0, hidden.shape[0], CHUNK):
        args = (hidden[start : start + CHUNK], head.weight, head.bias, wanted[start : start + CHUNK], scale, cap)
        if torch.is_grad_enabled() and hidden.requires_grad:
            parts.append(checkpoint(_chunk_logprobs, *args, use_reentrant=False))
        else:
            parts.append(_chunk_logprobs(*args))
    logprobs = torch.cat(parts) if parts else hidden.float().sum(-1)  # empty, still on the graph
    return logprobs, mask
