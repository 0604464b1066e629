"""``plora.json``, the manifest of a registered version, as one typed model (``AdapterManifest``).

A version folder holds the PEFT files (``adapter_config.json``, ``adapter_model.safetensors``), the
tokenizer files when they differ from the base's, the model card ``README.md`` and ``plora.json``.
The manifest is canonical JSON (sorted keys, see ``pipeline.integrity.canonical_json``) with format
``plora-adapter/1``; docs/adapters.md lists its keys. Its ``files`` is a
``pipeline.integrity.FolderManifest`` of every other file. Keys this plora doesn't know are kept
as they are (``extra="allow"``), so a manifest reads and shows whole.
"""

from __future__ import annotations

import json
import math
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from pipeline.integrity import SHA256_PATTERN, FolderManifest, canonical_json, validation_summary
from storage.models import AdapterStatus

MANIFEST = "plora.json"
MODEL_CARD = "README.md"
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
MANIFEST_FORMAT = "plora-adapter/1"
# Formats that are (or may carry) pickles: never loaded, and their presence fails verification.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")


def is_pickle_name(name: str) -> bool:
    return name.lower().endswith(PICKLE_SUFFIXES)


class BaseModelInfo(BaseModel):
    """The base model a version was trained on."""

    model_config = ConfigDict(frozen=True)

    name: str
    fingerprint: str


class GateRecord(BaseModel):
    """The eval gate's decision: ``accepted`` and ``reasons``, plus its numbers (kept as extra keys)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    accepted: StrictBool
    reasons: list[str] = Field(default_factory=list)

    def dump(self) -> dict[str, Any]:
        """As JSON data, keys sorted as in the manifest file."""
        return dict(sorted(self.model_dump(mode="json").items()))

    @property
    def numbers(self) -> dict[str, Any]:
        """Everything the gate recorded besides ``accepted`` and ``reasons``."""
        return dict(self.model_extra or {})


class Component(BaseModel):
    """One adapter of a composition."""

    model_config = ConfigDict(frozen=True)

    ref: str
    weight: float
    manifest_sha256: str | None = Field(default=None, pattern=SHA256_PATTERN)
    snapshots: dict[str, str] = Field(default_factory=dict)
    sources: dict[str, dict[str, int]] = Field(default_factory=dict)


class Composition(BaseModel):
    """What ``combine`` registered: the combination type and the weighted components."""

    model_config = ConfigDict(frozen=True)

    combination_type: str
    components: list[Component]


class RuntimeCheck(BaseModel):
    """Whether one serving runtime loads a version as it is, and why not (``problems``)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    ok: StrictBool
    problems: list[str] = Field(default_factory=list)


class ServingReport(BaseModel):
    """The serving check recorded at registration (``pipeline.registry.serving``): vLLM and llama.cpp."""

    model_config = ConfigDict(frozen=True, extra="allow")

    vllm: RuntimeCheck
    llama_cpp: RuntimeCheck

    def servable_on(self) -> list[str]:
        return [name for name, check in (("vllm", self.vllm), ("llama.cpp", self.llama_cpp)) if check.ok]


class AdapterManifest(BaseModel):
    """The typed ``plora.json``; ``from_bytes`` / ``read`` and ``to_bytes`` are its one reader and writer."""

    model_config = ConfigDict(frozen=True, extra="allow")

    format: str  # MANIFEST_FORMAT; checked by verify
    profile: str
    version: int
    parent_version: int | None = None
    status: AdapterStatus
    base_model: BaseModelInfo
    snapshots: dict[str, str] = Field(default_factory=dict)  # kind -> snapshot fingerprint
    sources: dict[str, dict[str, int]] = Field(default_factory=dict)  # source -> kind -> count
    lora: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    gate: GateRecord
    run_id: str | None = None
    composition: Composition | None = None
    serving: ServingReport | None = None  # absent in manifests written before the serving check
    files: FolderManifest
    created_at: str  # ISO-8601
    plora_version: str

    @property
    def ref(self) -> str:
        return f"{self.profile}@v{self.version}"

    @classmethod
    def from_bytes(cls, raw: bytes) -> AdapterManifest:
        """Parse a manifest; ValueError (one line) when it isn't valid JSON or not a plora manifest."""
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise ValueError(f"not valid JSON ({e})") from e
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ValueError(f"not a plora adapter manifest ({validation_summary(e)})") from e

    @classmethod
    def read(cls, folder: Path) -> AdapterManifest:
        """The manifest of a version folder; OSError or ValueError."""
        return cls.from_bytes((folder / MANIFEST).read_bytes())

    @classmethod
    def read_quietly(cls, folder: Path) -> AdapterManifest | None:
        """The manifest, or None when it is missing or unreadable (``verify`` says why)."""
        try:
            return cls.read(folder)
        except (OSError, ValueError):
            return None

    def to_bytes(self) -> bytes:
        """The canonical JSON written to ``plora.json`` (its sha256 is what the store records)."""
        data = self.model_dump(mode="json")
        if data.get("serving") is None:
            data.pop("serving", None)  # a manifest without the check reads and writes back as it was
        return canonical_json(data)

    def dump(self) -> dict[str, Any]:
        """The manifest as plain JSON data, keys sorted as in the file."""
        return json.loads(self.to_bytes())


def jsonable(value: Any) -> Any:
    """Plain JSON: non-finite floats -> None, tuples/sets -> lists, paths and other objects -> str."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [jsonable(item) for item in items]
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return jsonable(value.item())
    return str(value)


def lora_summary(config: dict[str, Any]) -> dict[str, Any]:
    """The LoRA settings of an ``adapter_config.json`` that the manifest records."""
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


def plora_version() -> str:
    """The installed plora's version, recorded in what it writes."""
    try:
        return package_version("plora")
    except PackageNotFoundError:
        return "unknown"
