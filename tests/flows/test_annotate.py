"""The annotation UI: a headless labelling session through Textual's Pilot, and a real
``plora annotate`` under a pty, killed mid-session."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from flows.annotate import AnnotateApp, correction_from_edit
from flows.annotate_widgets import EditScreen, HelpScreen, NoteScreen
from pipeline.labels import AnnotationQueue, QueueFilter
from pipeline.status import status
from pipeline.workspace import open_workspace
from storage.models import Document, Label, LabelOrigin
from tests.conftest import REPO
from tests.pipeline.test_labels import Corpus, labels_in_force, make_corpus

WANTED = "Check the hold timer first, then run birdc show protocols all."


@pytest.fixture
def corpus(home: Path, tmp_path: Path) -> Corpus:
    return make_corpus(home, tmp_path, n=12)


@pytest.fixture
def fake_editor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An $EDITOR that writes the wanted reply into the file it is given."""
    script = tmp_path / "fake-editor.sh"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' '{WANTED}' > \"$1\"\n")
    script.chmod(0o755)
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", str(script))
    return script


def history(home: Path, external_id: str) -> list[tuple[str, int | None, int | None, int]]:
    """The person's label events on one document: (value, position, undoes_id, id) in order."""
    with open_workspace(home) as workspace, workspace.store.read() as session:
        document_id = session.scalars(select(Document.id).where(Document.external_id == external_id)).one()
        events = session.scalars(
            select(Label).where(Label.document_id == document_id, Label.origin == LabelOrigin.plora).order_by(Label.id)
        )
        return [(event.value.value, event.position, event.undoes_id, event.id) for event in events]


@pytest.mark.timeout(60)
def test_a_labelling_session_through_the_ui(corpus: Corpus, fake_editor: Path) -> None:
    with open_workspace(corpus.home) as workspace:
        queue = AnnotationQueue(workspace)
        app = AnnotateApp(queue)
        asyncio.run(_labelling_session(app))
        report = status(workspace)["labels"]

    assert labels_in_force(corpus.home) >= {
        ("gpt:g1", 1, 1, "bad", None, None, "plora"),
        ("gpt:g1", None, 0, "good", None, None, "plora"),
        ("chats:c2", 2, 0, "bad", "vague", WANTED, "plora"),
        ("chats:c2", None, 0, "bad", None, None, "plora"),
    }
    good, undone = history(corpus.home, "c4")  # the undo is an event of its own, the label stays in history
    assert (good[0], undone[0], undone[2]) == ("good", "clear", good[3])
    assert history(corpus.home, "c3") == []
    assert (report["good"], report["bad"], report["corrections"]) == (2, 3, 1)  # c1's imported good included
    assert dict(queue.totals) == {"good": 1, "bad": 2, "clear": 0, "correction": 1, "note": 1, "skip": 1}


async def _labelling_session(app: AnnotateApp) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.view is not None and app.view.ref == "gpt:g1"
        # the regenerated reply is shown as its own block, after the kept one
        assert [block.target for block in app.blocks] == [(None, 0), (0, 0), (1, 0), (1, 1)]
        await pilot.press("j", "j", "j", "b")  # the alternative reply is bad
        await pilot.press("k", "k", "k", "g")  # the whole conversation is good: on to the next one
        assert app.view.ref == "chats:c2"
        await pilot.press("down", "down", "down")  # system, user, assistant
        assert app.selected == (2, 0)
        await pilot.press("e")  # $EDITOR writes the reply wanted
        await pilot.press("n")
        assert isinstance(app.screen, NoteScreen)
        await pilot.press(*"vague", "enter")
        await pilot.press("up", "up", "up", "b")
        assert app.view.ref == "chats:c3"
        await pilot.press("s")  # skip c3
        await pilot.press("g")  # c4 good ...
        assert app.view.ref == "chats:c5"
        await pilot.press("u")  # ... undone: back on c4
        assert app.view.ref == "chats:c4" and app.selected == (None, 0)
        assert "2 of 12 labelled" in str(app.query_one("#status").render())
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("g")  # closes the help; labels nothing
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("q")
    assert not app.is_running


@pytest.mark.timeout(60)
def test_inline_editor_without_editor_and_undo_of_a_correction(corpus: Corpus, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.delenv("EDITOR", raising=False)
    with open_workspace(corpus.home) as workspace:
        app = AnnotateApp(AnnotationQueue(workspace, QueueFilter(sources=("chats",))))
        asyncio.run(_inline_editor_session(app, corpus.home))
    assert [value for value, *_ in history(corpus.home, "c2")] == ["bad", "clear"]


async def _inline_editor_session(app: AnnotateApp, home: Path) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.view is not None and app.view.ref == "chats:c2"
        await pilot.press("e")  # on the whole conversation: corrects its last reply
        assert isinstance(app.screen, EditScreen) and app.selected == (2, 0)
        app.screen.query_one("TextArea").text = "A better reply."  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        assert ("chats:c2", 2, 0, "bad", None, "A better reply.", "plora") in labels_in_force(home)
        await pilot.press("u")
        assert not any(ref == "chats:c2" for ref, *_ in labels_in_force(home))
        await pilot.press("k", "n")  # a note needs a label first: nothing opens
        assert not isinstance(app.screen, NoteScreen)
        await pilot.press("up", "e")  # a user message can't be corrected
        assert not isinstance(app.screen, EditScreen)
        await pilot.press("q")


# --- a real terminal, killed mid-session ----------------------------------------------------------------


class Terminal:
    """``plora annotate`` on a pseudo-terminal; everything it draws is drained in a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.proc = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, cwd=REPO, env=env, start_new_session=True
        )
        os.close(slave)
        self.master = master
        self.output = bytearray()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.output.extend(chunk)

    def send(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reader.join(timeout=5)  # the rest of the output, up to the end of the terminal
        os.close(self.master)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(90)
def test_killed_mid_session_every_action_before_the_kill_is_in_the_store(corpus: Corpus, fake_editor: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm-256color", "EDITOR": str(fake_editor)}
    for variable in ("COLUMNS", "LINES", "VISUAL", "NO_COLOR", "TEXTUAL"):
        env.pop(variable, None)
    terminal = Terminal([sys.executable, "-m", "flows.cli", "annotate", "--home", str(corpus.home)], env)
    try:
        wait_for(lambda: b"labelled" in terminal.output, "the UI to draw")
        steps = [("g", 1), ("jjjb", 2), ("e", 3), ("kkkg", 4)]  # g1 good; c2's reply bad, corrected; c2 good
        for keys, events in steps:
            terminal.send(keys)
            wait_for(lambda events=events: len(plora_events(corpus.home)) >= events, f"{events} label events")
        assert terminal.proc.poll() is None, "still running when killed"
    finally:
        terminal.kill()
    assert terminal.proc.returncode == -signal.SIGKILL
    assert labels_in_force(corpus.home) >= {
        ("gpt:g1", None, 0, "good", None, None, "plora"),
        ("chats:c2", 2, 0, "bad", None, WANTED, "plora"),
        ("chats:c2", None, 0, "good", None, None, "plora"),
    }


def plora_events(home: Path) -> list[int]:
    with open_workspace(home) as workspace, workspace.store.read() as session:
        return list(session.scalars(select(Label.id).where(Label.origin == LabelOrigin.plora)))


@pytest.mark.timeout(60)
def test_ctrl_c_quits_and_keeps_what_was_done(corpus: Corpus, fake_editor: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm-256color"}
    for variable in ("COLUMNS", "LINES", "NO_COLOR", "TEXTUAL"):
        env.pop(variable, None)
    terminal = Terminal(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "annotate",
            "--home",
            str(corpus.home),
            "--source",
            "chats",
            "--search",
            "session 5",
        ],
        env,
    )
    try:
        wait_for(lambda: b"labelled" in terminal.output, "the UI to draw")
        terminal.send("b")
        wait_for(lambda: len(plora_events(corpus.home)) == 1, "the label")
        terminal.send("\x03")
        terminal.proc.wait(timeout=20)
    finally:
        terminal.kill()
    assert terminal.proc.returncode == 0
    assert b"1 of 1 labelled; this session: good 0, bad 1" in terminal.output
    assert ("chats:c5", None, 0, "bad", None, None, "plora") in labels_in_force(corpus.home)


def test_correction_from_edit() -> None:
    assert correction_from_edit("Use the init script.", "Use the init script.\n") is None
    assert correction_from_edit("Use the init script.", "  \n") is None
    assert correction_from_edit("Use the init script.", "\nRun systemctl.\n\n") == "Run systemctl."
