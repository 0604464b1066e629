"""Combining versions (``combine``): PEFT's ``add_weighted_adapter`` over verified versions of one
base, registered as a new version whose manifest lists the components.

torch / peft are imported inside the functions."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.base_model import import_bitsandbytes, load_base
from pipeline.errors import RegistryError, UsageError
from pipeline.registry.load import attach
from pipeline.registry.manifest import CONFIG_FILE, Component, Composition, lora_summary
from pipeline.registry.publish import register
from pipeline.registry.refs import check_profile
from pipeline.registry.verification import verify
from pipeline.registry.versions import AdapterVersion
from pipeline.workspace import Workspace

if TYPE_CHECKING:
    from pipeline.base_model import LoadedBase

COMBINATION_TYPES = ("cat", "linear", "svd")


def _combined_parent(profile: str, versions: Iterable[AdapterVersion]) -> int | None:
    mine = [version.version for version in versions if version.profile == profile]
    return max(mine) if mine else None


def _check_request(refs: list[str], weights: list[float], combination_type: str) -> None:
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


def _composition(versions: list[AdapterVersion], weights: list[float], combination_type: str) -> Composition:
    components = []
    for version, weight in zip(versions, weights, strict=True):
        manifest = version.require_manifest()
        components.append(
            Component(
                ref=version.ref,
                weight=float(weight),
                manifest_sha256=version.manifest_sha256,
                snapshots=manifest.snapshots,
                sources=manifest.sources,
            )
        )
    return Composition(combination_type=combination_type, components=components)


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
    _check_request(refs, weights, combination_type)
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
            description = " + ".join(f"{float(w):g} x {v.ref}" for v, w in zip(versions, weights, strict=True))
            return register(
                workspace,
                profile=profile,
                adapter_dir=folder,
                parent_version=_combined_parent(profile, versions),
                base_model=versions[0].base_model,
                base_fingerprint=versions[0].base_fingerprint,
                snapshots={},
                lora=lora_summary(combined_config),
                train={"kind": "composition", "combination_type": combination_type},
                metrics={},
                gate={"accepted": True, "reasons": [f"composition {description} (not evaluated)"]},
                run_id=None,
                sources=None,
                promote=promote,
                composition=_composition(versions, weights, combination_type),
            )
    finally:
        if isinstance(model, PeftModel):
            model.unload()  # take the LoRA modules back out: the caller's base is as it was
