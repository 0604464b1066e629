"""``plora datasets build | list | show``: each calls pipeline.datasets and formats the result."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from flows.options import HomeOption, JsonOption, ProfileOption
from flows.output import print_json, progress_bar, stdout, warn

# Trained tokens, when stdout is not a terminal (no colours): wrapped in these.
OPEN, CLOSE = "\u27e6", "\u27e7"


def register(app: typer.Typer) -> None:
    datasets_app = typer.Typer(
        help="Build and inspect the dataset snapshots a profile trains on.", no_args_is_help=True
    )
    datasets_app.command("build")(build)
    datasets_app.command("list")(list_)
    datasets_app.command("show")(show)
    app.add_typer(datasets_app, name="datasets")


def build(
    profile: ProfileOption = None,
    home: HomeOption = None,
    json: JsonOption = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Build even when nothing the build reads changed since the profile's latest snapshots."
        ),
    ] = False,
) -> None:
    """Build the profile's snapshots (sft, text, and dpo/kto when its stages say so).

    Nothing is rebuilt when the store, the labels and the settings are as they were at the last build:
    the latest snapshots are reported as "unchanged"."""
    from pipeline.datasets import build_datasets
    from pipeline.workspace import open_workspace

    with open_workspace(home, check_paths=False) as workspace, progress_bar() as progress:
        tasks: dict[str, Any] = {}

        def on_progress(kind: str, done: int, total: int) -> None:
            if kind not in tasks:
                tasks[kind] = progress.add_task(kind, total=total)
            progress.update(tasks[kind], completed=done)

        result = build_datasets(workspace, profile, progress=on_progress, force=force)
    if json:
        print_json(result.as_dict())
        return
    table = Table("kind", "snapshot", "train", "eval", "tokens (train)", "", box=None)
    for kind, row in result.as_dict()["snapshots"].items():
        table.add_row(
            kind,
            row["fingerprint"][:12],
            str(row["rows"].get("train", 0)),
            str(row["rows"].get("eval", 0)),
            str(row["tokens"].get("train", 0)),
            "new" if row["new"] else "unchanged",
        )
    stdout.print(f"profile {escape(result.profile)}")
    stdout.print(table)
    for line in result.warnings:
        warn(escape(line))


def list_(profile: ProfileOption = None, home: HomeOption = None, json: JsonOption = False) -> None:
    """List the recorded snapshots, oldest first (* marks each profile's latest of a kind)."""
    from pipeline.datasets import list_snapshots
    from pipeline.workspace import open_workspace

    with open_workspace(home, check_paths=False) as workspace:
        rows = list_snapshots(workspace, profile)
    if json:
        print_json(rows)
        return
    if not rows:
        stdout.print("no dataset snapshots yet: run [bold]plora datasets build[/]")
        return
    table = Table("", "profile", "kind", "snapshot", "train", "eval", "created", box=None)
    for row in rows:
        table.add_row(
            "*" if row["latest"] else "",
            escape(row["profile"]),
            row["kind"],
            row["fingerprint"][:12],
            str(row["rows"].get("train", 0)),
            str(row["rows"].get("eval", 0)),
            row["created_at"][:19],
        )
    stdout.print(table)


def show(
    snapshot: Annotated[
        str, typer.Argument(help="A snapshot fingerprint, or enough of its start to be unique.", show_default=False)
    ],
    example: Annotated[
        int | None,
        typer.Option(
            "--example",
            "-n",
            help="Print example N of the split, with the tokens that carry loss highlighted.",
            show_default=False,
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="train or eval (with --example).")] = "train",
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Show what went into a snapshot, or one of its examples with --example N."""
    from pipeline.datasets import find_snapshot, show_example
    from pipeline.workspace import open_workspace

    with open_workspace(home, check_paths=False) as workspace:
        found = find_snapshot(workspace, snapshot)
        view = show_example(workspace, found, example, split) if example is not None else None
    if view is not None:
        if view.note:
            warn(escape(view.note))
        if json:
            print_json(view.as_dict())
        else:
            _print_example(view)
        return
    if json:
        print_json({"path": str(found.path), **found.meta})
        return
    _print_meta(found.meta, found.path)


def _print_meta(meta: dict[str, Any], path: Path) -> None:
    stdout.print(f"{meta['kind']} snapshot {meta['fingerprint']}")
    stdout.print(
        f"profile {escape(meta['profile'])}, sources {escape(', '.join(meta.get('sources', [])))}, "
        f"builder {meta.get('builder_version')}, built {meta.get('created_at', '')[:19]}"
    )
    stdout.print(f"path {escape(str(path))}")
    rows, tokens = meta.get("rows", {}), meta.get("tokens", {})
    stdout.print(
        f"rows: train {rows.get('train', 0)}, eval {rows.get('eval', 0)}; "
        f"tokens: train {tokens.get('train', 0)}, eval {tokens.get('eval', 0)}"
    )
    for key in ("trained_tokens", "documents", "labels", "redactions", "cut", "dropped", "counts", "settings"):
        value = meta.get(key)
        if value:
            stdout.print(f"{key}: " + escape(", ".join(f"{k} {v}" for k, v in value.items())))


def _print_example(view: Any) -> None:
    row = view.row
    stdout.print(f"{view.kind} {view.split} example {view.index}: {escape(row['ref'])}")
    if view.segments is None:  # dpo / kto: the fields
        for key, value in row.items():
            if key in ("source", "ref"):
                continue
            if isinstance(value, list):
                stdout.print(f"[bold]{key}[/]")
                for message in value:
                    stdout.print(f"  [cyan]{message['role']}[/]: {escape(message['content'])}")
            else:
                stdout.print(f"[bold]{key}[/]: {escape(str(value))}")
        return
    text = Text()
    plain = not stdout.is_terminal
    for segment in view.segments:
        if plain:
            text.append(f"{OPEN}{segment.text}{CLOSE}" if segment.trained else segment.text)
        else:
            text.append(segment.text, style="bold green" if segment.trained else "dim")
    stdout.print(text, soft_wrap=True)
    trained = sum(len(s.text) for s in view.segments if s.trained)
    legend = f"trained text is {OPEN}between brackets{CLOSE}" if plain else "trained text is [bold green]green[/]"
    stdout.print(f"({legend}; {trained} of {sum(len(s.text) for s in view.segments)} characters carry loss)")
