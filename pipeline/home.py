"""The home folder: all of a person's plora state lives under one directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import CONFIG_FILE
from pipeline.errors import UsageError

STORE_FILE = "plora.db"
"""The default store (``store.url = "sqlite:///plora.db"``)."""


class UnsafeNameError(UsageError, ValueError):
    """A name from config or the command line would leave the home folder (a usage error: exit 2)."""


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def resolve(cls, home: Path | str | None = None) -> Home:
        """``--home``, else ``$PLORA_HOME``, else the current directory."""
        chosen = home if home not in (None, "") else os.environ.get("PLORA_HOME") or Path.cwd()
        return cls(Path(chosen).expanduser().resolve())

    def require(self) -> Home:
        """This home, when it is one (a folder holding plora.toml or a store, plora.db); else the
        UsageError saying there is no plora home there. Only ``plora init`` makes a home, so a typo
        in --home or PLORA_HOME never creates folders and an empty store."""
        if (self.root / CONFIG_FILE).is_file() or (self.root / STORE_FILE).is_file():
            return self
        shown = os.fsencode(self.root).decode("utf-8", "backslashreplace")
        why = "no such folder" if not self.root.exists() else f"no {CONFIG_FILE} in it"
        raise UsageError(
            f"there is no plora home at {shown} ({why}): check --home or PLORA_HOME, "
            f"or create one with `plora init --home {shown}`"
        )

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def adapters(self) -> Path:
        return self.root / "adapters"

    @property
    def models(self) -> Path:
        return self.root / "models"

    def child(self, base: Path, *names: str) -> Path:
        """``base/names...``, refusing names that are empty, absolute, contain NUL or ``..``."""
        path = base
        for name in names:
            if not name or "\x00" in name or name in (".", "..") or "/" in name or "\\" in name:
                raise UnsafeNameError(f"{name!r} is not a valid name here (no '/', '..' or NUL)")
            path = path / name
        if not path.resolve().is_relative_to(self.root):
            raise UnsafeNameError(f"{path} is outside the plora home {self.root}")
        return path
