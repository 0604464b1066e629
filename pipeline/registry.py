"""The adapter registry: immutable, checksummed versions under ``adapters/<profile>/v<N>/``.

A version folder holds exactly:

- ``adapter_config.json`` + ``adapter_model.safetensors``: the PEFT files, loadable by PEFT / vLLM as is;
- tokenizer files, only when the adapter's tokenizer differs from the base's;
- ``README.md``: the model card (what it was trained on, by source and kind, with counts; never content);
- ``plora.json``: the manifest (see ``MANIFEST_FORMAT`` and docs/adapters.md), with the sha256 and size
  of every other file. The store row keeps the manifest's own sha256, so the manifest can't be edited
  unnoticed either.

Registration is atomic: the files are copied into a staging folder and checksummed, then, holding the
store's write lock, the manifest is written, the folder renamed to ``v<N>`` and the row (and pointer)
committed. A version exists when its row exists; a crash leaves at most a staging folder or a ``v<N>``
folder without a row, which nothing lists or loads and the next registration removes.

Loading (``attach``) verifies the folder against its manifest first, refuses pickle-format files of
any name (``*.bin``, ``*.pt``, ...), reads the weights with safetensors from the very bytes it hashed,
and refuses an adapter whose base fingerprint differs from the loaded base's. Nothing in an adapter
folder is ever unpickled.

torch / transformers / peft are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import socket
import struct
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.base_model import BUILTIN_TINY_LLAMA, builtin_model_dir, import_bitsandbytes, load_base
from pipeline.errors import RegistryError, UsageError
from pipeline.workspace import Workspace
from storage import adapters as rows
from storage.models import Adapter, AdapterStatus, utcnow

if TYPE_CHECKING:
    from pipeline.base_model import LoadedBase

log = logging.getLogger(__name__)

MANIFEST = "plora.json"
MODEL_CARD = "README.md"
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
EXPORT_MANIFEST = "plora-export.json"
MANIFEST_FORMAT = "plora-adapter/1"
TOKENIZER_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "chat_template.jinja",
        "chat_template.json",
        "tokenizer.model",
        "vocab.json",
        "vocab.txt",
        "merges.txt",
    }
)
# Formats that are (or may carry) pickles: never loaded, and their presence fails verification.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")
COMBINATION_TYPES = ("cat", "linear", "svd")

_PROFILE = re.compile(r"[a-z0-9_-]{1,64}")
_REF = re.compile(r"(?P<profile>[a-z0-9_-]{1,64})(?:@v?(?P<version>[0-9]{1,9}))?")
_VERSION_DIR = re.compile(r"v(?P<version>[0-9]+)")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class AdapterVersion:
    """One registered version. ``manifest`` is its plora.json as read (``{}`` when unreadable: run
    ``verify``); ``manifest_sha256`` is the store's record of it, checked by ``attach``."""

    profile: str
    version: int
    path: Path
    status: str  # "accepted" | "rejected"
    parent_version: int | None
    base_model: str
    base_fingerprint: str
    manifest: dict[str, Any]
    manifest_sha256: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.profile}@v{self.version}"


def _checkpoint(step: str) -> None:
    """Called between the steps of a registration ("staged", "manifest", "renamed", "row",
    "committed"); tests replace it to crash there. Does nothing."""


# --- names and refs ------------------------------------------------------------------------------


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


def _version_dir(workspace: Workspace, profile: str, version: int) -> Path:
    return workspace.home.child(workspace.home.adapters, profile, f"v{version}")


def _profile_dir(workspace: Workspace, profile: str) -> Path:
    return workspace.home.child(workspace.home.adapters, profile)


def _relative(workspace: Workspace, path: Path) -> str:
    return path.relative_to(workspace.home.root).as_posix()


def _read_manifest_quietly(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / MANIFEST).read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _to_version(workspace: Workspace, row: Adapter, manifest: dict[str, Any] | None = None) -> AdapterVersion:
    path = _version_dir(workspace, row.profile, row.version)
    return AdapterVersion(
        profile=row.profile,
        version=row.version,
        path=path,
        status=AdapterStatus(row.status).value,
        parent_version=row.parent_version,
        base_model=row.base_model,
        base_fingerprint=row.base_fingerprint,
        manifest=_read_manifest_quietly(path) if manifest is None else manifest,
        manifest_sha256=row.manifest_sha256,
    )


# --- queries -------------------------------------------------------------------------------------


def _known(session: Any, profile: str) -> str:
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
        return _to_version(workspace, row)


def resolve(workspace: Workspace, ref: str) -> AdapterVersion:
    """``PROFILE`` (its current version) or ``PROFILE@vN``; UsageError when there is no such version."""
    profile, number = parse_ref(ref)
    with workspace.store.read() as session:
        if number is None:
            number = rows.current_version(session, profile)
            if number is None:
                raise UsageError(
                    f"adapter {profile}: no current version (versions: {_known(session, profile)}); "
                    f"train one or `plora adapters promote {profile}@vN`"
                )
        row = rows.get_adapter(session, profile, number)
        if row is None:
            raise UsageError(f"no adapter {profile}@v{number} (versions of {profile}: {_known(session, profile)})")
        return _to_version(workspace, row)


def list_versions(workspace: Workspace, profile: str | None = None) -> list[AdapterVersion]:
    """Every registered version (of one profile), by profile then version."""
    if profile is not None:
        check_profile(profile)
    with workspace.store.read() as session:
        return [_to_version(workspace, row) for row in rows.list_adapters(session, profile)]


def current_versions(workspace: Workspace) -> dict[str, int | None]:
    """profile -> its current version number (None when the pointer is unset)."""
    with workspace.store.read() as session:
        return rows.current_versions(session)


# --- checksums and verification ------------------------------------------------------------------


def _sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _is_pickle_name(name: str) -> bool:
    return name.lower().endswith(PICKLE_SUFFIXES)


def _safetensors_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete safetensors file (header and data length), or None."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                return "not a safetensors file (shorter than its header)"
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > min(size - 8, 100_000_000):
                return "not a safetensors file (header length past the end of the file)"
            header = json.loads(handle.read(header_len))
    except (OSError, ValueError) as e:
        return f"not a safetensors file ({e})"
    if not isinstance(header, dict):
        return "not a safetensors file (header is not a JSON object)"
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            end = max(end, int(entry["data_offsets"][1]))
        except (KeyError, IndexError, TypeError, ValueError):
            return f"not a safetensors file (bad entry {name!r})"
    if 8 + header_len + end != size:
        return f"truncated or padded safetensors file ({size} bytes, its header says {8 + header_len + end})"
    return None


def _folder_problems(
    path: Path,
    *,
    ref: str,
    profile: str,
    version: int,
    base_model: str,
    base_fingerprint: str,
    manifest_sha256: str | None,
) -> tuple[dict[str, Any], list[str]]:
    """Check a version folder against its manifest and the store's record; (manifest, problems)."""
    if path.is_symlink() or not path.is_dir():
        return {}, [f"folder {path} is missing" + (" (a symlink is not accepted)" if path.is_symlink() else "")]
    problems: list[str] = []
    manifest: dict[str, Any] = {}
    try:
        raw = (path / MANIFEST).read_bytes()
    except OSError:
        problems.append(f"{MANIFEST}: missing")
        raw = None
    if raw is not None:
        if manifest_sha256 is not None and hashlib.sha256(raw).hexdigest() != manifest_sha256:
            problems.append(
                f"{MANIFEST}: sha256 differs from the one recorded at registration (the manifest was modified)"
            )
        try:
            loaded = json.loads(raw)
        except ValueError as e:
            problems.append(f"{MANIFEST}: not valid JSON ({e})")
        else:
            if isinstance(loaded, dict):
                manifest = loaded
            else:
                problems.append(f"{MANIFEST}: not a JSON object")

    if manifest:
        if manifest.get("format") != MANIFEST_FORMAT:
            problems.append(f"{MANIFEST}: format {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}")
        if (manifest.get("profile"), manifest.get("version")) != (profile, version):
            problems.append(f"{MANIFEST}: describes {manifest.get('profile')}@v{manifest.get('version')}, not {ref}")
        base = manifest.get("base_model") if isinstance(manifest.get("base_model"), dict) else {}
        if base.get("fingerprint") != base_fingerprint:
            problems.append(
                f"{MANIFEST}: base fingerprint {str(base.get('fingerprint'))[:12]}... does not match "
                f"the registered base fingerprint {base_fingerprint[:12]}..."
            )
        if base.get("name") != base_model:
            problems.append(f"{MANIFEST}: base model {base.get('name')!r} does not match the registered {base_model!r}")

    files = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    if manifest and not files:
        problems.append(f"{MANIFEST}: no file list")
    for required in (CONFIG_FILE, WEIGHTS_FILE):
        if manifest and required not in files:
            problems.append(f"{required}: not in the manifest")

    present = {entry.name: entry for entry in path.iterdir()}
    for name, entry in sorted(present.items()):
        if name == MANIFEST:
            continue
        if _is_pickle_name(name):
            problems.append(f"{name}: pickle-format file refused (plora loads safetensors only); remove it")
        elif name not in files and raw is not None:
            problems.append(f"{name}: unexpected {'folder' if entry.is_dir() else 'file'}, not in the manifest")
    for name, meta in sorted(files.items()):
        file = path / name
        if not isinstance(meta, dict) or "/" in name or "\\" in name or name in ("", ".", "..", MANIFEST):
            problems.append(f"{MANIFEST}: bad file entry {name!r}")
            continue
        if name not in present:
            problems.append(f"{name}: missing")
            continue
        if file.is_symlink() or not file.is_file():
            problems.append(f"{name}: not a regular file")
            continue
        if _is_pickle_name(name):
            continue  # already reported
        digest, size = _sha256_file(file)
        if size != meta.get("size"):
            problems.append(f"{name}: {size} bytes, the manifest says {meta.get('size')} (truncated or changed)")
        elif digest != meta.get("sha256"):
            problems.append(f"{name}: sha256 mismatch (changed since registration)")
    return manifest, problems


def _verify(version: AdapterVersion) -> AdapterVersion:
    manifest, problems = _folder_problems(
        version.path,
        ref=version.ref,
        profile=version.profile,
        version=version.version,
        base_model=version.base_model,
        base_fingerprint=version.base_fingerprint,
        manifest_sha256=version.manifest_sha256,
    )
    if problems:
        raise RegistryError(f"adapter {version.ref} ({version.path}) failed verification: " + "; ".join(problems))
    return replace(version, manifest=manifest)


def verify(workspace: Workspace, ref_or_version: str | AdapterVersion) -> AdapterVersion:
    """Check every file of a version against its manifest and the manifest against the store.

    Returns the version with its verified manifest; raises RegistryError listing every problem."""
    if isinstance(ref_or_version, AdapterVersion):
        version = resolve(workspace, ref_or_version.ref)
    else:
        version = resolve(workspace, ref_or_version)
    with workspace.store.read() as session:
        row = rows.get_adapter(session, version.profile, version.version)
        recorded_path = row.path if row is not None else None
    version = _verify(version)
    if recorded_path != _relative(workspace, version.path):
        raise RegistryError(
            f"adapter {version.ref}: the store records path {recorded_path!r}, "
            f"expected {_relative(workspace, version.path)!r}"
        )
    return version


def _read_checked(version: AdapterVersion, name: str) -> bytes:
    """The bytes of a verified file, re-hashed here: what is loaded is exactly what was checked."""
    meta = version.manifest["files"][name]
    data = (version.path / name).read_bytes()
    if len(data) != meta["size"] or hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise RegistryError(f"adapter {version.ref}: {name} changed while loading; verify it and try again")
    return data


# --- registration --------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Plain JSON: non-finite floats -> None, tuples/sets -> lists, paths and other objects -> str."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [_jsonable(item) for item in items]
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _jsonable(value.item())
    return str(value)


def _canonical(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _plora_version() -> str:
    try:
        return package_version("plora")
    except PackageNotFoundError:
        return "unknown"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_bytes(path: Path, data: bytes) -> None:
    with path.open("xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _copy_hashed(source: Path, dest: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    with source.open("rb") as src, dest.open("xb") as out:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return {"sha256": digest.hexdigest(), "size": size}


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


def _files_to_copy(workspace: Workspace, adapter_dir: Path, base_model: str) -> list[Path]:
    """adapter_config.json, adapter_model.safetensors and the tokenizer files when they differ
    from the base's. Anything else in ``adapter_dir`` (Trainer state, training_args.bin, PEFT's
    README) is left behind."""
    if not adapter_dir.is_dir():
        raise RegistryError(f"adapter folder {adapter_dir} does not exist")
    for required in (CONFIG_FILE, WEIGHTS_FILE):
        file = adapter_dir / required
        if not file.is_file():
            hint = (
                " (found adapter_model.bin: pickled weights are refused; save with safetensors)"
                if required == WEIGHTS_FILE and (adapter_dir / "adapter_model.bin").exists()
                else ""
            )
            raise RegistryError(f"{adapter_dir}: no {required}; expected a PEFT save_pretrained() folder{hint}")
    problem = _safetensors_problem(adapter_dir / WEIGHTS_FILE)
    if problem:
        raise RegistryError(f"{adapter_dir / WEIGHTS_FILE}: {problem}")
    try:
        config = json.loads((adapter_dir / CONFIG_FILE).read_bytes())
    except (OSError, ValueError) as e:
        raise RegistryError(f"{adapter_dir / CONFIG_FILE}: not valid JSON ({e})") from e
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        found = config.get("peft_type") if isinstance(config, dict) else None
        raise RegistryError(f"{adapter_dir / CONFIG_FILE}: peft_type {found!r}; plora registers LoRA adapters only")

    tokenizer = sorted(path for path in adapter_dir.iterdir() if path.name in TOKENIZER_FILES and path.is_file())
    base = _local_base_folder(workspace, base_model)
    if tokenizer and base is not None:
        same = all(
            (base / path.name).is_file() and (base / path.name).read_bytes() == path.read_bytes() for path in tokenizer
        )
        if same:
            tokenizer = []
    return [adapter_dir / CONFIG_FILE, adapter_dir / WEIGHTS_FILE, *tokenizer]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def _staging_name() -> str:
    return f".staging-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _remove(path: Path) -> None:
    """Move a folder out of the way (one rename), then delete it."""
    trash = path.parent / f".trash-{uuid.uuid4().hex[:12]}"
    try:
        path.rename(trash)
    except OSError:
        trash = path
    shutil.rmtree(trash, ignore_errors=True)


def _clean_profile_dir(profile_dir: Path, registered: set[int]) -> None:
    """Remove what crashed registrations left: ``v<N>`` folders without a row, staging folders of
    dead processes on this host and trash. Called holding the store's write lock, so no registration
    is between its rename and its commit."""
    if not profile_dir.is_dir():
        return
    host = _host()
    for entry in profile_dir.iterdir():
        name = entry.name
        match = _VERSION_DIR.fullmatch(name)
        if match and int(match["version"]) not in registered:
            log.warning("removing %s: left by an interrupted registration (no store row)", entry)
            _remove(entry)
        elif name.startswith(".trash-"):
            shutil.rmtree(entry, ignore_errors=True)
        elif name.startswith(".staging-"):
            parts = name[len(".staging-") :].rsplit("-", 2)
            if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not _pid_alive(int(parts[1])):
                _remove(entry)


def _lora_summary(config: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "r",
        "lora_alpha",
        "lora_dropout",
        "target_modules",
        "use_rslora",
        "use_dora",
        "modules_to_save",
        "task_type",
        "bias",
    )
    return {key: config.get(key) for key in keys if key in config}


def model_card(manifest: dict[str, Any], *, merged: bool = False) -> str:
    """The README.md of a version: what it is and what it was trained on, as counts (never content)."""
    ref = f"{manifest['profile']}@v{manifest['version']}"
    base = manifest["base_model"]
    gate = manifest.get("gate") or {}
    lines = [
        "---",
        "library_name: " + ("transformers" if merged else "peft"),
        "tags: [plora, lora, personal]",
        "---",
        "",
        f"# {ref}" + (" merged into its base model" if merged else ""),
        "",
        f"Personal LoRA adapter of profile `{manifest['profile']}`, version {manifest['version']}"
        + (f" (continues v{manifest['parent_version']})" if manifest.get("parent_version") else " (from scratch)")
        + f", registered {manifest['created_at']} by plora {manifest['plora_version']}.",
        f"Eval gate: **{manifest['status']}**"
        + (": " + "; ".join(map(str, gate.get("reasons") or [])) if gate.get("reasons") else "")
        + ".",
        "",
        "## Base model",
        "",
        f"`{base['name']}`, fingerprint `{base['fingerprint']}`. plora refuses to load this adapter on any other base.",
        "",
    ]
    composition = manifest.get("composition")
    if composition:
        lines += [
            "## Composition",
            "",
            f"Weighted composition (`{composition['combination_type']}`) of:",
            "",
            "| adapter | weight |",
            "|---|---|",
        ]
        lines += [f"| {part['ref']} | {part['weight']:g} |" for part in composition["components"]]
        lines.append("")
    sources = manifest.get("sources") or {}
    lines += ["## Trained on", ""]
    if sources:
        lines += ["| source | kind | count |", "|---|---|---|"]
        for source, kinds in sorted(sources.items()):
            for kind, count in sorted(kinds.items()):
                lines.append(f"| {source} | {kind} | {count} |")
    elif composition:
        lines.append("See the components' model cards.")
    else:
        lines.append("Not recorded.")
    snapshots = manifest.get("snapshots") or {}
    if snapshots:
        listed = ", ".join(f"{kind} `{fp[:12]}`" for kind, fp in sorted(snapshots.items()))
        lines += ["", f"Dataset snapshots: {listed}"]
    lines += ["", "## LoRA", "", "```json", json.dumps(manifest.get("lora") or {}, indent=2, sort_keys=True), "```"]
    metrics = manifest.get("metrics") or {}
    numbers = {key: value for key, value in gate.items() if key not in ("accepted", "reasons")}
    if metrics or numbers:
        lines += ["", "## Evaluation", "", "| metric | value |", "|---|---|"]
        lines += [
            f"| {key} | {value} |"
            for key, value in sorted({**metrics, **numbers}.items())
            if value is not None and not isinstance(value, dict | list)
        ]
    lines += ["", f"Checksums of every file are in `plora.json`; check them with `plora adapters verify {ref}`.", ""]
    return "\n".join(lines)


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
    composition: dict[str, Any] | None = None,
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
    with open(adapter_dir / CONFIG_FILE, "rb") as handle:
        peft_config = json.load(handle)

    profile_dir = _profile_dir(workspace, profile)
    profile_dir.mkdir(parents=True, exist_ok=True)
    staging = profile_dir / _staging_name()
    final: Path | None = None
    renamed = committed = False
    try:
        staging.mkdir()
        files = {path.name: _copy_hashed(path, staging / path.name) for path in to_copy}
        _checkpoint("staged")
        with workspace.store.write() as session:
            pointer = rows.lock_pointer(session, profile)
            if parent_version is not None and rows.get_adapter(session, profile, parent_version) is None:
                raise RegistryError(f"{profile}: parent version v{parent_version} is not registered")
            if run_id is not None and not rows.run_exists(session, run_id):
                raise RegistryError(f"{profile}: training run {run_id!r} is not in the store")
            _clean_profile_dir(profile_dir, rows.versions_of(session, profile))
            number = rows.next_version(session, profile)
            final = _version_dir(workspace, profile, number)
            if final.exists():
                raise RegistryError(f"{final} already exists and is not a registered version; remove it")
            created_at = utcnow()
            manifest: dict[str, Any] = _jsonable(
                {
                    "format": MANIFEST_FORMAT,
                    "profile": profile,
                    "version": number,
                    "parent_version": parent_version,
                    "status": status.value,
                    "base_model": {"name": base_model, "fingerprint": base_fingerprint},
                    "snapshots": dict(snapshots),
                    "sources": checked_sources,
                    "lora": {**_lora_summary(peft_config), **lora},
                    "train": dict(train),
                    "metrics": dict(metrics),
                    "gate": dict(gate),
                    "run_id": run_id,
                    "composition": composition,
                    "created_at": created_at.isoformat(),
                    "plora_version": _plora_version(),
                }
            )
            card = model_card(manifest).encode("utf-8")
            _write_bytes(staging / MODEL_CARD, card)
            files[MODEL_CARD] = {"sha256": hashlib.sha256(card).hexdigest(), "size": len(card)}
            manifest["files"] = dict(sorted(files.items()))
            raw = _canonical(manifest)
            _write_bytes(staging / MANIFEST, raw)
            _fsync_dir(staging)
            _checkpoint("manifest")
            staging.rename(final)
            renamed = True
            _fsync_dir(profile_dir)
            _checkpoint("renamed")
            row = rows.add_adapter(
                session,
                profile=profile,
                version=number,
                parent_version=parent_version,
                status=status,
                path=_relative(workspace, final),
                base_model=base_model,
                base_fingerprint=base_fingerprint,
                manifest_sha256=hashlib.sha256(raw).hexdigest(),
                run_id=run_id,
                metrics=_jsonable(dict(metrics)),
                created_at=created_at,
            )
            if promote:
                rows.set_current(session, pointer, number)
            version = _to_version(workspace, row, manifest)
            _checkpoint("row")
        committed = True
        _checkpoint("committed")
    except BaseException:
        if not committed:
            if renamed and final is not None and final.exists():
                _remove(final)
            if staging.exists():
                _remove(staging)
        raise
    log.info("registered %s (%s)%s", version.ref, status.value, ", now current" if promote else "")
    return version


# --- the current pointer -------------------------------------------------------------------------


def promote(workspace: Workspace, ref: str, *, force: bool = False) -> AdapterVersion:
    """Move the profile's current pointer to ``ref`` after verifying it. A version the eval gate
    rejected needs ``force=True``. The version itself never changes."""
    version = verify(workspace, ref)
    if version.status != AdapterStatus.accepted.value and not force:
        reasons = "; ".join(map(str, (version.manifest.get("gate") or {}).get("reasons") or [])) or "no reason given"
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
                f"{profile}: no current version to roll back from (versions: {_known(session, profile)})"
            )
        target = rows.previous_accepted(session, profile, number)
        if target is None:
            raise RegistryError(f"{profile}: no accepted version before v{number} to roll back to")
        target_ref = f"{profile}@v{target.version}"
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


# --- loading -------------------------------------------------------------------------------------


def _peft_config(raw: bytes, ref: str, *, trainable: bool) -> Any:
    from peft import PeftConfig

    try:
        data = json.loads(raw)
    except ValueError as e:
        raise RegistryError(f"adapter {ref}: {CONFIG_FILE} is not valid JSON ({e})") from e
    if not isinstance(data, dict) or data.get("peft_type") != "LORA":
        raise RegistryError(f"adapter {ref}: {CONFIG_FILE} is not a LoRA config")
    data.pop("runtime_config", None)
    try:
        config = PeftConfig.from_peft_type(**data)
    except (TypeError, ValueError) as e:
        raise RegistryError(f"adapter {ref}: {CONFIG_FILE} can't be used by this PEFT version ({e})") from e
    if config.task_type is None:
        config.task_type = "CAUSAL_LM"
    config.inference_mode = not trainable
    return config


def attach(
    model: Any,
    version: AdapterVersion,
    *,
    base_fingerprint: str,
    adapter_name: str = "default",
    trainable: bool = False,
) -> Any:
    """Put ``version`` on ``model`` as adapter ``adapter_name``; returns the PeftModel.

    ``model`` is the base (wrapped into a PeftModel; its layers get LoRA modules injected in place)
    or a PeftModel (the adapter is added next to the others; the active adapter is not changed).
    Verifies the folder first and refuses a base fingerprint other than the adapter's; the weights
    are read with safetensors from the bytes that were checksummed. ``trainable=True`` leaves the
    adapter's weights trainable (to continue training it), else they are frozen and the model is in
    eval mode."""
    version = _verify(version)
    if version.base_fingerprint != base_fingerprint:
        raise RegistryError(
            f"adapter {version.ref} was trained on base {version.base_model!r} (fingerprint "
            f"{version.base_fingerprint[:12]}...), but the loaded base has fingerprint {base_fingerprint[:12]}...; "
            "load the base it was trained on, or retrain it on this one"
        )
    config_raw = _read_checked(version, CONFIG_FILE)
    weights_raw = _read_checked(version, WEIGHTS_FILE)

    import_bitsandbytes()
    from peft import PeftModel, PeftModelForCausalLM
    from peft.utils import set_peft_model_state_dict
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    config = _peft_config(config_raw, version.ref, trainable=trainable)
    try:
        weights = load_safetensors(weights_raw)
    except (SafetensorError, ValueError) as e:
        raise RegistryError(f"adapter {version.ref}: {WEIGHTS_FILE} can't be read ({e})") from e

    added = False
    try:
        if isinstance(model, PeftModel):
            if adapter_name in model.peft_config:
                raise RegistryError(f"adapter name {adapter_name!r} is already on this model")
            model.add_adapter(adapter_name, config)
            added = True
            peft_model = model
        else:
            peft_model = PeftModelForCausalLM(model, config, adapter_name)
        result = set_peft_model_state_dict(peft_model, weights, adapter_name=adapter_name)
        missing = [key for key in result.missing_keys if "lora_" in key and f".{adapter_name}." in key]
        if missing or result.unexpected_keys:
            raise RegistryError(
                f"adapter {version.ref}: its weights don't fit this base (missing {missing[:3]}, unexpected "
                f"{list(result.unexpected_keys)[:3]})"
            )
    except RegistryError:
        if added:
            model.delete_adapter(adapter_name)
        raise
    except (RuntimeError, ValueError) as e:
        if added:
            model.delete_adapter(adapter_name)
        raise RegistryError(f"adapter {version.ref}: can't be put on this base ({e})") from e
    if trainable:
        peft_model.base_model.set_requires_grad(adapter_name, requires_grad=True)
    else:
        peft_model.base_model.set_requires_grad(adapter_name, requires_grad=False)
        peft_model.eval()
    return peft_model


# --- export and composition ----------------------------------------------------------------------


def _export_tmp(dest: Path) -> tuple[Path, Path]:
    dest = Path(dest).expanduser().absolute()
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise UsageError(f"export destination {dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()):
        raise UsageError(f"export destination {dest} is not empty; give a new or empty folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.plora-tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    return dest, tmp


def _publish(tmp: Path, dest: Path) -> None:
    leftovers = [path.name for path in tmp.iterdir() if _is_pickle_name(path.name)]
    if leftovers:
        raise RegistryError(f"export would contain pickle-format files {leftovers}; refusing")
    try:
        if dest.is_dir():
            dest.rmdir()  # empty (checked before); fails if something appeared meanwhile
        tmp.rename(dest)
    except OSError as e:
        raise UsageError(f"can't create {dest}: {e.strerror or e}") from e
    _fsync_dir(dest.parent)


def _full_precision_base(workspace: Workspace) -> LoadedBase:
    config = workspace.config.base_model
    return load_base(config.name, home=workspace.home.root, quantization="none", double_quant=False)


def export(workspace: Workspace, ref: str, dest: Path, *, merged: bool, base: LoadedBase | None = None) -> Path:
    """Write ``ref`` to the new (or empty) folder ``dest``, atomically; returns ``dest``.

    ``merged=False``: the version's files as they are (a PEFT folder vLLM and PEFT load as is, with
    the model card and manifest). ``merged=True``: the base in full precision with the adapter merged
    into its weights (safetensors), plus the tokenizer; ``base`` (full precision) is used when given,
    and is consumed: its weights are modified. Otherwise the configured base is loaded with
    quantization "none"."""
    version = verify(workspace, ref)
    dest, tmp = _export_tmp(dest)
    try:
        if not merged:
            for name, meta in version.manifest["files"].items():
                copied = _copy_hashed(version.path / name, tmp / name)
                if copied != {"sha256": meta["sha256"], "size": meta["size"]}:
                    raise RegistryError(f"adapter {version.ref}: {name} changed during export; verify it")
            shutil.copyfile(version.path / MANIFEST, tmp / MANIFEST)
        else:
            _export_merged(workspace, version, tmp, base)
        _fsync_dir(tmp)
        _publish(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _export_merged(workspace: Workspace, version: AdapterVersion, tmp: Path, base: LoadedBase | None) -> None:
    if base is None:
        base = _full_precision_base(workspace)
    if base.quantized:
        raise RegistryError(
            f"merged export of {version.ref} needs the base in full precision "
            "(quantization='none'); merging into NF4 weights would lose the adapter's precision"
        )
    model = attach(base.model, version, base_fingerprint=base.fingerprint)
    merged = model.merge_and_unload()
    merged.save_pretrained(str(tmp))
    tokenizer_files = [name for name in version.manifest["files"] if name in TOKENIZER_FILES]
    if tokenizer_files:
        for name in tokenizer_files:
            shutil.copyfile(version.path / name, tmp / name)
    else:
        base.tokenizer.save_pretrained(str(tmp))
    card = model_card(version.manifest, merged=True)
    (tmp / MODEL_CARD).write_text(card, encoding="utf-8")
    record = {
        "format": "plora-merged-export/1",
        "adapter": version.ref,
        "adapter_manifest_sha256": version.manifest_sha256,
        "adapter_manifest": version.manifest,
        "base_model": {"name": base.name, "fingerprint": base.fingerprint},
        "created_at": utcnow().isoformat(),
        "plora_version": _plora_version(),
    }
    (tmp / EXPORT_MANIFEST).write_bytes(_canonical(record))


def _combined_parent(profile: str, versions: Iterable[AdapterVersion]) -> int | None:
    mine = [version.version for version in versions if version.profile == profile]
    return max(mine) if mine else None


def combine(
    workspace: Workspace,
    refs: list[str],
    weights: list[float],
    *,
    profile: str,
    combination_type: str = "cat",
    promote: bool = False,
    base: LoadedBase | None = None,
) -> AdapterVersion:
    """Register the weighted composition of ``refs`` (PEFT ``add_weighted_adapter``) as the next
    version of ``profile`` (status accepted: a person asked for it; not evaluated; current moves
    only with ``promote=True``).

    ``combination_type``: "cat" (default; exact: the result's weight update is the weighted sum of
    the components', at rank = the sum of their ranks), "linear" (same rank and targets required;
    an approximation) or "svd" (rank = the largest component rank). All components must share one
    base fingerprint. ``base`` (the configured base when None) gets the components attached while
    combining and is given back without them."""
    check_profile(profile)
    if len(refs) < 2:
        raise UsageError("combine needs at least two adapters")
    if len(weights) != len(refs):
        raise UsageError(f"combine: {len(refs)} adapters but {len(weights)} weights")
    if not all(isinstance(w, int | float) and math.isfinite(w) for w in weights):
        raise UsageError(f"combine: weights must be finite numbers, got {weights}")
    if combination_type not in COMBINATION_TYPES:
        raise UsageError(
            f"combine: combination type {combination_type!r}: expected one of {', '.join(COMBINATION_TYPES)}"
        )
    versions = [verify(workspace, ref) for ref in refs]
    if len({version.ref for version in versions}) != len(versions):
        raise UsageError(f"combine: the same adapter twice in {refs}")
    fingerprints = {version.base_fingerprint for version in versions}
    if len(fingerprints) != 1:
        raise RegistryError(
            "combine: the adapters were trained on different bases: "
            + ", ".join(f"{v.ref} {v.base_fingerprint[:12]}" for v in versions)
        )
    if base is None:
        config = workspace.config.base_model
        base = load_base(
            config.name, home=workspace.home.root, quantization=config.quantization, double_quant=config.double_quant
        )
    import_bitsandbytes()
    from peft import PeftModel

    names = [f"part{index}" for index in range(len(versions))]
    model: Any = base.model
    try:
        for name, version in zip(names, versions, strict=True):
            model = attach(model, version, base_fingerprint=base.fingerprint, adapter_name=name)
        try:
            model.add_weighted_adapter(
                adapters=names,
                weights=[float(w) for w in weights],
                adapter_name="combined",
                combination_type=combination_type,
            )
        except ValueError as e:
            raise RegistryError(f"combine {', '.join(refs)} ({combination_type}): {e}") from e
        with tempfile.TemporaryDirectory(prefix="plora-combine-") as work:
            model.save_pretrained(work, selected_adapters=["combined"])
            folder = Path(work) / "combined"
            with open(folder / CONFIG_FILE, "rb") as handle:
                combined_config = json.load(handle)
            composition = {
                "combination_type": combination_type,
                "components": [
                    {
                        "ref": v.ref,
                        "weight": float(w),
                        "manifest_sha256": v.manifest_sha256,
                        "snapshots": v.manifest.get("snapshots") or {},
                        "sources": v.manifest.get("sources") or {},
                    }
                    for v, w in zip(versions, weights, strict=True)
                ],
            }
            description = " + ".join(f"{float(w):g} x {v.ref}" for v, w in zip(versions, weights, strict=True))
            return register(
                workspace,
                profile=profile,
                adapter_dir=folder,
                parent_version=_combined_parent(profile, versions),
                base_model=versions[0].base_model,
                base_fingerprint=versions[0].base_fingerprint,
                snapshots={},
                lora=_lora_summary(combined_config),
                train={"kind": "composition", "combination_type": combination_type},
                metrics={},
                gate={"accepted": True, "reasons": [f"composition {description} (not evaluated)"]},
                run_id=None,
                sources=None,
                promote=promote,
                composition=composition,
            )
    finally:
        if isinstance(model, PeftModel):
            model.unload()  # take the LoRA modules back out: the caller's base is as it was
