"""The frozen base model a profile's adapters sit on; the public names of ``pipeline.base``.

``base_model.name`` is ``builtin:tiny-llama``, a packaged short name (``smollm2-135m``), a ``.gguf``
file, a local Hugging Face folder or a hub id (``pipeline.base.names``). ``load_base`` turns the
``[base_model]`` config into a loaded model + tokenizer and a fingerprint that adapters record, so an
adapter is never put on a base it wasn't trained on (``pipeline.base.fingerprint``); GGUF files are
converted once into safetensors folders under ``<home>/models/`` (``pipeline.base.gguf``).

Importing this module imports no torch / transformers / numpy (the CLI imports it at start-up).
"""

from __future__ import annotations

from pipeline.base.fingerprint import (
    fingerprint_files,
    fingerprint_folder,
    tokenizer_fingerprint,
    verify_fingerprint,
)
from pipeline.base.gguf import ensure_gguf
from pipeline.base.load import (
    LoadedBase,
    Quantization,
    builtin_model_dir,
    compute_dtype_choice,
    cpu_has_bf16,
    ensure_builtin,
    get_quantization_config,
    import_bitsandbytes,
    keep_4bit_layout,
    load_base,
    load_tokenizer,
    models_dir,
    release_checkpoint_map,
    resolve,
    resolve_device,
)
from pipeline.base.names import BUILTIN_TINY_LLAMA, PACKAGED, BaseNameError, base_name_problem
from pipeline.base.tiny_llama import (
    ASSISTANT,
    BOS,
    CHAT_TEMPLATE,
    DEFAULT_SEED,
    END,
    EOS,
    EOS_TEXT,
    PAD,
    SPECIAL_TOKEN_IDS,
    SPECIAL_TOKENS,
    SYSTEM,
    UNK,
    USER,
    build_tiny_llama,
    ensure_tiny_llama,
)

__all__ = [
    "ASSISTANT",
    "BOS",
    "BUILTIN_TINY_LLAMA",
    "CHAT_TEMPLATE",
    "DEFAULT_SEED",
    "END",
    "EOS",
    "EOS_TEXT",
    "PACKAGED",
    "PAD",
    "SPECIAL_TOKENS",
    "SPECIAL_TOKEN_IDS",
    "SYSTEM",
    "UNK",
    "USER",
    "BaseNameError",
    "LoadedBase",
    "Quantization",
    "base_name_problem",
    "build_tiny_llama",
    "builtin_model_dir",
    "compute_dtype_choice",
    "cpu_has_bf16",
    "ensure_builtin",
    "ensure_gguf",
    "ensure_tiny_llama",
    "fingerprint_files",
    "fingerprint_folder",
    "get_quantization_config",
    "import_bitsandbytes",
    "keep_4bit_layout",
    "load_base",
    "load_tokenizer",
    "models_dir",
    "release_checkpoint_map",
    "resolve",
    "resolve_device",
    "tokenizer_fingerprint",
    "verify_fingerprint",
]
