"""How the CLI talks: JSON on stdout, everything human on stderr, one red line per error."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

stderr = Console(stderr=True, highlight=False)
stdout = Console(highlight=False)


def print_json(document: Any) -> None:
    """One JSON document on stdout and nothing else there."""
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def error(message: str) -> None:
    stderr.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)


def warn(message: str) -> None:
    stderr.print(f"[yellow]warning:[/] {message}", markup=True, soft_wrap=True)


def progress_bar() -> Progress:
    """Progress on stderr, shown only on a terminal (never mixed into --json output)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=False,
        disable=not stderr.is_terminal,
    )
