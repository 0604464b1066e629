"""The test PostgreSQL server itself (tests/postgres.py): loopback only, and no server installed is a
set-up error that names the command to run, not a skip."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests import postgres
from tests.postgres import PostgresServer


def test_the_server_listens_on_loopback_only(postgres_server: PostgresServer) -> None:
    with psycopg.connect(host="127.0.0.1", port=postgres_server.port, user=postgres.SUPERUSER, dbname="postgres") as c:
        assert c.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert c.execute("SHOW fsync").fetchone() == ("off",)


def test_no_server_installed_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PLORA_TEST_PG_BINDIR", str(tmp_path / "nothing"))
    monkeypatch.setattr(postgres, "DEBIAN_VERSIONS", tmp_path / "no-such-folder")
    with pytest.raises(postgres.PostgresMissing, match=r"apt-get install -y postgresql"):
        postgres.find_bindir()
