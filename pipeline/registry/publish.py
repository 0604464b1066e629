"""Registration: a PEFT folder becomes the profile's next immutable version, atomically.

1. The PEFT files are copied into ``adapters/<profile>/.staging-<host>-<pid>-<id>/``, fsynced and
   hashed there.
2. Holding the store's write lock, the next number is taken, the model card and the manifest are
   written into the staging folder, a marker ``.pending-v<N>-<host>-<pid>`` is written beside it,
   the folder is renamed to ``v<N>`` and the row (and pointer) is added.
3. The transaction commits; the marker is removed.

A version exists when its row exists; a crash leaves at most a staging folder, or a ``v<N>`` folder
without a row *and* its pending marker, which nothing lists or loads and the next registration
removes (``_clean_profile_dir``). Nothing else is ever removed: a ``v<N>`` folder the store doesn't
know and no marker of a dead registration claims (the store was replaced, restored from an older
copy, or store.url points elsewhere) is reported and kept, its number is never reused, and
``pipeline.registry.adopt`` imports it back into the store.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.base.fingerprint import TOKENIZER_FILES
from pipeline.base_model import BUILTIN_TINY_LLAMA, builtin_model_dir
from pipeline.errors import RegistryError
from pipeline.integrity import FileEntry, FolderManifest, atomic_write, copy_durably, fsync_dir, validation_summary
from pipeline.locks import left_by_dead_process, owner
from pipeline.registry.card import model_card
from pipeline.registry.manifest import (
    CONFIG_FILE,
    MANIFEST,
    MANIFEST_FORMAT,
    MODEL_CARD,
    WEIGHTS_FILE,
    AdapterManifest,
    BaseModelInfo,
    Composition,
    jsonable,
    lora_summary,
    plora_version,
)
from pipeline.registry.refs import check_profile, profile_dir, relative, version_dir, version_of_folder
from pipeline.registry.serving import check_folder
from pipeline.registry.verification import safetensors_problem
from pipeline.registry.versions import AdapterVersion, to_version
from pipeline.workspace import Workspace
from storage import adapters as rows
from storage.models import AdapterStatus, utcnow

log = logging.getLogger(__name__)

_STAGING = ".staging-"
_TRASH = ".trash-"
_PENDING = ".pending-"


def _checkpoint(step: str) -> None:
    """Called between the steps of a registration ("staged", "manifest", "renamed", "row",
    "committed"); tests replace it to crash there. Does nothing."""


# --- what is copied -------------------------------------------------------------------------------


def _local_base_folder(workspace: Workspace, base_model: str) -> Path | None:
    """The base model's folder when it is on this machine without a download, else None."""
    if base_model == BUILTIN_TINY_LLAMA:
        folder = builtin_model_dir(workspace.home.root)
        return folder if folder.is_dir() else None
    if base_model.startswith("builtin:"):
        return None
    path = Path(base_model).expanduser()
    if not path.is_absolute():
        path = workspace.home.root / path
    return path if path.is_dir() else None


def _read_peft_config(adapter_dir: Path) -> dict[str, Any]:
    """``adapter_config.json`` of a PEFT folder, checked: a LoRA config."""
    try:
        config = json.loads((adapter_dir / CONFIG_FILE).read_bytes())
    except (OSError, ValueError) as e:
        raise RegistryError(f"{adapter_dir / CONFIG_FILE}: not valid JSON ({e})") from e
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        found = config.get("peft_type") if isinstance(config, dict) else None
        raise RegistryError(f"{adapter_dir / CONFIG_FILE}: peft_type {found!r}; plora registers LoRA adapters only")
    return config


def _files_to_copy(workspace: Workspace, adapter_dir: Path, base_model: str) -> list[Path]:
    """adapter_config.json, adapter_model.safetensors and the tokenizer files when they differ
    from the base's. Anything else in ``adapter_dir`` (Trainer state, training_args.bin, PEFT's
    README) is left behind."""
    if not adapter_dir.is_dir():
        raise RegistryError(f"adapter folder {adapter_dir} does not exist")
    for required in (CONFIG_FILE, WEIGHTS_FILE):
        if not (adapter_dir / required).is_file():
            hint = (
                " (found adapter_model.bin: pickled weights are refused; save with safetensors)"
                if required == WEIGHTS_FILE and (adapter_dir / "adapter_model.bin").exists()
                else ""
            )
            raise RegistryError(f"{adapter_dir}: no {required}; expected a PEFT save_pretrained() folder{hint}")
    problem = safetensors_problem(adapter_dir / WEIGHTS_FILE)
    if problem:
        raise RegistryError(f"{adapter_dir / WEIGHTS_FILE}: {problem}")

    tokenizer = sorted(path for path in adapter_dir.iterdir() if path.name in TOKENIZER_FILES and path.is_file())
    base = _local_base_folder(workspace, base_model)
    if tokenizer and base is not None:
        same = all(
            (base / path.name).is_file() and (base / path.name).read_bytes() == path.read_bytes() for path in tokenizer
        )
        if same:
            tokenizer = []
    return [adapter_dir / CONFIG_FILE, adapter_dir / WEIGHTS_FILE, *tokenizer]


def _check_sources(sources: dict[str, dict[str, int]] | None) -> dict[str, dict[str, int]]:
    if sources is None:
        return {}
    checked: dict[str, dict[str, int]] = {}
    for source, kinds in sources.items():
        if not isinstance(kinds, dict) or not all(
            isinstance(n, int) and not isinstance(n, bool) for n in kinds.values()
        ):
            raise RegistryError(f"sources[{source!r}]: expected counts by kind, e.g. {{'conversation': 12}}")
        checked[str(source)] = {str(kind): int(count) for kind, count in kinds.items()}
    return checked


# --- staging and leftovers ------------------------------------------------------------------------


def _staging_name() -> str:
    return f"{_STAGING}{owner()}-{uuid.uuid4().hex[:12]}"


def _pending_name(number: int) -> str:
    return f"{_PENDING}v{number}-{owner()}"


def _pending_markers(folder: Path) -> dict[int, list[Path]]:
    """Version number -> the markers of registrations of it that died (on this host)."""
    found: dict[int, list[Path]] = {}
    for entry in folder.iterdir():
        if entry.name.startswith(_PENDING):
            number, _, owner = entry.name[len(_PENDING) :].partition("-")
            version = version_of_folder(number)
            if version is not None and left_by_dead_process(owner):
                found.setdefault(version, []).append(entry)
    return found


def unregistered_folders(folder: Path, registered: set[int]) -> list[tuple[int, Path]]:
    """(N, folder) for each ``v<N>`` folder of a profile folder that the store has no row for, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(
        (number, entry)
        for entry in folder.iterdir()
        if (number := version_of_folder(entry.name)) is not None and number not in registered and entry.is_dir()
    )


def remove_folder(path: Path) -> None:
    """Move a folder out of the way (one rename), then delete it."""
    trash = path.parent / f"{_TRASH}{uuid.uuid4().hex[:12]}"
    try:
        path.rename(trash)
    except OSError:
        trash = path
    shutil.rmtree(trash, ignore_errors=True)


def _clean_profile_dir(folder: Path, registered: set[int]) -> list[int]:
    """Remove what crashed registrations of plora left, and only that: a ``v<N>`` folder without a
    row whose pending marker names a dead process on this host, staging folders of dead processes on
    this host, and trash. Called holding the store's write lock, so no registration of this store is
    between its rename and its commit. Returns the ``v<N>`` folders kept although the store has no
    row for them (their numbers; each logged): never removed, see the module docstring."""
    if not folder.is_dir():
        return []
    pending = _pending_markers(folder)
    kept = []
    for number, entry in unregistered_folders(folder, registered):
        if number in pending:
            log.warning("removing %s: left by an interrupted registration (no store row)", entry)
            remove_folder(entry)
        else:
            log.warning("%s is not in this store (kept; `plora adapters adopt %s` imports it)", entry, folder.name)
            kept.append(number)
    for markers in pending.values():
        for marker in markers:
            marker.unlink(missing_ok=True)
    for entry in folder.iterdir():
        name = entry.name
        if name.startswith(_TRASH):
            shutil.rmtree(entry, ignore_errors=True)
        elif name.startswith(_STAGING) and left_by_dead_process(name[len(_STAGING) :]):
            remove_folder(entry)
    return kept


# --- register -------------------------------------------------------------------------------------


def _manifest(**fields: Any) -> AdapterManifest:
    try:
        return AdapterManifest.model_validate(fields)
    except ValidationError as e:
        ref = f"{fields['profile']}@v{fields['version']}"
        raise RegistryError(f"{ref}: can't be recorded in its manifest ({validation_summary(e)})") from e


def register(
    workspace: Workspace,
    *,
    profile: str,
    adapter_dir: Path,
    parent_version: int | None,
    base_model: str,
    base_fingerprint: str,
    snapshots: dict[str, str],
    lora: dict[str, Any],
    train: dict[str, Any],
    metrics: dict[str, Any],
    gate: dict[str, Any],
    run_id: str | None,
    sources: dict[str, dict[str, int]] | None = None,
    promote: bool,
    composition: Composition | None = None,
) -> AdapterVersion:
    """Register ``adapter_dir`` (a PEFT save_pretrained() folder) as the profile's next version.

    The status is "accepted" when ``gate["accepted"]`` is true, else "rejected" (the number is used
    either way). ``promote=True`` moves the profile's current pointer to it (refused for a rejected
    candidate). ``composition`` describes a `combine` result. Atomic: see the module docstring."""
    check_profile(profile)
    adapter_dir = Path(adapter_dir)
    if not isinstance(gate, dict) or not isinstance(gate.get("accepted"), bool):
        raise RegistryError(f"{profile}: gate must be a dict with a bool 'accepted' (got {gate!r})")
    if not re.fullmatch(r"[0-9a-f]{64}", base_fingerprint or ""):
        raise RegistryError(f"{profile}: base_fingerprint {base_fingerprint!r} is not a sha256 hex digest")
    status = AdapterStatus.accepted if gate["accepted"] else AdapterStatus.rejected
    if promote and status is AdapterStatus.rejected:
        raise RegistryError(
            f"{profile}: won't promote a candidate the eval gate rejected "
            f"({'; '.join(map(str, gate.get('reasons') or [])) or 'no reason given'})"
        )
    checked_sources = _check_sources(sources)
    to_copy = _files_to_copy(workspace, adapter_dir, base_model)
    peft_config = _read_peft_config(adapter_dir)
    serving = check_folder(workspace.home.root, base_model, adapter_dir)

    folder = profile_dir(workspace, profile)
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / _staging_name()
    final: Path | None = None
    pending: Path | None = None
    renamed = committed = False
    try:
        staging.mkdir()
        files = {path.name: copy_durably(path, staging / path.name) for path in to_copy}
        _checkpoint("staged")
        with workspace.store.write() as session:
            pointer = rows.lock_pointer(session, profile)
            if parent_version is not None and rows.get_adapter(session, profile, parent_version) is None:
                raise RegistryError(f"{profile}: parent version v{parent_version} is not registered")
            if run_id is not None and not rows.run_exists(session, run_id):
                raise RegistryError(f"{profile}: training run {run_id!r} is not in the store")
            kept = _clean_profile_dir(folder, rows.versions_of(session, profile))
            # a folder the store doesn't know keeps its number: the new version comes after it
            number = max([rows.next_version(session, profile), *(n + 1 for n in kept)])
            final = version_dir(workspace, profile, number)
            if final.exists():
                raise RegistryError(f"{final} already exists and is not a registered version; remove it")
            created_at = utcnow()
            manifest = _manifest(
                format=MANIFEST_FORMAT,
                profile=profile,
                version=number,
                parent_version=parent_version,
                status=status,
                base_model=BaseModelInfo(name=base_model, fingerprint=base_fingerprint),
                snapshots=jsonable(dict(snapshots)),
                sources=checked_sources,
                lora=jsonable({**lora_summary(peft_config), **lora}),
                train=jsonable(dict(train)),
                metrics=jsonable(dict(metrics)),
                gate=jsonable(dict(gate)),
                run_id=run_id,
                composition=composition,
                serving=serving,
                files=FolderManifest(files),
                created_at=created_at.isoformat(),
                plora_version=plora_version(),
            )
            card = model_card(manifest).encode("utf-8")
            atomic_write(staging / MODEL_CARD, card)
            manifest = manifest.model_copy(
                update={"files": FolderManifest({**files, MODEL_CARD: FileEntry.of_bytes(card)})}
            )
            raw = manifest.to_bytes()
            atomic_write(staging / MANIFEST, raw)
            fsync_dir(staging)
            _checkpoint("manifest")
            pending = folder / _pending_name(number)
            atomic_write(pending, b"")
            staging.rename(final)
            renamed = True
            fsync_dir(folder)
            _checkpoint("renamed")
            row = rows.add_adapter(
                session,
                profile=profile,
                version=number,
                parent_version=parent_version,
                status=status,
                path=relative(workspace, final),
                base_model=base_model,
                base_fingerprint=base_fingerprint,
                manifest_sha256=FileEntry.of_bytes(raw).sha256,
                run_id=run_id,
                metrics=dict(manifest.metrics),
                created_at=created_at,
            )
            if promote:
                rows.set_current(session, pointer, number)
            version = to_version(workspace, row, manifest)
            _checkpoint("row")
        committed = True
        _checkpoint("committed")
    except BaseException:
        if not committed:
            if renamed and final is not None and final.exists():
                remove_folder(final)
            if staging.exists():
                remove_folder(staging)
        if pending is not None:
            pending.unlink(missing_ok=True)
        raise
    if pending is not None:
        pending.unlink(missing_ok=True)
    log.info("registered %s (%s)%s", version.ref, status.value, ", now current" if promote else "")
    return version
