"""docker-compose.yml, Dockerfile and .dockerignore, checked by reading them (Docker can't run in CI):
the services, their commands, volumes and GPU, and that the worker serves prefect.yaml's pool."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _load(name: str) -> dict[str, Any]:
    with open(REPO / name, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load("docker-compose.yml")


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def _command(service: dict[str, Any]) -> str:
    command = service["command"]
    return " ".join(command) if isinstance(command, list) else command


def _env(dockerfile: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in dockerfile:
        if instruction == "ENV":
            env.update(part.split("=", 1) for part in shlex.split(args))
    return env


def test_services_and_their_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "prefect-server", "worker"}
    assert services["postgres"]["image"].startswith("postgres:")
    for name in ("prefect-server", "worker"):  # one image: the server's Prefect is the worker's
        assert services[name]["image"] == "plora:latest"
        assert services[name]["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    assert (REPO / "Dockerfile").is_file() and (REPO / ".dockerignore").is_file()


def test_prefect_server_is_backed_by_postgres(compose: dict[str, Any]) -> None:
    postgres, server = compose["services"]["postgres"], compose["services"]["prefect-server"]
    assert "prefect server start" in _command(server) and "--host 0.0.0.0" in _command(server)
    port = re.search(r"--port (\d+)", _command(server)).group(1)
    assert any(str(p).endswith(f":{port}:{port}") for p in server["ports"])
    url = server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert url.startswith("postgresql+asyncpg://prefect:") and url.endswith("@postgres:5432/prefect")
    assert importlib.util.find_spec("asyncpg") is not None  # Prefect's Postgres driver ships with prefect
    assert postgres["environment"]["POSTGRES_DB"] == "prefect" and postgres["environment"]["POSTGRES_USER"] == "prefect"
    assert server["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert f"localhost:{port}/api/health" in " ".join(server["healthcheck"]["test"])
    (data,) = postgres["volumes"]
    assert data.split(":")[1] == "/var/lib/postgresql/data"


def test_worker_serves_the_pool_of_prefect_yaml_with_the_gpu(
    compose: dict[str, Any], dockerfile: list[tuple[str, str]]
) -> None:
    worker, server = compose["services"]["worker"], compose["services"]["prefect-server"]
    command = _command(worker)
    pools = {d["work_pool"]["name"] for d in _load("prefect.yaml")["deployments"]}
    assert pools == {"plora"}
    match = re.search(r"prefect worker start --pool (\S+)", command)
    assert match and match.group(1) == "plora"
    assert command.index("plora deploy") < command.index("prefect worker start")  # registers, then works

    port = re.search(r"--port (\d+)", _command(server)).group(1)
    env = worker["environment"]
    assert env["PREFECT_API_URL"] == f"http://prefect-server:{port}/api"
    assert worker["depends_on"] == {"prefect-server": {"condition": "service_healthy"}}

    mounts = {volume.rsplit(":", 1)[1]: volume.rsplit(":", 1)[0] for volume in worker["volumes"]}
    assert env["PLORA_HOME"] in mounts  # the plora home lives on a volume
    workdir = [args for instruction, args in dockerfile if instruction == "WORKDIR"][-1]
    assert env["PLORA_REPO"] == workdir == _env(dockerfile)["PLORA_REPO"]  # the pull step's directory
    assert _env(dockerfile)["PLORA_HOME"] == env["PLORA_HOME"]

    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]

    named = {source for source in mounts.values() if not source.startswith((".", "/", "$"))}
    assert named <= set(compose["volumes"])


def test_dockerfile_installs_plora_from_the_tree(dockerfile: list[tuple[str, str]]) -> None:
    instructions = [instruction for instruction, _ in dockerfile]
    assert instructions[0] in ("FROM", "ARG") and any(a.startswith("python:3.11") for i, a in dockerfile if i == "FROM")
    runs = " ".join(args for instruction, args in dockerfile if instruction == "RUN")
    assert "git" in runs and 'pip install -e ".[postgres]"' in runs and "TORCH_SPEC" in runs
    assert ("COPY", ". .") in dockerfile
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv"} <= set(ignored)
