"""Run the benchmarks: ``python -m bench [--quick] [--device cpu|cuda] [--only NAME ...] [--out DIR]``.

Prints one markdown table and writes ``<out>/<stem>.json`` + ``<out>/<stem>.md`` and a dated copy
of each. ``<out>`` is ``bench/results`` (``bench/results/quick`` with ``--quick``, which git
ignores); ``<stem>`` is ``latest``, plus ``-cuda`` on a GPU and ``-<names>`` with ``--only`` so a
partial run never replaces the full table. Exit code 0 when every benchmark ran (targets missed
still exit 0: the table says so), 1 when one failed, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import REPO, Settings, machine_info, markdown_report, write_json

# name -> "module:function"; the order they run in (cheapest first, so a broken one shows early)
BENCHMARKS = {
    "ingest": "bench.ingest:run",
    "datasets": "bench.ingest:run_datasets",
    "redaction": "bench.redaction:run",
    "training": "bench.training:run",
    "real_training": "bench.real_training:run",
    "memory": "bench.memory:run",
    "lora_rank": "bench.lora_rank:run",
    "inference": "bench.inference:run",
    "adaptation": "bench.adaptation:run",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny corpus, tiny model, few steps: every row in under two minutes (CI smoke check)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where training, memory, rank and inference benchmarks run (default cpu)",
    )
    parser.add_argument(
        "--only", nargs="+", choices=list(BENCHMARKS), metavar="NAME", help=f"run only these ({', '.join(BENCHMARKS)})"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results folder (default bench/results, or bench/results/quick with --quick)",
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="the GPU's peak dense bf16 TFLOP/s for MFU (default: looked up by device name)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="alternating rounds per timed comparison (default 1 with --quick, else 2-5)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: one per core); 1 keeps timings steadier on a shared machine",
    )
    parser.add_argument(
        "--models",
        type=Path,
        default=None,
        help="a plora home's models/ folder: benchmarks on a converted base (SmolLM2) reuse it instead of converting",
    )
    parser.add_argument("--keep-work", action="store_true", help="keep the scratch folder (corpora, models, homes)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cpu":  # plora picks a GPU by itself when it sees one: hide it for a CPU run
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    if args.threads:  # read by torch at import, here and in the memory worker
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("error: --device cuda: CUDA is not available on this machine", file=sys.stderr)
            return 2
    names = args.only or list(BENCHMARKS)
    names = [name for name in BENCHMARKS if name in names]  # always the canonical order
    out = args.out or (REPO / "bench" / "results" / ("quick" if args.quick else ""))
    stem = "latest" + ("-cuda" if args.device == "cuda" else "") + ("-" + "-".join(names) if args.only else "")
    info = machine_info(args.device)
    info["torch_threads"] = args.threads
    work = Path(tempfile.mkdtemp(prefix="plora-benchrun-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the scratch folder is removed on `kill`
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    timings: dict[str, float] = {}
    started = time.perf_counter()
    try:
        for name in names:
            module_name, function = BENCHMARKS[name].split(":")
            settings = Settings(
                quick=args.quick,
                device=args.device,
                work=work / name,
                peak_tflops=args.peak_tflops,
                rounds=args.rounds,
                threads=args.threads,
                models=args.models,
            )
            settings.work.mkdir(parents=True)
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            began = time.perf_counter()
            try:
                produced = getattr(importlib.import_module(module_name), function)(settings)
                rows += [row.as_dict() for row in produced]
            except Exception as e:  # noqa: BLE001 - one broken benchmark must not hide the others' numbers
                traceback.print_exc()
                errors[name] = f"{type(e).__name__}: {e}"
            timings[name] = round(time.perf_counter() - began, 1)
            print(f"[bench] {name}: {timings[name]} s", file=sys.stderr, flush=True)
    finally:
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"[bench] scratch kept in {work}", file=sys.stderr)
    seconds = time.perf_counter() - started
    report = markdown_report(rows, info, quick=args.quick, seconds=seconds, errors=errors)
    document = {
        "quick": args.quick,
        "device": args.device,
        "benchmarks": names,
        "machine": info,
        "seconds": round(seconds, 1),
        "seconds_per_benchmark": timings,
        "errors": errors,
        "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "rows": rows,
    }
    dated = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in (stem, f"{stem.replace('latest', 'run', 1)}-{dated}"):
        write_json(out / f"{name}.json", document)
        (out / f"{name}.md").write_text(report, encoding="utf-8")
    print(report)
    print(f"[bench] wrote {out / stem}.json and .md ({seconds:.0f} s)", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
