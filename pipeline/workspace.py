"""A workspace: the home folder, its config and its store, opened together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config, load_config
from pipeline.home import Home
from storage import Store


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
    """Load the config and open the store, applying any pending migration (first use included)."""
    resolved = Home.resolve(home)
    config = load_config(resolved.root, check_paths=check_paths)
    store = Store(config.store_url)
    store.upgrade()
    return Workspace(resolved, config, store)
