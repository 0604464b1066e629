"""Scenario 10: a Prefect worker crashes mid-training; rerunning the deployment completes the cycle.

Against a real ``prefect server`` (the fixture of tests/flows/test_prefect_server.py), with the
``plora`` process work pool and the deployments of prefect.yaml: a manual run of
``monthly-retrain-cycle/monthly-retrain`` is picked up by ``prefect worker start --run-once``. Once
the run's training has sealed a checkpoint (recorded in the store), the worker's process group and
the flow run's own (Prefect starts the flow run in a session of its own) get SIGKILL: what a
machine or container dying does. Then:

- the store and the adapters folder agree: no version without its files (every row verifies), no
  ``v<N>`` folder without a row, no staging folder; ``current`` is unset or points to a version
  that verifies; the training run is still ``running`` with its checkpoint;
- Prefect still shows the killed flow run as Running: nobody told the server, and the run keeps
  the deployment's only concurrency slot (``concurrency_limit: 1``) until its lease (300 s) runs
  out. The test marks it Crashed through the API, as Prefect's zombie-flow automation or a person
  (docs/reliability.md) would, which frees the slot at once;
- the deployment is triggered again and a new worker runs it once: the flow run is Completed, it
  resumed the interrupted training run from its checkpoint (same run id, ``resumed_from_step`` set,
  no second run), and registered ``creative@v1``, which verifies and is current.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pipeline.home import Home
from pipeline.init import init_home
from pipeline.workspace import open_workspace
from tests.flows.test_prefect_server import REPO, Server, _run, prefect_server  # noqa: F401 - a fixture

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.timeout(300)]

DEPLOYMENT = "monthly-retrain-cycle/monthly-retrain"
MAX_STEPS, SAVE_STEPS = 30, 2  # the kill lands at the first checkpoint, with 28 steps still to go
PREFECT = [sys.executable, "-m", "prefect"]


def _home(path: Path) -> Path:
    """The example home; its ``creative`` profile trains shorter sequences (quicker steps) and saves a
    checkpoint every SAVE_STEPS steps."""
    init_home(Home.resolve(path), example=True)
    config = path / "plora.toml"
    head, tail = config.read_text(encoding="utf-8").split("[profiles.creative]")
    train = re.compile(r"^train = \{.*\}$", re.MULTILINE)
    assert train.search(tail), tail
    tail = train.sub(
        f"train = {{ max_steps = 10, learning_rate = 2e-4, batch_size = 2, max_length = 256, "
        f"packing = true, save_steps = {SAVE_STEPS} }}",
        tail,
        count=1,
    )
    config.write_text(f"{head}[profiles.creative]{tail}", encoding="utf-8")
    return path


def _trigger(env: dict[str, str]) -> str:
    created = _run(
        [
            *PREFECT,
            "deployment",
            "run",
            DEPLOYMENT,
            "--param",
            'profiles=["creative"]',
            "--param",
            f"max_steps={MAX_STEPS}",
        ],
        env,
        timeout=60,
    )
    return created.split("UUID:", 1)[1].split()[0]


def _checkpoints_recorded(db: Path) -> int:
    """Checkpoints the store records for any training run (0 while there is no store or run yet)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            rows = conn.execute("SELECT metrics FROM training_runs").fetchall()
    except sqlite3.Error:  # not migrated yet, or busy
        return 0
    return sum(len(json.loads(metrics or "{}").get("checkpoints", [])) for (metrics,) in rows)


def _descendants(pid: int) -> list[tuple[int, int]]:
    """(pid, process group) of every process below ``pid``, read from /proc."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        children.setdefault(int(fields[1]), []).append((int(entry.name), int(fields[2])))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def _flow_run(server: Server, flow_run_id: str) -> dict:
    return httpx.get(f"{server.api_url}/flow_runs/{flow_run_id}", timeout=10).json()


def _assert_registry_consistent(home: Path) -> list[str]:
    """Every version row verifies, every v<N> folder has a row, current verifies; the refs."""
    from pipeline import registry

    with open_workspace(home, check_paths=False) as workspace:
        versions = registry.list_versions(workspace)
        for version in versions:
            registry.verify(workspace, version.ref)
        for profile, number in registry.current_versions(workspace).items():
            if number is not None:
                registry.verify(workspace, f"{profile}@v{number}")
    folders = sorted(
        f"{p.parent.name}@{p.name}" for p in (home / "adapters").glob("*/*") if re.fullmatch(r"v\d+", p.name)
    )
    assert folders == sorted(v.ref for v in versions), "a version folder without its row, or the reverse"
    assert not list((home / "adapters").glob("*/.*")), "staging or trash left in adapters/"
    return [v.ref for v in versions]


def test_a_crashed_worker_leaves_no_half_adapter_and_a_rerun_completes(
    prefect_server: Server,  # noqa: F811
    tmp_path: Path,
) -> None:
    home = _home(tmp_path / "home")
    env = dict(prefect_server.env)
    _run([*PREFECT, "work-pool", "create", "plora", "--type", "process"], env, timeout=60)
    _run([sys.executable, "-m", "flows.cli", "deploy"], env, timeout=120)
    # one OpenMP thread: on a busy machine two threads spinning for a core each make steps ~10x slower
    worker_env = {**env, "PLORA_HOME": str(home), "PLORA_REPO": str(REPO), "OMP_NUM_THREADS": "1"}

    # 1. a worker runs the monthly cycle; killed (with its flow run) once training has a checkpoint
    crashed = _trigger(env)
    with open(tmp_path / "worker-1.log", "w") as log:
        worker = subprocess.Popen(
            [*PREFECT, "worker", "start", "--pool", "plora", "--run-once"],
            env=worker_env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 150
        while not _checkpoints_recorded(home / "plora.db"):
            assert worker.poll() is None, (tmp_path / "worker-1.log").read_text()[-6000:]
            assert time.monotonic() < deadline, "no checkpoint within 150 s"
            time.sleep(0.1)
        victims = [worker.pid, *(pid for pid, _ in _descendants(worker.pid))]
        groups = {worker.pid} | {group for _, group in _descendants(worker.pid)}
        assert len(groups) >= 2, "the flow run process was not found below the worker"
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    assert worker.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 30
    while any(map(_alive, victims)):  # the flow run's lock on the training run goes with its process
        assert time.monotonic() < deadline, "killed processes still alive"
        time.sleep(0.1)

    # 2. nothing half-registered; the interrupted run waits with its checkpoint
    assert _assert_registry_consistent(home) == []  # the kill landed before registration
    from storage import runs
    from storage.models import RunStatus

    with open_workspace(home, check_paths=False) as workspace, workspace.store.read() as session:
        (interrupted,) = [
            (row.id, row.status, len((row.metrics or {}).get("checkpoints", [])))
            for row in runs.list_runs(session, "creative")
        ]
    run_id, status, checkpoints = interrupted
    assert status == RunStatus.running and checkpoints >= 1
    assert not (home / "runs" / run_id / "adapter").exists()

    # 3. Prefect never heard of the crash: the run is Running and holds the deployment's slot
    assert _flow_run(prefect_server, crashed)["state"]["type"] == "RUNNING"
    marked = httpx.post(
        f"{prefect_server.api_url}/flow_runs/{crashed}/set_state",
        timeout=10,
        json={"state": {"type": "CRASHED", "name": "Crashed", "message": "worker killed (SIGKILL)"}, "force": True},
    )
    assert marked.status_code in (200, 201) and marked.json()["status"] == "ACCEPT", marked.text

    # 4. the deployment again, a new worker once: the cycle completes, resuming the run
    rerun = _trigger(env)
    worker_log = _run(
        [*PREFECT, "worker", "start", "--pool", "plora", "--run-once"], worker_env, timeout=200, cwd=tmp_path
    )
    state = _flow_run(prefect_server, rerun)["state"]
    assert state["type"] == "COMPLETED", f"{state}\n{worker_log[-6000:]}"
    assert _assert_registry_consistent(home) == ["creative@v1"]
    from pipeline import registry

    with open_workspace(home, check_paths=False) as workspace:
        current = registry.current(workspace, "creative")
        with workspace.store.read() as session:
            rows = runs.list_runs(session, "creative")
            assert [(row.id, row.status) for row in rows] == [(run_id, RunStatus.completed)]  # no second run
            resumed_from = rows[0].metrics["stages"]["sft"]["resumed_from_step"]
    assert current is not None and current.ref == "creative@v1" and current.manifest.run_id == run_id
    assert resumed_from is not None and SAVE_STEPS <= resumed_from < MAX_STEPS
    assert current.manifest.metrics["steps"] == {"sft": MAX_STEPS}
    # the train-adapter sub-flow's artifact (there is one: the killed run never got that far) says so too
    (artifact,) = httpx.post(
        f"{prefect_server.api_url}/artifacts/filter",
        timeout=10,
        json={"artifacts": {"key": {"any_": ["plora-train-creative"]}}},
    ).json()
    assert "| resumed | True |" in artifact["data"] and f"| run | {run_id} |" in artifact["data"]
    print(
        f"\nprefect crash: worker + flow run SIGKILLed after {checkpoints} checkpoint(s); registry consistent; "
        f"rerun {state['type']}, resumed {run_id} from step {resumed_from} of {MAX_STEPS}, registered "
        f"{current.ref}"
    )


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
