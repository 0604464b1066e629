"""The scheduled path for real: a `prefect server` on loopback, the `plora` process work pool, the
deployments from prefect.yaml, a manual run of the monthly deployment and a worker that runs it,
exactly as docs/deployment.md tells a new user. Deselect with ``-m 'not server'``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from pipeline.home import Home
from pipeline.init import init_home
from pipeline.workspace import open_workspace

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.timeout(300)]


@dataclass
class Server:
    api_url: str
    env: dict[str, str]
    log: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(process: subprocess.Popen, url: str, log: Path, timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prefect server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"prefect server not healthy after {timeout:.0f}s:\n{log.read_text()[-4000:]}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the server's whole process group (it starts children), then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`prefect server start` on a free loopback port with its own PREFECT_HOME (its database too)."""
    root = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "PLORA_"))
    }  # nothing from the machine's own Prefect setup
    env.update(
        PREFECT_HOME=str(root / "prefect-home"),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        COLUMNS="200",
    )
    log = root / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=root,
        )
    try:
        _wait_healthy(process, api_url, log, timeout=90)
        yield Server(api_url, env, log)
    finally:
        _stop(process)


def _run(command: list[str], env: dict[str, str], timeout: float, cwd: Path = REPO) -> str:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, (
        f"{' '.join(command)} -> {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}"
    )
    return done.stdout + done.stderr


def _next_first_of_month_0300(now: datetime) -> datetime:
    this_month = now.replace(day=1, hour=3, minute=0, second=0, microsecond=0)
    if now < this_month:
        return this_month
    return this_month.replace(year=now.year + now.month // 12, month=now.month % 12 + 1)


def test_monthly_deployment_runs_on_a_worker(prefect_server: Server, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    init_home(Home.resolve(home), example=True)
    prefect = [sys.executable, "-m", "prefect"]
    env = dict(prefect_server.env)

    # docs/deployment.md, in order: the pool, the deployments, a manual run, a worker
    _run([*prefect, "work-pool", "create", "plora", "--type", "process"], env, timeout=60)
    deployed = _run([sys.executable, "-m", "flows.cli", "deploy"], env, timeout=120)
    next_run = _next_first_of_month_0300(datetime.now(UTC))
    assert f"monthly-retrain-cycle/monthly-retrain: next run {next_run:%Y-%m-%d} 03:00 UTC" in deployed, deployed

    created = _run(
        [
            *prefect,
            "deployment",
            "run",
            "monthly-retrain-cycle/monthly-retrain",
            "--param",
            'profiles=["creative"]',
            "--param",
            "max_steps=2",
        ],
        env,
        timeout=60,
    )
    flow_run_id = created.split("UUID:", 1)[1].split()[0]

    worker_env = {**env, "PLORA_HOME": str(home), "PLORA_REPO": str(REPO)}
    worker = _run([*prefect, "worker", "start", "--pool", "plora", "--run-once"], worker_env, timeout=180, cwd=tmp_path)

    flow_run = httpx.get(f"{prefect_server.api_url}/flow_runs/{flow_run_id}", timeout=10).json()
    assert flow_run["state"]["type"] == "COMPLETED", worker[-6000:]
    assert flow_run["parameters"]["profiles"] == ["creative"] and flow_run["parameters"]["max_steps"] == 2
    assert flow_run["parameters"]["home"] is None  # the home came from the worker's PLORA_HOME

    from pipeline import registry

    with open_workspace(home, check_paths=False) as workspace:
        versions = registry.list_versions(workspace, "creative")
    assert [v.ref for v in versions] == ["creative@v1"], worker[-6000:]
