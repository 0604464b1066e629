"""Names and places: profile names, adapter refs (``PROFILE`` / ``PROFILE@vN``) and version folders."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.errors import UsageError
from pipeline.workspace import Workspace

_PROFILE = re.compile(r"[a-z0-9_-]{1,64}")
_REF = re.compile(r"(?P<profile>[a-z0-9_-]{1,64})(?:@v?(?P<version>[0-9]{1,9}))?")
_VERSION_DIR = re.compile(r"v(?P<version>[0-9]+)")


def check_profile(profile: str) -> str:
    if not isinstance(profile, str) or not _PROFILE.fullmatch(profile):
        raise UsageError(f"profile {profile!r}: expected 1-64 characters of a-z, 0-9, '_' and '-'")
    return profile


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``"work"`` -> ("work", None) (the current version); ``"work@v2"`` (or ``"work@2"``) -> ("work", 2)."""
    match = _REF.fullmatch(ref.strip()) if isinstance(ref, str) else None
    if match is None:
        raise UsageError(f"adapter ref {ref!r}: expected PROFILE (its current version) or PROFILE@vN, e.g. work@v3")
    version = match["version"]
    return match["profile"], int(version) if version is not None else None


def format_ref(profile: str, version: int) -> str:
    return f"{profile}@v{version}"


def profile_dir(workspace: Workspace, profile: str) -> Path:
    """``adapters/<profile>/``."""
    return workspace.home.child(workspace.home.adapters, profile)


def version_dir(workspace: Workspace, profile: str, version: int) -> Path:
    """``adapters/<profile>/v<N>/``."""
    return workspace.home.child(workspace.home.adapters, profile, f"v{version}")


def version_of_folder(name: str) -> int | None:
    """N for a folder named ``v<N>``, else None."""
    match = _VERSION_DIR.fullmatch(name)
    return int(match["version"]) if match else None


def relative(workspace: Workspace, path: Path) -> str:
    """``path`` relative to the home, as the store records it."""
    return path.relative_to(workspace.home.root).as_posix()
