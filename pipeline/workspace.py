"""A workspace: the home folder, its config and its store, opened together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config, load_config
from pipeline.home import Home
from pipeline.locks import hold
from storage import Store

STORE_LOCK_TIMEOUT_S = 600.0


@dataclass
class Workspace:
    home: Home
    config: Config
    store: Store

    def close(self) -> None:
        self.store.dispose()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def open_workspace(home: Path | str | None = None, *, check_paths: bool = True) -> Workspace:
    """Load the config and open the store, applying any pending migration (first use included).

    The home must exist (``Home.require``: only ``plora init`` creates one). Opening and migrating
    hold the home's ``store`` lock, so processes starting together on a fresh home migrate it once."""
    resolved = Home.resolve(home).require()
    config = load_config(resolved.root, check_paths=check_paths)
    store = Store(config.store_url)
    try:
        with hold(resolved.root, "store", what="the store's migration", timeout=STORE_LOCK_TIMEOUT_S):
            store.upgrade()
    except BaseException:
        store.dispose()
        raise
    return Workspace(resolved, config, store)
