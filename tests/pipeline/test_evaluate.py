"""pipeline.evaluate: eval loss (overall, per source), preference accuracy and the promotion gate
(tokenization itself: tests/pipeline/test_tokenization.py). Models: the builtin tiny-llama (full
precision) and a tiny stub."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from pipeline.evaluate import eval_loss, gate_decision, preference_accuracy
from pipeline.tokenization import IGNORE_INDEX, tokenize_chat, tokenize_text
from tests.pipeline.test_train import offline  # noqa: F401 - an autouse fixture

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Bye"},
    {"role": "assistant", "content": "Ciao"},
]


@pytest.fixture(scope="module")
def base(models_dir: Path):
    from pipeline.base_model import load_base

    return load_base("builtin:tiny-llama", home=models_dir.parent, quantization="none", double_quant=False)


def test_eval_loss_is_the_token_weighted_nll_per_source(base) -> None:
    import torch

    rows = [
        {"messages": CHAT, "source": "chats"},
        {"text": "the runbook says restart it", "source": "notes"},
        {"messages": CHAT[:3], "source": "chats"},
    ]
    model = base.model
    model.train()  # eval_loss scores in eval mode and gives the model back as it found it
    report = eval_loss(model, rows, base.tokenizer, batch_size=2)
    assert model.training

    sums: dict[str, list[float]] = {}
    model.eval()
    for row in rows:
        example = (
            tokenize_chat(row["messages"], base.tokenizer, 1024)
            if "messages" in row
            else tokenize_text(row["text"], base.tokenizer, 1024)
        )
        with torch.no_grad():
            out = model(input_ids=torch.tensor([example["input_ids"]]), labels=torch.tensor([example["labels"]]))
        n = sum(1 for t in example["labels"][1:] if t != IGNORE_INDEX)
        bucket = sums.setdefault(row["source"], [0.0, 0])
        bucket[0] += out.loss.item() * n
        bucket[1] += n
    total = sum(s for s, _ in sums.values()) / sum(n for _, n in sums.values())
    assert report.rows == 3 and report.tokens == sum(n for _, n in sums.values())
    assert report.loss == pytest.approx(total, rel=1e-5)
    assert report.sources == pytest.approx({k: s / n for k, (s, n) in sums.items()}, rel=1e-5)
    assert report.source_tokens == {k: n for k, (_, n) in sums.items()}
    # batching and padding don't change the numbers
    assert eval_loss(model, rows, base.tokenizer, batch_size=1).loss == pytest.approx(report.loss, rel=1e-5)
    # nothing to score
    assert eval_loss(model, [], base.tokenizer).loss is None


class _Stub:
    """A 'model' that always predicts byte ``favoured`` (a plain nn.Module underneath)."""

    def __new__(cls, favoured: int, vocab: int = 320):
        import torch

        class Stub(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.anchor = torch.nn.Parameter(torch.zeros(1))

            def forward(self, input_ids: Any, attention_mask: Any = None, use_cache: bool = False) -> Any:
                logits = torch.zeros((*input_ids.shape, vocab))
                logits[..., favoured] = 10.0

                class Out:
                    pass

                out = Out()
                out.logits = logits
                return out

        return Stub()


def test_preference_accuracy_counts_pairs_where_chosen_is_more_likely(base) -> None:
    pairs = [
        {
            "prompt": [{"role": "user", "content": f"q{i}"}],
            "chosen": [{"role": "assistant", "content": "aaaa"}],
            "rejected": [{"role": "assistant", "content": "zzzz"}],
        }
        for i in range(3)
    ]
    likes_a = preference_accuracy(_Stub(ord("a")), pairs, base.tokenizer)
    assert likes_a.accuracy == 1.0 and likes_a.pairs == 3 and likes_a.mean_margin > 0
    likes_z = preference_accuracy(_Stub(ord("z")), pairs, base.tokenizer)
    assert likes_z.accuracy == 0.0 and likes_z.mean_margin < 0
    assert preference_accuracy(_Stub(ord("a")), [], base.tokenizer).accuracy is None


# --- the gate ---------------------------------------------------------------------------------------------


def metrics(loss: float, **sources: float) -> dict[str, Any]:
    return {"eval_loss": loss, "sources": sources}


def test_first_adapter_must_beat_the_base() -> None:
    base = metrics(3.0, chats=3.0, notes=3.0)
    accepted = gate_decision(metrics(2.5, chats=2.4, notes=2.9), current=None, base=base)
    assert accepted.promote and accepted.decision == "accepted" and accepted.compared_with == "base"
    assert accepted.reasons == [] and accepted.as_dict()["accepted"] is True
    worse = gate_decision(metrics(3.1, chats=3.1, notes=3.1), current=None, base=base)
    assert not worse.promote and "does not beat the base" in worse.reasons[0]


def test_a_worse_candidate_is_rejected_against_the_current_adapter() -> None:
    base, current = metrics(3.0, chats=3.0), metrics(2.0, chats=2.0)
    decision = gate_decision(metrics(2.2, chats=2.2), current=current, base=base)
    assert not decision.promote and decision.compared_with == "current"
    assert decision.reasons[0].startswith("does not beat the current: eval loss 2.2000 vs current 2.0000")
    assert "source 'chats' regressed +10.0%" in decision.reasons[1]
    assert gate_decision(metrics(2.0, chats=2.0), current=current, base=base).promote is False  # a tie loses


def test_min_improvement_is_relative() -> None:
    current = metrics(2.0, chats=2.0)
    assert not gate_decision(metrics(1.99, chats=1.99), current=current, base=None, min_improvement=0.01).promote
    assert gate_decision(metrics(1.98, chats=1.98), current=current, base=None, min_improvement=0.01).promote


def test_a_source_regressing_past_the_limit_rejects_an_otherwise_better_adapter() -> None:
    current = metrics(2.0, chats=2.0, notes=1.0)
    candidate = metrics(1.8, chats=1.5, notes=1.06)  # better overall, notes 6% worse
    rejected = gate_decision(candidate, current=current, base=None, max_source_regression=0.05)
    assert not rejected.promote and rejected.reasons == [
        "source 'notes' regressed +6.0% vs the current (1.0000 -> 1.0600; limit 5.0%)"
    ]
    assert gate_decision(candidate, current=current, base=None, max_source_regression=0.1).promote
    # a source the current adapter was never measured on can't regress
    assert gate_decision(metrics(1.8, chats=1.5, new=9.0), current=current, base=None).promote


def test_force_promotes_anyway_but_never_a_broken_adapter() -> None:
    current = metrics(2.0, chats=2.0)
    forced = gate_decision(metrics(2.5, chats=2.5), current=current, base=None, force=True)
    assert forced.promote and forced.decision == "forced" and forced.reasons
    for broken in (math.nan, math.inf):
        decision = gate_decision({"eval_loss": broken, "sources": {}}, current=current, base=None, force=True)
        assert not decision.promote and decision.decision == "rejected" and "diverged" in decision.reasons[0]
    # no eval rows: nothing to compare, rejected unless forced
    unmeasured = {"eval_loss": None, "sources": {}}
    assert "eval_percent" in gate_decision(unmeasured, current=None, base=metrics(3.0)).reasons[0]
    assert gate_decision(unmeasured, current=None, base=metrics(3.0), force=True).decision == "forced"


def test_forgetting_is_measured_against_the_base_whatever_the_reference() -> None:
    base = {**metrics(3.0, chats=3.0), "general_loss": 2.0}
    current = {**metrics(2.0, chats=2.0), "general_loss": 2.08}
    kept = {**metrics(1.9, chats=1.9), "general_loss": 2.09}  # +4.5% vs the base: within 5%
    assert gate_decision(kept, current=current, base=base, max_forgetting=0.05).promote
    forgot = {**metrics(1.9, chats=1.9), "general_loss": 2.2}  # +10% vs the base (+5.8% vs current)
    rejected = gate_decision(forgot, current=current, base=base, max_forgetting=0.05)
    assert not rejected.promote and "forgets: general-text loss 2.2000 vs base 2.0000 (+10.0%" in rejected.reasons[0]
    assert gate_decision(forgot, current=current, base=base, max_forgetting=0.15).promote
    assert gate_decision(forgot, current=current, base=base, max_forgetting=None).promote  # reported only
    unprobed = metrics(1.9, chats=1.9)  # an older record without the probe: nothing to compare
    assert gate_decision(unprobed, current=current, base=base, max_forgetting=0.05).promote


def test_preference_accuracy_gates_only_when_there_are_held_out_pairs() -> None:
    base = metrics(3.0)
    good = {**metrics(2.0), "preference_accuracy": 0.75, "preference_pairs": 4}
    bad = {**metrics(2.0), "preference_accuracy": 0.25, "preference_pairs": 4}
    assert gate_decision(good, current=None, base=base, min_preference_accuracy=0.7).promote
    rejected = gate_decision(bad, current=None, base=base, min_preference_accuracy=0.7)
    assert not rejected.promote and rejected.reasons == ["preference accuracy 0.25 on 4 held-out pairs (needs >= 0.70)"]
    assert gate_decision(bad, current=None, base=base).promote  # no limit: reported, not gated
    no_pairs = {**metrics(2.0), "preference_accuracy": None, "preference_pairs": 0}
    assert gate_decision(no_pairs, current=None, base=base, min_preference_accuracy=0.7).promote


def test_the_general_text_probe_scores_english_every_token(base) -> None:
    from pipeline.probe import GENERAL_TEXT, general_rows, general_text_loss

    loss = general_text_loss(base.model, base.tokenizer)
    assert loss is not None and math.isfinite(loss) and loss > 0
    report = eval_loss(base.model, general_rows(), base.tokenizer)
    assert report.loss == pytest.approx(loss) and report.rows == len(GENERAL_TEXT)
    # every byte of the text is a labelled token for this byte-level tokenizer (plus the end of text)
    assert report.tokens >= sum(len(p.encode()) for p in GENERAL_TEXT)
