"""How the CLI talks: JSON on stdout, everything human on stderr, one red line per error."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
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


PROGRESS_INTERVAL = 30.0  # seconds between progress lines when stderr is not a terminal


def progress_bar() -> Progress | LogProgress:
    """Progress on stderr (never mixed into --json output): a live bar on a terminal; otherwise (a
    log file, cron, a Prefect worker) one line per task every ``PLORA_PROGRESS_INTERVAL`` seconds
    (default 30), plus a line when a task starts, changes phase or completes."""
    if not stderr.is_terminal:
        return LogProgress(float(os.environ.get("PLORA_PROGRESS_INTERVAL", PROGRESS_INTERVAL)))
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=False,
    )


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class LogProgress:
    """The part of rich's ``Progress`` the CLI uses (``add_task``, ``update``, a context manager),
    written as plain timestamped lines: ``description: done/total (pct), elapsed, ETA``."""

    def __init__(self, interval: float = PROGRESS_INTERVAL) -> None:
        self.interval = interval
        self.tasks: dict[int, dict[str, Any]] = {}

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *_: object) -> None:
        for task in self.tasks.values():
            if task["dirty"]:
                self._line(task)

    def add_task(self, description: str, total: float | None = None, **_: Any) -> int:
        key = len(self.tasks)
        now = time.monotonic()
        self.tasks[key] = {
            "description": description,
            "total": total,
            "completed": 0,
            "started": now,
            "printed": now,
            "dirty": False,
        }
        self._line(self.tasks[key])
        return key

    def update(
        self, key: int, *, completed: float | None = None, total: float | None = None, description: str | None = None
    ) -> None:
        task = self.tasks[key]
        new_phase = description is not None and task["total"] is None and description != task["description"]
        if total is not None:
            task["total"] = total
        if description is not None:
            task["description"] = description
        if completed is not None:
            task["completed"] = completed
        task["dirty"] = True
        done = task["total"] is not None and task["completed"] >= task["total"]
        if new_phase or done or time.monotonic() - task["printed"] >= self.interval:
            self._line(task)

    def _line(self, task: dict[str, Any]) -> None:
        now = time.monotonic()
        elapsed = now - task["started"]
        text = str(task["description"])
        total, completed = task["total"], task["completed"]
        if total:
            text += f": {int(completed)}/{int(total)} ({100 * completed / total:.0f}%), {_duration(elapsed)}"
            if 0 < completed < total:
                text += f", ETA {_duration(elapsed / completed * (total - completed))}"
        elif completed:
            text += f": {int(completed):,}, {_duration(elapsed)}"
        stamp = datetime.now().strftime("%H:%M:%S")
        sys.stderr.write(f"[{stamp}] {text}\n")
        sys.stderr.flush()
        task["printed"], task["dirty"] = now, False
