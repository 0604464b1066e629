"""What a profile's dataset build reads, as one key: equal keys, equal snapshots.

``inputs_key`` is sha256 over

- the builder version and a hash of the builder's own code (``pipeline.datasets`` and the store
  queries it reads through: ``storage.corpus``, ``storage.labels``), plus the versions of the
  tokenizer libraries, so an edited builder never reuses an old build;
- the profile's name, its sources, the kinds it builds (its ``stages``) and, per kind, the settings
  its fingerprint covers (``settings_for``: eval percent, max length, unlabelled policy, base model
  and tokenizer fingerprint, how the assistant mask is found, split salt, dedup settings), so a
  change of masking method (a TRL release that learns the template, say) builds anew;
- the store's content for those sources as ``storage.corpus.corpus_digest`` sees it (live documents'
  ids, content hashes and write times, label events), which reads no document text.

``build_datasets`` records the key in every snapshot it returns (``inputs_key`` in the store row's
meta) and skips the build when the latest snapshots of every kind already carry it.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.config import ProfileConfig
from pipeline.datasets.common import BUILDER_VERSION
from pipeline.datasets.dedup import DedupSettings
from pipeline.datasets.split import SALT
from pipeline.datasets.tokens import Tokens
from pipeline.kinds import LM_KINDS, PREFERENCE_STAGES, DatasetKind
from pipeline.workspace import Workspace
from storage.corpus import corpus_digest

DEDUP = DedupSettings()
_LIBRARIES = ("tokenizers", "transformers")


def kinds_for(profile: ProfileConfig) -> list[DatasetKind]:
    """The snapshot kinds a profile builds: the language-model ones, and one per preference stage."""
    return [*LM_KINDS, *(DatasetKind(stage) for stage in profile.stages if stage in PREFERENCE_STAGES)]


def settings_for(workspace: Workspace, profile: ProfileConfig, kind: str, tokens: Tokens) -> dict[str, Any]:
    """The settings that shape a kind's rows (recorded in its snapshot, covered by its fingerprint)."""
    settings: dict[str, Any] = {
        "eval_percent": profile.eval_percent,
        "max_length": profile.train.max_length,
        "base_model": workspace.config.base_model.name,
        "tokenizer_fingerprint": tokens.fingerprint,
        "split_salt": SALT,
        "dedup": DEDUP.as_dict(),
    }
    if kind == DatasetKind.SFT:
        settings["include_unlabelled"] = profile.include_unlabelled
        settings["note_questions"] = profile.note_questions
        settings["assistant_mask"] = tokens.template.describe()
    return settings


@cache
def code_version() -> str:
    """sha256 over the builder's source files and the tokenizer libraries' versions (once per process)."""
    import storage.corpus
    import storage.labels

    digest = hashlib.sha256(f"builder {BUILDER_VERSION}\n".encode())
    files = [*sorted(Path(__file__).parent.glob("*.py")), Path(storage.corpus.__file__), Path(storage.labels.__file__)]
    for path in files:
        digest.update(f"{path.parent.name}/{path.name}\0".encode() + hashlib.sha256(path.read_bytes()).digest())
    for name in _LIBRARIES:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "-"
        digest.update(f"{name} {version}\n".encode())
    return digest.hexdigest()


def inputs_key(workspace: Workspace, name: str, profile: ProfileConfig, tokens: Tokens) -> str:
    """The key of what building profile ``name`` would read now (see the module docstring)."""
    head = {
        "code": code_version(),
        "profile": name,
        "sources": list(profile.sources),
        "settings": {kind: settings_for(workspace, profile, kind, tokens) for kind in kinds_for(profile)},
    }
    with workspace.store.read() as session:
        corpus = corpus_digest(session, profile.sources)
    digest = hashlib.sha256(b"plora-dataset-inputs-v2\n")
    digest.update(json.dumps(head, sort_keys=True, ensure_ascii=False).encode() + b"\n" + corpus.encode())
    return digest.hexdigest()


__all__ = ["DEDUP", "code_version", "inputs_key", "kinds_for", "settings_for"]
