"""Generate with a profile's adapter, and hot-swap several profiles on one loaded base.

``load_profiles(workspace, ["work", "creative"])`` loads the configured base once and attaches each
profile's adapter (its current version, or the one asked for) under its own adapter name;
``.use("creative")`` switches with PEFT's ``set_adapter``: no reload, no copy of the base.
Every adapter is verified and fingerprint-checked by ``registry.attach`` before it is used.

torch / transformers / peft are imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.base_model import load_base
from pipeline.errors import UsageError
from pipeline.registry import TOKENIZER_FILES, AdapterVersion, attach, check_profile, verify
from pipeline.workspace import Workspace

if TYPE_CHECKING:
    from pipeline.base_model import LoadedBase


def adapter_name_for(profile: str) -> str:
    """The PEFT adapter name of a profile: the profile name, unless PEFT would confuse it with its
    ``lora_`` key prefix (a profile called "a" or "lora")."""
    return f"profile_{profile}" if profile in "lora_" else profile


@dataclass
class Profiles:
    """Several profiles' adapters on one base model; one of them active at a time."""

    base: LoadedBase
    model: Any  # peft.PeftModel
    versions: dict[str, AdapterVersion]
    active: str
    tokenizers: dict[str, Any] = field(default_factory=dict)  # profiles whose adapter changed the tokenizer

    @property
    def profiles(self) -> list[str]:
        return list(self.versions)

    def use(self, profile: str) -> Profiles:
        """Make ``profile``'s adapter the active one (the others stay loaded)."""
        if profile not in self.versions:
            raise UsageError(f"profile {profile!r} is not loaded (loaded: {', '.join(self.versions)})")
        self.model.set_adapter(adapter_name_for(profile), inference_mode=True)
        self.active = profile
        return self

    def tokenizer(self, profile: str | None = None) -> Any:
        return self.tokenizers.get(profile or self.active, self.base.tokenizer)

    def encode(self, prompt: str, *, profile: str | None = None, system: str | None = None) -> dict[str, Any]:
        """The chat-template input for one user turn, with the assistant prompt opened, on the model's device."""
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        batch = self.tokenizer(profile).apply_chat_template(
            messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
        )
        return {key: value.to(self.base.device) for key, value in batch.items()}

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 64,
        profile: str | None = None,
        system: str | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        base_only: bool = False,
    ) -> str:
        """The reply of the active profile (or ``profile``, which becomes active) to ``prompt``;
        ``base_only``: of the base model alone, every adapter off for this reply (to compare).

        Greedy unless ``do_sample``."""
        import contextlib

        import torch

        if profile is not None and profile != self.active:
            self.use(profile)
        tokenizer = self.tokenizer()
        batch = self.encode(prompt, system=system)
        options: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": do_sample,
            "pad_token_id": tokenizer.pad_token_id,
        }
        if do_sample:
            options["temperature"] = temperature
        adapters_off = self.model.disable_adapter() if base_only else contextlib.nullcontext()
        with torch.inference_mode(), adapters_off:
            output = self.model.generate(**batch, **options)
        reply = output[0, batch["input_ids"].shape[1] :]
        return tokenizer.decode(reply, skip_special_tokens=True)


def load_profiles(workspace: Workspace, profiles: list[str], *, versions: dict[str, int] | None = None) -> Profiles:
    """Load the configured base once and put each profile's adapter on it; the first is active.

    ``versions`` pins some profiles to a version number (default: each profile's current one)."""
    if not profiles:
        raise UsageError("load_profiles: name at least one profile")
    if len(set(profiles)) != len(profiles):
        raise UsageError(f"load_profiles: a profile is named twice in {profiles}")
    versions = dict(versions or {})
    unknown = set(versions) - set(profiles)
    if unknown:
        raise UsageError(f"load_profiles: versions given for profiles not loaded: {', '.join(sorted(unknown))}")
    chosen: dict[str, AdapterVersion] = {}
    for profile in profiles:
        check_profile(profile)
        number = versions.get(profile)
        # verified before the base is loaded: a bad adapter fails fast (attach checks again)
        chosen[profile] = verify(workspace, profile if number is None else f"{profile}@v{number}")

    config = workspace.config.base_model
    base = load_base(
        config.name, home=workspace.home.root, quantization=config.quantization, double_quant=config.double_quant
    )
    model: Any = base.model
    tokenizers: dict[str, Any] = {}
    for profile, version in chosen.items():
        model = attach(model, version, base_fingerprint=base.fingerprint, adapter_name=adapter_name_for(profile))
        if any(name in TOKENIZER_FILES for name in version.require_manifest().files):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(version.path), trust_remote_code=False)
            if tokenizer.pad_token is None and tokenizer.eos_token is not None:
                tokenizer.pad_token = tokenizer.eos_token
            tokenizers[profile] = tokenizer
    loaded = Profiles(base=base, model=model, versions=chosen, active=profiles[0], tokenizers=tokenizers)
    return loaded.use(profiles[0])


def generate(
    workspace: Workspace, profile: str, prompt: str, *, version: int | None = None, max_new_tokens: int = 64
) -> str:
    """One reply from ``profile`` (its current version, or ``version``) to ``prompt``."""
    loaded = load_profiles(workspace, [profile], versions={profile: version} if version is not None else None)
    return loaded.generate(prompt, max_new_tokens=max_new_tokens)
