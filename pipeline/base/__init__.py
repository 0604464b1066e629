"""The frozen base model, one module per job (``pipeline.base_model`` re-exports the public names):

- ``names``: what ``base_model.name`` means (builtin, packaged short name, .gguf file, folder, hub id)
  and the error naming the key when it means nothing;
- ``gguf``: a GGUF file converted once into a safetensors folder under ``<home>/models/``;
- ``fingerprint``: folder, GGUF and tokenizer fingerprints, and the GGUF hash index;
- ``load``: the loaded model + tokenizer (NF4 for QLoRA, or full precision);
- ``tiny_llama``: ``builtin:tiny-llama``, built locally from a fixed config and seed.

This file imports nothing, so its modules import each other without a cycle.
"""
