"""``plora train``: train a profile's adapter, evaluate it against the base and the current adapter,
and register it (promoted when it passes the gate). Progress on stderr, ``--json`` on stdout."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flows.options import HomeOption, JsonOption
from flows.output import print_json, progress_bar, stderr, stdout, warn
from pipeline.kinds import TrainingMode


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile", "-p", help="The profile to train (default: the first one in plora.toml).", show_default=False
        ),
    ] = None,
    mode: Annotated[
        TrainingMode | None,
        typer.Option(
            "--mode",
            help="scratch: a fresh adapter; continue: from the "
            "profile's current adapter (with replay of earlier data) "
            "(default: the profile's mode).",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue the profile's latest interrupted run from its last complete checkpoint."
        ),
    ] = False,
    max_steps: Annotated[
        int | None,
        typer.Option(
            "--max-steps", min=1, help="Training steps per stage (default: train.max_steps).", show_default=False
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Make the new adapter current even if the eval gate rejects it.")
    ] = False,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Train the profile's LoRA adapter on its dataset snapshots and register it.

    The snapshots are built first when the store or the labels changed since the last build (as
    `plora datasets build` does; unchanged ones are reused). A resumed run trains on its own."""
    from pipeline.datasets import build_datasets
    from pipeline.train import TrainProgress, train_profile
    from pipeline.workspace import open_workspace

    with open_workspace(home, check_paths=False) as workspace, progress_bar() as bar:
        tasks: dict[str, Any] = {}

        def on_build(kind: str, done: int, total: int) -> None:
            if f"build {kind}" not in tasks:
                tasks[f"build {kind}"] = bar.add_task(f"building {kind} rows", total=total)
            bar.update(tasks[f"build {kind}"], completed=done)

        if not resume and _ingested(workspace, profile):
            built = build_datasets(workspace, profile, progress=on_build)
            fresh = sorted(kind for kind, new in built.new.items() if new)
            if fresh:
                stderr.print(
                    f"datasets: built new snapshots ({escape(', '.join(fresh))}) from the store's current content"
                )

        def on_progress(event: TrainProgress) -> None:
            if event.step is None:
                key = "phase"
                if key not in tasks:
                    tasks[key] = bar.add_task(event.message, total=None)
                bar.update(tasks[key], description=escape(event.message))
                return
            if event.stage not in tasks:
                tasks[event.stage] = bar.add_task(event.stage, total=event.max_steps)
            rate = f", {event.tokens_per_second:,.0f} tok/s" if event.tokens_per_second else ""
            bar.update(
                tasks[event.stage],
                completed=event.step,
                total=event.max_steps,
                description=f"{event.stage} loss {event.loss:.4f}{rate}",
            )

        result = train_profile(
            workspace,
            profile,
            mode=mode.value if mode else None,
            resume=resume,
            max_steps=max_steps,
            force=force,
            progress=on_progress,
        )
    document = result.as_dict()
    if json:
        print_json(document)
        return
    _print_result(document)


def _ingested(workspace: Any, profile: str | None) -> bool:
    """Whether the store holds documents of the profile's sources (else there is nothing to build from
    and the profile's existing snapshots, if any, are what it trains on)."""
    from storage.stats import source_stats

    _, settings = workspace.config.profile(profile)
    with workspace.store.read() as session:
        stats = source_stats(session)
    return any(stats.get(name, {}).get("documents", 0) for name in settings.sources)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _print_result(out: dict[str, Any]) -> None:
    for note in out["notes"]:
        warn(escape(note))
    for skipped in out["stages_skipped"]:
        warn(f"stage {skipped['stage']} skipped: {escape(skipped['reason'])}")
    resumed = " (resumed)" if out["resumed"] else ""
    stdout.print(
        f"run {escape(out['run_id'])}{resumed}: {out['mode']}, stages {', '.join(out['stages'])}, "
        f"{out['tokens_trained']:,} tokens, {out['trainable_parameters']:,} trainable parameters, "
        f"{out['wall_seconds']:.1f} s"
    )
    table = Table("eval loss", "base", "previous", "new", box=None)
    table.add_row("all", *(_fmt(out["eval_loss"][k]) for k in ("base", "previous", "new")))
    sources = out["source_eval_loss"]
    for source in sorted(sources.get("new") or {}):
        table.add_row(escape(source), *(_fmt((sources.get(k) or {}).get(source)) for k in ("base", "previous", "new")))
    general = out.get("general_loss") or {}
    if any(v is not None for v in general.values()):
        table.add_row("general text", *(_fmt(general.get(k)) for k in ("base", "previous", "new")))
    if out["preference_accuracy"]:
        table.add_row(
            "preference accuracy", *(_fmt(out["preference_accuracy"].get(k)) for k in ("base", "previous", "new"))
        )
    stdout.print(table)
    if out["promoted"]:
        extra = f" ({escape(out['why'])})" if out["why"] else ""
        stdout.print(f"[green]{escape(out['adapter'])} is now current[/]{extra}")
    else:
        stdout.print(
            f"[yellow]{escape(out['adapter'])} registered as a rejected candidate[/]: {escape(out['why'] or '')}"
        )
        stdout.print(
            f"current stays {escape(out['current'] or 'unset')}; promote anyway with "
            f"`plora adapters promote {escape(out['adapter'])} --force`"
        )
