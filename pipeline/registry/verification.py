"""Verification: a version folder against its manifest, and the manifest against the store.

``verify`` reports every problem at once: the manifest's sha256 differs from the store's record, its
identity or base differs from the row's, a listed file is missing or differs in size or sha256, a
file is there that isn't listed, or a pickle-format file (``*.bin``, ``*.pt``, ...) is there at all.
Weights offered for registration must be a complete safetensors file (``safetensors.safe_open``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pipeline.errors import RegistryError
from pipeline.integrity import FolderManifest, sha256_bytes
from pipeline.registry.manifest import (
    CONFIG_FILE,
    MANIFEST,
    MANIFEST_FORMAT,
    WEIGHTS_FILE,
    AdapterManifest,
    is_pickle_name,
)
from pipeline.registry.refs import relative
from pipeline.registry.versions import AdapterVersion, resolve
from pipeline.workspace import Workspace
from storage import adapters as rows


def safetensors_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete safetensors file (header and data length), or None."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy"):
            return None
    except SafetensorError as e:
        return f"not a complete safetensors file (truncated or corrupt: {e})"
    except OSError as e:
        return f"can't be read ({e.strerror or e})"


def _identity_problems(manifest: AdapterManifest, version: AdapterVersion) -> list[str]:
    problems = []
    if manifest.format != MANIFEST_FORMAT:
        problems.append(f"{MANIFEST}: format {manifest.format!r}, expected {MANIFEST_FORMAT!r}")
    if (manifest.profile, manifest.version) != (version.profile, version.version):
        problems.append(f"{MANIFEST}: describes {manifest.ref}, not {version.ref}")
    base = manifest.base_model
    if base.fingerprint != version.base_fingerprint:
        problems.append(
            f"{MANIFEST}: base fingerprint {base.fingerprint[:12]}... does not match "
            f"the registered base fingerprint {version.base_fingerprint[:12]}..."
        )
    if base.name != version.base_model:
        problems.append(f"{MANIFEST}: base model {base.name!r} does not match the registered {version.base_model!r}")
    return problems


def _bad_name(name: str) -> bool:
    return "/" in name or "\\" in name or name in ("", ".", "..", MANIFEST)


def folder_problems(version: AdapterVersion) -> tuple[AdapterManifest | None, list[str]]:
    """Check a version folder against its manifest and the store's record; (manifest, problems)."""
    path = version.path
    if path.is_symlink() or not path.is_dir():
        return None, [f"folder {path} is missing" + (" (a symlink is not accepted)" if path.is_symlink() else "")]
    problems: list[str] = []
    manifest: AdapterManifest | None = None
    try:
        raw: bytes | None = (path / MANIFEST).read_bytes()
    except OSError:
        problems.append(f"{MANIFEST}: missing")
        raw = None
    if raw is not None:
        if version.manifest_sha256 is not None and sha256_bytes(raw) != version.manifest_sha256:
            problems.append(
                f"{MANIFEST}: sha256 differs from the one recorded at registration (the manifest was modified)"
            )
        try:
            manifest = AdapterManifest.from_bytes(raw)
        except ValueError as e:
            problems.append(f"{MANIFEST}: {e}")

    files = manifest.files if manifest is not None else FolderManifest({})
    if manifest is not None:
        problems += _identity_problems(manifest, version)
        if not files:
            problems.append(f"{MANIFEST}: no file list")
        problems += [
            f"{required}: not in the manifest" for required in (CONFIG_FILE, WEIGHTS_FILE) if required not in files
        ]

    present = {entry.name: entry for entry in path.iterdir()}
    for name, entry in sorted(present.items()):
        if name == MANIFEST:
            continue
        if is_pickle_name(name):
            problems.append(f"{name}: pickle-format file refused (plora loads safetensors only); remove it")
        elif name not in files and raw is not None:
            problems.append(f"{name}: unexpected {'folder' if entry.is_dir() else 'file'}, not in the manifest")
    problems += [f"{MANIFEST}: bad file entry {name!r}" for name in files if _bad_name(name)]
    checked = FolderManifest(
        {
            name: entry
            for name, entry in files.entries.items()
            if not _bad_name(name) and not (is_pickle_name(name) and name in present)  # pickles: reported above
        }
    )
    problems += [mismatch.describe(since="registration") for mismatch in checked.mismatches(path)]
    return manifest, problems


def verified(version: AdapterVersion) -> AdapterVersion:
    """``version`` with its verified manifest; a RegistryError listing every problem."""
    manifest, problems = folder_problems(version)
    if problems or manifest is None:
        raise RegistryError(f"adapter {version.ref} ({version.path}) failed verification: " + "; ".join(problems))
    return replace(version, manifest=manifest)


def verify(workspace: Workspace, ref_or_version: str | AdapterVersion) -> AdapterVersion:
    """Check every file of a version against its manifest and the manifest against the store.

    Returns the version with its verified manifest; raises RegistryError listing every problem."""
    ref = ref_or_version.ref if isinstance(ref_or_version, AdapterVersion) else ref_or_version
    version = resolve(workspace, ref)
    with workspace.store.read() as session:
        row = rows.get_adapter(session, version.profile, version.version)
        recorded_path = row.path if row is not None else None
    version = verified(version)
    if recorded_path != relative(workspace, version.path):
        raise RegistryError(
            f"adapter {version.ref}: the store records path {recorded_path!r}, "
            f"expected {relative(workspace, version.path)!r}"
        )
    return version


def read_checked(version: AdapterVersion, name: str) -> bytes:
    """The bytes of a verified file, re-hashed here: what is loaded is exactly what was checked."""
    entry = version.require_manifest().files[name]
    data = (version.path / name).read_bytes()
    if not entry.matches(data):
        raise RegistryError(f"adapter {version.ref}: {name} changed while loading; verify it and try again")
    return data
