"""Scenario 2: ``plora ingest`` and labelling at the same time, on one store (SQLite, then Postgres).

While a real ``plora ingest`` subprocess writes (a new vault, and every chat updated), one
labelling process makes 1,000 label actions through ``pipeline.labels.set_label`` (one store
transaction each, as ``plora label`` does), and ~20 real ``plora label`` CLI processes run too.
No "database is locked" (or any other) error may escape any of them, and every action must be
in the store: one Label event per action, and the final states those actions imply.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from pipeline.ingest import ingest
from pipeline.workspace import open_workspace
from storage.labels import effective_labels
from storage.models import Document, Label, LabelOrigin, Source
from tests.conftest import REPO, write_config

CHATS = 240
LABELLED = 200  # chats c0..c199 get the 1,000 actions; c200.. the CLI calls
ACTIONS = 1000
CLI_CALLS = 20
CLI_PARALLEL = 2
NOTES = 600

LABELLER = r"""
import json, sys, time
from pipeline.labels import set_label
from pipeline.workspace import open_workspace

home, actions, labelled = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
errors, changed = [], 0
with open_workspace(home, check_paths=False) as workspace:
    print("ready", flush=True)
    sys.stdin.readline()  # "go": the ingest has just been started
    first = time.time()
    for i in range(actions):
        value = "good" if (i // labelled) % 2 == 0 else "bad"  # each pass flips every target
        try:
            result = set_label(workspace, f"chats:c{i % labelled}", value)
            changed += result.changed
        except Exception as e:  # every error counts, "database is locked" above all
            errors.append(f"{i}: {type(e).__name__}: {e}")
print(json.dumps({"errors": errors, "changed": changed, "seconds": time.time() - first, "first": first}))
"""


def _env() -> dict[str, str]:
    # PLORA_STORE_URL stays: it is the home_store fixture's Postgres database when there is one
    env = {k: v for k, v in os.environ.items() if k != "PLORA_HOME"}
    return {**env, "PYTHONPATH": str(REPO), "COLUMNS": "200"}


def _chat_lines(version: int) -> str:
    return "".join(
        json.dumps(
            {
                "id": f"c{i}",
                "messages": [
                    {"role": "user", "content": f"question {i} " * 5},
                    {"role": "assistant", "content": f"answer {i} v{version} " * 20},
                ],
            }
        )
        + "\n"
        for i in range(CHATS)
    )


def _wait(proc: subprocess.Popen[str], name: str, finished: dict[str, tuple[str, str, float]]) -> None:
    out, err = proc.communicate(timeout=240)
    finished[name] = (out, err, time.time())


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.usefixtures("home_store")  # on SQLite and on Postgres (tests/conftest.py)
def test_ingest_and_labelling_at_once(home: Path, tmp_path: Path) -> None:
    chats = tmp_path / "chats.jsonl"
    chats.write_text(_chat_lines(1), encoding="utf-8")
    vault = tmp_path / "vault"
    config = f'[[sources]]\nname = "chats"\ntype = "jsonl"\npath = "{chats}"\n'
    write_config(home, config)
    with open_workspace(home, check_paths=False) as workspace:
        assert ingest(workspace)["chats"].added == CHATS

    # Work for the concurrent ingest: a new source, and every chat changed (messages rewritten
    # under the documents being labelled).
    for i in range(NOTES):
        note = vault / f"d{i // 100}" / f"n{i}.md"
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text(f"# Note {i}\n\n" + f"runbook line {i}. " * 30, encoding="utf-8")
    chats.write_text(_chat_lines(2), encoding="utf-8")
    write_config(home, config + f'\n[[sources]]\nname = "vault"\ntype = "markdown"\npath = "{vault}"\n')

    env = _env()
    labeller = subprocess.Popen(
        [sys.executable, "-c", LABELLER, str(home), str(ACTIONS), str(LABELLED)],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert labeller.stdout is not None and labeller.stdin is not None
    assert labeller.stdout.readline().strip() == "ready", labeller.stderr.read() if labeller.stderr else ""
    ingest_proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "ingest", "--json", "--home", str(home)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    labeller.stdin.write("go\n")
    labeller.stdin.flush()
    finished: dict[str, tuple[str, str, float]] = {}
    waiters = [
        threading.Thread(target=_wait, args=(proc, name, finished))
        for proc, name in ((ingest_proc, "ingest"), (labeller, "labeller"))
    ]
    for waiter in waiters:
        waiter.start()
    expected = {f"c{i % LABELLED}": "good" if (i // LABELLED) % 2 == 0 else "bad" for i in range(ACTIONS)}
    cli_results = []
    running: list[subprocess.Popen[str]] = []
    for n in range(CLI_CALLS):  # up to CLI_PARALLEL at a time, while the other two processes run
        chat = f"c{LABELLED + n}"
        expected[chat] = "good" if n % 2 == 0 else "bad"
        running.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "flows.cli",
                    "label",
                    f"chats:{chat}",
                    expected[chat],
                    "--json",
                    "--home",
                    str(home),
                ],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        if len(running) == CLI_PARALLEL or n == CLI_CALLS - 1:
            cli_results += [(proc, *proc.communicate(timeout=120)) for proc in running]
            running = []
    for waiter in waiters:
        waiter.join(timeout=240)
    ingest_out, ingest_err, ingest_done = finished["ingest"]
    label_out, label_err, _ = finished["labeller"]

    assert ingest_proc.returncode == 0, ingest_err
    assert "locked" not in ingest_err
    report = json.loads(ingest_out)["sources"]
    assert report["chats"]["error"] is None and report["chats"]["updated"] == CHATS
    assert report["vault"]["error"] is None and report["vault"]["added"] == NOTES

    assert labeller.returncode == 0, label_err
    labelling = json.loads(label_out)
    assert labelling["errors"] == [], labelling["errors"][:5]
    assert labelling["changed"] == ACTIONS
    assert labelling["first"] < ingest_done, "the labelling should overlap the ingest"
    assert len(cli_results) == CLI_CALLS
    for proc, out, err in cli_results:
        assert proc.returncode == 0 and "locked" not in err, err
        assert json.loads(out)["changed"] is True

    with open_workspace(home) as workspace, workspace.store.read() as session:
        mine = session.scalar(select(func.count()).select_from(Label).where(Label.origin == LabelOrigin.plora))
        assert mine == ACTIONS + CLI_CALLS, "every action is one Label event"
        per_document = Counter(session.scalars(select(Label.document_id).where(Label.origin == LabelOrigin.plora)))
        assert sorted(per_document.values()) == sorted([ACTIONS // LABELLED] * LABELLED + [1] * CLI_CALLS)
        refs = dict(
            session.execute(select(Document.id, Document.external_id).join(Source).where(Source.name == "chats")).all()
        )
        states = {
            refs[target[0]]: label.value.value
            for target, label in effective_labels(session).items()
            if target[0] in refs and target[1] is None
        }
        assert states == expected
        live = session.scalar(select(func.count()).select_from(Document).where(Document.deleted_at.is_(None)))
        assert live == CHATS + NOTES
    print(
        f"{ACTIONS} label actions in {labelling['seconds']:.1f}s and {CLI_CALLS} CLI labels while ingest "
        f"wrote {CHATS + NOTES} documents"
    )
