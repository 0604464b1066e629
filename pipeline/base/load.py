"""Loading the base model named in ``[base_model]``: the model (NF4 for QLoRA, or full precision), its
tokenizer, and the fingerprint adapters record.

``resolve`` turns ``base_model.name`` (see ``pipeline.base.names``) into the folder to load and its
fingerprint: the builtin is built into ``<home>/models/tiny-llama/`` on first use (its recorded
fingerprint); a packaged short name or a ``.gguf`` file is converted once into
``<home>/models/gguf-*/`` (``pipeline.base.gguf``; the GGUF file's sha256); a folder or a hub
snapshot is fingerprinted from its files (``fingerprint_folder``). Only safetensors weights are
loaded and no remote code runs.

torch / transformers / bitsandbytes are imported inside the functions: the CLI imports this module
at start-up.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.base.fingerprint import fingerprint_folder
from pipeline.base.gguf import ensure_gguf
from pipeline.base.names import BaseKind, BaseNameError, classify, first_line, hub_snapshot
from pipeline.base.tiny_llama import ensure_tiny_llama
from pipeline.errors import TrainingError
from pipeline.kinds import Quantization

if TYPE_CHECKING:
    from transformers import BitsAndBytesConfig, PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


# bitsandbytes >= 0.49 on AVX512-BF16 CPUs tries, at import, to fetch a faster 4-bit CPU kernel from
# the hub through the optional `kernels` package and logs a warning when it can't. Drop that one
# message; `import_bitsandbytes` also makes sure the fetch is never attempted.
class _DropKernelsCommunityWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to load CPU gemm_4bit_forward from kernels-community")


_BNB_CPU_LOGGER = logging.getLogger("bitsandbytes.backends.cpu.ops")
if not any(isinstance(f, _DropKernelsCommunityWarning) for f in _BNB_CPU_LOGGER.filters):
    _BNB_CPU_LOGGER.addFilter(_DropKernelsCommunityWarning())


def import_bitsandbytes() -> None:
    """Import bitsandbytes with `kernels` hidden, so its import-time hub download never happens (it
    then uses its bundled CPU kernel). `kernels` stays importable for anything else afterwards.

    Call it before importing peft or trl: both import bitsandbytes themselves."""
    if "bitsandbytes" in sys.modules:
        return
    hide = "kernels" not in sys.modules
    if hide:
        sys.modules["kernels"] = None  # type: ignore[assignment]  # `import kernels` -> ImportError
    try:
        import bitsandbytes  # noqa: F401
    finally:
        if hide and "kernels" in sys.modules and sys.modules["kernels"] is None:
            del sys.modules["kernels"]


@dataclass
class LoadedBase:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str  # as given in base_model.name
    fingerprint: str
    quantized: bool
    device: str  # "cpu", "cuda:0", ...
    path: Path  # the folder the model was loaded from


def builtin_model_dir(home: Path) -> Path:
    """Where ``builtin:tiny-llama`` is cached: ``<home>/models/tiny-llama``."""
    return models_dir(home) / "tiny-llama"


def ensure_builtin(home: Path) -> tuple[Path, str]:
    """Build ``builtin:tiny-llama`` into the home's model cache unless a good copy is there.

    A cached copy that fails its fingerprint check is rebuilt (with a warning), not trusted."""
    folder = builtin_model_dir(home)
    return folder, ensure_tiny_llama(folder)


def resolve_device(device: str | None = None) -> str:
    """None -> "cuda:N" (the current CUDA device) when CUDA is available, else "cpu"."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainingError(f"device {device!r}: CUDA is not available here; use 'cpu' or leave it unset")
        if device == "cuda":
            device = f"cuda:{torch.cuda.current_device()}"
    return device


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX): there bf16 matmuls run several
    times faster than float32; elsewhere torch emulates them, many times slower."""
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def compute_dtype_choice(device: str) -> tuple[Any, str]:
    """The dtype the base computes in on ``device``, and why (for the run's notes)."""
    import torch

    if device.startswith("cuda"):
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "bf16 compute (CUDA)"
        return torch.float16, "fp16 compute (this GPU has no bf16)"
    if cpu_has_bf16():
        return torch.bfloat16, "bf16 compute (this CPU has AVX512-BF16/AMX), adapter weights kept in fp32"
    return torch.float32, "fp32 compute (this CPU has no AVX512-BF16 or AMX: bf16 would be emulated and slower)"


def _compute_dtype(device: str) -> Any:
    return compute_dtype_choice(device)[0]


def get_quantization_config(
    quantization: Quantization, double_quant: bool, device: str | None = None
) -> BitsAndBytesConfig | None:
    """NF4 (QLoRA) settings for ``quantization="nf4"``, None for ``"none"``.

    Compute and storage dtype: ``compute_dtype_choice`` (bf16 on CUDA and on CPUs with native bf16,
    fp16 on GPUs without it, float32 elsewhere)."""
    if quantization == "none":
        return None
    if quantization != "nf4":
        raise TrainingError(f"base_model.quantization: {quantization!r}: expected 'nf4' or 'none'")
    from transformers import BitsAndBytesConfig

    import_bitsandbytes()
    dtype = _compute_dtype(resolve_device(device))
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_quant_storage=dtype,
    )


def models_dir(home: Path) -> Path:
    """The home's base model cache: ``<home>/models``."""
    return Path(home) / "models"


def resolve(name: str, home: Path) -> tuple[Path, str | None]:
    """The folder to load ``name`` from, and its fingerprint when it is known without hashing the
    folder (the builtin's recorded one, a GGUF file's sha256). Converts a GGUF base on first use."""
    home = Path(home)
    ref = classify(name, home)
    if ref.kind is BaseKind.BUILTIN:
        return ensure_builtin(home)
    if ref.kind in (BaseKind.PACKAGED, BaseKind.GGUF) and ref.path is not None:
        return ensure_gguf(ref.path, models_dir(home), name=name)
    if ref.kind is BaseKind.FOLDER and ref.path is not None:
        return ref.path, None
    return hub_snapshot(ref, home), None


def load_base(
    name: str,
    *,
    home: Path,
    quantization: Quantization,
    double_quant: bool,
    device: str | None = None,
    dtype: Any = None,
) -> LoadedBase:
    """Load the base model named in ``[base_model]`` (see ``resolve``).

    ``dtype``: what an unquantized base is loaded in; default ``compute_dtype_choice`` (bf16 where
    the device has it). A merged export asks for float32, so that bf16 rounding can't swallow the
    adapter's small deltas.

    ``quantization="nf4"`` loads every linear layer of the decoder as a bitsandbytes ``Linear4bit``
    (lm_head and embeddings stay unquantized). The tokenizer gets ``pad_token = eos_token`` when it
    has none. Raises BaseNameError (a ConfigError and a TrainingError) for a name that can't be
    resolved or loaded."""
    if quantization not in ("nf4", "none"):
        raise TrainingError(f"base_model.quantization: {quantization!r}: expected 'nf4' or 'none'")
    device = resolve_device(device)
    folder, fingerprint = resolve(name, Path(home))
    if not any(folder.glob("*.safetensors")):
        raise BaseNameError(home, name, f"{folder} has no *.safetensors weights (plora loads safetensors only)")
    if fingerprint is None:
        fingerprint = fingerprint_folder(folder)

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # plora shows its own progress; keep stderr readable
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    quantization_config = get_quantization_config(quantization, double_quant, device)
    kwargs: dict[str, Any] = {
        "trust_remote_code": False,
        "use_safetensors": True,
        "dtype": _compute_dtype(device) if dtype is None or quantization_config is not None else dtype,
        "device_map": {"": device},
    }
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError, KeyError) as e:
        raise BaseNameError(
            home, name, f"could not load a causal LM from {folder} ({type(e).__name__}: {first_line(e)})"
        ) from e
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if quantization_config is not None:
        keep_4bit_layout(model)
        if device == "cpu":
            release_checkpoint_map(model)
    model.eval()
    return LoadedBase(
        model=model,
        tokenizer=tokenizer,
        name=name,
        fingerprint=fingerprint,
        quantized=quantization_config is not None,
        device=device,
        path=folder,
    )


def keep_4bit_layout(model: Any) -> None:
    """Stop bitsandbytes from repacking NF4 weights for CPU inference.

    bitsandbytes >= 0.49, on a CPU with AVX512-BF16, converts a ``Linear4bit``'s weight in place to a
    CPU-specific packed layout (absmax rounded to bf16) the first time the layer runs in eval mode on
    an input that needs no gradient, and from then on multiplies through ``gemv_4bit``, which has no
    autograd kernel. Evaluating the base before training (as plora does) would therefore change the
    frozen base's numbers and cut the gradients of every LoRA weight afterwards, silently. Turning
    the conversion off keeps one layout for evaluation and training (a little slower inference on
    such CPUs; no effect on GPUs or other CPUs)."""
    try:
        import bitsandbytes as bnb
    except ImportError:  # pragma: no cover - bitsandbytes is a dependency
        return
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def release_checkpoint_map(model: Any) -> None:
    """Give a CPU-loaded NF4 model memory of its own, so the checkpoint's file mapping goes away.

    transformers memory-maps the safetensors checkpoint and, on a CPU, leaves every tensor it keeps
    unquantized (embeddings, norms, lm_head) pointing into that mapping. The mapping then lives as
    long as the model does, and with it every page read while quantizing: the whole fp32 (or bf16)
    checkpoint stays in the process's resident set next to the 4-bit weights. Copying the few
    unquantized tensors out releases it; returning freed heap to the OS (glibc ``malloc_trim``) drops
    the loader's temporary copies. On a GPU the tensors already live in device memory: not needed."""
    import ctypes
    import gc

    import bitsandbytes as bnb

    for tensor in [*model.parameters(), *model.buffers()]:
        if not isinstance(tensor, bnb.nn.Params4bit):
            tensor.data = tensor.data.clone()
    gc.collect()
    # not glibc: the heap is returned when the allocator sees fit
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def load_tokenizer(name: str, *, home: Path) -> PreTrainedTokenizerBase:
    """Just the tokenizer (and chat template) of the base named in ``[base_model]``, no weights.

    The builtin is built first if needed; another name is a local folder or a cached hub id, as
    for ``load_base``; no remote code runs. Gets ``pad_token = eos_token`` when it has none, like
    ``load_base``. ``tokenizer.name_or_path`` is the folder it was loaded from."""
    folder, _ = resolve(name, Path(home))
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    except (OSError, ValueError, KeyError) as e:
        raise BaseNameError(
            home, name, f"could not load a tokenizer from {folder} ({type(e).__name__}: {first_line(e)})"
        ) from e
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


__all__ = [
    "LoadedBase",
    "Quantization",
    "builtin_model_dir",
    "compute_dtype_choice",
    "cpu_has_bf16",
    "ensure_builtin",
    "get_quantization_config",
    "import_bitsandbytes",
    "keep_4bit_layout",
    "load_base",
    "load_tokenizer",
    "models_dir",
    "release_checkpoint_map",
    "resolve",
    "resolve_device",
]
