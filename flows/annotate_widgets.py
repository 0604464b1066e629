"""The pieces the ``plora annotate`` app is drawn with: a labelling target's block, the modal
screens for a note, a correction and the help, and how a label is shown (Textual widgets only).
"""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Input, Static, TextArea

from pipeline.labels import LabelView

Target = tuple[int | None, int]  # (message position or None for the whole document, branch)


@runtime_checkable
class Selecting(Protocol):
    """The app a Block lives in: it selects a block when it is clicked."""

    blocks: list[Block]

    def select(self, index: int) -> None: ...


HELP = """\
[b]Label[/]
  g / b      good / bad: the whole conversation (then the next one),
             or the selected message
  x          clear the selected label
  e          write the reply you wanted for the selected assistant reply
             in $EDITOR: a correction (yours chosen, the original rejected)
  n          a note on the selected label
[b]Move[/]
  j k ↓ ↑    select the next / previous message (top: whole conversation)
  s          skip to the next conversation without labelling it
  p          back to the previous conversation
  PgUp PgDn  scroll long messages
[b]Other[/]
  u          undo the last action (label, note, correction, skip)
  ?          this help
  q          quit (everything is already saved)

Every key is saved at once: quitting, Ctrl-C or a crash loses nothing.
Press any key to close."""


def badge(label: LabelView | None) -> str:
    if label is None:
        return "[dim]unlabelled[/]"
    colour = {"good": "green", "bad": "red"}.get(label.value, "yellow")
    parts = [f"[b {colour}]{label.value}[/]"]
    if label.correction:
        parts.append("[b]correction[/]")
    if label.note:
        parts.append("note")
    if label.origin == "import":
        parts.append("[dim]from the source[/]")
    if label.stale:
        parts.append("[b yellow]stale: the text changed since[/]")
    return " · ".join(parts)


def label_details(label: LabelView | None) -> Text:
    text = Text()
    if label is not None and label.note:
        text.append("note: ", style="bold").append(label.note)
    if label is not None and label.correction:
        if text:
            text.append("\n")
        text.append("wanted reply:\n", style="bold green").append(label.correction)
    return text


class Block(Vertical):
    """One labelling target: the whole document (position None) or one message."""

    DEFAULT_CSS = """
    Block { height: auto; border: round $panel-lighten-2; padding: 0 1; margin: 0 0 1 0; }
    Block.selected { border: heavy $accent; }
    Block.alternative { margin-left: 6; }
    Block.user { border-title-color: $secondary; }
    Block.assistant { border-title-color: $success; }
    Block > .extra { height: auto; color: $text-muted; }
    Block > .extra.-empty { display: none; }
    Block > .body { height: auto; padding: 0; margin: 0; }
    Block MarkdownBlock:last-child { margin-bottom: 0; }
    """

    def __init__(self, target: Target, title: str, body: list[Widget], classes: str = "") -> None:
        super().__init__(classes=classes)
        self.target = target
        self.border_title = title
        self._body = body
        self._extra = Static("", classes="extra -empty")

    def compose(self) -> ComposeResult:
        yield from self._body
        yield self._extra

    def show_label(self, label: LabelView | None) -> None:
        self.border_subtitle = badge(label)
        extra = label_details(label)
        self._extra.update(extra)
        self._extra.set_class(not extra, "-empty")

    def on_click(self) -> None:
        app = self.app
        if isinstance(app, Selecting):
            app.select(app.blocks.index(self))


class Conversation(VerticalScroll, can_focus=False):
    """The scrolling view of the current document (not focusable: the app owns every key)."""


class NoteScreen(ModalScreen[str | None]):
    DEFAULT_CSS = """
    NoteScreen { align: center middle; }
    NoteScreen > Vertical { width: 80%; height: auto; border: heavy $accent; padding: 1 2; background: $surface; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(self, where: str, note: str | None) -> None:
        super().__init__()
        self.where, self.note = where, note

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(f"Note on {self.where} (enter saves, empty removes it, esc cancels)"))
            yield Input(value=self.note or "", placeholder="why good / why bad")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class EditScreen(ModalScreen[str | None]):
    """The inline editor, used when neither $VISUAL nor $EDITOR is set."""

    DEFAULT_CSS = """
    EditScreen { align: center middle; }
    EditScreen > Vertical { width: 95%; height: 90%; border: heavy $accent; padding: 0 1; background: $surface; }
    EditScreen TextArea { height: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "save", priority=True),
        Binding("escape", "cancel", "cancel"),
    ]

    def __init__(self, where: str, text: str) -> None:
        super().__init__()
        self.where, self.text = where, text

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(f"Write the reply you wanted for {self.where}: ctrl+s saves, esc cancels"))
            yield TextArea(self.text, soft_wrap=True)

    def action_save(self) -> None:
        self.dismiss(self.query_one(TextArea).text)

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Static { width: auto; max-width: 100%; height: auto; max-height: 100%; border: heavy $accent;
                          padding: 0 1; background: $surface; }
    """

    def compose(self) -> ComposeResult:
        yield Static(HELP)

    def on_key(self, event: events.Key) -> None:
        event.stop()
        self.dismiss(None)
