"""The ``plora`` command. Each command calls pipeline functions (or runs a flow) and formats the
result: JSON on stdout with ``--json``, human output otherwise, progress on stderr."""

from __future__ import annotations

import sys
from importlib.metadata import version as package_version
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flows.options import HomeOption, JsonOption
from flows.output import error, print_json, progress_bar, stdout

app = typer.Typer(
    name="plora",
    help="Turn your own chats, notes and code into a personal LoRA adapter, refreshed monthly.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(help="Manage the store's schema.", no_args_is_help=True)


def _version(value: bool) -> None:
    if value:
        stdout.print(f"plora {package_version('plora')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """plora: personal LoRA adapters from your own material."""


@app.command()
def init(
    home: HomeOption = None,
    example: Annotated[bool, typer.Option("--example", help="Use the example corpus in examples/.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing plora.toml.")] = False,
    json: JsonOption = False,
) -> None:
    """Create plora.toml (the example one with --example) and the store."""
    from pipeline.home import Home
    from pipeline.init import init_home

    result = init_home(Home.resolve(home), example=example, force=force)
    if json:
        print_json(
            {
                "config": str(result.config_path),
                "store": result.store,
                "example_repo": str(result.example_repo) if result.example_repo else None,
            }
        )
        return
    stdout.print(f"wrote {escape(str(result.config_path))}")
    stdout.print(f"store {escape(result.store)} ready")
    if result.example_repo:
        stdout.print(f"example git repository at {escape(str(result.example_repo))}")
    stdout.print("next: [bold]plora ingest[/]")


@app.command()
def status(home: HomeOption = None, json: JsonOption = False) -> None:
    """Counts of sources, documents, labels, redactions, datasets and adapters."""
    from pipeline.status import status as get_status
    from pipeline.workspace import open_workspace

    with open_workspace(home, check_paths=False) as workspace:
        report = get_status(workspace)
    if json:
        print_json(report)
        return
    _print_status(report)


def _print_status(report: dict[str, Any]) -> None:
    stdout.print(f"home  {escape(report['home'])}\nstore {escape(report['store'])}")
    table = Table("source", "type", "documents", "conversations", "messages", "last ingest", box=None)
    for name, row in report["sources"].items():
        table.add_row(
            name,
            row["type"],
            str(row["documents"]),
            str(row["conversations"]),
            str(row["messages"]),
            (row["last_ingest"] or "never")[:16].replace("T", " "),
        )
    stdout.print(table)
    kinds = ", ".join(f"{kind} {count}" for kind, count in report["documents_by_kind"].items())
    labels = report["labels"]
    stdout.print(f"documents: {kinds}")
    stdout.print(
        f"labels: good {labels['good']}, bad {labels['bad']}, corrections {labels['corrections']}, "
        f"unlabelled conversations {labels['unlabelled_conversations']}, stale {labels['stale']}"
    )
    redactions = ", ".join(f"{kind} {count}" for kind, count in report["redactions"].items()) or "none"
    stdout.print(f"redactions: {redactions}")
    stdout.print(f"datasets: {report['datasets']}")
    adapters = (
        ", ".join(
            f"{profile} {row['current'] or '-'} ({row['versions']} versions)"
            for profile, row in report["adapters"].items()
        )
        or "none"
    )
    stdout.print(f"adapters: {adapters}")


@app.command()
def ingest(
    home: HomeOption = None,
    source: Annotated[list[str] | None, typer.Option("--source", help="Only this source (repeatable).")] = None,
    json: JsonOption = False,
) -> None:
    """Pull every source (or the named ones) into the store, redacting secrets first."""
    from pipeline.ingest import ingest as run_ingest
    from pipeline.workspace import open_workspace

    with open_workspace(home, check_paths=False) as workspace, progress_bar() as progress:
        tasks: dict[str, Any] = {}

        def on_progress(name: str, seen: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=None)
            progress.update(tasks[name], completed=seen)

        reports = run_ingest(workspace, source or None, progress=on_progress)
    result = {"sources": {name: report.as_dict() for name, report in reports.items()}}
    if json:
        print_json(result)
    else:
        _print_ingest(result["sources"])
    if any(report.error for report in reports.values()):
        raise typer.Exit(1)


def _print_ingest(sources: dict[str, dict[str, Any]]) -> None:
    table = Table("source", "added", "updated", "unchanged", "deleted", "skipped", "redactions", box=None)
    for name, row in sources.items():
        table.add_row(
            name,
            *(str(row[key]) for key in ("added", "updated", "unchanged", "deleted")),
            str(len(row["skipped"])),
            str(row["redactions"]),
        )
    stdout.print(table)
    for name, row in sources.items():
        for skip in row["skipped"][:20]:
            stdout.print(f"  [yellow]skipped[/] {escape(name)}: {escape(skip['item'])}: {escape(skip['reason'])}")
        if len(row["skipped"]) > 20:
            stdout.print(f"  ... and {len(row['skipped']) - 20} more skipped in {escape(name)} (see --json)")
        if row["error"]:
            error(escape(row["error"]))


@db_app.command("upgrade")
def db_upgrade(home: HomeOption = None) -> None:
    """Apply pending migrations to the store (also done automatically on first use)."""
    from pipeline.workspace import open_workspace

    with open_workspace(home, check_paths=False) as workspace:
        stdout.print(f"store {escape(workspace.store.display_url)} is at the latest schema")


# Commands that live in their own modules, registered in the order `plora --help` lists them.
from flows import cli_adapters, cli_cycle, cli_datasets, cli_eval, cli_generate, cli_labels, cli_train  # noqa: E402

for _module in (cli_labels, cli_datasets, cli_train, cli_adapters, cli_generate, cli_eval, cli_cycle):
    _module.register(app)
app.add_typer(db_app, name="db")


def _exit_code(exc: BaseException) -> int | None:
    """The error roots of the layers, mapped: 2 for the person's mistakes (a usage or config error),
    1 for work that failed (a source, the store, a run), None for bugs (let them raise)."""
    from connectors.records import ConnectorError
    from pipeline.errors import PipelineError, UsageError
    from storage.errors import StorageError

    if isinstance(exc, UsageError):  # ConfigError and UnsafeNameError among them
        return 2
    if isinstance(exc, ConnectorError | StorageError | PipelineError):
        return 1
    return None


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        error("interrupted")
        sys.exit(130)
    except Exception as exc:
        code = _exit_code(exc)
        if code is None:
            raise
        error(escape(str(exc)))
        sys.exit(code)


if __name__ == "__main__":
    main()
