"""Version folders the store doesn't know, and adopting them back: ``plora adapters adopt``.

A ``v<N>`` folder under ``adapters/<profile>/`` with no row in the store is not a crash leftover
(those carry a pending marker and are removed by the next registration): the store was replaced,
restored from an older copy, or ``store.url`` points at another database. Such a folder is never
removed. ``unregistered`` lists them, each checked against its own manifest (every file's sha256
and size, no pickles, the manifest naming this profile and number); ``adopt`` adds a row for each
one that checks out, under its own number, with the manifest's base, status and metrics. A profile
left without a current version gets its newest adopted accepted one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pipeline.errors import UsageError
from pipeline.integrity import sha256_bytes
from pipeline.registry.manifest import MANIFEST, AdapterManifest
from pipeline.registry.publish import unregistered_folders
from pipeline.registry.refs import check_profile, format_ref, profile_dir, relative
from pipeline.registry.verification import folder_problems
from pipeline.registry.versions import AdapterVersion
from pipeline.workspace import Workspace
from storage import adapters as rows
from storage.models import AdapterStatus, utcnow


@dataclass(frozen=True)
class Unregistered:
    """A ``v<N>`` folder the store has no row for. ``problems`` empty: it verifies against its own
    manifest and can be adopted."""

    ref: str
    path: Path
    problems: tuple[str, ...]
    manifest: AdapterManifest | None
    manifest_sha256: str | None


@dataclass
class AdoptReport:
    """What ``adopt`` did; the fields are the ``plora adapters adopt --json`` document."""

    adopted: list[str] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)  # {"ref", "path", "reason"}
    current: dict[str, str] = field(default_factory=dict)  # profile -> ref made current


def _profiles(workspace: Workspace, profile: str | None) -> list[str]:
    if profile is not None:
        return [check_profile(profile)]
    root = workspace.home.adapters
    if not root.is_dir():
        return []
    names = []
    for entry in sorted(root.iterdir()):
        try:
            names.append(check_profile(entry.name))
        except UsageError:
            continue  # not a profile folder plora made
    return names


def _check(profile: str, number: int, path: Path) -> Unregistered:
    ref = format_ref(profile, number)
    try:
        raw = (path / MANIFEST).read_bytes()
        manifest = AdapterManifest.from_bytes(raw)
    except (OSError, ValueError) as e:
        reason = "no manifest" if isinstance(e, FileNotFoundError) else f"manifest unreadable ({e})"
        return Unregistered(ref, path, (f"{MANIFEST}: {reason}",), None, None)
    version = AdapterVersion(
        profile=profile,
        version=number,
        path=path,
        status=manifest.status.value,
        parent_version=manifest.parent_version,
        base_model=manifest.base_model.name,
        base_fingerprint=manifest.base_model.fingerprint,
        manifest=manifest,
    )
    _, problems = folder_problems(version)
    return Unregistered(ref, path, tuple(problems), manifest, sha256_bytes(raw))


def unregistered(workspace: Workspace, profile: str | None = None) -> list[Unregistered]:
    """Every ``v<N>`` folder (of ``profile``, or of every profile folder) the store has no row for."""
    found = []
    for name in _profiles(workspace, profile):
        with workspace.store.read() as session:
            registered = rows.versions_of(session, name)
        for number, path in unregistered_folders(profile_dir(workspace, name), registered):
            found.append(_check(name, number, path))
    return found


def _created_at(manifest: AdapterManifest) -> datetime:
    try:
        return datetime.fromisoformat(manifest.created_at)
    except ValueError:
        return utcnow()


def adopt(workspace: Workspace, profile: str | None = None) -> AdoptReport:
    """Add a store row for every unregistered version folder that verifies against its manifest
    (one transaction per profile); report the others with their problems. Running it twice adopts
    nothing the second time."""
    report = AdoptReport()
    for name in _profiles(workspace, profile):
        with workspace.store.write() as session:
            pointer = rows.lock_pointer(session, name)
            registered = rows.versions_of(session, name)
            accepted = []
            for number, path in unregistered_folders(profile_dir(workspace, name), registered):
                found = _check(name, number, path)
                if found.problems or found.manifest is None or found.manifest_sha256 is None:
                    reason = "; ".join(found.problems) or "no manifest"
                    report.refused.append({"ref": found.ref, "path": str(path), "reason": reason})
                    continue
                manifest = found.manifest
                run_id = manifest.run_id if manifest.run_id and rows.run_exists(session, manifest.run_id) else None
                rows.add_adapter(
                    session,
                    profile=name,
                    version=number,
                    parent_version=manifest.parent_version,
                    status=manifest.status,
                    path=relative(workspace, path),
                    base_model=manifest.base_model.name,
                    base_fingerprint=manifest.base_model.fingerprint,
                    manifest_sha256=found.manifest_sha256,
                    run_id=run_id,
                    metrics=dict(manifest.metrics),
                    created_at=_created_at(manifest),
                )
                report.adopted.append(found.ref)
                if manifest.status is AdapterStatus.accepted:
                    accepted.append(number)
            if pointer.current_version is None and accepted:
                rows.set_current(session, pointer, max(accepted))
                report.current[name] = format_ref(name, max(accepted))
    return report
