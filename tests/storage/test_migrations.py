from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from storage import Store
from storage.migrate import current_revision, downgrade, head_revision, upgrade
from storage.models import Base


def test_upgrade_from_empty_then_downgrade_to_base(store_url: str) -> None:
    store = Store(store_url)
    assert current_revision(store.engine) is None

    assert upgrade(store.engine) == head_revision()
    tables = set(inspect(store.engine).get_table_names())
    assert {
        "sources",
        "documents",
        "messages",
        "labels",
        "redactions",
        "dataset_snapshots",
        "training_runs",
        "adapters",
        "profile_pointers",
    } <= tables

    assert downgrade(store.engine) == "base"
    assert set(inspect(store.engine).get_table_names()) == {"alembic_version"}
    assert upgrade(store.engine) == head_revision()
    store.dispose()


def test_autogenerate_finds_no_drift(store_url: str) -> None:
    store = Store(store_url)
    upgrade(store.engine)
    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True, "render_as_batch": True}
        )
        diff = compare_metadata(context, Base.metadata)
    store.dispose()
    assert diff == []


def test_sqlite_pragmas(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/plora.db")
    upgrade(store.engine)
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 10_000


def test_store_in_a_missing_folder_is_created(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/deep/er/plora.db")
    upgrade(store.engine)
    assert (tmp_path / "deep/er/plora.db").exists()
