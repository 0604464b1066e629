"""A registered LoRA adapter as plain factors: per module ``A`` (r x in), ``B`` (out x r) and PEFT's
scale, so ``delta W = scale * B @ A`` exactly as PEFT applies it. Also what such factors can't say:
``representation_problems`` lists the adapter features (DoRA, ``modules_to_save``, trained biases,
embedding or other non-linear targets) that a runtime taking only A/B pairs can't carry.

The factors are read from the bytes the registry verified (``read_checked``), with safetensors."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.errors import RegistryError
from pipeline.registry.manifest import CONFIG_FILE, WEIGHTS_FILE
from pipeline.registry.verification import read_checked
from pipeline.registry.versions import AdapterVersion

if TYPE_CHECKING:
    import numpy as np

PREFIX = "base_model.model."
_FACTOR = re.compile(r"(?P<module>.+)\.lora_(?P<which>[AB])\.weight")


@dataclass(frozen=True)
class LoraPair:
    module: str  # e.g. "model.layers.3.self_attn.q_proj"
    a: np.ndarray  # (r, in), float32
    b: np.ndarray  # (out, r), float32
    scale: float  # PEFT's scaling of this module

    @property
    def rank(self) -> int:
        return int(self.a.shape[0])

    def delta(self) -> np.ndarray:
        """``scale * B @ A`` (out x in, float32), in Hugging Face's row order."""
        return (self.b @ self.a) * self.scale


def module_of(key: str) -> str | None:
    """The module a weight key belongs to when it is a LoRA A/B factor, else None."""
    match = _FACTOR.fullmatch(key.removeprefix(PREFIX))
    return match["module"] if match else None


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """PEFT's rank/alpha pattern lookup: a key matches a module path ending in it (regex allowed)."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def scale_of(config: dict[str, Any], module: str, rank: int) -> float:
    """PEFT's ``scaling`` of ``module``: alpha / r, or alpha / sqrt(r) with rsLoRA (alpha_pattern applies)."""
    alpha = float(_pattern_value(config.get("alpha_pattern") or {}, module, config.get("lora_alpha", 8)))
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def representation_problems(config: dict[str, Any], keys: Iterable[str], modules: frozenset[str]) -> list[str]:
    """What an A/B-pairs-only runtime can't represent; ``modules`` are the target names it maps."""
    problems = []
    if config.get("use_dora"):
        problems.append("it is a DoRA adapter (use_dora): its magnitude vectors have no equivalent")
    if config.get("modules_to_save"):
        problems.append(f"it saves whole modules (modules_to_save={config['modules_to_save']})")
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        problems.append(f"it trains biases (bias={config.get('bias')!r}, lora_bias={config.get('lora_bias', False)})")
    others = sorted(
        {key.removeprefix(PREFIX) for key in keys if module_of(key) is None and "lora_magnitude_vector" not in key}
    )
    if others:
        problems.append(f"it has weights other than LoRA A/B factors ({', '.join(others[:3])})")
    unmapped = sorted({m.rsplit(".", 1)[-1] for m in map(module_of, keys) if m is not None} - modules)
    if unmapped:
        problems.append(f"it targets {', '.join(unmapped)} (mapped: {', '.join(sorted(modules))})")
    return problems


def adapter_config(version: AdapterVersion) -> dict[str, Any]:
    """The verified ``adapter_config.json`` of a version."""
    try:
        config = json.loads(read_checked(version, CONFIG_FILE))
    except ValueError as e:
        raise RegistryError(f"adapter {version.ref}: {CONFIG_FILE} is not valid JSON ({e})") from e
    if not isinstance(config, dict):
        raise RegistryError(f"adapter {version.ref}: {CONFIG_FILE} is not a JSON object")
    return config


def weight_tensors(version: AdapterVersion) -> dict[str, np.ndarray]:
    """The verified ``adapter_model.safetensors`` as float32 numpy arrays."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(read_checked(version, WEIGHTS_FILE))
    except (SafetensorError, ValueError) as e:
        raise RegistryError(f"adapter {version.ref}: {WEIGHTS_FILE} can't be read ({e})") from e
    return {key: tensor.float().numpy() for key, tensor in tensors.items()}


def lora_pairs(config: dict[str, Any], tensors: dict[str, np.ndarray], ref: str) -> list[LoraPair]:
    """Every module's (A, B, scale), sorted by module; a RegistryError when a factor is missing or the
    shapes don't fit."""
    factors: dict[str, dict[str, np.ndarray]] = {}
    for key, tensor in tensors.items():
        match = _FACTOR.fullmatch(key.removeprefix(PREFIX))
        if match:
            factors.setdefault(match["module"], {})[match["which"]] = tensor
    pairs = []
    for module, found in sorted(factors.items()):
        a, b = found.get("A"), found.get("B")
        if a is None or b is None or a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise RegistryError(f"adapter {ref}: {module} has no matching lora_A/lora_B pair")
        pairs.append(LoraPair(module, a, b, scale_of(config, module, int(a.shape[0]))))
    if not pairs:
        raise RegistryError(f"adapter {ref}: {WEIGHTS_FILE} has no LoRA factors")
    return pairs
