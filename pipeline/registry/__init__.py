"""The adapter registry: immutable, checksummed versions under ``adapters/<profile>/v<N>/``.

A version folder holds exactly the PEFT files (``adapter_config.json`` + ``adapter_model.safetensors``,
loadable by PEFT / vLLM as is), tokenizer files only when they differ from the base's, the model
card ``README.md`` (counts, never content) and the manifest ``plora.json`` (``AdapterManifest``)
with the sha256 and size of every other file. The store row keeps the manifest's own sha256, so the
manifest can't be edited unnoticed either. Nothing in an adapter folder is ever unpickled.

One module per job:

============  ======================================================================
refs          profile names, ``PROFILE@vN`` refs, version folders
manifest      ``AdapterManifest``: the typed plora.json, its reader and writer
versions      ``AdapterVersion`` and the queries: current, resolve, list
verification  a folder against its manifest and the store (``verify``)
publish       ``register``: staging, checksums, fsync, rename, store row
pointer       ``promote`` / ``rollback`` of the current pointer
load          ``attach``: a verified version onto a model (PEFT)
compose       ``combine``: weighted composition registered as a new version
exports       ``export``: every format, written atomically (``export_folder``)
runtime_exports  GGUF and vLLM export folders, ``plora-export.json`` (``ExportRecord``)
gguf_adapter  a llama.cpp LoRA adapter GGUF, Modelfile and commands
gguf_merge    base + adapter merged into one GGUF model
lora_factors  an adapter as (A, B, scale) per module; what A/B pairs can't carry
architectures base architecture and shape, llama.cpp's q/k layout
serving      the serving check (vLLM, llama.cpp) recorded at registration
card          the model card
adopt         version folders the store doesn't know: ``unregistered``, ``adopt``
============  ======================================================================

``from pipeline import registry`` gives the public API below.
"""

from pipeline.base.fingerprint import TOKENIZER_FILES
from pipeline.registry.adopt import AdoptReport, Unregistered, adopt, unregistered
from pipeline.registry.card import model_card
from pipeline.registry.compose import COMBINATION_TYPES, combine
from pipeline.registry.exports import export, export_folder, export_record
from pipeline.registry.load import attach
from pipeline.registry.manifest import (
    CONFIG_FILE,
    MANIFEST,
    MANIFEST_FORMAT,
    MODEL_CARD,
    PICKLE_SUFFIXES,
    WEIGHTS_FILE,
    AdapterManifest,
    BaseModelInfo,
    Component,
    Composition,
    GateRecord,
    RuntimeCheck,
    ServingReport,
)
from pipeline.registry.pointer import promote, rollback
from pipeline.registry.publish import register
from pipeline.registry.refs import check_profile, parse_ref
from pipeline.registry.runtime_exports import EXPORT_MANIFEST, ExportFormat, ExportRecord, MergeBase
from pipeline.registry.serving import report_of as serving_report
from pipeline.registry.verification import verify
from pipeline.registry.versions import AdapterVersion, current, current_versions, list_versions, resolve

__all__ = [
    "COMBINATION_TYPES",
    "CONFIG_FILE",
    "EXPORT_MANIFEST",
    "MANIFEST",
    "MANIFEST_FORMAT",
    "MODEL_CARD",
    "PICKLE_SUFFIXES",
    "TOKENIZER_FILES",
    "WEIGHTS_FILE",
    "AdapterManifest",
    "AdapterVersion",
    "AdoptReport",
    "BaseModelInfo",
    "Component",
    "Composition",
    "ExportFormat",
    "ExportRecord",
    "GateRecord",
    "MergeBase",
    "RuntimeCheck",
    "ServingReport",
    "Unregistered",
    "adopt",
    "attach",
    "check_profile",
    "combine",
    "current",
    "current_versions",
    "export",
    "export_folder",
    "export_record",
    "list_versions",
    "model_card",
    "parse_ref",
    "promote",
    "register",
    "resolve",
    "rollback",
    "serving_report",
    "unregistered",
    "verify",
]
