"""Which versions exist: the store's rows as ``AdapterVersion``, by ref, current pointer or profile."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import RegistryError, UsageError
from pipeline.registry.manifest import MANIFEST, AdapterManifest
from pipeline.registry.refs import check_profile, format_ref, parse_ref, version_dir
from pipeline.workspace import Workspace
from storage import adapters as rows
from storage.models import Adapter, AdapterStatus


@dataclass(frozen=True)
class AdapterVersion:
    """One registered version. ``manifest`` is its plora.json as read (None when missing or
    unreadable: run ``verify``); ``manifest_sha256`` is the store's record of it, checked by ``attach``."""

    profile: str
    version: int
    path: Path
    status: str  # "accepted" | "rejected"
    parent_version: int | None
    base_model: str
    base_fingerprint: str
    manifest: AdapterManifest | None
    manifest_sha256: str | None = None

    @property
    def ref(self) -> str:
        return format_ref(self.profile, self.version)

    def require_manifest(self) -> AdapterManifest:
        """The manifest (always there after ``verify``); a RegistryError when it couldn't be read."""
        if self.manifest is None:
            raise RegistryError(
                f"adapter {self.ref}: its {MANIFEST} is missing or unreadable; see `plora adapters verify {self.ref}`"
            )
        return self.manifest


def to_version(workspace: Workspace, row: Adapter, manifest: AdapterManifest | None = None) -> AdapterVersion:
    """The version of a store row, its manifest read from its folder unless given."""
    path = version_dir(workspace, row.profile, row.version)
    return AdapterVersion(
        profile=row.profile,
        version=row.version,
        path=path,
        status=AdapterStatus(row.status).value,
        parent_version=row.parent_version,
        base_model=row.base_model,
        base_fingerprint=row.base_fingerprint,
        manifest=AdapterManifest.read_quietly(path) if manifest is None else manifest,
        manifest_sha256=row.manifest_sha256,
    )


def known(session: Any, profile: str) -> str:
    """The profile's version numbers for an error message (``v1, v2`` or ``none registered``)."""
    versions = sorted(rows.versions_of(session, profile))
    return ", ".join(f"v{v}" for v in versions) if versions else "none registered"


def current(workspace: Workspace, profile: str) -> AdapterVersion | None:
    """The version the profile's ``current`` pointer is at, or None."""
    check_profile(profile)
    with workspace.store.read() as session:
        number = rows.current_version(session, profile)
        if number is None:
            return None
        row = rows.get_adapter(session, profile, number)
        if row is None:
            raise RegistryError(f"{profile}: current points to v{number}, which is not registered")
        return to_version(workspace, row)


def resolve(workspace: Workspace, ref: str) -> AdapterVersion:
    """``PROFILE`` (its current version) or ``PROFILE@vN``; UsageError when there is no such version."""
    profile, number = parse_ref(ref)
    with workspace.store.read() as session:
        if number is None:
            number = rows.current_version(session, profile)
            if number is None:
                raise UsageError(
                    f"adapter {profile}: no current version (versions: {known(session, profile)}); "
                    f"train one or `plora adapters promote {profile}@vN`"
                )
        row = rows.get_adapter(session, profile, number)
        if row is None:
            raise UsageError(f"no adapter {profile}@v{number} (versions of {profile}: {known(session, profile)})")
        return to_version(workspace, row)


def list_versions(workspace: Workspace, profile: str | None = None) -> list[AdapterVersion]:
    """Every registered version (of one profile), by profile then version."""
    if profile is not None:
        check_profile(profile)
    with workspace.store.read() as session:
        return [to_version(workspace, row) for row in rows.list_adapters(session, profile)]


def current_versions(workspace: Workspace) -> dict[str, int | None]:
    """profile -> its current version number (None when the pointer is unset)."""
    with workspace.store.read() as session:
        return rows.current_versions(session)
