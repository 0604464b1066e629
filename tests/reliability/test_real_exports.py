"""Issue 18's findings on real exports, each as a small export of the same shape: ChatGPT thumbs
whose ``conversation_id`` is 32 hex digits without dashes (older exports), a thumb for a message
that isn't in the export, and tool / plugin calls (assistant messages to a ``recipient`` other than
``all``) that must be tool turns, not reply text that SFT would train on."""

from __future__ import annotations

import uuid
from pathlib import Path

from connectors.records import Record, Skip
from pipeline.datasets.chat import ROLES
from tests.connectors.test_chatgpt import msg, node, read, write_export

CONVERSATION = str(uuid.UUID(int=0x1B2C3D4E5F60718293A4B5C6D7E8F901))
ASSISTANT = [str(uuid.UUID(int=n)) for n in range(1, 5)]


def conversation() -> dict:
    call = {"content_type": "code", "language": "json", "text": '{"query": "nginx 502 upstream", "recency": 7}'}
    result = {"content_type": "tether_browsing_display", "result": "nginx docs: upstream timed out ..."}
    mapping = {
        "root": node("root", None, ["u1"]),
        "u1": node("u1", "root", [ASSISTANT[0]], msg("u1", "user", "Why does nginx return 502?")),
        ASSISTANT[0]: node(
            ASSISTANT[0], "u1", ["t1"], msg(ASSISTANT[0], "assistant", content=call, recipient="browser")
        ),
        "t1": node("t1", ASSISTANT[0], [ASSISTANT[1]], msg("t1", "tool", content=result, name="browser")),
        ASSISTANT[1]: node(
            ASSISTANT[1],
            "t1",
            ["u2"],
            msg(ASSISTANT[1], "assistant", "The upstream timed out; raise proxy_read_timeout."),
        ),
        "u2": node("u2", ASSISTANT[1], [ASSISTANT[2]], msg("u2", "user", "And with a plugin?")),
        ASSISTANT[2]: node(
            ASSISTANT[2],
            "u2",
            [ASSISTANT[3]],
            msg(ASSISTANT[2], "assistant", '{"site": "status.example.com"}', recipient="uptime_plugin.check"),
        ),
        ASSISTANT[3]: node(ASSISTANT[3], ASSISTANT[2], [], msg(ASSISTANT[3], "assistant", "The site is up.")),
    }
    return {"id": CONVERSATION, "title": "502", "mapping": mapping, "current_node": ASSISTANT[3]}


def test_thumbs_match_either_id_form_and_unmatched_ones_are_skips(tmp_path: Path) -> None:
    dashless = uuid.UUID(CONVERSATION).hex
    feedback = [
        {"conversation_id": dashless, "message_id": ASSISTANT[1], "rating": "thumbsUp"},  # older export
        {"conversation_id": CONVERSATION.upper(), "message_id": ASSISTANT[3].replace("-", ""), "rating": "thumbsDown"},
        {"conversation_id": dashless, "message_id": str(uuid.UUID(int=99)), "rating": "thumbsUp"},  # no such message
        {"conversation_id": uuid.UUID(int=7).hex, "message_id": ASSISTANT[1], "rating": "thumbsDown"},  # nor chat
    ]
    items = read(write_export(tmp_path, [conversation()], feedback=feedback))
    [record] = [item for item in items if isinstance(item, Record)]
    assert {(label.message_external_id, label.value) for label in record.labels} == {
        (ASSISTANT[1], "good"),
        (ASSISTANT[3], "bad"),
    }
    skips = [item for item in items if isinstance(item, Skip)]
    assert len(skips) == 2
    assert all("message_feedback.json" in skip.item and "is not in conversations.json" in skip.reason for skip in skips)
    assert {skip.reason.split("(conversation ")[1].split(",")[0] for skip in skips} == {
        dashless,
        uuid.UUID(int=7).hex,
    }


def test_tool_and_plugin_calls_are_tool_turns_not_reply_text(tmp_path: Path) -> None:
    [record] = [item for item in read(write_export(tmp_path, [conversation()])) if isinstance(item, Record)]
    roles = {message.external_id: message.role for message in record.messages}
    assert roles[ASSISTANT[0]] == "tool" and roles[ASSISTANT[2]] == "tool"  # the calls
    assert roles[ASSISTANT[1]] == "assistant" and roles[ASSISTANT[3]] == "assistant"  # the replies
    calls = [m for m in record.messages if m.external_id in (ASSISTANT[0], ASSISTANT[2])]
    assert all(m.metadata.get("tool_call") == "true" and m.metadata.get("recipient") for m in calls)
    # what SFT trains on: assistant turns (tool turns are dropped, pipeline.datasets.chat): replies only
    assert "tool" not in ROLES
    targets = [m.content for m in record.messages if m.role == "assistant"]
    assert targets == ["The upstream timed out; raise proxy_read_timeout.", "The site is up."]


def test_notes_of_a_source_that_is_a_runbooks_folder_are_runbooks(tmp_path: Path) -> None:
    from connectors import markdown
    from connectors.settings import MarkdownSource

    for root in (tmp_path / "Runbooks", tmp_path / "vault"):
        (root / "deep").mkdir(parents=True)
        (root / "restart.md").write_text("# Restart nginx\n\n1. systemctl restart nginx\n", encoding="utf-8")
        (root / "deep" / "dns.md").write_text("# Flush DNS\n\nresolvectl flush-caches\n", encoding="utf-8")
    kinds = {}
    for root in (tmp_path / "Runbooks", tmp_path / "vault"):
        settings = MarkdownSource(name="notes", type="markdown", path=root)
        kinds[root.name] = {
            item.external_id: item.kind for item in markdown.read(settings, None) if isinstance(item, Record)
        }
    assert kinds["Runbooks"] == {"restart.md": "runbook", "deep/dns.md": "runbook"}
    assert kinds["vault"] == {"restart.md": "note", "deep/dns.md": "note"}


def test_the_build_summary_says_what_max_length_cost_and_the_fix(tmp_path: Path, cli) -> None:
    home = tmp_path / "home"
    assert cli("init", "--example", "--home", home).code == 0
    assert cli("ingest", "--home", home).code == 0
    built = cli("datasets", "build", "--home", home, "--json")
    assert built.code == 0, built.stderr
    warnings = built.json()["warnings"]
    assert [line.split(":")[0] for line in warnings] == ["sft", "dpo"]
    assert "conversations dropped and 5 exchanges cut as longer than 1024 tokens" in warnings[0]
    assert "1 labelled reply (a thumb or a correction) lost" in warnings[1]
    assert all("raise profiles.work.train.max_length (now 1024)" in line for line in warnings)
    human = cli("datasets", "build", "--home", home)  # unchanged snapshots: still said
    assert [line for line in human.stderr.splitlines() if line.startswith("warning: ")] == [
        f"warning: {line}" for line in warnings
    ]


def test_a_second_ingest_reports_the_same_skips_for_markdown_and_git(tmp_path: Path, cli) -> None:
    import subprocess

    home = tmp_path / "home"
    vault, repo = tmp_path / "vault", tmp_path / "repo"
    vault.mkdir()
    (vault / "ok.md").write_text("# OK\n\ntext\n", encoding="utf-8")
    (vault / "blob.md").write_bytes(b"\x00\x01\x02binary\xff" * 50)
    repo.mkdir()
    (repo / "app.py").write_text("print('hi')\n", encoding="utf-8")
    (repo / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" * 20)
    (repo / "empty.py").write_text("", encoding="utf-8")
    for args in (
        ["init", "-q"],
        ["add", "."],
        ["-c", "user.email=me@example.com", "-c", "user.name=Me", "commit", "-qm", "x"],
    ):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    home.mkdir()
    (home / "plora.toml").write_text(
        f'[[sources]]\nname = "notes"\ntype = "markdown"\npath = "{vault}"\n\n'
        f'[[sources]]\nname = "code"\ntype = "git"\npath = "{repo}"\ninclude = ["**/*"]\n',
        encoding="utf-8",
    )
    reports = []
    for _ in range(2):
        result = cli("ingest", "--home", home, "--json")
        assert result.code == 0, result.stderr
        reports.append(result.json()["sources"])
    for source in ("notes", "code"):
        first, second = (sorted(map(str, report[source]["skipped"])) for report in reports)
        assert first and first == second, (source, first, second)
