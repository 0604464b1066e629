"""The ``current`` pointer of a profile: ``promote`` and ``rollback`` move it; versions never change."""

from __future__ import annotations

from pipeline.errors import RegistryError
from pipeline.registry.refs import check_profile, format_ref
from pipeline.registry.verification import verify
from pipeline.registry.versions import AdapterVersion, known
from pipeline.workspace import Workspace
from storage import adapters as rows
from storage.models import AdapterStatus


def promote(workspace: Workspace, ref: str, *, force: bool = False) -> AdapterVersion:
    """Move the profile's current pointer to ``ref`` after verifying it. A version the eval gate
    rejected needs ``force=True``. The version itself never changes."""
    version = verify(workspace, ref)
    if version.status != AdapterStatus.accepted.value and not force:
        reasons = "; ".join(version.require_manifest().gate.reasons) or "no reason given"
        raise RegistryError(f"{version.ref} was rejected by the eval gate ({reasons}); promote it anyway with --force")
    with workspace.store.write() as session:
        pointer = rows.lock_pointer(session, version.profile)
        if rows.get_adapter(session, version.profile, version.version) is None:
            raise RegistryError(f"{version.ref} disappeared from the store")
        rows.set_current(session, pointer, version.version)
    return version


def rollback(workspace: Workspace, profile: str) -> AdapterVersion:
    """Move ``current`` back to the newest *accepted* version numbered below the current one.

    Defined on version order, not on pointer history: rolling back again goes further back, and a
    version promoted out of order rolls back to the accepted version just below it. The target is
    verified first; a target that fails verification is an error (nothing moves)."""
    check_profile(profile)
    with workspace.store.read() as session:
        number = rows.current_version(session, profile)
        if number is None:
            raise RegistryError(
                f"{profile}: no current version to roll back from (versions: {known(session, profile)})"
            )
        target = rows.previous_accepted(session, profile, number)
        if target is None:
            raise RegistryError(f"{profile}: no accepted version before v{number} to roll back to")
        target_ref = format_ref(profile, target.version)
    version = verify(workspace, target_ref)
    with workspace.store.write() as session:
        pointer = rows.lock_pointer(session, profile)
        if pointer.current_version != number:
            raise RegistryError(
                f"{profile}: current moved to v{pointer.current_version} meanwhile; "
                "check `plora adapters list` and try again"
            )
        rows.set_current(session, pointer, version.version)
    return version
