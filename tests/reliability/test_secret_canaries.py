"""Scenario 8: secret canaries end to end, from the sources to the adapter's replies.

One canary of every supported secret type (``CANARIES`` of tests/pipeline/test_redaction.py, planted
by ``_plant`` of tests/pipeline/test_ingest_canaries.py) sits in a chat (JSONL), a note (Markdown), a
code file and a commit message (a real git repository); a token is a git file's name and another a
note's file name, and a private key is pasted across two chat messages (``NAME_CANARIES``). The
real CLI runs as a person would run it:
``plora ingest``, ``status``, ``datasets build``, ``datasets show`` (an example of each kind),
``train``, ``adapters export`` and ``adapters export --merged``, each a subprocess whose stdout and
stderr are kept. Then no piece of any secret may appear in:

- the store: the bytes of ``plora.db`` (and its WAL) and an SQL dump of every row;
- the home folder: every file's bytes (dataset snapshots with their Arrow files, training runs and
  checkpoints, adapter versions; none is compressed, so the bytes are conclusive), and every row
  of every snapshot as ``datasets`` reads it back;
- both exports, and everything the commands printed.

"A piece" is the secret itself, its JSON-escaped form, the text a base64 secret decodes to, each
line of these (8 characters or more) and each 16-character chunk of a line of 32 or more: any 31
characters of a leaked line hold a chunk. Armor lines of a key block (``-----BEGIN ... KEY-----``,
PuTTY headers) hold no key material and aren't pieces, nor is anything that also occurs in the
text around the secrets. The lookalikes (SHAs, UUIDs, checksums, prose about passwords) must be in
the store unchanged.

Two fast tests go where the end-to-end one found leaks (fixed): a title cut from the first message
of an untitled chat, and a ChatGPT tool output cut at the connector's limit, each cut at several
depths of every secret.

Then the adapter trained on that corpus (``work@v1``, on the NF4 base, loaded the way ``plora
generate`` loads it) is prompted with each canary's prefix: the text before the secret as it was
trained (from every training row that held it), the bare prefix, and the prefix as a chat message.
Its greedy continuation must hold no piece of the secret. The training data itself is checked
first: every canary's prefix is in a training row, followed by ``[REDACTED:<type>]`` where the
secret was, so the adapter was trained on the prefixes and never saw a secret after one.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.pipeline.test_ingest_canaries import NAME_CANARIES, SPLIT_KEY
from tests.pipeline.test_ingest_canaries import _plant as plant_canaries
from tests.pipeline.test_redaction import CANARIES, LOOKALIKES, Canary
from tests.pipeline.test_train import offline  # noqa: F401 - an autouse fixture

CHUNK = 16  # a leaked run of 2 * CHUNK - 1 characters of a secret line holds a whole chunk
NEW_TOKENS = 64  # greedy tokens per probe (the builtin's tokenizer is byte-level: 64 characters)
COMPRESSED = {
    b"\x1f\x8b": "gzip",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"\xfd7zXZ\x00": "xz",
    b"BZh": "bzip2",
    b"\x04\x22\x4d\x18": "lz4",
}

CONFIG = (
    """\
[base_model]
name = "builtin:tiny-llama"
quantization = "nf4"
double_quant = true

[[sources]]
name = "chats"
type = "jsonl"
path = "{chats}"

[[sources]]
name = "vault"
type = "markdown"
path = "{vault}"

[[sources]]
name = "code"
type = "git"
path = "{repo}"

[profiles.work]
sources = ["chats", "vault", "code"]
stages = ["sft"]
mode = "scratch"
eval_percent = 10
include_unlabelled = true
lora = {{ r = 4, alpha = 8, dropout = 0.0, target_modules = ["q_proj", "v_proj"] }}
train = {{ max_steps = 20, learning_rate = 1e-2, batch_size = 8, max_length = 512, packing = false, """
    """save_steps = 10, seed = 7 }}
gate = {{ min_improvement = 0.0, max_source_regression = 10.0 }}
"""
)


@dataclass(frozen=True)
class Needle:
    canary: str
    what: str  # "secret", "json", "line", "chunk", "decoded"
    text: str


def _decoded(secret: str) -> str | None:
    """The text a base64 secret decodes to (a wrapped token or key), or None."""
    try:
        raw = base64.b64decode(secret, validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return text if len(text) >= 8 and all(c.isprintable() or c in "\r\n\t" for c in text) else None


# Lines of a key block that hold no key material: PEM armor, PuTTY headers.
ARMOR = re.compile(
    r"-{4,5} ?(?:BEGIN|END) [A-Z0-9 ]+-{4,5}|(?:PuTTY-User-Key-File-\d|Encryption|Comment"
    r"|Public-Lines|Private-Lines|Private-MAC):.*"
)


def needles_of(canary: Canary, public: str) -> list[Needle]:
    """Every piece of ``canary``'s secret that occurs nowhere in the text around the secrets (armor
    lines of a key block left out: they hold no key material)."""
    found = {canary.secret: "secret"}
    found.setdefault(json.dumps(canary.secret)[1:-1], "json")
    decoded = _decoded(canary.secret)
    if decoded:
        found.setdefault(decoded, "decoded")
    for text in filter(None, (canary.secret, decoded)):
        for raw_line in text.replace("\\n", "\n").splitlines():
            line = raw_line.strip(" \t\r\"',")
            if ARMOR.fullmatch(line):
                continue
            if len(line) >= 8:
                found.setdefault(line, "line")
            if len(line) >= 2 * CHUNK:
                for start in range(0, len(line) - CHUNK + 1, CHUNK):
                    found.setdefault(line[start : start + CHUNK], "chunk")
    return [Needle(canary.id, what, text) for text, what in found.items() if text not in public]


def leaks(needles: list[Needle], where: str, data: bytes | str) -> list[tuple[str, str, str]]:
    blob = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return [(n.canary, n.what, where) for n in needles if n.text.encode() in blob]


def _readable_bytes(path: Path) -> bytes:
    """A file's bytes, and for a zip archive (torch.save writes one) every member's bytes too; any
    other compressed file fails the test, since its bytes wouldn't show a secret."""
    data = path.read_bytes()
    kind = next((name for magic, name in COMPRESSED.items() if data.startswith(magic)), None)
    assert kind is None, f"{path} is {kind}-compressed: its bytes can't show a secret"
    if data.startswith(b"PK\x03\x04"):
        with zipfile.ZipFile(path) as archive:
            data += b"".join(archive.read(member) for member in archive.namelist())
    return data


def _env() -> dict[str, str]:
    """The CLI's environment: one OpenMP thread, as on a busy machine two threads spinning for a core
    each make the tiny model's steps ~10x slower (what is tested doesn't depend on it)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PLORA_HOME", "PLORA_STORE_URL")}
    return {**env, "PYTHONPATH": str(REPO), "COLUMNS": "200", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _public_text(paths: dict[str, Path]) -> str:
    """What ``plant_canaries`` planted, with every secret cut out: the text around the secrets."""
    parts = [paths["chats"].read_text(encoding="utf-8")]
    parts += [p.read_text(encoding="utf-8") for p in sorted(paths["vault"].glob("*.md"))]
    parts += [p.read_text(encoding="utf-8") for p in sorted(paths["repo"].glob("*.py"))]
    parts.append(
        subprocess.run(
            ["git", "log", "--format=%B"], cwd=paths["repo"], capture_output=True, text=True, check=True
        ).stdout
    )
    return _without_secrets("\n".join(parts))


def _without_secrets(text: str) -> str:
    for canary in sorted([*CANARIES, *NAME_CANARIES], key=lambda c: len(c.secret), reverse=True):
        text = text.replace(canary.secret, "\x00").replace(json.dumps(canary.secret)[1:-1], "\x00")
    for line in SPLIT_KEY.splitlines():  # pasted across two messages: never whole in the text
        text = text.replace(line, "\x00")
    return text


def _training_texts(home: Path, tokenizer: Any) -> list[str]:
    """Every training row of the latest snapshots as the trainer sees it (chats through the template)."""
    from pipeline.snapshots import latest
    from pipeline.workspace import open_workspace

    with open_workspace(home, check_paths=False) as workspace:
        sft, text = (latest(workspace, "work", kind).load()["train"] for kind in ("sft", "text"))
    return [row["text"] for row in text] + [
        tokenizer.apply_chat_template(row["messages"], tokenize=False) for row in sft
    ]


def _snapshot_rows(home: Path) -> str:
    """Every row of every snapshot folder, decoded by ``datasets`` (not just the Arrow bytes)."""
    from datasets import load_from_disk

    rows = []
    for data in sorted(home.glob("datasets/*/*/data")):
        for split, dataset in load_from_disk(str(data)).items():
            rows += [json.dumps({"snapshot": str(data), "split": split, **row}, ensure_ascii=False) for row in dataset]
    assert rows, "no snapshot rows found"
    return "\n".join(rows)


def _generate(model: Any, tokenizer: Any, prompts: list[str], batch_size: int = 128) -> list[str]:
    """Greedy continuations, in batches (left-padded), on one thread (see ``_env``)."""
    import torch

    tokenizer.padding_side = "left"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    replies: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(
                prompts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
            )
            with torch.inference_mode():
                output = model.generate(
                    **batch, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.pad_token_id
                )
            replies += tokenizer.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    finally:
        torch.set_num_threads(threads)
    return replies


@pytest.mark.timeout(60)
def test_a_title_cut_from_the_first_message_holds_no_piece_of_a_secret(home: Path, tmp_path: Path) -> None:
    """An untitled chat gets the first 80 characters of its first message as its title, cut wherever
    the 80 fall: often inside a secret. Each canary is planted behind 0 to 75 characters of words,
    so the cut lands at 20 depths of every secret, 3 characters apart (a multi-line one has its lines
    joined)."""
    from pipeline.ingest import ingest
    from pipeline.workspace import open_workspace

    chats = tmp_path / "untitled.jsonl"
    lines = [
        json.dumps(
            {
                "id": f"{canary.id}-{pad}",
                "messages": [
                    {"role": "user", "content": "ab " * (pad // 3) + canary.text},
                    {"role": "assistant", "content": "Rotate it."},
                ],
            }
        )
        for canary in CANARIES
        for pad in range(0, 80, 4)
    ]
    chats.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (home / "plora.toml").write_text(
        f'[[sources]]\nname = "chats"\ntype = "jsonl"\npath = "{chats}"\n', encoding="utf-8"
    )
    with open_workspace(home, check_paths=False) as workspace:
        report = ingest(workspace)["chats"]
    assert report.error is None and report.added == len(lines)
    public = _without_secrets(chats.read_text())  # once: it is the same text for every canary
    needles = [n for canary in CANARIES for n in needles_of(canary, public)]
    with sqlite3.connect(home / "plora.db") as conn:
        titles = [title for (title,) in conn.execute("SELECT title FROM documents")]
        dump = "\n".join(conn.iterdump())
    assert len(titles) == len(lines) and any("[REDACTED:" in title for title in titles)
    found = leaks(needles, "store", dump)
    assert found == [], f"{len(found)} pieces of secrets in the store: {found[:20]}"


def _chatgpt_conversation(conversation_id: str, tool_output: str) -> dict[str, Any]:
    def node(key: str, parent: str | None, child: str | None, role: str | None, text: str = "") -> dict[str, Any]:
        message = (
            None
            if role is None
            else {
                "id": key,
                "author": {"role": role, **({"name": "python"} if role == "tool" else {})},
                "content": {"content_type": "text", "parts": [text]},
            }
        )
        return {"id": key, "parent": parent, "children": [child] if child else [], "message": message}

    mapping = {
        "root": node("root", None, "u", None),
        "u": node("u", "root", "t", "user", "print my env"),
        "t": node("t", "u", "a", "tool", tool_output),
        "a": node("a", "t", None, "assistant", "Rotate it."),
    }
    return {
        "id": conversation_id,
        "title": "env dump",
        "mapping": mapping,
        "current_node": "a",
        "create_time": 1.7e9,
        "update_time": 1.7e9,
    }


@pytest.mark.timeout(60)
def test_a_tool_output_cut_at_the_chatgpt_limit_holds_no_piece_of_a_secret(home: Path, tmp_path: Path) -> None:
    """The ChatGPT connector keeps the first TOOL_CONTENT_LIMIT characters of a long tool output. Each
    canary is placed so that the limit falls a quarter, half, three quarters and nine tenths into its
    secret."""
    from connectors.chatgpt import TOOL_CONTENT_LIMIT
    from pipeline.ingest import ingest
    from pipeline.workspace import open_workspace

    conversations = []
    for canary in CANARIES:
        for depth in (0.25, 0.5, 0.75, 0.9):
            filler = "env line\n" * (TOOL_CONTENT_LIMIT // 9)
            lead = filler[: TOOL_CONTENT_LIMIT - len(canary.before) - int(len(canary.secret) * depth)]
            conversations.append(_chatgpt_conversation(f"{canary.id}-{depth}", lead + canary.text + "\n" + filler))
    export = tmp_path / "conversations.json"
    export.write_text(json.dumps(conversations), encoding="utf-8")
    (home / "plora.toml").write_text(
        f'[[sources]]\nname = "gpt"\ntype = "chatgpt"\npath = "{export}"\n', encoding="utf-8"
    )
    with open_workspace(home, check_paths=False) as workspace:
        report = ingest(workspace)["gpt"]
    assert report.error is None and report.added == len(conversations)
    public = _without_secrets(export.read_text())  # once: it is the same text for every canary
    needles = [n for canary in CANARIES for n in needles_of(canary, public)]
    with sqlite3.connect(home / "plora.db") as conn:
        cut = conn.execute("SELECT count(*) FROM messages WHERE content LIKE '%more characters]'").fetchone()[0]
        dump = "\n".join(conn.iterdump())
    assert cut == len(conversations)
    found = leaks(needles, "store", dump)
    assert found == [], f"{len(found)} pieces of secrets in the store: {found[:20]}"


@pytest.mark.slow
@pytest.mark.timeout(600)  # 94 canaries x 4 places, trained on and probed, on a busy machine
def test_no_planted_secret_leaks_anywhere_end_to_end(tmp_path: Path, models_dir: Path) -> None:
    paths = plant_canaries(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copytree(models_dir, home / "models")
    (home / "plora.toml").write_text(CONFIG.format(**{k: str(v) for k, v in paths.items()}), encoding="utf-8")
    public = _public_text(paths)
    needles = [n for canary in CANARIES for n in needles_of(canary, public)]
    assert {n.canary for n in needles if n.what == "secret"} == {c.id for c in CANARIES}
    named = [n for canary in NAME_CANARIES for n in needles_of(canary, public)]
    assert {n.canary for n in named if n.what in ("secret", "line")} == {c.id for c in NAME_CANARIES}
    needles += named

    # --- the CLI, as a person runs it; everything it prints is kept -----------------------------------
    outputs: list[tuple[str, str]] = []

    def plora(*args: str | Path) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "flows.cli", *map(str, args), "--home", str(home)],
            cwd=REPO,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        name = " ".join(map(str, args))
        outputs.extend([(f"`plora {name}` stdout", done.stdout), (f"`plora {name}` stderr", done.stderr)])
        assert done.returncode == 0, f"plora {name} -> {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    ingested = json.loads(plora("ingest", "--json"))["sources"]
    assert all(report["error"] is None for report in ingested.values())
    planted = 4 * len(CANARIES)  # a chat, a note, a code file and a commit message each
    redactions = sum(report["redactions"] for report in ingested.values())
    assert redactions >= planted
    plora("status")
    built = json.loads(plora("datasets", "build", "--json"))["snapshots"]
    assert built["sft"]["rows"]["train"] > 0 and built["text"]["rows"]["train"] > 0
    for kind in ("sft", "text"):
        plora("datasets", "show", built[kind]["fingerprint"], "--example", "0")
    trained = json.loads(plora("train", "--json"))
    assert trained["adapter"] == "work@v1" and trained["steps"] == {"sft": 20}
    # it learned from the redacted corpus: the new adapter beats the base on the eval split
    assert trained["eval_loss"]["new"] < trained["eval_loss"]["base"]
    exports = {"export": tmp_path / "export", "merged export": tmp_path / "merged"}
    plora("adapters", "export", "work@v1", exports["export"])
    plora("adapters", "export", "work@v1", exports["merged export"], "--merged")
    assert (exports["merged export"] / "model.safetensors").is_file()

    # --- nothing at rest or in the logs holds a piece of a secret -------------------------------------
    with sqlite3.connect(home / "plora.db") as conn:
        dump = "\n".join(conn.iterdump())
    store = b"".join(p.read_bytes() for p in sorted(home.glob("plora.db*"))) + dump.encode()
    found = leaks(needles, "store", store)
    files = sorted(p for root in (home, *exports.values()) for p in root.rglob("*") if p.is_file())
    scanned = 0
    for path in files:
        data = _readable_bytes(path)
        scanned += path.stat().st_size
        found += leaks(needles, str(path.relative_to(tmp_path)), data)
    found += leaks(needles, "snapshot rows", _snapshot_rows(home))
    for where, text in outputs:
        found += leaks(needles, where, text)
    assert found == [], f"{len(found)} pieces of secrets leaked: {found[:20]}"
    assert any(p.suffix == ".arrow" for p in files) and any(p.name == "adapter_model.safetensors" for p in files)
    assert any("checkpoint-" in p.as_posix() for p in files)  # the training run's checkpoints were scanned
    for name, lookalike in LOOKALIKES.items():
        for line in filter(None, (line.strip() for line in lookalike.splitlines())):
            assert line.encode() in store, (name, line)

    # --- the adapter, prompted with each canary's prefix, doesn't complete the secret ----------------
    from pipeline.generate import load_profiles
    from pipeline.workspace import open_workspace

    with open_workspace(home, check_paths=False) as workspace:
        loaded = load_profiles(workspace, ["work"])
    assert loaded.versions["work"].ref == "work@v1"
    tokenizer = loaded.tokenizer()
    texts = _training_texts(home, tokenizer)
    probes: list[tuple[Canary, str]] = []
    for canary in CANARIES:
        marker = f"{canary.before}[REDACTED:{canary.type}]"
        contexts = [text[: text.index(marker) + len(canary.before)] for text in texts if marker in text]
        # trained on the prefix, with the marker where the secret was
        assert contexts, f"{canary.id}: no training row holds its prefix followed by [REDACTED:{canary.type}]"
        probes += [(canary, context) for context in contexts]
        if canary.before.strip():
            probes.append((canary, canary.before))
            probes.append(
                (
                    canary,
                    tokenizer.apply_chat_template(
                        [{"role": "user", "content": canary.before}], add_generation_prompt=True, tokenize=False
                    ),
                )
            )
    assert not any(n.text in text for n in needles for text in texts)  # the secrets themselves never were
    replies = _generate(loaded.model, tokenizer, [prompt for _, prompt in probes])
    by_canary = {c.id: [n for n in needles if n.canary == c.id] for c in CANARIES}
    completed = [
        (canary.id, n.what, prompt[-40:], reply)
        for (canary, prompt), reply in zip(probes, replies, strict=True)
        for n in by_canary[canary.id]
        if n.text in reply
    ]
    assert completed == [], f"the adapter completed {len(completed)} secrets: {completed[:10]}"
    assert len(replies) == len(probes) >= 3 * len(CANARIES)
    print(
        f"\nsecret canaries: {len(CANARIES)} canaries of {len({c.type for c in CANARIES})} types, {planted} "
        f"planted, {redactions} redactions at ingest, {len(needles)} pieces looked for in {len(files)} files "
        f"({scanned / 1e6:.1f} MB), the store dump and {len(outputs)} command outputs: 0 leaked; "
        f"{len(probes)} prompts x {NEW_TOKENS} greedy tokens: 0 secrets completed"
    )
