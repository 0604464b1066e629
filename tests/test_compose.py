"""docker-compose.yml, Dockerfile and .dockerignore, checked by reading them (Docker can't run in CI):
the services, their commands, volumes and GPU, that the worker serves prefect.yaml's pool, and that
its plora store (its own database on the postgres service) sets up on a real PostgreSQL server."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import text

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


def _interpolate(text: str) -> str:
    """Compose's ``${VAR:-default}`` with nothing set: the defaults a plain ``docker compose up`` uses."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)


def test_worker_keeps_the_plora_store_in_its_own_postgres_database(compose: dict[str, Any]) -> None:
    from sqlalchemy.engine import make_url

    postgres, worker = compose["services"]["postgres"], compose["services"]["worker"]
    url = make_url(_interpolate(worker["environment"]["PLORA_STORE_URL"]))
    assert url.drivername == "postgresql+psycopg" and importlib.util.find_spec("psycopg") is not None
    assert (url.host, url.port, url.database) == ("postgres", 5432, "plora")  # the compose service, not prefect's db
    assert url.database != postgres["environment"]["POSTGRES_DB"]
    (init,) = postgres["configs"]
    assert init["target"].startswith("/docker-entrypoint-initdb.d/") and init["target"].endswith(".sql")
    script = compose["configs"][init["source"]]["content"]
    assert f"CREATE DATABASE {url.database} OWNER {url.username};" in script
    assert (
        "${PLORA_DB_PASSWORD:-plora}" in script
        and "${PLORA_DB_PASSWORD:-plora}" in worker["environment"]["PLORA_STORE_URL"]
    )


def test_compose_store_set_up_works_on_a_real_postgres(compose: dict[str, Any], postgres_server) -> None:
    """The init script, run as the image runs it (as the superuser), then a store on the worker's
    PLORA_STORE_URL (host and port made this test server's): migrations apply, as that role."""
    import psycopg
    from sqlalchemy.engine import make_url

    from storage import Store
    from tests.postgres import SUPERUSER

    postgres, worker = compose["services"]["postgres"], compose["services"]["worker"]
    script = _interpolate(compose["configs"][postgres["configs"][0]["source"]]["content"])
    url = make_url(_interpolate(worker["environment"]["PLORA_STORE_URL"]))
    admin = psycopg.connect(host="127.0.0.1", port=postgres_server.port, user=SUPERUSER, dbname="postgres")
    admin.autocommit = True
    try:
        for statement in filter(None, (part.strip() for part in script.split(";"))):
            admin.execute(statement)
        store = Store(url.set(host="127.0.0.1", port=postgres_server.port).render_as_string(hide_password=False))
        try:
            store.upgrade()
            with store.read() as session:
                owner = session.execute(text("SELECT current_user, current_database()")).one()
            assert tuple(owner) == (url.username, url.database)
        finally:
            store.dispose()
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {url.database} WITH (FORCE)")
        admin.execute(f"DROP ROLE IF EXISTS {url.username}")
        admin.close()
