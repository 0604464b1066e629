"""Resuming a run: its state, the checkpoints it wrote, and how a checkpoint is proven to be its own.

Layout of a run (``runs/<run-id>/``)::

    plora-run.json                 RunState at the start (step 0): what the run trains, on what
    .lock                          held while a process works on the run (pipeline.locks.run_lock)
    <stage>/checkpoint-<N>/        Trainer checkpoint (adapter, optimizer.pt, scheduler.pt,
                                   rng_state.pth, trainer_state.json, ...) plus
        plora-state.json           RunState at step N of <stage>
        plora-manifest.json        sha256 + size of every other file in the folder, written last
    <stage>/adapter/               the stage's finished adapter, same two plora files
    adapter/                       the final adapter handed to the registry (save_pretrained output)
    skipped/<stage>-checkpoint-<N>/  checkpoints found incomplete or foreign at resume, moved aside

A checkpoint is *complete* when its manifest exists, lists exactly the files present, every hash
matches, its ``plora-state.json`` belongs to this run (same run id, config hash, dataset and base
fingerprints), and the manifest's own sha256 is recorded for this run in the store
(``TrainingRun.metrics["checkpoints"]``). The manifest is written only after the Trainer has finished
writing the folder, so a process killed mid-write leaves a folder without one: it is skipped.

Safety of loading: a Trainer checkpoint contains torch pickles (``optimizer.pt``, ``scheduler.pt``,
``rng_state.pth``, ``training_args.bin``). transformers loads the first three with
``torch.load(weights_only=True)``; on top of that plora hands a checkpoint to the Trainer only after
the checks above prove that this run wrote it (hashes match and the manifest hash is in the store),
so no file that appeared in the folder from elsewhere is ever unpickled. ``training_args.bin`` is
never loaded.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.errors import TrainingError
from pipeline.integrity import (
    FolderManifest,
    atomic_write,
    canonical_json,
    files_under,
    sha256_bytes,
    validation_summary,
)
from pipeline.kinds import Stage, TrainingMode

RUN_FILE = "plora-run.json"
STATE_FILE = "plora-state.json"
MANIFEST_FILE = "plora-manifest.json"
ADAPTER_DIR = "adapter"
SKIPPED_DIR = "skipped"
STATE_FORMAT = 1
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class RunState:
    """Everything that decides what a run computes, plus where it is: saved as JSON in the run folder
    (step 0) and in every checkpoint (the step it was written at).

    On resume the state is rebuilt from today's config, datasets and base model and compared with the
    saved one: any difference in ``config_hash`` (with the keys that changed), ``dataset_fingerprint``
    or ``base_fingerprint`` is an error. Neither side wins on a mismatch: continuing would mix two
    runs and restarting would throw the checkpoints away silently, so you either restore what changed
    or start a new run. (``--mode`` / ``--max-steps`` left out on resume take the run's values.)"""

    run_id: str
    profile: str
    mode: TrainingMode  # the mode trained (after any fallback)
    requested_mode: TrainingMode  # what was asked (config or --mode)
    seed: int
    stages: list[Stage]  # the stages this run trains, in order (a stage without data is left out)
    config: dict[str, Any]  # the recipe settings the hash covers (see recipe.Recipe.hashed)
    config_hash: str
    dataset_fingerprint: str  # sha256 over every row trained and evaluated, replay rows included
    snapshots: dict[str, str]  # kind -> snapshot fingerprint
    base_model: str
    base_fingerprint: str
    parent_version: int | None = None  # continue mode: the adapter version training started from
    stage: str | None = None  # the stage this state was saved in (None in plora-run.json)
    step: int = 0  # the stage's global step when saved
    wall_seconds: float = 0.0  # seconds spent training this stage up to ``step``
    tokens: int = 0  # input tokens seen in this stage up to ``step``
    versions: dict[str, str] = field(default_factory=dict)  # library versions, for the record only
    format: int = STATE_FORMAT

    def __post_init__(self) -> None:
        modes = tuple(TrainingMode)
        if self.mode not in modes or self.requested_mode not in modes:
            raise ValueError(
                f"run state: mode {self.mode!r} / requested {self.requested_mode!r}: expected 'scratch' or 'continue'"
            )
        if not self.stages or self.stages[0] != Stage.SFT or any(s not in tuple(Stage) for s in self.stages):
            raise ValueError(f"run state: stages {self.stages!r} must start with 'sft'")
        # read back from JSON they are strings: the vocabulary's members from here on
        self.mode, self.requested_mode = TrainingMode(self.mode), TrainingMode(self.requested_mode)
        self.stages = [Stage(s) for s in self.stages]
        if self.stage is not None and self.stage not in self.stages:
            raise ValueError(f"run state: stage {self.stage!r} is not one of {self.stages}")
        if self.step < 0:
            raise ValueError(f"run state: step {self.step} < 0")
        for name in ("config_hash", "dataset_fingerprint", "base_fingerprint"):
            if not _HEX64.match(getattr(self, name)):
                raise ValueError(f"run state: {name} is not a sha256 hex digest")
        if self.format != STATE_FORMAT:
            raise ValueError(f"run state: format {self.format} (this plora reads {STATE_FORMAT})")

    def at(self, stage: str, step: int, *, wall_seconds: float, tokens: int) -> RunState:
        return RunState(
            **{**asdict(self), "stage": stage, "step": step, "wall_seconds": wall_seconds, "tokens": tokens}
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> RunState:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"run state: unknown keys {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def read(cls, path: Path) -> RunState:
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError) as e:
            raise TrainingError(f"{path}: not a readable plora run state ({e})") from e

    def write(self, path: Path) -> None:
        atomic_write(path, self.to_json())

    def same_run(self, other: RunState) -> bool:
        """The same computation: run, config, data and base (not where it stands)."""
        return (self.run_id, self.config_hash, self.dataset_fingerprint, self.base_fingerprint) == (
            other.run_id,
            other.config_hash,
            other.dataset_fingerprint,
            other.base_fingerprint,
        )


def config_differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``key: saved -> now`` for each setting that differs (flat, dotted keys)."""
    flat_saved, flat_now = _flatten(saved), _flatten(now)
    out = []
    for key in sorted(set(flat_saved) | set(flat_now)):
        a, b = flat_saved.get(key, "<unset>"), flat_now.get(key, "<unset>")
        if a != b:
            out.append(f"{key}: {a!r} -> {b!r}")
    return out


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def changed_inputs(saved: RunState, now: RunState) -> dict[str, str]:
    """What differs between an interrupted run's saved state and today's, in the order it is checked:
    ``config``, ``base``, ``snapshots`` (else ``data``: the rows themselves), ``stages`` -> what changed.
    The one answer to "does this interrupted run still fit": empty means it does."""
    problems: dict[str, str] = {}
    if saved.config_hash != now.config_hash:
        changes = config_differences(saved.config, now.config) or ["(settings outside the recipe)"]
        problems["config"] = "the training config changed: " + "; ".join(changes)
    if saved.base_fingerprint != now.base_fingerprint or saved.base_model != now.base_model:
        problems["base"] = (
            f"the base model changed: {saved.base_model} {saved.base_fingerprint[:12]} -> "
            f"{now.base_model} {now.base_fingerprint[:12]}"
        )
    if saved.snapshots != now.snapshots:
        changed = [
            f"{kind} {saved.snapshots.get(kind, '-')[:12]} -> {now.snapshots.get(kind, '-')[:12]}"
            for kind in sorted(set(saved.snapshots) | set(now.snapshots))
            if saved.snapshots.get(kind) != now.snapshots.get(kind)
        ]
        problems["snapshots"] = "the dataset snapshots changed: " + ", ".join(changed)
    elif saved.dataset_fingerprint != now.dataset_fingerprint:
        problems["data"] = (
            f"the training data changed (rows fingerprint {saved.dataset_fingerprint[:12]} -> "
            f"{now.dataset_fingerprint[:12]}: a snapshot or replay source was modified)"
        )
    if saved.stages != now.stages:
        problems["stages"] = f"the stages changed: {[str(s) for s in saved.stages]} -> {[str(s) for s in now.stages]}"
    return problems


def check_resumable(saved: RunState, now: RunState) -> None:
    """Raise a TrainingError naming every difference between the saved run and today's inputs."""
    problems = list(changed_inputs(saved, now).values())
    if problems:
        raise TrainingError(
            f"run {saved.run_id} can't be resumed: " + "; ".join(problems) + ". Its checkpoints were trained on "
            "the old inputs, so continuing would mix two runs: restore them to resume, or start a new run "
            "with `plora train` (without --resume)"
        )


# --- files ----------------------------------------------------------------------------------------


class CheckpointManifest(BaseModel):
    """``plora-manifest.json``: whose checkpoint this is, and every other file of the folder."""

    model_config = ConfigDict(frozen=True)

    format: int = 1
    run_id: str
    stage: str
    step: int
    files: FolderManifest


def write_manifest(folder: Path, *, run_id: str, stage: str, step: int) -> str:
    """Hash every file of ``folder`` into ``plora-manifest.json`` (written last, atomically); returns
    the manifest's own sha256, which the caller records in the store."""
    files = FolderManifest.of_folder(folder, exclude={MANIFEST_FILE})
    raw = canonical_json(CheckpointManifest(run_id=run_id, stage=stage, step=step, files=files).model_dump())
    atomic_write(folder / MANIFEST_FILE, raw)
    return sha256_bytes(raw)


def verify_manifest(folder: Path, *, run_id: str, stage: str, step: int | None = None) -> tuple[str | None, str]:
    """(the manifest's sha256, "ok") when ``folder`` is exactly what its manifest lists, else
    (None, why not)."""
    try:
        raw = (folder / MANIFEST_FILE).read_bytes()
        manifest = CheckpointManifest.model_validate_json(raw)
    except FileNotFoundError:
        return None, "no manifest (the checkpoint was not finished)"
    except OSError as e:
        return None, f"unreadable manifest ({e})"
    except ValidationError as e:
        return None, f"unreadable manifest ({validation_summary(e)})"
    if manifest.run_id != run_id or manifest.stage != stage:
        return None, f"written by {manifest.run_id}/{manifest.stage}, not {run_id}/{stage}"
    if step is not None and manifest.step != step:
        return None, f"manifest says step {manifest.step}, folder says {step}"
    present, listed = set(files_under(folder, exclude={MANIFEST_FILE})), set(manifest.files)
    if present != listed:
        extra, missing = sorted(present - listed), sorted(listed - present)
        return None, f"files differ from the manifest (extra {extra}, missing {missing})"
    for mismatch in manifest.files.mismatches(folder, first_only=True):
        return None, f"{mismatch.name} does not match its sha256 in the manifest"
    return sha256_bytes(raw), "ok"


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    stage: str
    step: int
    state: RunState
    manifest_sha256: str


def verify_checkpoint(
    folder: Path, run: RunState, stage: str, recorded: set[str], step: int | None = None
) -> tuple[Checkpoint | None, str]:
    """A Checkpoint when ``folder`` is a complete checkpoint of this run's ``stage``, else (None, why)."""
    digest, why = verify_manifest(folder, run_id=run.run_id, stage=stage, step=step)
    if digest is None:
        return None, why
    if digest not in recorded:
        return None, "its manifest is not recorded for this run in the store"
    try:
        state = RunState.from_json((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError) as e:
        return None, f"no valid {STATE_FILE} ({e})"
    if not state.same_run(run) or state.stage != stage or (step is not None and state.step != step):
        return None, f"{STATE_FILE} belongs to another run, stage or step"
    return Checkpoint(folder, stage, state.step, state, digest), "ok"


def checkpoint_folders(stage_dir: Path) -> list[tuple[int, Path]]:
    """``checkpoint-<N>`` folders of a stage, highest step first."""
    if not stage_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in stage_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return sorted(found, reverse=True)


def last_complete_checkpoint(
    stage_dir: Path, run: RunState, stage: str, recorded: set[str], *, set_aside: bool = False
) -> tuple[Checkpoint | None, list[str]]:
    """The stage's newest complete checkpoint, and a note per checkpoint skipped on the way.

    With ``set_aside``, the skipped ones newer than the chosen checkpoint are moved to
    ``runs/<id>/skipped/`` so the resumed Trainer never sees or overwrites them (they are kept, not
    deleted, in case someone wants to look at them)."""
    notes: list[str] = []
    for step, folder in checkpoint_folders(stage_dir):
        checkpoint, why = verify_checkpoint(folder, run, stage, recorded, step)
        if checkpoint is not None:
            return checkpoint, notes
        notes.append(f"{stage}/{folder.name} skipped: {why}")
        if set_aside:
            _set_aside(folder, stage_dir.parent / SKIPPED_DIR, f"{stage}-{folder.name}")
    return None, notes


def _set_aside(folder: Path, skipped: Path, name: str) -> None:
    skipped.mkdir(parents=True, exist_ok=True)
    target, n = skipped / name, 1
    while target.exists():
        n += 1
        target = skipped / f"{name}.{n}"
    shutil.move(str(folder), str(target))


def finished_stage(stage_dir: Path, run: RunState, stage: str, recorded: set[str]) -> Checkpoint | None:
    """The stage's finished adapter (``<stage>/adapter``), when complete and this run's."""
    folder = stage_dir / ADAPTER_DIR
    if not folder.is_dir():
        return None
    checkpoint, _ = verify_checkpoint(folder, run, stage, recorded)
    return checkpoint


def seal(folder: Path, state: RunState, record: Callable[[dict[str, Any]], None]) -> str:
    """Mark ``folder`` complete: write its state, then its manifest, then record the manifest hash."""
    state.write(folder / STATE_FILE)
    digest = write_manifest(folder, run_id=state.run_id, stage=state.stage or "", step=state.step)
    record({"stage": state.stage, "step": state.step, "path": folder.name, "manifest_sha256": digest})
    return digest


# --- the Trainer side -------------------------------------------------------------------------------


def checkpoint_callback(
    run: RunState, stage: str, record: Callable[[dict[str, Any]], None], stage_clock: Callable[[], float]
) -> Any:
    """A TrainerCallback that seals every checkpoint the Trainer saves (state, manifest, store record).

    ``on_save`` runs after the Trainer wrote the whole folder (weights, optimizer, scheduler, RNG,
    trainer_state.json) and rotated old checkpoints, so a manifest always describes a finished
    checkpoint. ``stage_clock()`` gives the stage's training seconds so far (earlier sessions included)."""
    from transformers import TrainerCallback

    class SealCheckpoints(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                seal(
                    folder,
                    run.at(
                        stage,
                        state.global_step,
                        wall_seconds=stage_clock(),
                        tokens=int(state.num_input_tokens_seen or 0),
                    ),
                    record,
                )

    return SealCheckpoints()
