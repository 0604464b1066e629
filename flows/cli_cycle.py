"""``plora run | serve | deploy``: the monthly cycle as a Prefect flow run in-process, the deployments
served on this machine, or registered with a Prefect server. Prefect is imported inside the commands,
so the rest of the CLI starts without it."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flows.options import HomeOption, JsonOption
from flows.output import print_json, stderr, stdout
from pipeline.kinds import TrainingMode

# Defaults for running Prefect in this process, applied only where the environment sets nothing (the
# person's own PREFECT_* variables and Prefect profile win): no telemetry from the temporary local
# server (its first start otherwise logs a "database is locked" traceback), and time for that server
# to create its database on a slow first start.
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("serve")(serve)
    app.command("deploy")(deploy)


def _prefect_defaults() -> None:
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)


class _NoTemporaryServerNotice(logging.Filter):
    """Drops Prefect's "Starting/Stopping temporary server" notices: `plora run` uses Prefect's local
    API on purpose, there is nothing for the person to do about it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "temporary server" not in record.getMessage()


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Everything written to stdout while the flow runs (Python prints and child processes alike) goes
    to stderr, so ``--json`` leaves exactly one JSON document on stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def run(
    home: HomeOption = None,
    profile: Annotated[
        list[str] | None,
        typer.Option("--profile", help="Only this profile (repeatable; default: every profile).", show_default=False),
    ] = None,
    mode: Annotated[
        TrainingMode | None,
        typer.Option("--mode", help="scratch | continue (default: each profile's mode).", show_default=False),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Train even when nothing changed since the last adapter.")
    ] = False,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", min=1, help="Override train.max_steps.", show_default=False)
    ] = None,
    json: JsonOption = False,
) -> None:
    """Run the monthly cycle now (ingest, build, train, register) as a Prefect flow run in this process."""
    from pipeline.cycle import profile_names
    from pipeline.workspace import open_workspace

    with open_workspace(home, check_paths=False) as workspace:  # config and profile mistakes: one line, exit 2
        root = str(workspace.home.root)
        profile_names(workspace, profile or None)
    _prefect_defaults()
    prefect_logger = logging.getLogger("prefect")
    if not any(isinstance(f, _NoTemporaryServerNotice) for f in prefect_logger.filters):
        prefect_logger.addFilter(_NoTemporaryServerNotice())
    with _stdout_to_stderr():
        from flows.cycle import monthly_retrain_flow
        from pipeline.cycle import CycleFailed

        try:
            state = monthly_retrain_flow(
                home=root, profiles=profile or None, mode=mode, force=force, max_steps=max_steps, return_state=True
            )
        except RuntimeError as e:  # Prefect's way to say its API is unreachable
            if "API" not in str(e):
                raise
            from prefect.settings import PREFECT_API_URL

            from pipeline.errors import PloraError

            raise PloraError(
                f"{e} (PREFECT_API_URL={PREFECT_API_URL.value() or 'unset'}): start that server, or "
                "unset PREFECT_API_URL to run with a temporary local one"
            ) from e
        result = state.result(raise_on_failure=False)
    if isinstance(result, CycleFailed):
        summary = result.summary
    elif isinstance(result, BaseException):
        raise result  # a config or usage error: one red line and its exit code (flows.cli.main)
    else:
        assert isinstance(result, dict)  # the flow's return value: the cycle summary
        summary = result
    if json:
        print_json(summary)
    else:
        _print_summary(summary)
    if not summary.get("ok"):
        raise typer.Exit(1)


def _loss(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def _print_summary(summary: dict[str, Any]) -> None:
    sources = summary["ingest"]["sources"]
    if sources:
        table = Table("source", "added", "updated", "unchanged", "deleted", "skipped", "error", box=None)
        for name, row in sources.items():
            table.add_row(
                escape(name),
                *(str(row[key]) for key in ("added", "updated", "unchanged", "deleted")),
                str(len(row["skipped"])),
                escape(row["error"] or ""),
            )
        stdout.print(table)
    table = Table("profile", "status", "adapter", "eval loss base", "previous", "new", box=None)
    for name, row in summary["profiles"].items():
        adapter = f"{row['adapter']} ({row['adapter_status']})" if row["adapter"] else "-"
        losses = row["eval_loss"]
        table.add_row(
            escape(name),
            row["status"],
            escape(adapter),
            _loss(losses["base"]),
            _loss(losses["previous"]),
            _loss(losses["new"]),
        )
    stdout.print(table)
    for name, row in summary["profiles"].items():
        if row["why"]:
            stdout.print(f"{escape(name)}: {escape(row['why'])}", soft_wrap=True)
    color = "green" if summary["ok"] else "red"
    stdout.print(f"[{color}]{escape(summary['message'])}[/]", soft_wrap=True)


def serve(home: HomeOption = None) -> None:
    """Serve prefect.yaml's deployments (monthly-retrain, ingest-nightly) with their schedules from this
    process, without a work pool: for a single GPU box. Stop with Ctrl-C."""
    from pipeline.workspace import open_workspace

    with open_workspace(home, check_paths=False) as workspace:  # a broken plora.toml fails now, not at 03:00
        root = str(workspace.home.root)
    _prefect_defaults()
    from prefect import serve as prefect_serve
    from prefect.settings import PREFECT_API_URL

    from flows.cycle import served_deployments

    if not PREFECT_API_URL.value():
        stderr.print(
            "[yellow]note:[/] PREFECT_API_URL is not set: the schedules run against a temporary local "
            "Prefect API that lives as long as this process (no UI). To see the runs in the UI, start "
            "`prefect server start` and `prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`."
        )
    stderr.print(f"serving for the plora home {escape(root)}")
    prefect_serve(*served_deployments(root))


def deploy() -> None:
    """Register prefect.yaml's deployments with the Prefect server at PREFECT_API_URL (creating the
    `plora` process work pool when it is missing): `prefect deploy --all` from the repository."""
    from pipeline.errors import PloraError, UsageError

    _prefect_defaults()
    from prefect.settings import PREFECT_API_URL

    from flows.cycle import PREFECT_YAML, deployment_specs

    if not PREFECT_YAML.is_file():
        raise UsageError(f"no prefect.yaml at {PREFECT_YAML}: `plora deploy` runs from a plora source checkout")
    if not PREFECT_API_URL.value():
        raise UsageError(
            "PREFECT_API_URL is not set: start a server (`prefect server start`) and point Prefect "
            "at it (`prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`); see "
            "docs/deployment.md"
        )
    pools = sorted({spec["work_pool"]["name"] for spec in deployment_specs() if spec.get("work_pool")})
    for pool in pools:
        if not _pool_exists(pool):
            stderr.print(f"creating the process work pool {escape(pool)}")
            _prefect("work-pool", "create", pool, "--type", "process")
    _prefect("--no-prompt", "deploy", "--all", cwd=PREFECT_YAML.parent)
    try:
        for name, when in _next_runs(wait_seconds=20):
            stdout.print(f"{escape(name)}: next run {when}")
    except Exception as e:  # noqa: BLE001 - only informative
        stderr.print(f"[yellow]note:[/] could not read the next scheduled runs: {escape(str(e))}")
    if not pools:
        raise PloraError("prefect.yaml names no work pool")


def _prefect(*args: str, cwd: Path | None = None) -> None:
    from pipeline.errors import PloraError

    command = [sys.executable, "-m", "prefect", *args]
    done = subprocess.run(command, cwd=cwd, check=False)
    if done.returncode != 0:
        raise PloraError(f"`prefect {' '.join(args)}` failed (exit code {done.returncode}); see its output above")


def _pool_exists(name: str) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            return False
    return True


def _next_runs(wait_seconds: float = 0) -> list[tuple[str, str]]:
    """``flow/deployment`` -> the time of its next scheduled run, for prefect.yaml's deployments. The
    server's scheduler creates those runs shortly after a deploy: wait up to ``wait_seconds`` for them."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    from flows.cycle import FLOWS, deployment_specs

    names = []
    for spec in deployment_specs():
        function = spec["entrypoint"].rsplit(":", 1)[1]
        flow_name = next(name for name, f in FLOWS.items() if f.fn.__name__ == function)
        names.append(f"{flow_name}/{spec['name']}")
    deadline = time.monotonic() + wait_seconds
    with get_client(sync_client=True) as client:
        ids = {name: client.read_deployment_by_name(name).id for name in names}
        for deployment_id in ids.values():  # what the server's scheduler does within a minute: now
            client.request("POST", "/deployments/{id}/schedule", path_params={"id": deployment_id}, json={})
        while True:
            found = {}
            for name, deployment_id in ids.items():
                runs = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
                        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
                    ),
                    sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                    limit=1,
                )
                if runs and runs[0].expected_start_time:
                    found[name] = runs[0].expected_start_time
            if len(found) == len(ids) or time.monotonic() >= deadline:
                break
            time.sleep(2)
    return [
        (
            name,
            found[name].strftime("%Y-%m-%d %H:%M %Z")
            if name in found
            else "not scheduled yet (see `prefect deployment inspect` in a minute)",
        )
        for name in names
    ]
