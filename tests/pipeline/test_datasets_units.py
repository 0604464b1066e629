"""The dataset builders' parts on their own: eval split, windows, text pieces, dedup, the
special-token neutraliser and the loss-mask verifier on the builtin tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.datasets.common import Row, Tally
from pipeline.datasets.dedup import DedupSettings, dedup
from pipeline.datasets.masks import render, verify_example
from pipeline.datasets.split import EVAL, TRAIN, side
from pipeline.datasets.text import pieces
from pipeline.datasets.tokens import ZWSP, Tokens
from pipeline.datasets.windows import fit_windows
from pipeline.errors import DatasetError
from storage.corpus import CorpusDocument


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Tokens:
    from pipeline.base_model import load_tokenizer

    home = tmp_path_factory.mktemp("tok-home")
    return Tokens(load_tokenizer("builtin:tiny-llama", home=home), fingerprint="test")


def test_eval_side_depends_on_the_ref_only_and_grows_monotonically() -> None:
    refs = [f"chats:c{i}" for i in range(2000)]
    at10 = {ref for ref in refs if side(ref, 10) == EVAL}
    at20 = {ref for ref in refs if side(ref, 20) == EVAL}
    assert 140 < len(at10) < 260 and at10 < at20  # about 10%, and raising the percent only adds
    assert all(side(ref, 0) == TRAIN for ref in refs) and side("chats:c7", 10) == side("chats:c7", 10)


def _turn(role: str, text: str) -> dict[str, str]:
    return {"role": role, "content": text}


def test_windows_keep_the_system_prompt_and_each_reply_with_its_user_turn() -> None:
    turns = [_turn("system", "sys")]
    for i in range(6):
        turns += [_turn("user", f"question {i} " + "q" * 40), _turn("assistant", f"answer {i} " + "a" * 40)]
    turns.append(_turn("user", "x" * 500))  # a trailing user turn is not part of any exchange
    tally = Tally()

    def length(window: list[dict[str, str]]) -> int:
        return sum(len(t["content"]) for t in window)

    windows = fit_windows(turns, 210, length, tally)  # an exchange is 100 characters, the system turn 3
    assert len(windows) == 3 and all(length(w) <= 210 for w in windows)
    for window in windows:
        assert window[0]["role"] == "system" and window[1]["role"] == "user" and window[-1]["role"] == "assistant"
        roles = [t["role"] for t in window[1:]]
        assert roles == ["user", "assistant"] * (len(roles) // 2)
    replies = [t["content"] for w in windows for t in w if t["role"] == "assistant"]
    assert replies == [f"answer {i} " + "a" * 40 for i in range(6)]  # each trained exactly once, in order
    assert tally.counts["windows"] == 3 and tally.cut["conversations_windowed"] == 1

    huge = [_turn("user", "hi"), _turn("assistant", "z" * 300), _turn("user", "more"), _turn("assistant", "ok")]
    tally = Tally()
    assert fit_windows(huge, 210, length, tally) == [[_turn("user", "more"), _turn("assistant", "ok")]]
    assert tally.cut["exchanges_too_long"] == 1


def test_neutralise_breaks_special_token_text(tokens: Tokens) -> None:
    text, count = tokens.neutralise("end with <|end|> then <s> and </s><|assistant|>")
    assert count == 4 and not tokens.has_special(text)
    assert f"<{ZWSP}|end|>" in text
    ids = tokens.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert not set(ids) & set(tokens.tokenizer.all_special_ids)


def _doc(kind: str, content: str, **meta: object) -> CorpusDocument:
    return CorpusDocument(
        id=1,
        source="vault",
        external_id=str(meta.get("path", "x")),
        kind=kind,
        title="Title",
        content=content,
        meta=dict(meta),
    )


def test_markdown_pieces_follow_headings_fit_and_say_where_they_came_from(tokens: Tokens) -> None:
    sections = "\n\n".join(f"## Part {i}\n\n" + f"Line {i}. " * 30 for i in range(8))
    content = "# Title\n\nIntro.\n\n```sh\n# not a heading\n```\n\n" + sections
    tally = Tally()
    out = pieces(_doc("runbook", content, path="runbooks/x.md"), content, "Title", tokens, 400, tally)
    assert len(out) > 2
    for number, (body, text, length) in enumerate(out):
        assert text.startswith("Source: vault/runbooks/x.md\nTitle: Title\n") and text.endswith(body)
        assert length == tokens.text_length(text) <= 400
        if number:
            assert "Section: Title > Part" in text and body.startswith("## Part")
    assert "# not a heading" in out[0][0]  # code fences are not split at their comments
    joined = "\n".join(body for body, _, _ in out)
    assert all(f"## Part {i}" in joined for i in range(8))


def test_python_pieces_split_at_functions_and_long_lines_are_cut(tokens: Tokens) -> None:
    functions = "\n\n".join(f"# helper {i}\ndef f{i}(x):\n    return x + {i}  # " + "pad " * 20 for i in range(10))
    content = "import os\n\n" + functions + "\n\nX = '" + "y" * 900 + "'\n"
    tally = Tally()
    out = pieces(_doc("code", content, path="tool.py", language="python"), content, "tool.py", tokens, 300, tally)
    assert all(length <= 300 for _, _, length in out)
    starts = [body.split("\n")[0] for body, _, _ in out]
    assert all(start.startswith(("import", "# helper", "X = ", "y")) for start in starts)
    assert tally.cut["split_long_units"] >= 1
    assert "".join(body for body, _, _ in out).count("y") == 900


def _row(document_id: int, key: str, order: int = 0) -> Row:
    return Row(document_id, f"s:{document_id}", "s", (order,), {"text": key}, key)


def test_dedup_keeps_the_oldest_of_exact_and_near_twins() -> None:
    words = " ".join(f"word{i}" for i in range(120))
    near = words.replace("word60", "changed")
    rows = [
        _row(3, near),
        _row(1, words),
        _row(2, "  " + words + " "),
        _row(4, "something else entirely"),
        _row(1, words.replace("word10", "other"), order=1),
    ]  # same document: never a near twin
    tally = Tally()
    kept = dedup(rows, DedupSettings(), tally)
    assert [(r.document_id, r.order) for r in kept] == [(1, (0,)), (4, (0,)), (1, (1,))]
    assert tally.dropped == {"exact_duplicate": 1, "near_duplicate": 1}


def test_verifier_accepts_the_builtin_template_and_render_marks_replies(tokens: Tokens) -> None:
    turns = [
        _turn("system", "be brief"),
        _turn("user", "hi"),
        _turn("assistant", "hello"),
        _turn("user", "and?"),
        _turn("assistant", "bye"),
    ]
    total, trained = verify_example(turns, tokens, "sft train example 0 (t:1)")
    assert trained == len("hello") + len("bye") + 2 and total > trained
    segments = render(turns, tokens)
    assert [s.text for s in segments if s.trained] == ["hello<|end|>", "bye<|end|>"]


@pytest.mark.parametrize(
    "template_change, message",
    [
        (
            lambda t: t.replace(
                "{%- generation -%}{{- message['content'] + '<|end|>' -}}{%- endgeneration -%}",
                "{{- message['content'] + '<|end|>' -}}{%- generation -%}{%- endgeneration -%}",
            ),
            "no token carries loss",
        ),
        (
            lambda t: t.replace(
                "message['content'] + '<|end|>' -}}{%- endgeneration -%}",
                "message['content'] -}}{%- endgeneration -%}{{- '<|end|>' -}}",
            ),
            "end-of-turn token",
        ),
        (
            lambda t: t.replace(
                "{{- '<|assistant|>\\n' -}}{%- generation -%}", "{%- generation -%}{{- '<|assistant|>\\n' -}}"
            ),
            "not the reply",
        ),
    ],
)
def test_verifier_fails_naming_the_example(tokens: Tokens, template_change, message: str) -> None:
    template = tokens.tokenizer.chat_template
    changed = template_change(template)
    assert changed != template
    tokens.tokenizer.chat_template = changed
    try:
        with pytest.raises(DatasetError, match=message) as error:
            verify_example([_turn("user", "hi"), _turn("assistant", "hello")], tokens, "sft train example 4 (t:9)")
        assert "sft train example 4 (t:9)" in str(error.value)
    finally:
        tokens.tokenizer.chat_template = template


def test_without_generation_blocks_the_mask_is_derived_from_growing_prefixes(tokens: Tokens) -> None:
    template = tokens.tokenizer.chat_template
    tokens.tokenizer.chat_template = template.replace("{%- generation -%}", "").replace("{%- endgeneration -%}", "")
    try:
        turns = [_turn("user", "hi"), _turn("assistant", "hello"), _turn("user", "and?"), _turn("assistant", "bye")]
        assert tokens.mask_method.value == "prefix"
        assert verify_example(turns, tokens, "sft train example 0 (t:1)")[1] == len("hello") + len("bye") + 2
        assert [s.text for s in render(turns, tokens) if s.trained] == ["hello<|end|>", "bye<|end|>"]
    finally:
        tokens.tokenizer.chat_template = template
    assert tokens.mask_method.value == "generation"


def test_tokenizer_fingerprint_covers_the_chat_template(tmp_path: Path, tokens: Tokens) -> None:
    import shutil

    from pipeline.base_model import tokenizer_fingerprint

    folder = Path(tokens.tokenizer.name_or_path)
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    assert tokenizer_fingerprint(copy) == tokenizer_fingerprint(folder)
    (copy / "chat_template.jinja").write_text("{{ messages }}", encoding="utf-8")
    assert tokenizer_fingerprint(copy) != tokenizer_fingerprint(folder)
