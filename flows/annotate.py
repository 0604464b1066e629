"""``plora annotate``: the labelling terminal UI (Textual).

Why Textual: it renders markdown with highlighted code blocks, scrolls long content, shows key
bindings in a footer, can hand the terminal to ``$EDITOR`` and back (``App.suspend``), and can be
driven headlessly in tests (``App.run_test`` and its Pilot), all in one maintained library.
prompt_toolkit + rich would need the layout, scrolling and markdown rendering glued together.

This module only draws and forwards keys: the queue, the writes and undo are
``pipeline.labels.AnnotationQueue``, which saves every action before the key handler returns.
The widgets and modal screens it is drawn with are in ``flows/annotate_widgets.py``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from rich.text import Text
from textual.app import App, ComposeResult, SuspendNotSupported
from textual.binding import Binding, BindingType
from textual.highlight import highlight
from textual.widget import Widget
from textual.widgets import Footer, Markdown, Static

from flows.annotate_widgets import Block, Conversation, EditScreen, HelpScreen, NoteScreen, Target
from pipeline.errors import PloraError, UsageError
from pipeline.labels import AnnotationQueue, DocumentView, LabelView, MessageView, clean_correction
from storage import StorageError

T = TypeVar("T")


def correction_from_edit(original: str, edited: str) -> str | None:
    """The correction a person wrote in the editor, or None when they left it empty or as it was."""
    text = clean_correction(edited)
    if not text or text == clean_correction(original):
        return None
    return text


class AnnotateApp(App[None]):
    TITLE = "plora annotate"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #status { dock: top; height: auto; padding: 0 1; background: $boost; }
    Conversation { padding: 0 1; }
    #done { padding: 2 4; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("g", "label('good')", "good"),
        Binding("b", "label('bad')", "bad"),
        Binding("e", "correct", "correct"),
        Binding("n", "note", "note"),
        Binding("s", "skip", "skip"),
        Binding("u", "undo", "undo"),
        Binding("j,down", "move(1)", "move", key_display="j/k"),
        Binding("k,up", "move(-1)", show=False),
        Binding("p", "back", "back", show=False),
        Binding("x", "label('clear')", "clear", show=False),
        Binding("pageup", "scroll('page_up')", show=False),
        Binding("pagedown,space", "scroll('page_down')", show=False),
        Binding("home", "scroll('home')", show=False),
        Binding("end", "scroll('end')", show=False),
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", show=False),
    ]
    _MAIN_ACTIONS = frozenset({"label", "correct", "note", "skip", "undo", "move", "back", "scroll", "help"})

    def __init__(self, queue: AnnotationQueue) -> None:
        super().__init__()
        self.queue = queue
        self.view: DocumentView | None = None
        self.blocks: list[Block] = []
        self.cursor = 0

    # --- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        yield Conversation()
        yield Footer()

    async def on_mount(self) -> None:
        await self.show_current()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The main keys do nothing while a dialog (note, editor, help) is open."""
        return not (action in self._MAIN_ACTIONS and len(self.screen_stack) > 1)

    async def show_current(self, select: Target | None = None) -> None:
        """Draw the queue's current document, selecting ``select`` (default: the whole document)."""
        scroll = self.query_one(Conversation)
        await scroll.remove_children()
        self.view = self.queue.current()
        self.blocks = self._blocks(self.view) if self.view else []
        if self.blocks:
            await scroll.mount_all(self.blocks)
        else:
            await scroll.mount(Static(self._done_text(), id="done"))
        targets = [block.target for block in self.blocks]
        self.cursor = targets.index(select) if select in targets else 0
        self._show_labels()
        self.select(self.cursor)

    def _blocks(self, view: DocumentView) -> list[Block]:
        header: list[Widget] = [Static(self._header_text(view))]
        if not view.messages and view.kind == "code":
            header.append(Static(highlight(view.content, path=view.ref.rpartition(":")[2]), classes="body"))
        elif not view.messages:
            header.append(Markdown(view.content, classes="body"))
        blocks = [Block((None, 0), f"{view.kind} · {view.ref}", header, classes="document")]
        for message in view.messages:
            blocks.append(
                Block(
                    (message.position, message.branch),
                    self._message_title(message),
                    [Markdown(message.content, classes="body")],
                    classes=f"{message.role}{' alternative' if message.branch else ''}",
                )
            )
        return blocks

    @staticmethod
    def _header_text(view: DocumentView) -> Text:
        text = Text(view.title or "(untitled)", style="bold")
        if view.when:
            text.append(f"   {view.when:%Y-%m-%d %H:%M}", style="dim")
        if view.messages:
            replies = sum(1 for m in view.messages if m.branch == 0)
            alternatives = len(view.messages) - replies
            text.append(
                f"\n{replies} messages"
                + (f", {alternatives} alternative repl{'y' if alternatives == 1 else 'ies'}" if alternatives else ""),
                style="dim",
            )
        for position, branch, label in view.orphans:
            text.append(
                f"\nlabel on message {position}"
                + (f" (branch {branch})" if branch else "")
                + f" which is no longer there: {label.value} (stale)",
                style="yellow",
            )
        return text

    @staticmethod
    def _message_title(message: MessageView) -> str:
        title = f"{message.role} · #{message.position}"
        return title + f" · alternative {message.branch}" if message.branch else title

    def _done_text(self) -> Text:
        labelled, total = self.queue.progress()
        return Text(
            f"That's all {total}: {labelled} of {total} labelled.\n\nu undoes the last action, p goes back, q quits."
        )

    def _show_labels(self) -> None:
        """Refresh the badges and the status line from the store."""
        if self.view is not None:
            self.view = self.queue.current() or self.view
            labels: dict[Target, LabelView | None] = {(None, 0): self.view.label}
            labels.update({(m.position, m.branch): m.label for m in self.view.messages})
            for block in self.blocks:
                block.show_label(labels.get(block.target))
        self.query_one("#status", Static).update(self._status_text())

    def _status_text(self) -> Text:
        labelled, total = self.queue.progress()
        totals = self.queue.totals
        text = Text()
        if self.view is not None:
            text.append(self.view.ref, style="bold").append(f"   {self.queue.index + 1}/{total}   ")
        text.append(f"{labelled} of {total} labelled", style="bold green")
        text.append(
            f"   session: {totals['good']} good · {totals['bad']} bad · {totals['correction']} "
            f"corrections · {totals['note']} notes · {totals['skip']} skipped",
            style="dim",
        )
        return text

    def select(self, index: int) -> None:
        if not self.blocks:
            return
        self.cursor = max(0, min(index, len(self.blocks) - 1))
        for i, block in enumerate(self.blocks):
            block.set_class(i == self.cursor, "selected")
        self.query_one(Conversation).scroll_to_widget(self.blocks[self.cursor], animate=False, top=True)

    @property
    def selected(self) -> Target | None:
        return self.blocks[self.cursor].target if self.blocks else None

    # --- actions ------------------------------------------------------------------------------

    def _attempt(self, call: Callable[[], T]) -> T | None:
        """Run a queue call; a refused or failed one becomes a message, never a crash."""
        try:
            return call()
        except (UsageError, PloraError, StorageError) as e:
            self.notify(str(e), severity="error", markup=False)
            return None

    async def action_label(self, value: str) -> None:
        target = self.selected
        if target is None:
            return
        result = self._attempt(lambda: self.queue.label(value, *target))
        if result is None:
            return
        if target[0] is None and value != "clear":
            self.queue.next()
            await self.show_current()
        else:
            self._show_labels()

    def action_note(self) -> None:
        target = self.selected
        if target is None or self.view is None:
            return
        label = self._label_of(target)
        if label is None:
            self.notify("label it good or bad first (g / b), then add a note", severity="warning")
            return

        def save(note: str | None) -> None:
            if note is not None and self._attempt(lambda: self.queue.note(note, *target)) is not None:
                self._show_labels()

        self.push_screen(NoteScreen(self._where(target), label.note), save)

    def action_correct(self) -> None:
        target = self.selected
        if target is None or self.view is None:
            return
        position, branch = target
        if position is None:
            reply = self.view.last_reply()
            if reply is None:
                self.notify("this document has no assistant reply to correct", severity="warning")
                return
            position, branch = reply.position, reply.branch
            self.select([block.target for block in self.blocks].index((position, branch)))
        message = self.view.message(position, branch)
        if message is None or message.role != "assistant":
            self.notify("select an assistant reply (j / k) to correct it", severity="warning")
            return
        start = message.label.correction if message.label and message.label.correction else message.content
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
        if editor:
            self._save_correction(message, self._run_editor(editor, start))
        else:
            self.push_screen(
                EditScreen(self._where((position, branch)), start), lambda text: self._save_correction(message, text)
            )

    def _save_correction(self, message: MessageView, edited: str | None) -> None:
        if edited is None:
            return
        correction = correction_from_edit(message.content, edited)
        if correction is None:
            self.notify("no correction: the reply was left empty or as it was", severity="warning")
            return
        if self._attempt(lambda: self.queue.correct(correction, message.position, message.branch)) is not None:
            self._show_labels()

    def _run_editor(self, editor: str, text: str) -> str | None:
        """The text after the person edited it in ``editor``; None if the editor failed."""
        handle, name = tempfile.mkstemp(prefix="plora-correction-", suffix=".md")
        path = Path(name)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
            command = [*shlex.split(editor), str(path)]

            def run(**kwargs: Any) -> int | OSError:
                try:
                    return subprocess.call(command, **kwargs)
                except OSError as e:  # caught here: an exception inside suspend() would leave the app suspended
                    return e

            try:
                with self.suspend():
                    outcome = run()
            except SuspendNotSupported:  # headless (tests) or no real terminal: run it without one
                outcome = run(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if isinstance(outcome, OSError):
                self.notify(f"can't run the editor {editor!r}: {outcome.strerror}", severity="error", markup=False)
                return None
            if outcome != 0:
                self.notify(f"the editor exited with status {outcome}; nothing saved", severity="error")
                return None
            return path.read_text(encoding="utf-8")
        finally:
            path.unlink(missing_ok=True)

    async def action_skip(self) -> None:
        if not self.queue.finished:
            self.queue.skip()
            await self.show_current()

    async def action_back(self) -> None:
        self.queue.previous()
        await self.show_current()

    async def action_undo(self) -> None:
        action = self._attempt(self.queue.undo)
        if action is None:
            self.notify("nothing to undo in this session", severity="warning")
            return
        select = None if action.kind == "skip" else (action.position, action.branch)
        await self.show_current(select=select)
        self.notify(f"undone: {action.kind}")

    def action_move(self, step: int) -> None:
        self.select(self.cursor + step)

    def action_scroll(self, where: str) -> None:
        scroll = self.query_one(Conversation)
        {
            "page_up": scroll.scroll_page_up,
            "page_down": scroll.scroll_page_down,
            "home": scroll.scroll_home,
            "end": scroll.scroll_end,
        }[where](animate=False)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    # --- helpers ------------------------------------------------------------------------------

    def _label_of(self, target: Target) -> LabelView | None:
        if self.view is None:
            return None
        if target[0] is None:
            return self.view.label
        message = self.view.message(target[0], target[1])
        return message.label if message else None

    def _where(self, target: Target) -> str:
        ref = self.view.ref if self.view else "?"
        if target[0] is None:
            return ref
        return f"{ref} message {target[0]}" + (f" (alternative {target[1]})" if target[1] else "")
