"""``plora label``, ``plora labels export|import|stale`` and ``plora annotate``.

Each command parses its text options (flows/label_args.py), calls pipeline.labels and formats the
result; the annotation UI lives in flows/annotate.py and is imported only when ``annotate`` runs
(Textual is slow to import).
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from flows.options import HomeOption, JsonOption
from flows.output import print_json, stdout


def register(app: typer.Typer) -> None:
    app.command("label")(label)
    labels_app = typer.Typer(help="Move labels between machines; list stale ones.", no_args_is_help=True)
    labels_app.command("export")(export)
    labels_app.command("import")(import_)
    labels_app.command("stale")(stale)
    app.add_typer(labels_app, name="labels")
    app.command("annotate")(annotate)


def label(
    ref: Annotated[str, typer.Argument(help="The conversation: SOURCE:EXTERNAL_ID.", show_default=False)],
    value: Annotated[
        str | None, typer.Argument(help="good, bad or clear (default with --correction: bad).", show_default=False)
    ] = None,
    message: Annotated[
        int | None,
        typer.Option(
            "--message",
            "-m",
            help="Label one message: its position (0-based) on the conversation, as plora annotate shows it.",
            show_default=False,
        ),
    ] = None,
    branch: Annotated[
        int,
        typer.Option("--branch", help="With --message: 0 the kept reply, 1, 2... an alternative (regenerated) one."),
    ] = 0,
    note: Annotated[
        str | None, typer.Option("--note", help='A note on the label ("" removes it).', show_default=False)
    ] = None,
    correction: Annotated[
        str | None,
        typer.Option(
            "--correction",
            help="The reply you wanted, as TEXT or @FILE; stored as a preference pair with the "
            'original as rejected ("" removes it).',
            show_default=False,
        ),
    ] = None,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Label a conversation, or one reply with --message, good or bad; write a correction."""
    from flows.label_args import correction_argument
    from pipeline.labels import KEEP, set_label
    from pipeline.workspace import open_workspace

    wanted = correction_argument(correction) if correction is not None else KEEP
    with open_workspace(home, check_paths=False) as workspace:
        result = set_label(
            workspace,
            ref,
            value,
            position=message,
            branch=branch,
            note=KEEP if note is None else note,
            correction=wanted,
        )
    if json:
        print_json(asdict(result))
        return
    where = escape(result.ref) + (f" message {result.position}" if result.position is not None else "")
    if result.branch:
        where += f" (branch {result.branch})"
    state = result.state
    what = (
        "no label"
        if state is None
        else state.value
        + "".join(f", {part}" for part, present in (("note", state.note), ("correction", state.correction)) if present)
    )
    redacted = f" ({result.redactions} secret(s) redacted from what you typed)" if result.redactions else ""
    stdout.print(f"{where}: {what}" + ("" if result.changed else " (unchanged)") + redacted)


def export(
    file: Annotated[Path, typer.Argument(help="The JSONL file to write.", show_default=False)],
    all_: Annotated[bool, typer.Option("--all", help="Also the labels that came with the sources.")] = False,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Write the labels in force to FILE.jsonl (portable refs: source, external id, message position)."""
    from pipeline.labels import export_labels
    from pipeline.workspace import open_workspace

    with open_workspace(home, check_paths=False) as workspace:
        report = export_labels(workspace, file, include_imported=all_)
    if json:
        print_json(asdict(report))
        return
    values = ", ".join(f"{value} {count}" for value, count in sorted(report.values.items())) or "none"
    stdout.print(f"wrote {report.labels} labels ({values}) to {escape(str(report.file))}")


def import_(
    file: Annotated[Path, typer.Argument(help="A JSONL file written by plora labels export.", show_default=False)],
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace a different label already in force instead of reporting a conflict."),
    ] = False,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Add the labels of FILE.jsonl; idempotent, conflicts reported instead of overwritten."""
    from pipeline.labels import import_labels
    from pipeline.workspace import open_workspace

    with open_workspace(home, check_paths=False) as workspace:
        report = import_labels(workspace, file, overwrite=overwrite)
    if json:
        print_json(report.model_dump())
        return
    stdout.print(
        f"added {report.added}, unchanged {report.unchanged}, overwritten {report.overwritten}, "
        f"conflicts {len(report.conflicts)}, missing {len(report.missing)}"
        + (f", {report.redactions} secret(s) redacted from notes and corrections" if report.redactions else "")
    )
    for conflict in report.conflicts[:20]:
        stdout.print(
            f"  [yellow]conflict[/] {_where(conflict)}: here {conflict['ours']['value']}, "
            f"in the file {conflict['theirs']['value']} (kept; --overwrite to replace)"
        )
    for missing in report.missing[:20]:
        stdout.print(f"  [yellow]missing[/] {_where(missing)}: {escape(missing['reason'])}")
    hidden = max(len(report.conflicts) - 20, 0) + max(len(report.missing) - 20, 0)
    if hidden:
        stdout.print(f"  ... and {hidden} more (see --json)")


def _where(row: dict[str, Any]) -> str:
    where = escape(row["ref"])
    if row["position"] is not None:
        where += f" message {row['position']}" + (f" (branch {row['branch']})" if row["branch"] else "")
    return f"line {row['line']}: {where}"


def stale(home: HomeOption = None, json: JsonOption = False) -> None:
    """List your message labels whose message changed (or is gone) since you labelled it."""
    from pipeline.labels import stale_labels
    from pipeline.workspace import open_workspace

    with open_workspace(home, check_paths=False) as workspace:
        found = stale_labels(workspace)
    if json:
        print_json({"stale": [asdict(label) for label in found]})
        return
    if not found:
        stdout.print("no stale labels")
    for label_ in found:
        branch = f" (branch {label_.branch})" if label_.branch else ""
        stdout.print(
            f"{escape(label_.ref)} message {label_.position}{branch}: {label_.value}, "
            f"message {label_.reason}; relabel it (plora label / annotate) to confirm"
        )


def annotate(
    source: Annotated[
        list[str] | None, typer.Option("--source", help="Only this source (repeatable).", show_default=False)
    ] = None,
    unlabelled: Annotated[
        bool, typer.Option("--unlabelled/--all", help="Only documents without any label (the default), or all of them.")
    ] = True,
    search: Annotated[
        str | None,
        typer.Option(
            "--search", help="Only documents whose title or text contains TEXT (case-insensitive).", show_default=False
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only documents dated on or after DATE (YYYY-MM-DD); undated ones count from when they were stored.",
            show_default=False,
        ),
    ] = None,
    kind: Annotated[str, typer.Option("--kind", help="conversation, note, runbook, code or commit.")] = "conversation",
    home: HomeOption = None,
) -> None:
    """Label conversations and replies in a terminal UI; every key is saved at once."""
    from flows.label_args import parse_kind, parse_since
    from pipeline.errors import UsageError
    from pipeline.labels import AnnotationQueue, QueueFilter
    from pipeline.workspace import open_workspace

    queue_filter = QueueFilter(
        sources=tuple(source or ()),
        unlabelled=unlabelled,
        search=search or None,
        since=parse_since(since) if since else None,
        kind=parse_kind(kind),
    )
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("plora annotate needs a terminal; in scripts use plora label")
    with open_workspace(home, check_paths=False) as workspace:
        queue = AnnotationQueue(workspace, queue_filter)
        if not queue.total:
            stdout.print(
                "nothing to label: no document matches"
                + (" (all are labelled; --all shows them)" if unlabelled else "")
            )
            return
        from flows.annotate import AnnotateApp

        AnnotateApp(queue).run()
        labelled, total = queue.progress()
    totals = queue.totals
    stdout.print(
        f"{labelled} of {total} labelled; this session: good {totals['good']}, bad {totals['bad']}, "
        f"corrections {totals['correction']}, notes {totals['note']}, skipped {totals['skip']}"
    )
