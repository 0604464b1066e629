"""A workspace: the home folder, its config and its store, opened together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.base.names import base_name_problem, target_modules_problem
from pipeline.config import Config, ConfigError, load_config
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


def check_base(config: Config) -> None:
    """The config's base model and each profile's LoRA target modules, checked up front (no model is
    loaded, nothing is downloaded): a ConfigError naming the key (exit 2), not a failure mid-run."""
    base = config.base_model.name
    problem = base_name_problem(base, config.home)
    if problem is not None:
        raise ConfigError(config.file, "base_model.name", problem)
    for name, profile in config.profiles.items():
        problem = target_modules_problem(base, config.home, profile.lora.target_modules)
        if problem is not None:
            raise ConfigError(config.file, f"profiles.{name}.lora.target_modules", problem)


def open_workspace(home: Path | str | None = None, *, check_paths: bool = True) -> Workspace:
    """Load the config and open the store, applying any pending migration (first use included).

    The home must exist (``Home.require``: only ``plora init`` creates one). Opening and migrating
    hold the home's ``store`` lock, so processes starting together on a fresh home migrate it once."""
    resolved = Home.resolve(home).require()
    config = load_config(resolved.root, check_paths=check_paths)
    check_base(config)
    store = Store(config.store_url)
    try:
        with hold(resolved.root, "store", what="the store's migration", timeout=STORE_LOCK_TIMEOUT_S):
            store.upgrade()
    except BaseException:
        store.dispose()
        raise
    return Workspace(resolved, config, store)
