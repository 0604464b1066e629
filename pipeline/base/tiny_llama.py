"""Build the ``builtin:tiny-llama`` base model: a small Llama causal LM made locally, deterministically.

Every file is written by this module from fixed inputs, so two builds give the same bytes on any
machine and with any library release: weights from numpy's PCG64 generator (stable across numpy
versions and platforms) saved with safetensors; ``config.json``, ``generation_config.json``,
``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json`` as canonical JSON from
fixed dicts (no ``transformers_version``); the chat template as ``chat_template.jinja``. The
``tokenizers`` library builds the same tokenizer through its API to check ``tokenizer.json``
against, and transformers loads the result once before it is put in place.

Token ids: the 256 byte-level symbols are ids 0..255 (id == byte value), the special tokens follow
in ``SPECIAL_TOKENS`` order (256..263). The embedding is padded to a multiple of 64 rows (320);
ids 264..319 never come out of the tokenizer and generation suppresses them.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from pipeline.base.fingerprint import FINGERPRINT_FILE, fingerprint_folder, recorded_fingerprint
from pipeline.base.folders import staging_folder, swap_into_place

log = logging.getLogger(__name__)

BOS = "<s>"
EOS_TEXT = "</s>"  # end of a plain (non-chat) document; chat turns end with END
PAD = "<pad>"
UNK = "<unk>"
SYSTEM = "<|system|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
END = "<|end|>"
SPECIAL_TOKENS: tuple[str, ...] = (BOS, EOS_TEXT, PAD, UNK, SYSTEM, USER, ASSISTANT, END)
SPECIAL_TOKEN_IDS: dict[str, int] = {token: 256 + i for i, token in enumerate(SPECIAL_TOKENS)}
# The tokenizer's eos is the end-of-turn token: generation stops at the end of an assistant turn,
# and TRL appends it to plain-text examples.
EOS = END

# `<s>`, then `<|role|>\n` + content + `<|end|>\n` per message. The assistant's content and its
# `<|end|>` sit inside {% generation %} so `return_assistant_tokens_mask=True` marks exactly those
# tokens (not the `<|assistant|>\n` header, not the `\n` after `<|end|>`); TRL's
# `is_chat_template_stop_token_trained` check wants the end-of-turn token inside the span.
CHAT_TEMPLATE = (
    "{{- '<s>' -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{- '<|assistant|>\\n' -}}"
    "{%- generation -%}{{- message['content'] + '<|end|>' -}}{%- endgeneration -%}"
    "{{- '\\n' -}}"
    "{%- elif message['role'] == 'system' or message['role'] == 'user' -%}"
    "{{- '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' -}}"
    "{%- else -%}"
    "{{- raise_exception('tiny-llama chat template: unknown role ' + message['role'] + "
    "' (expected system, user or assistant)') -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}"
)

DEFAULT_SEED = 1234
WEIGHTS_FILE = "model.safetensors"
BUILD_FILE = "plora-build.json"  # the builder's arguments, to tell a cached variant apart
_VOCAB_MULTIPLE = 64
_INIT_STD = 0.02


def _canonical_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable symbol table (the ByteLevel alphabet), written out so it is fixed."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def tokenizer_vocab_size() -> int:
    return 256 + len(SPECIAL_TOKENS)


def model_config(
    *,
    hidden_size: int,
    intermediate_size: int,
    layers: int,
    heads: int,
    kv_heads: int,
    max_position_embeddings: int,
) -> dict[str, Any]:
    """``config.json`` of a tiny-llama, as a fixed dict (legacy ``rope_theta`` key: read by every
    transformers version since 4.x; 5.x turns it into ``rope_parameters``)."""
    if hidden_size % heads or heads % kv_heads:
        raise ValueError(f"hidden_size {hidden_size} / heads {heads} / kv_heads {kv_heads} do not divide")
    vocab = -(-tokenizer_vocab_size() // _VOCAB_MULTIPLE) * _VOCAB_MULTIPLE
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": hidden_size // heads,
        "hidden_act": "silu",
        "max_position_embeddings": max_position_embeddings,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "initializer_range": _INIT_STD,
        "use_cache": True,
        "dtype": "float32",
        "bos_token_id": SPECIAL_TOKEN_IDS[BOS],
        "eos_token_id": SPECIAL_TOKEN_IDS[EOS],
        "pad_token_id": SPECIAL_TOKEN_IDS[PAD],
    }


def _weight_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    head_dim, vocab = config["head_dim"], config["vocab_size"]
    q_dim, kv_dim = config["num_attention_heads"] * head_dim, config["num_key_value_heads"] * head_dim
    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (vocab, hidden),
        "model.norm.weight": (hidden,),
        "lm_head.weight": (vocab, hidden),
    }
    for i in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{i}."
        shapes |= {
            prefix + "input_layernorm.weight": (hidden,),
            prefix + "post_attention_layernorm.weight": (hidden,),
            prefix + "self_attn.q_proj.weight": (q_dim, hidden),
            prefix + "self_attn.k_proj.weight": (kv_dim, hidden),
            prefix + "self_attn.v_proj.weight": (kv_dim, hidden),
            prefix + "self_attn.o_proj.weight": (hidden, q_dim),
            prefix + "mlp.gate_proj.weight": (inter, hidden),
            prefix + "mlp.up_proj.weight": (inter, hidden),
            prefix + "mlp.down_proj.weight": (hidden, inter),
        }
    return shapes


def _write_weights(dest: Path, config: dict[str, Any], seed: int) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    tensors = {}
    # One generator walked in sorted-name order; RMSNorm weights are ones and draw nothing.
    # normal() draws float64 then rounds to float32, so a 1-ulp libm difference in the rare
    # ziggurat tail cannot reach the stored bytes.
    for name, shape in sorted(_weight_shapes(config).items()):
        if len(shape) == 1:
            tensors[name] = np.ones(shape, dtype=np.float32)
        else:
            tensors[name] = rng.normal(0.0, _INIT_STD, size=shape).astype(np.float32)
    save_file(dict(sorted(tensors.items())), str(dest / WEIGHTS_FILE), metadata={"format": "pt"})


def _tokenizer_json() -> dict[str, Any]:
    """``tokenizer.json`` as a fixed dict (the tokenizers 0.2x format), so its bytes don't depend on
    which tokenizers release serialises it. Byte-level BPE over the 256 byte symbols, no merges."""
    symbols = _bytes_to_unicode()
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": SPECIAL_TOKEN_IDS[token],
                "content": token,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for token in SPECIAL_TOKENS
        ],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": None,
        "decoder": {**byte_level, "add_prefix_space": True},  # the decoder ignores add_prefix_space
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": UNK,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {symbols[byte]: byte for byte in range(256)},
            "merges": [],
        },
    }


def _check_tokenizer_json(text: str) -> None:
    """The fixed ``tokenizer.json`` behaves exactly like the same tokenizer built with the tokenizers API."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    symbols = _bytes_to_unicode()
    if sorted(symbols.values()) != sorted(pre_tokenizers.ByteLevel.alphabet()):
        raise RuntimeError("byte table does not match the tokenizers ByteLevel alphabet")
    reference = Tokenizer(models.BPE(vocab={symbols[b]: b for b in range(256)}, merges=[], unk_token=UNK))
    reference.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    reference.decoder = decoders.ByteLevel()
    reference.add_special_tokens(
        [AddedToken(token, special=True, normalized=False, lstrip=False, rstrip=False) for token in SPECIAL_TOKENS]
    )
    written = Tokenizer.from_str(text)
    probe = "".join(SPECIAL_TOKENS) + " héllo\x00 wörld 🎉 中文\r\n\t  x" + "".join(map(chr, range(128)))
    for tokenizer in (reference, written):
        encoding = tokenizer.encode(probe, add_special_tokens=False)
        expected = [SPECIAL_TOKEN_IDS[t] for t in SPECIAL_TOKENS] + list(probe[len("".join(SPECIAL_TOKENS)) :].encode())
        if encoding.ids != expected or tokenizer.decode(encoding.ids, skip_special_tokens=False) != probe:
            raise RuntimeError("tiny-llama tokenizer.json does not encode bytes as their own ids")
    if json.loads(reference.to_str()) != json.loads(text):
        log.debug("this tokenizers release serialises tiny-llama's tokenizer differently; the fixed one is kept")


def _write_tokenizer(dest: Path, model_max_length: int) -> None:
    text = _canonical_json(_tokenizer_json())
    _check_tokenizer_json(text)
    (dest / "tokenizer.json").write_text(text, encoding="utf-8", newline="\n")
    named = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "unk_token": UNK}
    extra = [SYSTEM, USER, ASSISTANT]
    # Written here rather than by save_pretrained: transformers 5 writes its own version-specific
    # keys (tokenizer_class "TokenizersBackend", and is_local / local_files_only once reloaded).
    tokenizer_config = {
        **named,
        "extra_special_tokens": extra,
        "add_bos_token": False,  # the chat template writes <s> itself
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,  # decode must give back the exact bytes
        "model_max_length": model_max_length,
        "padding_side": "right",
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    (dest / "tokenizer_config.json").write_text(_canonical_json(tokenizer_config), encoding="utf-8", newline="\n")
    special_map = {**named, "additional_special_tokens": extra}
    (dest / "special_tokens_map.json").write_text(_canonical_json(special_map), encoding="utf-8", newline="\n")
    (dest / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8", newline="\n")


def _write_configs(dest: Path, config: dict[str, Any]) -> None:
    (dest / "config.json").write_text(_canonical_json(config), encoding="utf-8", newline="\n")
    generation = {
        "bos_token_id": config["bos_token_id"],
        "eos_token_id": config["eos_token_id"],
        "pad_token_id": config["pad_token_id"],
        # embedding rows past the tokenizer's vocabulary: never generate them
        "suppress_tokens": list(range(tokenizer_vocab_size(), config["vocab_size"])),
    }
    (dest / "generation_config.json").write_text(_canonical_json(generation), encoding="utf-8", newline="\n")


def _check_loads(folder: Path) -> None:
    """The installed transformers reads the tokenizer back with the ids and template we wrote."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    problems = []
    for attr, token in (("bos_token", BOS), ("eos_token", EOS), ("pad_token", PAD), ("unk_token", UNK)):
        if getattr(tokenizer, attr) != token:
            problems.append(f"{attr}={getattr(tokenizer, attr)!r}")
    if tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)) != [SPECIAL_TOKEN_IDS[t] for t in SPECIAL_TOKENS]:
        problems.append("special token ids")
    if tokenizer.chat_template != CHAT_TEMPLATE:
        problems.append("chat template")
    if tokenizer("a\x00é", add_special_tokens=False)["input_ids"] != [97, 0, 0xC3, 0xA9]:
        problems.append("byte ids")
    if problems:
        raise RuntimeError(f"tiny-llama tokenizer in {folder} did not load as written: {', '.join(problems)}")


def build_tiny_llama(
    dest: Path,
    *,
    hidden_size: int = 64,
    intermediate_size: int = 256,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    max_position_embeddings: int = 2048,
    seed: int = DEFAULT_SEED,
) -> str:
    """Build a tiny-llama into ``dest`` and return its fingerprint (also in ``dest/fingerprint.txt``).

    Written to a sibling temp folder, then renamed into place, so a crash never leaves a half model
    at ``dest``; an existing ``dest`` is replaced. The defaults are ``builtin:tiny-llama``; e.g.
    ``hidden_size=768, intermediate_size=3072, layers=12, heads=12, kv_heads=4`` is ~100M params.
    """
    config = model_config(
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        max_position_embeddings=max_position_embeddings,
    )
    dest = Path(dest)
    tmp = staging_folder(dest)
    try:
        _write_weights(tmp, config, seed)
        _write_configs(tmp, config)
        _write_tokenizer(tmp, max_position_embeddings)
        _check_loads(tmp)
        shutil.copymode(tmp / "config.json", tmp / WEIGHTS_FILE)  # safetensors writes 0600; use the umask
        (tmp / BUILD_FILE).write_text(build_record(config, seed), encoding="utf-8", newline="\n")
        fingerprint = fingerprint_folder(tmp)
        (tmp / FINGERPRINT_FILE).write_text(fingerprint + "\n", encoding="ascii", newline="\n")
        swap_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return fingerprint


def build_record(config: dict[str, Any], seed: int) -> str:
    """Contents of ``plora-build.json``: what a build with these arguments is made from."""
    return _canonical_json({"builder": "plora tiny-llama v1", "config": config, "seed": seed})


def cache_problem(folder: Path, expected_build: str) -> str | None:
    """Why the model cached in ``folder`` can't be used as it is, or None when it can."""
    try:
        build = (folder / BUILD_FILE).read_text(encoding="utf-8")
    except OSError:
        build = None
    if build != expected_build:
        return f"it was built with other arguments (or is incomplete): {BUILD_FILE} differs"
    recorded = recorded_fingerprint(folder)
    if recorded is None:
        return f"{FINGERPRINT_FILE} is missing"
    actual = fingerprint_folder(folder)
    if actual != recorded:
        return f"its files do not match its recorded fingerprint (recorded {recorded[:12]}…, files {actual[:12]}…)"
    return None


def ensure_tiny_llama(
    dest: Path,
    *,
    hidden_size: int = 64,
    intermediate_size: int = 256,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    max_position_embeddings: int = 2048,
    seed: int = DEFAULT_SEED,
) -> str:
    """The fingerprint of the tiny-llama cached at ``dest``, building it first when it is missing.

    A cached copy whose files don't match its recorded fingerprint (or that was built with other
    arguments) is rebuilt with a warning: the build is deterministic, so the cache is derived data
    and the rebuilt copy is the same model."""
    size = {
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "layers": layers,
        "heads": heads,
        "kv_heads": kv_heads,
        "max_position_embeddings": max_position_embeddings,
    }
    dest = Path(dest)
    if dest.is_dir():
        problem = cache_problem(dest, build_record(model_config(**size), seed))
        if problem is None:
            return recorded_fingerprint(dest) or ""
        log.warning("tiny-llama cache %s: %s; rebuilding it", dest, problem)
    return build_tiny_llama(dest, seed=seed, **size)
