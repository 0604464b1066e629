"""The example corpus: formats as the demo and the connectors expect, a deterministic git
repository, and exactly the five planted secrets."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from pipeline.config import parse_config
from pipeline.examples import (
    create_example_repo,
    example_config_text,
    examples_dir,
    load_history,
    render_config,
)

EXAMPLES = examples_dir()


def _load(relative: str):
    return json.loads((EXAMPLES / relative).read_text(encoding="utf-8"))


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.mark.parametrize("path", sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*.json")))
def test_every_json_file_parses(path: str) -> None:
    _load(path)


def test_chat_jsonl() -> None:
    lines = (EXAMPLES / "chats/labelled.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 10
    assert Counter(row.get("label") for row in rows) == {"good": 6, "bad": 3, None: 1}
    for row in rows:
        roles = [m["role"] for m in row["messages"]]
        assert set(roles) <= {"system", "user", "assistant"} and roles[-1] == "assistant"


# --- ChatGPT export ------------------------------------------------------------------------


def _path_to_current(conversation: dict) -> list[str]:
    mapping, node, path = conversation["mapping"], conversation["current_node"], []
    while node is not None:
        path.append(node)
        node = mapping[node]["parent"]
    return path[::-1]


def _role(mapping: dict, node_id: str) -> str | None:
    message = mapping[node_id]["message"]
    return message["author"]["role"] if message else None


def test_chatgpt_export_shapes() -> None:
    conversations = _load("exports/chatgpt/conversations.json")
    assert len(conversations) == 12
    seen = Counter()
    for conv in conversations:
        mapping = conv["mapping"]
        assert conv["id"] == conv["conversation_id"]
        assert conv["default_model_slug"] == "gpt-4o" and conv["is_archived"] is False
        roots = [n for n in mapping.values() if n["parent"] is None]
        assert len(roots) == 1 and roots[0]["message"] is None
        hidden = mapping[roots[0]["children"][0]]["message"]
        assert hidden["author"]["role"] == "system" and hidden["content"]["parts"] == [""]
        assert hidden["metadata"]["is_visually_hidden_from_conversation"] is True
        for node_id, node in mapping.items():
            assert node["id"] == node_id
            for child in node["children"]:
                assert mapping[child]["parent"] == node_id
        path = _path_to_current(conv)
        assert path[0] == roots[0]["id"]
        if len(mapping) == 2:
            seen["empty"] += 1
        for node_id, node in mapping.items():
            kids = node["children"]
            roles = [_role(mapping, k) for k in kids]
            if roles == ["assistant", "assistant"] and _role(mapping, node_id) == "user":
                assert kids[1] in path and kids[0] not in path
                seen["regenerated"] += 1
            if roles == ["user", "user"]:
                assert kids[1] in path and kids[0] not in path
                assert all(_role(mapping, mapping[k]["children"][0]) == "assistant" for k in kids)
                seen["edited"] += 1
            message = node["message"]
            if not message:
                continue
            content = message["content"]
            if content["content_type"] == "code":
                assert message["recipient"] == "python" and content["language"] == "python"
                tool = mapping[kids[0]]["message"]
                assert tool["author"] == {"role": "tool", "name": "python", "metadata": {}}
                assert tool["content"]["content_type"] == "execution_output"
                seen["code"] += 1
            if content["content_type"] == "multimodal_text":
                kinds = [p["content_type"] if isinstance(p, dict) else "text" for p in content["parts"]]
                assert kinds == ["image_asset_pointer", "text"]
                seen["multimodal"] += 1
            if (
                message["create_time"] is None
                and message["author"]["role"] != "system"
                and content["content_type"] == "text"
            ):
                seen["null_time"] += 1
    assert seen["regenerated"] >= 3 and seen["edited"] == 1 and seen["code"] == 1
    assert seen["multimodal"] == 1 and seen["empty"] == 1 and seen["null_time"] >= 1


def test_chatgpt_feedback_points_at_both_sides_of_a_regeneration() -> None:
    conversations = {c["id"]: c for c in _load("exports/chatgpt/conversations.json")}
    feedback = _load("exports/chatgpt/message_feedback.json")
    kept = {}
    for item in feedback:
        conv = conversations[item["conversation_id"]]
        node = conv["mapping"][item["message_id"]]
        assert node["message"]["author"]["role"] == "assistant"
        kept[item["message_id"]] = (item["rating"], item["message_id"] in _path_to_current(conv))
    assert ("thumbsDown", False) in kept.values() and ("thumbsUp", True) in kept.values()
    down = next(i for i, (rating, on_path) in kept.items() if not on_path)
    conv = next(c for c in conversations.values() if down in c["mapping"])
    siblings = conv["mapping"][conv["mapping"][down]["parent"]]["children"]
    assert kept.get(siblings[1]) == ("thumbsUp", True)


# --- Claude export -------------------------------------------------------------------------


def test_claude_export_shapes() -> None:
    conversations = _load("exports/claude/conversations.json")
    assert len(conversations) == 12
    seen = Counter()
    for conv in conversations:
        assert conv["created_at"].endswith("Z") and conv["account"]["uuid"]
        senders = {m["sender"] for m in conv["chat_messages"]}
        assert senders <= {"human", "assistant"}
        seen["no_assistant"] += "assistant" not in senders
        for message in conv["chat_messages"]:
            types = [block["type"] for block in message["content"]]
            seen["empty"] += message["text"] == "" and message["content"] == []
            seen["attachment"] += any(a["extracted_content"] for a in message["attachments"])
            seen["tools"] += {"tool_use", "tool_result", "text"} <= set(types)
    assert seen["no_assistant"] == 1 and seen["empty"] == 1
    assert seen["attachment"] >= 2 and seen["tools"] == 1


# --- config --------------------------------------------------------------------------------


def test_example_config_loads_and_reference_copy_is_current(tmp_path: Path) -> None:
    text = example_config_text(tmp_path)
    config = parse_config(tomllib.loads(text), home=tmp_path, file=tmp_path / "plora.toml", check_paths=False)
    assert [s.name for s in config.sources] == ["chatgpt", "claude", "chats", "vault", "code"]
    for source in config.sources:
        expected = tmp_path / "netops-repo" if source.type == "git" else None
        assert source.path == expected or source.path.is_relative_to(EXAMPLES)
        assert source.path.exists() or source.type == "git"
    reference = (EXAMPLES / "plora.toml").read_text(encoding="utf-8")
    assert reference == render_config("examples"), "regenerate examples/plora.toml"


# --- the example git repository ------------------------------------------------------------


def test_example_repo_is_deterministic_and_ends_as_examples_netops(tmp_path: Path) -> None:
    first = create_example_repo(tmp_path / "a" / "netops-repo")
    second = create_example_repo(tmp_path / "b" / "netops-repo")
    head = _git(first, "rev-parse", "HEAD")
    assert head == _git(second, "rev-parse", "HEAD")
    assert _git(first, "status", "--porcelain") == ""

    tracked = sorted(_git(first, "ls-files").splitlines())
    on_disk = sorted(
        p.relative_to(EXAMPLES / "netops").as_posix()
        for p in (EXAMPLES / "netops").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and ".pytest_cache" not in p.parts
    )
    assert tracked == on_disk
    for path in tracked:
        assert (first / path).read_bytes() == (EXAMPLES / "netops" / path).read_bytes(), path

    history = load_history()
    assert int(_git(first, "rev-list", "--count", "HEAD")) == len(history) == 12
    authors = Counter(_git(first, "log", "--format=%ae").split())
    assert authors == {"sam@example.com": 10, "alex@example.com": 2}
    # the planted webhook arrives with the last commit and is still there at HEAD
    assert _git(first, "log", "--format=%H", "-S", "hooks.slack.com").split() == [head.strip()]

    # idempotent on the same repository, refuses anything else
    assert create_example_repo(first) == first
    other = tmp_path / "c" / "netops-repo"
    other.mkdir(parents=True)
    (other / "notes.txt").write_text("mine\n")
    with pytest.raises(FileExistsError):
        create_example_repo(other)
    assert sorted(p.name for p in other.parent.iterdir()) == ["netops-repo"]


# --- planted secrets -----------------------------------------------------------------------

CANARIES = {
    "aws": (r"AKIA[0-9A-Z]{16}", "exports/chatgpt/conversations.json"),
    "github": (r"ghp_[A-Za-z0-9]{36}", "vault/notes/meeting-2026-09-22-edge-sync.md"),
    "db_password": (r"DB_PASSWORD=\S+", "exports/claude/conversations.json"),
    "slack": (r"https://hooks\.slack\.com/services/T\w+/B\w+/\w+", "netops/cert_expiry.py"),
    "pem": (r"-----BEGIN [A-Z ]*PRIVATE KEY-----", "vault/runbooks/tls-certificate-renewal.md"),
}


def test_exactly_the_five_planted_secrets() -> None:
    found: dict[str, list[str]] = {name: [] for name in CANARIES}
    for path in sorted(EXAMPLES.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        for name, (pattern, _) in CANARIES.items():
            found[name] += [path.relative_to(EXAMPLES).as_posix()] * len(re.findall(pattern, text))
    assert found == {name: [where] for name, (_, where) in CANARIES.items()}
    listing = (EXAMPLES / "SECRETS.md").read_text(encoding="utf-8")
    assert all(where in listing for _, where in CANARIES.values())
