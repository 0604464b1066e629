"""Options shared by every command (``--home``, ``--json``, ``--profile``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home", help="plora home folder (default: $PLORA_HOME, else the current directory)", show_default=False
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
ProfileOption = Annotated[
    str | None,
    typer.Option("--profile", help="The profile (default: the first one in plora.toml).", show_default=False),
]
