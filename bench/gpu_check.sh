#!/usr/bin/env bash
# Benchmark item 7 on a CUDA machine: training throughput (plora train vs the textbook QLoRA script),
# peak VRAM and model FLOPs utilisation, plus the memory benchmark, on the ~104M-parameter model.
#
#   bench/gpu_check.sh                    # peak FLOP/s looked up from the GPU's name
#   bench/gpu_check.sh --peak-tflops 989  # or given (dense bf16 TFLOP/s)
#
# Writes bench/results/latest-cuda-training-memory.{json,md} (+ a dated copy) and prints the table.
# Extra arguments go to `python -m bench` (e.g. --rounds 2, --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"

"$PYTHON" - <<'PY'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: CUDA is not available here (torch %s); nothing to measure" % torch.__version__)
props = torch.cuda.get_device_properties(0)
print(f"gpu_check: {props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, "
      f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}", file=sys.stderr)
PY

exec "$PYTHON" -m bench --device cuda --only training memory "$@"
