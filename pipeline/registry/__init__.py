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
exports       ``export``: PEFT folder or merged safetensors, written atomically
card          the model card
============  ======================================================================

``from pipeline import registry`` gives the public API below.
"""

from pipeline.base.fingerprint import TOKENIZER_FILES
from pipeline.registry.card import model_card
from pipeline.registry.compose import COMBINATION_TYPES, combine
from pipeline.registry.exports import EXPORT_MANIFEST, export, export_folder
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
)
from pipeline.registry.pointer import promote, rollback
from pipeline.registry.publish import register
from pipeline.registry.refs import check_profile, parse_ref
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
    "BaseModelInfo",
    "Component",
    "Composition",
    "GateRecord",
    "attach",
    "check_profile",
    "combine",
    "current",
    "current_versions",
    "export",
    "export_folder",
    "list_versions",
    "model_card",
    "parse_ref",
    "promote",
    "register",
    "resolve",
    "rollback",
    "verify",
]
