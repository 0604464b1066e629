"""pipeline.tokenization: rows -> input_ids + labels, and the assistant mask on real chat templates of five
families (SmolLM2 / ChatML, Llama 3, Mistral, Gemma, Qwen 2.5; tests/pipeline/chat_templates/) applied to
SmolLM2's real tokenizer: the masked tokens are exactly each reply and its end-of-turn token, whichever
way the mask is found."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from pipeline.datasets.masks import verify_example
from pipeline.datasets.tokens import Tokens
from pipeline.errors import DatasetError
from pipeline.tokenization import (
    IGNORE_INDEX,
    AssistantMaskError,
    ChatTemplate,
    MaskMethod,
    TemplateError,
    tokenize_chat,
    tokenize_completion,
    tokenize_dataset,
    tokenize_lm_row,
    tokenize_text,
)
from pipeline.tokenization import template as template_module

TEMPLATES = Path(__file__).parent / "chat_templates"
CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Bye"},
    {"role": "assistant", "content": "Ciao"},
]


@pytest.fixture(autouse=True)
def offline(no_network: None) -> None:
    """Every test here runs with the hub offline and no internet sockets (see tests/conftest.py)."""


@pytest.fixture(scope="module")
def tiny(models_dir: Path):
    from pipeline.base_model import load_tokenizer

    return load_tokenizer("builtin:tiny-llama", home=models_dir.parent)


def _decode_labelled(tokenizer: Any, example: dict[str, list[int]]) -> str:
    return tokenizer.decode([t for t in example["labels"] if t != IGNORE_INDEX], skip_special_tokens=False)


# --- rows as examples (the builtin tiny-llama) ---------------------------------------------------------


def test_chat_rows_learn_only_the_assistant_turns(tiny) -> None:
    example = tokenize_chat(CHAT, tiny, 1024)
    assert len(example["input_ids"]) == len(example["labels"])
    assert _decode_labelled(tiny, example) == "Hello!<|end|>Ciao<|end|>"
    truncated = tokenize_chat(CHAT, tiny, 20)
    assert len(truncated["input_ids"]) == 20 and truncated["input_ids"] == example["input_ids"][:20]
    assert ChatTemplate(tiny).method is MaskMethod.GENERATION


def test_text_rows_learn_every_token_and_end_with_eos(tiny) -> None:
    example = tokenize_text("a note", tiny, 1024)
    assert example["labels"] == example["input_ids"]
    assert tiny.decode(example["input_ids"], skip_special_tokens=False) == "a note<|end|>"


def test_completion_scoring_masks_the_prompt_and_earlier_replies(tiny) -> None:
    example = tokenize_completion(CHAT[:4], [{"role": "assistant", "content": "Ciao"}], tiny, 1024)
    assert _decode_labelled(tiny, example) == "Ciao<|end|>"
    short = tokenize_completion(CHAT[:4], [{"role": "assistant", "content": "Ciao"}], tiny, 12)
    assert len(short["input_ids"]) == 12 and _decode_labelled(tiny, short) == "Ciao<|end|>"


def test_a_dataset_is_mapped_in_arrow_like_row_by_row_and_the_snapshot_is_left_alone(tiny, tmp_path: Path) -> None:
    from datasets import Dataset, load_from_disk

    rows = [{"messages": CHAT, "text": None, "source": "chats"} for _ in range(3)]
    rows += [{"messages": None, "text": f"note {i} " * 30, "source": "notes"} for i in range(4)]
    long_question = [{"role": "user", "content": "why? " * 40}, {"role": "assistant", "content": "because"}]
    rows.append({"messages": long_question, "text": None, "source": ""})
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "data"))
    before = sorted(p.name for p in (tmp_path / "data").rglob("*"))
    stored = load_from_disk(str(tmp_path / "data"))

    mapped, dropped = tokenize_dataset(stored, tiny, 60, batch_size=3)
    listed, dropped_listed = tokenize_dataset(rows, tiny, 60)
    assert sorted(p.name for p in (tmp_path / "data").rglob("*")) == before  # no cache files beside the snapshot
    assert mapped.column_names == ["input_ids", "labels", "source"] and mapped.to_list() == listed.to_list()
    assert dropped == dropped_listed == 1  # the reply starts past max_length: nothing to learn
    expected = [tokenize_lm_row(row, tiny, 60) for row in rows[:7]]
    assert [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in mapped] == expected
    assert mapped["source"] == ["chats"] * 3 + ["notes"] * 4
    empty, none_dropped = tokenize_dataset([], tiny, 60)
    assert len(empty) == 0 and none_dropped == 0


# --- five real chat template families on SmolLM2's tokenizer --------------------------------------------

# family -> (how the mask is found, special tokens the family's own tokenizer has, its end-of-turn token,
#            whether the template trims message content, whether it accepts a system turn)
FAMILIES: dict[str, tuple[MaskMethod, dict[str, Any], str, bool, bool]] = {
    "smollm2": (MaskMethod.PREFIX, {}, "<|im_end|>", False, True),
    "llama3": (
        MaskMethod.TRL,
        {
            "bos_token": "<|begin_of_text|>",
            "eos_token": "<|eot_id|>",
            "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>"],
        },
        "<|eot_id|>",
        True,
        True,
    ),
    "mistral": (MaskMethod.PREFIX, {"bos_token": "<s>", "eos_token": "</s>"}, "</s>", False, False),
    "gemma": (
        MaskMethod.TRL,
        {"bos_token": "<bos>", "eos_token": "<eos>", "additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]},
        "<end_of_turn>",
        True,
        False,
    ),
    "qwen2_5": (MaskMethod.TRL, {"eos_token": "<|im_end|>"}, "<|im_end|>", False, True),
}


def published_template(family: str) -> str:
    """The fixture file without its first line (the comment naming the model it comes from)."""
    return (TEMPLATES / f"{family}.jinja").read_text(encoding="utf-8").split("\n", 1)[1]


def family_tokenizer(smollm2_tokenizer: Any, family: str) -> Any:
    tokenizer = copy.deepcopy(smollm2_tokenizer)
    specials = FAMILIES[family][1]
    if specials:
        tokenizer.add_special_tokens(specials)
    tokenizer.chat_template = published_template(family)
    return tokenizer


def conversation(system: bool) -> list[dict[str, str]]:
    turns = [{"role": "system", "content": "You answer in one line."}] if system else []
    return [
        *turns,
        {"role": "user", "content": "How do I list open ports?"},
        {"role": "assistant", "content": "Use `ss -tlnp` — it shows listening TCP sockets. 🎉"},
        {"role": "user", "content": "And in Python?"},
        {"role": "assistant", "content": " Try:\n```py\nimport psutil\nprint(psutil.net_connections())\n```\n"},
        {"role": "user", "content": "Thanks"},
        {"role": "assistant", "content": "Ça va, de rien!"},
    ]


def masked_spans(ids: list[int], mask: list[int]) -> list[list[int]]:
    spans: list[list[int]] = []
    for i, (token, bit) in enumerate(zip(ids, mask, strict=True)):
        if bit:
            if not i or not mask[i - 1]:
                spans.append([])
            spans[-1].append(token)
    return spans


def test_the_smollm2_fixture_is_the_real_models_template(smollm2_tokenizer) -> None:
    assert published_template("smollm2") == smollm2_tokenizer.chat_template


@pytest.mark.parametrize("family", list(FAMILIES))
def test_masked_tokens_are_exactly_each_reply_and_its_end_of_turn_token(smollm2_tokenizer, family: str) -> None:
    method, _, end_of_turn, trims, system = FAMILIES[family]
    tokenizer = family_tokenizer(smollm2_tokenizer, family)
    template = ChatTemplate(tokenizer, model=family)
    assert template.method is method
    turns = conversation(system)
    ids, mask = template.encode(turns)
    assert mask is not None and len(mask) == len(ids)
    assert ids == tokenizer.apply_chat_template(turns, tokenize=True, return_dict=True)["input_ids"]

    replies = [t["content"].strip() if trims else t["content"] for t in turns if t["role"] == "assistant"]
    spans = masked_spans(ids, mask)
    assert [tokenizer.decode(span, skip_special_tokens=False) for span in spans] == [r + end_of_turn for r in replies]
    eot = tokenizer.convert_tokens_to_ids(end_of_turn)
    assert all(span[-1] == eot for span in spans) and sum(mask) == sum(len(s) for s in spans)
    # the verifier the builds run on every row agrees
    assert verify_example(turns, Tokens(tokenizer), f"{family} example") == (len(ids), sum(mask))


@pytest.mark.parametrize("family", [f for f, spec in FAMILIES.items() if spec[0] is MaskMethod.TRL])
def test_trl_templates_and_prefix_rendering_give_the_same_masks(
    smollm2_tokenizer, family: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokenizer = family_tokenizer(smollm2_tokenizer, family)
    turns = conversation(FAMILIES[family][4])
    via_trl = ChatTemplate(tokenizer).encode(turns)
    monkeypatch.setattr(template_module, "_trl_may_know", lambda _template: False)
    derived = ChatTemplate(tokenizer)
    assert derived.method is MaskMethod.PREFIX
    assert derived.encode(turns) == via_trl
    assert derived.describe()["method"] == "prefix"


def test_batches_encode_like_single_conversations(smollm2_tokenizer) -> None:
    template = ChatTemplate(smollm2_tokenizer)
    conversations = [conversation(True), conversation(False)[:2], CHAT]
    assert template.encode_batch(conversations) == [template.encode(c) for c in conversations]
    assert template.encode_batch(conversations, masks=False) == [(template.encode(c)[0], None) for c in conversations]


def test_the_template_used_is_recorded(smollm2_tokenizer) -> None:
    import hashlib

    prefix = ChatTemplate(smollm2_tokenizer).describe()
    assert prefix == {
        "method": "prefix",
        "template_sha256": hashlib.sha256(smollm2_tokenizer.chat_template.encode()).hexdigest(),
    }
    trl = ChatTemplate(family_tokenizer(smollm2_tokenizer, "llama3")).describe()
    assert trl["method"] == "trl"
    assert trl["template_sha256"] != hashlib.sha256(published_template("llama3").encode()).hexdigest()  # TRL's version


# --- templates nothing can mask -------------------------------------------------------------------------


def _with_template(smollm2_tokenizer: Any, text: str | None) -> Any:
    tokenizer = copy.deepcopy(smollm2_tokenizer)
    tokenizer.chat_template = text
    return tokenizer


@pytest.mark.parametrize(
    "text, why",
    [
        # renders the number of turns first: nothing is ever the start of a longer conversation
        (
            "{{ messages | length }}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
            "{% endfor %}",
            "not prefix-stable",
        ),
        # plain text turns: no end-of-turn token for the model to learn
        ("{% for m in messages %}{{ m.role }}: {{ m.content }}\n\n{% endfor %}", "not ended by a special token"),
        # replies rewritten by the template
        (
            "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content | upper }}<|im_end|>\n{% endfor %}",
            "changes the text",
        ),
    ],
)
def test_a_template_nothing_can_mask_is_a_clear_error(smollm2_tokenizer, text: str, why: str) -> None:
    template = ChatTemplate(_with_template(smollm2_tokenizer, text), model="base model 'odd-model'")
    with pytest.raises(AssistantMaskError, match=why) as error:
        _ = template.method
    message = str(error.value)
    assert message.startswith("base model 'odd-model': can't tell which tokens")
    assert "{% generation %}" in message and "chat_template.jinja" in message


def test_no_chat_template_is_a_clear_error(smollm2_tokenizer) -> None:
    with pytest.raises(AssistantMaskError, match="has no chat template"):
        ChatTemplate(_with_template(smollm2_tokenizer, None), model="m").encode(CHAT)


def test_a_conversation_that_breaks_prefix_stability_is_refused_and_named(smollm2_tokenizer) -> None:
    # Like Mistral v0.3's template: the system prompt goes into the last user turn.
    text = (
        "{% for m in messages %}{% if m.role == 'user' %}[INST] {% if loop.last or loop.revindex0 == 1 %}"
        "{% for s in messages if s.role == 'system' %}{{ s.content }}\n\n{% endfor %}{% endif %}{{ m.content }}"
        " [/INST]{% elif m.role == 'assistant' %}{{ m.content }}<|im_end|>{% endif %}{% endfor %}"
    )
    tokens = Tokens(_with_template(smollm2_tokenizer, text))
    assert tokens.mask_method is MaskMethod.PREFIX  # the probe without a system prompt works
    with pytest.raises(TemplateError, match="not prefix-stable"):
        tokens.encode_chat(conversation(True))
    with pytest.raises(DatasetError, match=r"sft train example 3 .*not prefix-stable"):
        verify_example(conversation(True), tokens, "sft train example 3 (chats:c1)")
    assert verify_example(conversation(False), tokens, "x")[1] > 0
