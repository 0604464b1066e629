"""Dataset snapshots built from a store filled by the real connectors (JSONL chats, the example
ChatGPT export with its branches and thumbs, the example vault and git repository), labelled
through pipeline.labels like a person would."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from pipeline.datasets import build_datasets, find_snapshot, list_snapshots, show_example
from pipeline.datasets.split import side
from pipeline.datasets.tokens import ZWSP
from pipeline.errors import UsageError
from pipeline.examples import create_example_repo
from pipeline.ingest import ingest
from pipeline.labels import set_label
from pipeline.snapshots import latest
from pipeline.workspace import open_workspace
from storage.models import DatasetSnapshot
from tests.conftest import EXAMPLES

HIGH_CPU = "chatgpt:3ad1f88e-b870-40ba-9a9a-c5e93703be84"  # "HighCPU alert too noisy" in the example export
SYSTEM = "You are Sam, an SRE. Answer briefly."
LONG_REPLY = "Check the BGP session state with birdc, then the interface counters, then the filters. " * 6
NEAR_TEXT = " ".join(f"s{i} check counters on r{i % 7} then drain" for i in range(16))


def _m(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def _chats() -> list[dict[str, Any]]:
    return [
        {
            "id": "good-multi",
            "label": "good",
            "messages": [
                _m("system", SYSTEM),
                _m("user", "Is AS65010 up?"),
                _m("assistant", "Let me look."),
                _m("tool", "birdc: AS65010 Established"),
                _m("assistant", "GOOD-REPLY-1: it is Established."),
                _m("user", "Since when?"),
                _m("assistant", "GOOD-REPLY-2: since 01:14."),
            ],
        },
        {
            "id": "bad-conv",
            "label": "bad",
            "messages": [_m("user", "What is anycast?"), _m("assistant", "BAD-CONV-REPLY: no idea.")],
        },
        {"id": "unlabelled", "messages": [_m("user", "Lunch?"), _m("assistant", "UNLABELLED-REPLY")]},
        {
            "id": "cut",
            "messages": [
                _m("user", "Drain the POP?"),
                _m("assistant", "KEPT-REPLY: yes, withdraw first."),
                _m("user", "And then?"),
                _m("assistant", "BAD-MIDDLE-REPLY: reboot everything."),
                _m("user", "Really?"),
                _m("assistant", "AFTER-BAD-REPLY: no."),
            ],
        },
        {
            "id": "corrected",
            "label": "good",
            "messages": [
                _m("system", SYSTEM),
                _m("user", "Which TTL before the move?"),
                _m("assistant", "FIRST-REPLY: 300."),
                _m("user", "And during?"),
                _m("assistant", "ORIGINAL-REPLY: TTL 0."),
                _m("user", "Thanks"),
            ],
        },
        {
            "id": "first-bad",
            "label": "good",
            "messages": [_m("user", "Restart BIRD?"), _m("assistant", "FIRST-BAD-REPLY: kill -9 it.")],
        },
        {
            "id": "special",
            "label": "good",
            "messages": [
                _m("user", "What does <|end|> mean in the log?"),
                _m("assistant", "It is a marker: <|end|> ends a turn."),
            ],
        },
        {
            "id": "long",
            "label": "good",
            "messages": [
                _m("system", SYSTEM),
                *[
                    m
                    for i in range(12)
                    for m in (_m("user", f"Question {i} about the edge?"), _m("assistant", f"LONG-{i}: " + LONG_REPLY))
                ],
            ],
        },
        {"id": "near", "label": "good", "messages": [_m("user", "Drain plan?"), _m("assistant", NEAR_TEXT)]},
    ]


def _twins() -> list[dict[str, Any]]:
    """A second JSONL source with an exact copy of one chat and a near copy of another."""
    chats = {chat["id"]: chat for chat in _chats()}
    near = json.loads(json.dumps(chats["near"]))
    near["id"] = "near-copy"
    near["messages"][1]["content"] = NEAR_TEXT.replace("s15 ", "t15 ")
    exact = dict(chats["good-multi"], id="good-copy")
    return [exact, near]


def _write_jsonl(path: Path, lines: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


CONFIG = """
[base_model]
name = "{model}"
quantization = "none"

[[sources]]
name = "chats"
type = "jsonl"
path = "{root}/chats.jsonl"

[[sources]]
name = "twins"
type = "jsonl"
path = "{root}/twins.jsonl"

[[sources]]
name = "chatgpt"
type = "chatgpt"
path = "{examples}/exports/chatgpt/conversations.json"

[[sources]]
name = "vault"
type = "markdown"
path = "{examples}/vault"
exclude = ["templates/**"]

[[sources]]
name = "code"
type = "git"
path = "{root}/netops-repo"
authors = ["sam@example.com"]
include = ["**/*.py", "**/*.md", "**/*.yaml", "**/*.yml", "Makefile"]

[profiles.work]
sources = ["chats", "twins", "chatgpt", "vault", "code"]
stages = ["sft", "dpo"]
eval_percent = 20
train = {{ max_length = 3072 }}

[profiles.prefs]
sources = ["chats", "chatgpt"]
stages = ["sft", "kto"]
eval_percent = 20
train = {{ max_length = 1024 }}
"""


def _make_home(root: Path, model_cache: Path, model: str = "builtin:tiny-llama") -> Path:
    home = root / "home"
    home.mkdir(parents=True)
    shutil.copytree(model_cache, home / "models" / "tiny-llama")
    if not model.startswith("builtin:"):  # a model folder of the home: there before the config names it
        shutil.copytree(model_cache, home / model)
    create_example_repo(root / "netops-repo")
    _write_jsonl(root / "chats.jsonl", _chats())
    _write_jsonl(root / "twins.jsonl", _twins())
    (home / "plora.toml").write_text(CONFIG.format(root=root, examples=EXAMPLES, model=model), encoding="utf-8")
    with open_workspace(home) as workspace:
        reports = ingest(workspace)
        assert all(report.error is None for report in reports.values()), reports
        set_label(workspace, "chats:cut", "good", position=1)
        set_label(workspace, "chats:cut", "bad", position=3)
        set_label(workspace, "chats:corrected", None, position=4, correction="CORRECTED-REPLY: keep 60s.")
        set_label(workspace, "chats:first-bad", "bad", position=1)
        set_label(workspace, HIGH_CPU, "bad", position=1)  # over the thumbs up that came with the export
        set_label(workspace, HIGH_CPU, "good", position=1, branch=1)  # the regenerated reply
    return home


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.base_model import ensure_builtin

    folder, _ = ensure_builtin(tmp_path_factory.mktemp("model-cache"))
    return folder


@pytest.fixture(scope="module")
def clean_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("PLORA_HOME", raising=False)
        patch.delenv("PLORA_STORE_URL", raising=False)
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, clean_env: None):
    """A home whose profiles were built once (tests below only read it)."""
    home = _make_home(tmp_path_factory.mktemp("built"), model_cache)
    with open_workspace(home) as workspace:
        work = build_datasets(workspace, "work")
        prefs = build_datasets(workspace, "prefs")
    return home, work, prefs


def _rows(snapshot) -> dict[str, list[dict[str, Any]]]:
    from datasets import load_from_disk

    data = load_from_disk(str(snapshot.path / "data"))
    return {split: data[split].to_list() for split in ("train", "eval")}


def _replies(rows: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for row in rows for m in row["messages"] if m["role"] == "assistant"]


def test_every_kind_loads_with_its_columns_and_metadata(built) -> None:
    from datasets import load_from_disk

    home, work, prefs = built
    assert set(work.snapshots) == {"sft", "text", "dpo"} and set(prefs.snapshots) == {"sft", "text", "kto"}
    columns = {
        "sft": ["messages", "source", "ref"],
        "text": ["text", "source", "ref"],
        "dpo": ["prompt", "chosen", "rejected", "source", "ref"],
        "kto": ["prompt", "completion", "label", "source", "ref"],
    }
    for snapshot in [*work.snapshots.values(), prefs.snapshots["kto"]]:
        assert snapshot.path.parent.parent == home / "datasets"
        assert snapshot.path == home / "datasets" / snapshot.kind / snapshot.fingerprint
        data = load_from_disk(str(snapshot.path / "data"))
        assert set(data) == {"train", "eval"}
        assert data["train"].column_names == columns[snapshot.kind]
        assert not list(snapshot.path.rglob("*.pkl")) and list(snapshot.path.rglob("*.arrow"))
        meta = snapshot.meta
        assert meta["rows"] == {"train": data["train"].num_rows, "eval": data["eval"].num_rows}
        assert meta["builder_version"] and meta["profile"] in ("work", "prefs") and meta["sources"]
        assert {"tokens", "labels", "redactions", "cut", "dropped", "counts", "settings", "documents"} <= meta.keys()
        assert meta["settings"]["max_length"] == (3072 if meta["profile"] == "work" else 1024)
        assert meta["settings"]["tokenizer_fingerprint"]
        assert 0 < meta["max_example_tokens"] <= meta["settings"]["max_length"]
        with open_workspace(home) as workspace:
            assert latest(workspace, meta["profile"], snapshot.kind) == snapshot
    assert work.snapshots["text"].meta["redactions"]  # the example vault and repo carry canary secrets
    assert work.snapshots["sft"].meta["labels"]["documents_bad"] >= 1


def test_sft_trains_only_on_wanted_replies(built) -> None:
    _, work, _ = built
    meta = work.snapshots["sft"].meta
    rows = _rows(work.snapshots["sft"])
    every = rows["train"] + rows["eval"]
    replies = _replies(every)
    for bad in (
        "BAD-CONV-REPLY",
        "BAD-MIDDLE-REPLY",
        "AFTER-BAD-REPLY",
        "FIRST-BAD-REPLY",
        "ORIGINAL-REPLY",
        "UNLABELLED-REPLY",
    ):
        assert not any(bad in reply for reply in replies), bad
    assert any(reply.startswith("KEPT-REPLY") for reply in replies)  # the cut keeps what came before
    assert any(reply.startswith("CORRECTED-REPLY") for reply in replies)  # the correction replaces it
    by_ref = {row["ref"]: row for row in every}
    good = by_ref["chats:good-multi"]["messages"]
    assert [m["role"] for m in good] == ["system", "user", "assistant", "user", "assistant"]  # tool dropped, merged
    assert good[2]["content"] == "Let me look.\n\nGOOD-REPLY-1: it is Established."
    assert by_ref["chats:corrected"]["messages"][-1]["content"].startswith("CORRECTED-REPLY")  # no trailing user
    assert "chats:bad-conv" not in by_ref and "chats:unlabelled" not in by_ref and "chats:first-bad" not in by_ref
    assert meta["dropped"]["conversation_bad"] >= 1 and meta["dropped"]["unlabelled"] >= 1
    assert meta["dropped"]["bad_first_reply"] == 1 and meta["cut"]["before_bad_reply"] >= 1
    assert meta["counts"]["corrections_applied"] == 1 and meta["cut"]["tool_messages"] >= 1

    # A bad kept reply with a regenerated sibling labelled good: the sibling ends the example, and
    # the same two replies make a DPO pair.
    assert meta["counts"]["good_siblings_substituted"] == 1
    high_cpu = by_ref[HIGH_CPU]["messages"]
    dpo = [row for split in _rows(work.snapshots["dpo"]).values() for row in split if row["ref"] == HIGH_CPU]
    assert len(dpo) == 1 and high_cpu[-1] == dpo[0]["chosen"][0] and high_cpu[:-1] == dpo[0]["prompt"]
    assert dpo[0]["rejected"][0]["content"] not in _replies(every)


def test_long_conversations_become_windows_that_fit(built) -> None:
    _, work, _ = built
    snapshot = work.snapshots["sft"]
    rows = _rows(snapshot)
    windows = [row for split in rows.values() for row in split if row["ref"] == "chats:long"]
    assert len(windows) > 1 and snapshot.meta["cut"]["conversations_windowed"] >= 1
    seen: list[str] = []
    for window in windows:
        messages = window["messages"]
        assert messages[0] == {"role": "system", "content": SYSTEM} and messages[1]["role"] == "user"
        assert messages[-1]["role"] == "assistant"
        seen += [m["content"].split(":")[0] for m in messages if m["role"] == "assistant"]
    assert seen == [f"LONG-{i}" for i in range(12)]  # every reply once, in order
    assert snapshot.meta["max_example_tokens"] <= 3072


def test_special_token_text_is_neutralised(built) -> None:
    _, work, _ = built
    rows = _rows(work.snapshots["sft"])
    special = next(row for split in rows.values() for row in split if row["ref"] == "chats:special")
    text = json.dumps(special["messages"], ensure_ascii=False)
    assert "<|end|>" not in text and f"<{ZWSP}|end|>" in text
    assert work.snapshots["sft"].meta["counts"]["neutralised_special_tokens"] >= 2


def test_duplicates_across_sources_are_dropped(built) -> None:
    _, work, _ = built
    meta = work.snapshots["sft"].meta
    refs = {row["ref"] for split in _rows(work.snapshots["sft"]).values() for row in split}
    assert {"chats:good-multi", "chats:near"} <= refs
    assert "twins:good-copy" not in refs and "twins:near-copy" not in refs
    assert meta["dropped"]["exact_duplicate"] >= 1 and meta["dropped"]["near_duplicate"] >= 1


def test_text_pieces_fit_and_name_their_origin(built) -> None:
    _, work, _ = built
    snapshot = work.snapshots["text"]
    rows = _rows(snapshot)
    every = rows["train"] + rows["eval"]
    assert {row["source"] for row in every} == {"vault", "code"}
    assert all(row["text"].startswith("Source: ") for row in every)
    assert any(
        row["text"].startswith("Source: vault/runbooks/bgp-session-down.md\nTitle: BGP session down\n") for row in every
    )
    assert any(row["text"].startswith("Source: code/bgp_check.py\nLanguage: python\n") for row in every)
    assert any(row["text"].startswith("Source: code commit ") for row in every)
    assert snapshot.meta["max_example_tokens"] <= 3072 and rows["eval"]


def test_note_sections_are_asked_as_chats(built) -> None:
    _, work, _ = built
    rows = _rows(work.snapshots["sft"])
    asked = [row for split in ("train", "eval") for row in rows[split] if row["source"] == "vault"]
    assert asked and work.snapshots["sft"].meta["counts"]["note_questions"] == len(asked)
    questions = {row["messages"][0]["content"]: row["messages"][1]["content"] for row in asked}
    assert all(len(row["messages"]) == 2 for row in asked)
    reply = questions["What do my notes say about BGP session down > 1. Confirm what is actually down?"]
    assert reply.startswith("1. Open the *Edge / BGP* dashboard") and "sudo birdc show protocols" in reply
    assert not any(r.lstrip().startswith("#") for r in questions.values())  # the heading is the question
    intro = questions["What do my notes say about BGP session down?"]  # the text under the title
    assert intro.startswith("Fires when a BIRD protocol") and "## " not in intro
    every = rows["train"] + rows["eval"]
    assert not any(row["source"] == "code" for row in every)  # code and commits are not asked about
    # the same side of the eval split as the note's text rows (split by document)
    text = _rows(work.snapshots["text"])
    for split in ("train", "eval"):
        notes = {row["ref"] for row in text[split] if row["source"] == "vault"}
        assert {row["ref"] for row in rows[split] if row["source"] == "vault"} <= notes


def test_note_questions_fit_max_length_in_parts(tmp_path: Path, model_cache: Path, clean_env: None) -> None:
    home = _make_home(tmp_path, model_cache)
    text = (home / "plora.toml").read_text()
    (home / "plora.toml").write_text(text + '\n[profiles.short]\nsources = ["vault"]\ntrain = { max_length = 256 }\n')
    with open_workspace(home) as workspace:
        snapshot = build_datasets(workspace, "short").snapshots["sft"]
    rows = _rows(snapshot)
    asked = rows["train"] + rows["eval"]
    assert snapshot.meta["max_example_tokens"] <= 256 and snapshot.meta["cut"]["note_question_parts"] > 0
    parts = [
        row["messages"][1]["content"]
        for row in asked
        if "1. Confirm what is actually down?" in row["messages"][0]["content"]
    ]
    assert len(parts) > 1 and any(row["messages"][0]["content"].endswith("(part 2)") for row in asked)
    whole = (EXAMPLES / "vault/runbooks/bgp-session-down.md").read_text()
    assert all(part.split("\n")[0] in whole for part in parts)  # verbatim slices of the section


def test_corrections_and_sibling_replies_make_dpo_pairs(built) -> None:
    _, work, _ = built
    snapshot = work.snapshots["dpo"]
    rows = _rows(snapshot)
    every = rows["train"] + rows["eval"]
    corrected = next(row for row in every if row["ref"] == "chats:corrected")
    assert corrected["chosen"] == [{"role": "assistant", "content": "CORRECTED-REPLY: keep 60s."}]
    assert corrected["rejected"] == [{"role": "assistant", "content": "ORIGINAL-REPLY: TTL 0."}]
    assert [m["role"] for m in corrected["prompt"]] == ["system", "user", "assistant", "user"]  # full history
    assert corrected["prompt"][2]["content"] == "FIRST-REPLY: 300."
    sibling = next(row for row in every if row["ref"].startswith("chatgpt:efb0a5ce"))
    assert sibling["chosen"][0]["content"].startswith("It leaked because a limit is a circuit breaker")
    assert sibling["rejected"][0]["content"].startswith("Max-prefix limits in BIRD")
    assert sibling["prompt"][-1]["role"] == "user"
    assert snapshot.meta["counts"]["pairs_from_corrections"] == 1
    assert snapshot.meta["counts"]["pairs_from_siblings"] >= 1


def test_kto_rows_cover_every_labelled_reply(built) -> None:
    _, _, prefs = built
    rows = _rows(prefs.snapshots["kto"])
    every = rows["train"] + rows["eval"]
    labels = {(row["ref"], row["completion"][0]["content"].split(":")[0]): row["label"] for row in every}
    assert labels[("chats:cut", "KEPT-REPLY")] is True and labels[("chats:cut", "BAD-MIDDLE-REPLY")] is False
    assert labels[("chats:corrected", "ORIGINAL-REPLY")] is False
    assert labels[("chats:corrected", "CORRECTED-REPLY")] is True
    assert labels[("chats:bad-conv", "BAD-CONV-REPLY")] is False  # the last reply of a conversation labelled bad
    assert labels[("chats:good-multi", "GOOD-REPLY-2")] is True
    assert all(row["prompt"][-1]["role"] == "user" for row in every)


def test_rebuilding_an_unchanged_store_writes_nothing(built) -> None:
    home, work, _ = built

    def state() -> tuple[list[tuple[str, int]], int]:
        files = sorted((str(p), p.stat().st_mtime_ns) for p in (home / "datasets").rglob("*"))
        with open_workspace(home) as workspace, workspace.store.read() as session:
            return files, session.scalar(select(func.count()).select_from(DatasetSnapshot))

    before = state()
    with open_workspace(home) as workspace:
        again = build_datasets(workspace, "work")
    assert again.new == {"sft": False, "text": False, "dpo": False}
    fingerprints = {kind: snapshot.fingerprint for kind, snapshot in work.snapshots.items()}
    assert {kind: snapshot.fingerprint for kind, snapshot in again.snapshots.items()} == fingerprints
    assert state() == before


def test_show_and_find_by_prefix(built) -> None:
    home, work, _ = built
    sft = work.snapshots["sft"]
    with open_workspace(home) as workspace:
        assert find_snapshot(workspace, sft.fingerprint[:10]) == sft
        with pytest.raises(UsageError, match="no dataset snapshot"):
            find_snapshot(workspace, "zzzz")
        view = show_example(workspace, sft, 0)
        with pytest.raises(UsageError, match="--example must be"):
            show_example(workspace, sft, 10_000)
        listed = list_snapshots(workspace)
    assert view.segments and any(s.trained for s in view.segments) and any(not s.trained for s in view.segments)
    trained = "".join(s.text for s in view.segments if s.trained)
    replies = [m["content"] for m in view.row["messages"] if m["role"] == "assistant"]
    assert trained == "".join(reply + "<|end|>" for reply in replies)
    assert {row["fingerprint"] for row in listed} >= {s.fingerprint for s in work.snapshots.values()}
    assert all(row["latest"] for row in listed)


def test_eval_split_stays_put_when_fifty_documents_arrive(tmp_path: Path, model_cache: Path, clean_env: None) -> None:
    home = _make_home(tmp_path, model_cache)
    with open_workspace(home) as workspace:
        first = build_datasets(workspace, "work")
    before = {
        kind: {split: {row["ref"] for row in rows} for split, rows in _rows(s).items()}
        for kind, s in first.snapshots.items()
    }
    assert before["text"]["eval"] and before["text"]["train"]
    new_chats = [
        {
            "id": f"new-{i}",
            "label": "good",
            "messages": [
                _m("user", f"New question number {i} about prefix {i}.0.0.0/8?"),
                _m("assistant", f"Answer {i}."),
            ],
        }
        for i in range(50)
    ]
    _write_jsonl(tmp_path / "chats.jsonl", _chats() + new_chats)
    with open_workspace(home) as workspace:
        assert ingest(workspace, ["chats"])["chats"].added == 50
        second = build_datasets(workspace, "work")
    after = {
        kind: {split: {row["ref"] for row in rows} for split, rows in _rows(s).items()}
        for kind, s in second.snapshots.items()
    }
    assert second.new["sft"] and second.snapshots["sft"].fingerprint != first.snapshots["sft"].fingerprint
    for kind in before:
        for split in ("train", "eval"):
            assert before[kind][split] <= after[kind][split], (kind, split)  # nothing moved or vanished
    added = after["sft"]["train"] | after["sft"]["eval"]
    assert sum(ref.startswith("chats:new-") for ref in added) == 50
    assert all(side(ref, 20) == split for split in ("train", "eval") for ref in after["sft"][split])


def test_latest_follows_the_store_back_and_forth(tmp_path: Path, model_cache: Path, clean_env: None) -> None:
    home = _make_home(tmp_path, model_cache)
    with open_workspace(home) as workspace:
        first = build_datasets(workspace, "prefs").snapshots["kto"]
        set_label(workspace, "chats:special", "bad", position=1)
        second = build_datasets(workspace, "prefs").snapshots["kto"]
        assert second.fingerprint != first.fingerprint and latest(workspace, "prefs", "kto") == second
        set_label(workspace, "chats:special", "clear", position=1)
        third = build_datasets(workspace, "prefs")
        assert third.snapshots["kto"].fingerprint == first.fingerprint and not third.new["kto"]
        assert latest(workspace, "prefs", "kto") == first  # the older snapshot is current again


def test_empty_kinds_are_still_snapshots(tmp_path: Path, model_cache: Path, clean_env: None) -> None:
    home = _make_home(tmp_path, model_cache)
    text = (home / "plora.toml").read_text()
    (home / "plora.toml").write_text(
        text + '\n[profiles.notes]\nsources = ["vault"]\nstages = ["sft", "dpo"]\nnote_questions = false\n'
    )
    with open_workspace(home) as workspace:
        result = build_datasets(workspace, "notes")
        for kind in ("sft", "dpo"):
            assert result.snapshots[kind].rows == {"train": 0, "eval": 0}
            assert latest(workspace, "notes", kind) == result.snapshots[kind]
            assert result.snapshots[kind].load()["train"].num_rows == 0
        assert sum(result.snapshots["text"].rows.values()) > 0


def _home_with_template(tmp_path: Path, model_cache: Path, change: Any) -> Path:
    home = _make_home(tmp_path, model_cache, model="no-masks")
    model = home / "no-masks"
    template = (model / "chat_template.jinja").read_text(encoding="utf-8")
    changed = change(template)
    assert changed != template
    (model / "chat_template.jinja").write_text(changed, encoding="utf-8")
    return home


def test_a_template_without_generation_blocks_builds_with_masks_from_growing_prefixes(
    tmp_path: Path, model_cache: Path, clean_env: None
) -> None:
    home = _home_with_template(
        tmp_path, model_cache, lambda t: t.replace("{%- generation -%}", "").replace("{%- endgeneration -%}", "")
    )
    with open_workspace(home) as workspace:
        sft = build_datasets(workspace, "work").snapshots["sft"]
    assert sft.meta["settings"]["assistant_mask"]["method"] == "prefix"
    assert sft.rows["train"] > 0 and sft.meta["trained_tokens"]["train"] > 0


def test_a_template_nothing_can_mask_fails_the_build_naming_the_model(
    tmp_path: Path, model_cache: Path, clean_env: None
) -> None:
    from pipeline.tokenization import AssistantMaskError

    home = _home_with_template(  # no generation blocks, and replies end with plain newlines, no special token
        tmp_path,
        model_cache,
        lambda t: t.replace(
            "{%- generation -%}{{- message['content'] + '<|end|>' -}}{%- endgeneration -%}",
            "{{- message['content'] + '\\n\\n' -}}",
        ),
    )
    with open_workspace(home) as workspace, pytest.raises(AssistantMaskError) as error:
        build_datasets(workspace, "work")
    message = str(error.value)
    assert message.startswith("base model 'no-masks': can't tell which tokens")
    assert "not ended by a special token" in message and "{% generation %}" in message
    assert not (home / "datasets" / "sft").exists() or not any((home / "datasets" / "sft").iterdir())


def test_a_new_masking_method_builds_anew_and_is_recorded(
    tmp_path: Path, model_cache: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.tokenization import ChatTemplate

    home = _make_home(tmp_path, model_cache)
    with open_workspace(home) as workspace:
        first = build_datasets(workspace, "work")
        assert first.snapshots["sft"].meta["settings"]["assistant_mask"]["method"] == "generation"
        assert not build_datasets(workspace, "work").new["sft"]  # unchanged: reused
        real = ChatTemplate.describe
        monkeypatch.setattr(ChatTemplate, "describe", lambda self: {**real(self), "method": "prefix"})
        second = build_datasets(workspace, "work")
    assert second.new["sft"] and second.snapshots["sft"].fingerprint != first.snapshots["sft"].fingerprint
    assert second.snapshots["sft"].meta["settings"]["assistant_mask"]["method"] == "prefix"
    assert second.snapshots["sft"].meta["inputs_key"] != first.snapshots["sft"].meta["inputs_key"]


def test_trl_trainers_accept_each_snapshot(built, tmp_path: Path) -> None:
    from pipeline.base_model import import_bitsandbytes, load_base

    import_bitsandbytes()
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer, SFTConfig, SFTTrainer

    home, work, prefs = built
    base = load_base("builtin:tiny-llama", home=home, quantization="none", double_quant=False)
    common = {
        "max_steps": 1,
        "per_device_train_batch_size": 2,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "bf16": False,
        "max_length": 3072,
        "logging_steps": 1,
    }

    sft = work.snapshots["sft"]
    trainer = SFTTrainer(
        model=base.model,
        processing_class=base.tokenizer,
        train_dataset=sft.load()["train"],
        args=SFTConfig(output_dir=str(tmp_path / "sft"), assistant_only_loss=True, packing=False, **common),
    )
    processed = trainer.train_dataset
    assert {"input_ids", "labels"} <= set(processed.column_names)
    assert processed.num_rows == sft.rows["train"]
    trained = sum(sum(label != -100 for label in labels) for labels in processed["labels"])
    assert trained == sft.meta["trained_tokens"]["train"]  # TRL's mask and the verifier's agree
    assert sum(len(ids) for ids in processed["input_ids"]) == sft.meta["tokens"]["train"]

    text = work.snapshots["text"].load()["train"]
    trainer = SFTTrainer(
        model=base.model,
        processing_class=base.tokenizer,
        train_dataset=text,
        args=SFTConfig(output_dir=str(tmp_path / "text"), packing=True, **common),
    )
    assert {"input_ids", "seq_lengths"} <= set(trainer.train_dataset.column_names)
    assert max(map(len, trainer.train_dataset["input_ids"])) <= 3072

    dpo = work.snapshots["dpo"].load()["train"]
    assert dpo.num_rows >= 1
    trainer = DPOTrainer(
        model=base.model,
        processing_class=base.tokenizer,
        train_dataset=dpo,
        args=DPOConfig(output_dir=str(tmp_path / "dpo"), **common),
    )
    assert {"prompt_ids", "chosen_ids", "rejected_ids"} <= set(trainer.train_dataset.column_names)
    trainer.train()

    kto = prefs.snapshots["kto"].load()["train"]
    assert len(set(kto["label"])) == 2
    trainer = KTOTrainer(
        model=base.model,
        processing_class=base.tokenizer,
        train_dataset=kto,
        args=KTOConfig(output_dir=str(tmp_path / "kto"), **common),
    )
    assert {"prompt_ids", "completion_ids", "label"} <= set(trainer.train_dataset.column_names)
    trainer.train()


# --- an unchanged store is not rebuilt --------------------------------------------------------------


class _Reads:
    """Counts the builds that read the corpus (a skipped build reads none)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import pipeline.datasets as datasets

        self.count = 0
        real = datasets.load_corpus

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(datasets, "load_corpus", counted)

    def take(self) -> int:
        count, self.count = self.count, 0
        return count


def _fingerprints(result) -> dict[str, str]:
    return {kind: snapshot.fingerprint for kind, snapshot in result.snapshots.items()}


def _build(home: Path, profile: str = "prefs", **kwargs: Any):
    with open_workspace(home) as workspace:
        return build_datasets(workspace, profile, **kwargs)


def _row_keys(home: Path, profile: str) -> dict[str, str | None]:
    with open_workspace(home) as workspace, workspace.store.read() as session:
        rows = session.scalars(
            select(DatasetSnapshot).where(DatasetSnapshot.profile == profile).order_by(DatasetSnapshot.id)
        ).all()
        return {row.kind: row.meta.get("inputs_key") for row in rows}  # the last row of a kind is its latest


def test_an_unchanged_store_is_not_rebuilt(
    tmp_path: Path, model_cache: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _make_home(tmp_path, model_cache)
    reads = _Reads(monkeypatch)
    first = _build(home)
    assert reads.take() == 1 and all(first.new.values())
    keys = {snapshot.meta["inputs_key"] for snapshot in first.snapshots.values()}
    assert len(keys) == 1 and set(_row_keys(home, "prefs").values()) == keys
    assert all(snapshot.meta["files"] for snapshot in first.snapshots.values())

    files = sorted((str(p), p.stat().st_mtime_ns) for p in (home / "datasets").rglob("*"))
    again = _build(home)
    assert reads.take() == 0  # nothing built: the corpus was not even read
    assert again.new == {"sft": False, "text": False, "kto": False}
    assert again.snapshots == first.snapshots
    assert again.as_dict() == {
        "profile": "prefs",
        "warnings": first.as_dict()["warnings"],  # what max_length cost, said again
        "snapshots": {  # the --json document: same keys
            kind: {**row, "new": False} for kind, row in first.as_dict()["snapshots"].items()
        },
    }
    assert sorted((str(p), p.stat().st_mtime_ns) for p in (home / "datasets").rglob("*")) == files

    forced = _build(home, force=True)  # --force builds anyway: same rows, nothing written
    assert reads.take() == 1 and _fingerprints(forced) == _fingerprints(first) and not any(forced.new.values())

    # a config change the datasets don't read (LoRA rank) is no reason to rebuild
    config = home / "plora.toml"
    config.write_text(
        config.read_text().replace("[profiles.prefs]\n", "[profiles.prefs]\nlora = { r = 4, alpha = 8 }\n"),
        encoding="utf-8",
    )
    assert not any(_build(home).new.values()) and reads.take() == 0


def test_each_kind_of_change_rebuilds(
    tmp_path: Path, model_cache: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _make_home(tmp_path, model_cache)
    reads = _Reads(monkeypatch)
    built = _build(home)
    assert reads.take() == 1

    def rebuilt() -> Any:
        result = _build(home)
        assert reads.take() == 1, "a change must rebuild"
        unchanged = _build(home)
        assert reads.take() == 0 and not any(unchanged.new.values()), "then an unchanged store must not"
        assert _fingerprints(unchanged) == _fingerprints(result)
        return result

    # a new document
    _write_jsonl(
        tmp_path / "chats.jsonl",
        [
            *_chats(),
            {
                "id": "brand-new",
                "label": "good",
                "messages": [_m("user", "Is the new POP live?"), _m("assistant", "NEW-REPLY: yes, since noon.")],
            },
        ],
    )
    with open_workspace(home) as workspace:
        assert ingest(workspace, ["chats"])["chats"].added == 1
    result = rebuilt()
    assert result.new["sft"] and "chats:brand-new" in {
        r["ref"] for rows in _rows(result.snapshots["sft"]).values() for r in rows
    }

    # a deleted document
    _write_jsonl(tmp_path / "chats.jsonl", _chats())
    with open_workspace(home) as workspace:
        assert ingest(workspace, ["chats"])["chats"].deleted == 1
    result = rebuilt()
    assert _fingerprints(result)["sft"] == _fingerprints(built)["sft"] and not result.new["sft"]

    # a label, then the same label cleared: the rows come back to the first build's
    with open_workspace(home) as workspace:
        set_label(workspace, "chats:special", "bad", position=1)
    labelled = rebuilt()
    assert labelled.new["kto"] and labelled.snapshots["kto"].fingerprint != built.snapshots["kto"].fingerprint
    with open_workspace(home) as workspace:
        set_label(workspace, "chats:special", "clear", position=1)
    cleared = rebuilt()  # the old snapshots again, now carrying today's key: the next build is skipped
    assert _fingerprints(cleared) == _fingerprints(built) and not any(cleared.new.values())

    # a label that went stale: its message's text changed at the source
    stale_chats = _chats()
    stale_chats[3]["messages"][3]["content"] = "BAD-MIDDLE-REPLY: reboot only the edge."
    _write_jsonl(tmp_path / "chats.jsonl", stale_chats)
    with open_workspace(home) as workspace:
        assert ingest(workspace, ["chats"])["chats"].updated == 1
    stale = rebuilt()
    assert stale.snapshots["kto"].meta["labels"]["stale_ignored"] == 1
    _write_jsonl(tmp_path / "chats.jsonl", _chats())
    with open_workspace(home) as workspace:
        ingest(workspace, ["chats"])
    rebuilt()

    # profile settings: eval_percent, max_length, include_unlabelled, stages
    config = home / "plora.toml"
    original = config.read_text()
    prefs = original.index("[profiles.prefs]")
    for old, new in (
        ("eval_percent = 20", "eval_percent = 40"),
        ("max_length = 1024", "max_length = 512"),
        ("eval_percent = 20", "eval_percent = 20\ninclude_unlabelled = true"),
        ('stages = ["sft", "kto"]', 'stages = ["sft", "dpo"]'),
    ):
        config.write_text(original[:prefs] + original[prefs:].replace(old, new, 1), encoding="utf-8")
        result = rebuilt()
        assert result.new["sft"] or result.new.get("dpo"), (old, new)
    config.write_text(original, encoding="utf-8")
    assert _fingerprints(rebuilt()) == _fingerprints(built)

    # a snapshot folder deleted, or one of its files changed: rebuilt, and only that one written
    text = built.snapshots["text"].path
    shutil.rmtree(text)
    result = rebuilt()
    assert result.new == {"sft": False, "text": True, "kto": False} and (text / "data").is_dir()
    (arrow,) = (built.snapshots["kto"].path / "data" / "train").glob("*.arrow")
    arrow.write_bytes(arrow.read_bytes()[:-8])
    result = rebuilt()
    assert result.new == {"sft": False, "text": False, "kto": True}
    assert _rows(result.snapshots["kto"]) == _rows(built.snapshots["kto"])


def test_the_base_tokenizer_and_the_builder_are_inputs(
    tmp_path: Path, model_cache: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.datasets import inputs

    home = _make_home(tmp_path, model_cache, model="my-model")  # with its copy of the model in home/my-model
    reads = _Reads(monkeypatch)
    first = _build(home)
    assert reads.take() == 1 and not any(_build(home).new.values()) and reads.take() == 0

    # the base model's tokenizer files change under the same name (a comment in its chat template)
    template = home / "my-model" / "chat_template.jinja"
    template.write_text(template.read_text(encoding="utf-8") + "{# edited #}", encoding="utf-8")
    second = _build(home)
    assert reads.take() == 1
    assert (
        second.snapshots["sft"].meta["settings"]["tokenizer_fingerprint"]
        != first.snapshots["sft"].meta["settings"]["tokenizer_fingerprint"]
    )
    assert not any(_build(home).new.values()) and reads.take() == 0

    # the builder's code (or BUILDER_VERSION, which it covers)
    monkeypatch.setattr(inputs, "code_version", lambda: "an edited builder")
    assert _fingerprints(_build(home)) == _fingerprints(second) and reads.take() == 1
    assert not any(_build(home).new.values()) and reads.take() == 0
