"""Many workers, one store: registrations of one profile from several machines at once.

Each "machine" is its own home (its own adapters/ folder) on one shared store, SQLite and then a
real Postgres server. Several threads register the same profile at the same moment (a barrier
releases them together), first on a profile the store has never seen (no pointer row yet), then
again on one it has. Every registration must succeed with its own version number, no row may be
lost, every version must verify in the home that holds its files, and ``current`` must point at
one of them.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from pipeline import registry
from pipeline.workspace import open_workspace
from tests.pipeline.test_registry import CONFIG, Kit, adapter_kit, make_home, register

WORKERS = 4


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return adapter_kit(tmp_path_factory.getbasetemp() / "adapter-kit")


def register_at_once(homes: list[Path], kit: Kit, profile: str) -> list[Any]:
    """One thread per home; each opens its workspace, waits for the others, then registers."""
    barrier = threading.Barrier(len(homes))
    outcomes: list[Any] = [None] * len(homes)

    def work(i: int) -> None:
        try:
            with open_workspace(homes[i]) as workspace:
                barrier.wait(timeout=60)
                outcomes[i] = register(workspace, kit, profile, "ab"[i % 2])
        except BaseException as e:  # noqa: BLE001 - every failure is the test's finding
            outcomes[i] = e

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(homes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    return outcomes


@pytest.mark.timeout(600)
def test_concurrent_registrations_never_collide(store_url: str, tmp_path: Path, kit: Kit) -> None:
    config = CONFIG + f'\n[store]\nurl = "{store_url}"\n'
    homes = [make_home(tmp_path / f"machine-{i}", kit, config) for i in range(WORKERS)]
    (tmp_path / "store").mkdir(exist_ok=True)  # where the SQLite variant's file goes
    with open_workspace(homes[0]):  # the store's tables, once (machines that share a store migrate it once)
        pass
    registered: dict[int, Path] = {}
    for round_ in (1, 2):  # 1: the profile is new to the store; 2: it has versions and a pointer
        outcomes = register_at_once(homes, kit, "work")
        failures = [o for o in outcomes if not hasattr(o, "version")]
        assert not failures, failures
        for home, version in zip(homes, outcomes, strict=True):
            assert version.version not in registered, (round_, version.version)
            registered[version.version] = home
    assert sorted(registered) == list(range(1, 2 * WORKERS + 1))

    with open_workspace(homes[0]) as workspace:
        rows = registry.list_versions(workspace, "work")
        assert [v.version for v in rows] == sorted(registered)  # no row lost
        current = registry.current(workspace, "work")
        assert current is not None and current.version in registered
    for number, home in registered.items():
        with open_workspace(home) as workspace:
            registry.verify(workspace, f"work@v{number}")  # the files are where the row says
