"""Evaluation of a model (base, current adapter, candidate) and the gate that decides promotion.

Pure functions over a model, a tokenizer and dataset rows; nothing here reads the store or files.

- Rows are tokenized by ``pipeline.tokenization`` (chat rows labelled on the assistant's replies and
  their end-of-turn tokens, text rows on every token), as training tokenizes them, so eval loss and
  training loss count exactly the same tokens.
- ``eval_loss``: the token-weighted mean negative log-likelihood over the labelled tokens, overall and
  per ``source``.
- ``preference_accuracy``: on ``dpo`` rows, how often the chosen reply is more likely (summed
  log-probability of its tokens) than the rejected one.
- ``gate_decision``: promote or reject a candidate from those numbers (and the forgetting probe's,
  ``pipeline.probe``).

torch is imported inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard

from pipeline.lm_head import labelled_logprobs
from pipeline.tokenization import (
    IGNORE_INDEX,
    NO_SOURCE,
    ChatTemplate,
    chat_template,
    has_labels,
    tokenize_completion,
    tokenize_rows,
)

if TYPE_CHECKING:
    import torch
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

# --- losses --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossReport:
    """Token-weighted mean NLL (nats per labelled token), overall and per source."""

    loss: float | None  # None when there was nothing to score
    tokens: int
    rows: int
    sources: dict[str, float] = field(default_factory=dict)
    source_tokens: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "eval_loss": self.loss,
            "eval_tokens": self.tokens,
            "eval_rows": self.rows,
            "sources": dict(self.sources),
            "source_tokens": dict(self.source_tokens),
        }


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


class _EvalMode:
    """``model.eval()`` for the block, then the previous mode back (dropout off while scoring)."""

    def __init__(self, model: Any) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *_: object) -> None:
        self.model.train(self.was_training)


def token_logprob_sums(
    model: Any, examples: Sequence[Mapping[str, Any]], *, pad_token_id: int, batch_size: int = 4
) -> list[tuple[float, int]]:
    """For each tokenized example: (sum of log p(label) over its labelled tokens, how many), in order.

    Examples are batched by length, right-padded, and scored by ``pipeline.lm_head.labelled_logprobs``
    (only labelled positions reach the output head; the architecture's logit scaling and soft-capping
    applied; log-softmax in float32)."""
    import torch

    results: list[tuple[float, int]] = [(0.0, 0)] * len(examples)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
    device = _device(model)
    with _EvalMode(model), torch.inference_mode():
        for start in range(0, len(order), max(1, batch_size)):
            chunk = order[start : start + max(1, batch_size)]
            width = max(len(examples[i]["input_ids"]) for i in chunk)
            ids = torch.full((len(chunk), width), pad_token_id, dtype=torch.long)
            labels = torch.full((len(chunk), width), IGNORE_INDEX, dtype=torch.long)
            attention = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                n = len(examples[i]["input_ids"])
                ids[row, :n] = torch.tensor(examples[i]["input_ids"], dtype=torch.long)
                labels[row, :n] = torch.tensor(examples[i]["labels"], dtype=torch.long)
                attention[row, :n] = 1
            picked, mask = labelled_logprobs(
                model, ids.to(device), labels.to(device), attention_mask=attention.to(device)
            )
            row_of = torch.arange(len(chunk), device=mask.device).unsqueeze(1).expand_as(mask)[mask]
            sums = (
                torch.zeros(len(chunk), device=picked.device).index_add_(0, row_of.to(picked.device), picked).tolist()
            )
            counts = mask.sum(dim=1).tolist()
            for row, i in enumerate(chunk):
                results[i] = (float(sums[row]), int(counts[row]))
    return results


def _tokenized(
    dataset: Dataset | Sequence[Mapping[str, Any]], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> list[dict[str, Any]]:
    rows = [dict(row) for row in dataset]
    raw = [i for i, row in enumerate(rows) if "input_ids" not in row or "labels" not in row]
    if raw:
        examples = tokenize_rows([rows[i] for i in raw], ChatTemplate(tokenizer), max_length)
        for i, example in zip(raw, examples, strict=True):
            rows[i] = {**rows[i], **example}
    return [row for row in rows if has_labels(row)]


def eval_loss(
    model: Any,
    dataset: Dataset | Sequence[Mapping[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int = 1024,
    batch_size: int = 4,
) -> LossReport:
    """Mean NLL per labelled token over ``dataset``, overall and per ``source`` column value.

    Rows may be raw (``messages`` with assistant-only masking, or ``text``) or already tokenized
    (``input_ids`` + ``labels``). Rows with no labelled token (after truncation) are skipped.
    The model is put in eval mode (dropout off) for the pass and back in its previous mode after."""
    rows = _tokenized(dataset, tokenizer, max_length)
    if not rows:
        return LossReport(None, 0, 0)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scored = token_logprob_sums(model, rows, pad_token_id=pad, batch_size=batch_size)
    total, tokens = 0.0, 0
    per_source: dict[str, list[float]] = {}
    for row, (logp, n) in zip(rows, scored, strict=True):
        total -= logp
        tokens += n
        bucket = per_source.setdefault(str(row.get("source") or NO_SOURCE), [0.0, 0])
        bucket[0] -= logp
        bucket[1] += n
    return LossReport(
        loss=total / tokens if tokens else None,
        tokens=tokens,
        rows=len(rows),
        sources={name: s / n for name, (s, n) in sorted(per_source.items()) if n},
        source_tokens={name: int(n) for name, (_, n) in sorted(per_source.items())},
    )


@dataclass(frozen=True)
class PreferenceReport:
    accuracy: float | None  # share of pairs where the chosen reply is more likely; None without pairs
    pairs: int
    mean_margin: float | None  # mean of log p(chosen) - log p(rejected), in nats

    def as_dict(self) -> dict[str, Any]:
        return {"preference_accuracy": self.accuracy, "pairs": self.pairs, "mean_margin": self.mean_margin}


def preference_accuracy(
    model: Any,
    dataset: Dataset | Sequence[Mapping[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int = 1024,
    batch_size: int = 4,
) -> PreferenceReport:
    """On ``dpo`` rows (``prompt`` messages, ``chosen`` / ``rejected`` one assistant message each): the
    share of pairs where the chosen reply's summed log-probability beats the rejected one's (ties
    count as misses), and the mean margin."""
    chosen, rejected = [], []
    template = chat_template(tokenizer)
    for row in dataset:
        c = tokenize_completion(row["prompt"], row["chosen"], template, max_length)
        r = tokenize_completion(row["prompt"], row["rejected"], template, max_length)
        if has_labels(c) and has_labels(r):
            chosen.append(c)
            rejected.append(r)
    if not chosen:
        return PreferenceReport(None, 0, None)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores = token_logprob_sums(model, chosen + rejected, pad_token_id=pad, batch_size=batch_size)
    margins = [c[0] - r[0] for c, r in zip(scores[: len(chosen)], scores[len(chosen) :], strict=True)]
    return PreferenceReport(
        accuracy=sum(m > 0 for m in margins) / len(margins), pairs=len(margins), mean_margin=sum(margins) / len(margins)
    )


# --- the gate ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateDecision:
    """``promote``: whether the candidate becomes current. ``reasons``: why not (kept when forced)."""

    promote: bool
    decision: str  # "accepted" | "rejected" | "forced"
    compared_with: str  # "current" | "base"
    reasons: list[str]
    checks: list[str]  # what was checked and passed, for the record

    def as_dict(self) -> dict[str, Any]:
        """``accepted`` is what the registry reads: the version's status and whether it may become current."""
        return {
            "accepted": self.promote,
            "decision": self.decision,
            "compared_with": self.compared_with,
            "reasons": list(self.reasons),
            "checks": list(self.checks),
        }


def _finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and math.isfinite(value)


def gate_decision(
    candidate: Mapping[str, Any],
    *,
    current: Mapping[str, Any] | None,
    base: Mapping[str, Any] | None,
    min_improvement: float = 0.0,
    max_source_regression: float = 0.05,
    max_forgetting: float | None = None,
    min_preference_accuracy: float | None = None,
    force: bool = False,
) -> GateDecision:
    """Decide whether a candidate adapter becomes the profile's current version.

    Each argument is a metrics mapping with ``eval_loss`` (float) and ``sources`` ({source: loss}),
    all measured now on the same eval split. The reference is ``current`` when the profile has a
    current adapter, else ``base`` (the first adapter must beat the base model). The candidate passes
    when:

    - its eval loss is finite and at most ``reference * (1 - min_improvement)``, and strictly lower
      than the reference (``min_improvement`` is relative: 0.01 means "at least 1% lower");
    - no source present in both has a loss more than ``max_source_regression`` (relative) above the
      reference's: ``(new - ref) / ref <= max_source_regression``;
    - (``max_forgetting`` set, both numbers measured) its loss on the general-text probe
      (``general_loss``, ``pipeline.probe``) is at most ``max_forgetting`` (relative) above the
      **base** model's, whatever the reference: forgetting adds up over months of continued training;
    - (``min_preference_accuracy`` set, held-out preference pairs measured) its preference accuracy is
      at least that.

    ``force`` promotes anyway (the reasons are kept in the record) unless the candidate's loss is NaN
    or infinite: a diverged adapter is never promoted. With no eval rows (loss None) nothing can be
    compared: rejected, unless forced. A limit left at None is reported, not gated.
    """
    reference_name = "current" if current is not None else "base"
    reference = current if current is not None else base
    reasons: list[str] = []
    checks: list[str] = []
    new_loss = candidate.get("eval_loss")
    broken = isinstance(new_loss, int | float) and not math.isfinite(new_loss)
    if broken:
        reasons.append(f"the candidate's eval loss is {new_loss!r}: training diverged")
    elif new_loss is None:
        reasons.append(
            "nothing to measure: the eval split has no rows (raise the profile's eval_percent, or promote with --force)"
        )
    elif reference is None or not _finite(reference.get("eval_loss")):
        reasons.append(f"no {reference_name} eval loss to compare with")
    else:
        ref_loss = float(reference["eval_loss"])
        limit = ref_loss * (1.0 - min_improvement) if ref_loss > 0 else ref_loss - min_improvement
        beats = new_loss < ref_loss and new_loss <= limit
        line = f"eval loss {new_loss:.4f} vs {reference_name} {ref_loss:.4f}" + (
            f" (needs <= {limit:.4f}: at least {min_improvement:.1%} lower)" if min_improvement else ""
        )
        (checks if beats else reasons).append(line if beats else f"does not beat the {reference_name}: {line}")
        ref_sources = reference.get("sources") or {}
        for source, loss in sorted((candidate.get("sources") or {}).items()):
            ref = ref_sources.get(source)
            if not (_finite(ref) and _finite(loss)) or ref <= 0:
                continue
            change = (loss - ref) / ref
            if change > max_source_regression:
                reasons.append(
                    f"source {source!r} regressed {change:+.1%} vs the {reference_name} "
                    f"({ref:.4f} -> {loss:.4f}; limit {max_source_regression:.1%})"
                )
            else:
                checks.append(f"source {source!r}: {change:+.1%} vs the {reference_name}")
        _limits(candidate, base, max_forgetting, min_preference_accuracy, checks, reasons)
    if not reasons:
        return GateDecision(True, "accepted", reference_name, [], checks)
    if force and not broken:
        return GateDecision(True, "forced", reference_name, reasons, checks)
    return GateDecision(False, "rejected", reference_name, reasons, checks)


def _limits(
    candidate: Mapping[str, Any],
    base: Mapping[str, Any] | None,
    max_forgetting: float | None,
    min_preference_accuracy: float | None,
    checks: list[str],
    reasons: list[str],
) -> None:
    """The forgetting and preference limits of ``gate_decision``."""
    general, base_general = candidate.get("general_loss"), (base or {}).get("general_loss")
    if max_forgetting is not None and _finite(general) and _finite(base_general) and base_general > 0:
        rise = (general - base_general) / base_general
        line = f"general-text loss {general:.4f} vs base {base_general:.4f} ({rise:+.1%}; limit +{max_forgetting:.1%})"
        (checks if rise <= max_forgetting else reasons).append(line if rise <= max_forgetting else f"forgets: {line}")
    accuracy = candidate.get("preference_accuracy")
    if min_preference_accuracy is not None and _finite(accuracy):
        pairs = candidate.get("preference_pairs") or 0
        line = f"preference accuracy {accuracy:.2f} on {pairs} held-out pairs (needs >= {min_preference_accuracy:.2f})"
        (checks if accuracy >= min_preference_accuracy else reasons).append(line)


def metrics_of(
    loss: LossReport, preference: PreferenceReport | None = None, *, general_loss: float | None = None
) -> dict[str, Any]:
    """One model's numbers in the shape ``gate_decision`` and the registry manifest use
    (``general_loss``: the forgetting probe, ``pipeline.probe``)."""
    return {
        **loss.as_dict(),
        "preference_accuracy": preference.accuracy if preference else None,
        "preference_pairs": preference.pairs if preference else 0,
        "general_loss": general_loss,
    }
