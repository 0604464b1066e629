"""``plora eval REF [--against REF]``: two models of a profile side by side on its eval measures
(pipeline.compare). Progress on stderr, the table or ``--json`` on stdout."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flows.options import HomeOption, JsonOption
from flows.output import print_json, progress_bar, stdout, warn


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)


def eval_command(
    ref: Annotated[str, typer.Argument(help="The adapter to measure: PROFILE (its current version) or PROFILE@vN.")],
    against: Annotated[
        str | None,
        typer.Option(
            "--against",
            help="What to compare it with: another adapter (PROFILE or PROFILE@vN) or `base` (the default).",
            show_default=False,
        ),
    ] = None,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Measure an adapter against another version (or the base model) on the profile's eval split.

    Eval loss overall and per source, preference accuracy on held-out pairs, the general-text
    forgetting probe, and what the eval gate would decide. Uses the latest dataset snapshots;
    nothing is trained or promoted."""
    from pipeline.compare import compare
    from pipeline.train import TrainProgress
    from pipeline.workspace import open_workspace

    with open_workspace(home, check_paths=False) as workspace, progress_bar() as bar:
        task: list[Any] = []

        def on_progress(event: TrainProgress) -> None:
            if not task:
                task.append(bar.add_task(escape(event.message), total=None))
            bar.update(task[0], description=escape(event.message))

        result = compare(workspace, ref, against, progress=on_progress)
    document = result.as_dict()
    if json:
        print_json(document)
        return
    _print(document)


def _fmt(value: Any, digits: int = 4) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.{digits}f}"


def _pct(value: Any) -> str:
    return "" if not isinstance(value, int | float) else f"{value:+.1%}"


def _print(out: dict[str, Any]) -> None:
    for note in out["notes"]:
        warn(escape(note))
    ref, against, models = out["ref"], out["against"], out["models"]
    columns = [ref, against] + (["base"] if against != "base" else [])
    stdout.print(
        f"profile {escape(out['profile'])}: {out['eval_rows']} eval rows, {out['preference_pairs']} held-out "
        f"preference pairs, base {escape(out['base_model'])}"
    )
    table = Table("measure", *(escape(c) for c in columns), "change", box=None)
    change = out["change"]
    table.add_row("eval loss", *(_fmt(models[c].get("eval_loss")) for c in columns), _pct(change["eval_loss"]))
    for source in sorted(models[ref].get("sources") or {}):
        table.add_row(
            f"  {escape(source)}",
            *(_fmt((models[c].get("sources") or {}).get(source)) for c in columns),
            _pct(change["sources"].get(source)),
        )
    table.add_row("general text", *(_fmt(models[c].get("general_loss")) for c in columns), _pct(change["general_loss"]))
    if out["preference_pairs"]:
        delta = change["preference_accuracy"]
        table.add_row(
            "preference accuracy",
            *(_fmt(models[c].get("preference_accuracy"), 2) for c in columns),
            "" if delta is None else f"{delta:+.2f}",
        )
    stdout.print(table)
    gate = out["gate"]
    verdict = "[green]would pass[/]" if gate["accepted"] else "[yellow]would not pass[/]"
    stdout.print(f"eval gate ({escape(ref)} vs {escape(against)}): {verdict}")
    for reason in gate["reasons"]:
        stdout.print(f"  - {escape(reason)}")
