"""A throw-away PostgreSQL server for the tests: ``initdb`` + ``pg_ctl`` in a temp folder, listening
on a free loopback port only, trust auth for its one (super)user, durability off (fsync) for speed.

Why not pytest-postgresql: it runs ``pg_ctl`` as the calling user, and CI runs as root, which
PostgreSQL refuses; here the server runs as the unprivileged ``postgres`` user (the one Debian's
package creates) when the tests run as root, and as the calling user otherwise.

The server binaries come from ``$PLORA_TEST_PG_BINDIR``, else the ``pg_ctl`` on PATH, else
Debian's ``/usr/lib/postgresql/<version>/bin``. None found is a set-up error that says what to
install (``make test`` installs it), never a skipped test.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

SUPERUSER = "plora_admin"  # not "plora": docker-compose.yml's store role is created in tests too
DEBIAN_VERSIONS = Path("/usr/lib/postgresql")  # Debian's server packages: <version>/bin/{initdb,pg_ctl}
TEMPLATE = "plora_migrated"  # a database at the schema's head, copied for each test that wants one
INSTALL_HINT = (
    "PostgreSQL server not found (the store tests run on SQLite and on PostgreSQL): run `make test`, "
    "which installs it, or install it yourself: `apt-get install -y postgresql` as root on Debian/Ubuntu "
    "(or set PLORA_TEST_PG_BINDIR to the folder holding initdb and pg_ctl)"
)


class PostgresMissing(RuntimeError):
    pass


def find_bindir() -> Path:
    """The folder with ``initdb`` and ``pg_ctl``."""
    candidates: list[Path] = []
    if os.environ.get("PLORA_TEST_PG_BINDIR"):
        candidates.append(Path(os.environ["PLORA_TEST_PG_BINDIR"]))
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    debian = DEBIAN_VERSIONS
    if debian.is_dir():
        versions = [p for p in debian.iterdir() if p.name.split(".")[0].isdigit()]
        candidates += [p / "bin" for p in sorted(versions, key=lambda p: int(p.name.split(".")[0]), reverse=True)]
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise PostgresMissing(INSTALL_HINT)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresServer:
    """One running server; ``database()`` gives each test a database of its own."""

    bindir: Path
    root: Path
    port: int
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @classmethod
    def start(cls) -> PostgresServer:
        bindir = find_bindir()
        root = Path(tempfile.mkdtemp(prefix="plora-pg-"))
        runas = _server_user()
        if runas is not None:
            os.chown(root, runas.pw_uid, runas.pw_gid)
        data = root / "data"
        _run(runas, [bindir / "initdb", "-D", data, "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync"])
        for attempt in range(3):  # the port is free when chosen; another process may take it first
            port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            started = _run(
                runas,
                [bindir / "pg_ctl", "-D", data, "-l", root / "server.log", "-w", "-t", "60", "-o", options, "start"],
                check=attempt == 2,
            )
            if started:
                break
        server = cls(bindir, root, port)
        with server._admin() as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        return server

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def database(self, *, migrated: bool = True) -> str:
        """A new database (at the schema's head, else empty); returns its name."""
        name = f"test_{next(self._counter)}"
        with self._admin() as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE if migrated else 'template0'}")
        return name

    def migrate_template(self) -> None:
        """Bring the template database to the schema's head (once per session)."""
        from sqlalchemy import create_engine

        from storage.migrate import upgrade

        engine = create_engine(self.url(TEMPLATE))
        try:
            upgrade(engine)
        finally:
            engine.dispose()

    def drop(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def wipe(self, name: str) -> None:
        """Empty a database completely (schema and data), as deleting a SQLite file does."""
        self.drop(name)
        with self._admin() as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template0")

    def stop(self) -> None:
        runas = _server_user()
        _run(runas, [self.bindir / "pg_ctl", "-D", self.root / "data", "-m", "immediate", "-w", "stop"], check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True)


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: ``postgres`` when we are root (PostgreSQL refuses root), else we."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresMissing(
            "the tests run as root and PostgreSQL refuses root, but there is no `postgres` user to run it as: "
            "install Debian's `postgresql` package (it creates one) or `useradd --system postgres`"
        ) from None


def _run(runas: pwd.struct_passwd | None, command: list[str | Path], *, check: bool = True) -> bool:
    argv = [str(part) for part in command]
    if runas is not None:
        argv = ["runuser", "-u", runas.pw_name, "--", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/")
    if done.returncode != 0 and check:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stdout}{done.stderr}")
    return done.returncode == 0
