"""Putting a version on a model (``attach``): verified first, weights read with safetensors from the
very bytes that were hashed, refused on a base with another fingerprint. Nothing is unpickled.

torch / peft are imported inside the functions."""

from __future__ import annotations

import json
from typing import Any

from pipeline.base_model import import_bitsandbytes
from pipeline.errors import RegistryError
from pipeline.registry.manifest import CONFIG_FILE, WEIGHTS_FILE
from pipeline.registry.verification import read_checked, verified
from pipeline.registry.versions import AdapterVersion


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
    version = verified(version)
    if version.base_fingerprint != base_fingerprint:
        raise RegistryError(
            f"adapter {version.ref} was trained on base {version.base_model!r} (fingerprint "
            f"{version.base_fingerprint[:12]}...), but the loaded base has fingerprint {base_fingerprint[:12]}...; "
            "load the base it was trained on, or retrain it on this one"
        )
    config_raw = read_checked(version, CONFIG_FILE)
    weights_raw = read_checked(version, WEIGHTS_FILE)

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
        # peft annotates the result as `namedtuple` (the factory); it is torch's _IncompatibleKeys
        result: Any = set_peft_model_state_dict(peft_model, weights, adapter_name=adapter_name)
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
    # the LoRA tuner (torch's Module.__getattr__ types every attribute as Tensor | Module)
    tuner: Any = peft_model.base_model
    tuner.set_requires_grad(adapter_name, requires_grad=trainable)
    if not trainable:
        peft_model.eval()
    return peft_model
