"""What every benchmark shares: the row format, side-by-side timing, machine details, markdown.

A benchmark is ``run(settings: Settings) -> list[Row]``. A row is one number, measured against its
baseline in the same run whenever there is one: ``ratio = value / baseline``, and ``target`` (when
the issue sets one) is a condition on ``ratio`` or ``value`` such as ``"ratio <= 0.05"``; ``ok`` is
whether it held (None without a target).

Timing on a shared, noisy machine: candidates are run alternately (A B A B ...) and the reported
ratio is the median of the per-round ratios, so a burst of load from another process hits both
sides of a round alike; the value and baseline shown are the medians of each side.
"""

from __future__ import annotations

import contextlib
import json
import math
import operator
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/x.py` as well as `python -m bench`
    sys.path.insert(0, str(REPO))

ROW_KEYS = ("benchmark", "metric", "value", "unit", "baseline", "ratio", "target", "ok")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
    "==": operator.eq,
}


@dataclass
class Settings:
    """What the runner passes to every benchmark."""

    quick: bool = False
    device: str = "cpu"  # "cpu" | "cuda"
    work: Path = Path("/tmp")  # scratch folder for this run (homes, models, corpora); removed afterwards
    peak_tflops: float | None = None  # GPU peak (dense bf16) for MFU; looked up by device name when None
    rounds: int | None = None  # override how many alternating rounds the timed comparisons run
    threads: int | None = None  # torch CPU threads (None: torch's default, one per core)
    models: Path | None = None  # a plora models/ folder whose converted bases the benchmark homes reuse


def link_models(models: Path, home: Path) -> Path:
    """``models`` as ``home/models`` (a converted base is reused, not converted again): files
    hard-linked where the file system allows (nothing rewrites a model file in place), else copied."""
    import shutil

    def link(source: str, target: str) -> None:
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)

    shutil.copytree(models, home / "models", copy_function=link, dirs_exist_ok=True)
    return home / "models"


# Llamas built from config (pipeline.base_model.build_tiny_llama: deterministic, nothing downloaded;
# vocabulary 320, so nearly every parameter is in the decoder's linear layers).
# "small": ~16M parameters, for the timed benchmarks on a CPU (training, LoRA ranks, inference): small
# enough for several alternating rounds on two cores while compute still dominates each step;
# "base": ~104M parameters, for memory (a bigger model keeps noise small) and GPU training.
# --quick uses the builtin tiny-llama (~0.2M) for both.
MODELS: dict[str, dict[str, int]] = {
    "small": {"hidden_size": 512, "intermediate_size": 2048, "layers": 4, "heads": 8, "kv_heads": 4},
    "base": {"hidden_size": 768, "intermediate_size": 3072, "layers": 12, "heads": 12, "kv_heads": 4},
}


def model_folder(settings: Settings, kind: str) -> Path:
    """The benchmark model ``kind`` ("small" | "base"), built once per run into the scratch folder."""
    from pipeline.base_model import ensure_tiny_llama

    if settings.quick:
        folder = settings.work.parent / "models" / "tiny"
        ensure_tiny_llama(folder)
        return folder
    folder = settings.work.parent / "models" / kind
    ensure_tiny_llama(folder, **MODELS[kind])
    return folder


def model_parameters(folder: Path) -> int:
    """Parameters of the (unquantized) model in ``folder``, from its safetensors headers."""
    from safetensors import safe_open

    total = 0
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
                total += math.prod(handle.get_slice(key).get_shape())
    return total


@dataclass
class Row:
    benchmark: str
    metric: str
    value: float | int | str | None
    unit: str = ""
    baseline: float | int | None = None
    ratio: float | None = None
    target: str | None = None  # "ratio <= 0.05", "value == 0", ...
    ok: bool | None = None
    note: str = ""  # what the baseline is, or why a number is what it is

    def __post_init__(self) -> None:
        if self.ratio is None and _number(self.value) and _number(self.baseline) and self.baseline:
            self.ratio = float(self.value) / float(self.baseline)
        if self.target is not None and self.ok is None:
            self.ok = check(self.target, value=self.value, ratio=self.ratio)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("value", "baseline", "ratio"):
            data[key] = _rounded(data[key])
        return data


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _rounded(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.4g}") if abs(value) < 1e6 else round(value)
    return value


def check(target: str, *, value: Any, ratio: Any) -> bool | None:
    """Evaluate ``"<ratio|value> <op> <number>"``; None when the number it needs is missing."""
    subject, op, threshold = target.split()
    actual = ratio if subject == "ratio" else value
    if not _number(actual):
        return None
    return _OPS[op](float(actual), float(threshold))


# --- timing --------------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


@dataclass
class Alternation:
    """Seconds per candidate per round, from ``alternate``."""

    seconds: dict[str, list[float]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return median(self.seconds[name])

    def ratio(self, name: str, baseline: str) -> float:
        """Median over rounds of ``name``'s seconds / ``baseline``'s seconds (time ratio)."""
        return median([a / b for a, b in zip(self.seconds[name], self.seconds[baseline], strict=True) if b > 0])


def alternate(candidates: dict[str, Callable[[], Any]], rounds: int, *, warmup: bool = True) -> Alternation:
    """Run every candidate once per round, in turn (order rotated each round), and time each call.

    ``warmup`` runs each candidate once first, untimed (imports, caches, first-call allocation)."""
    if warmup:
        for fn in candidates.values():
            fn()
    result = Alternation({name: [] for name in candidates})
    names = list(candidates)
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            _, seconds = timed(candidates[name])
            result.seconds[name].append(seconds)
    return result


def median_ratio(values: list[float], baselines: list[float]) -> float:
    """Median over rounds of value / baseline (for rates measured side by side, round by round)."""
    return median([v / b for v, b in zip(values, baselines, strict=True) if b])


# --- processes and memory ------------------------------------------------------------------------


def child_processes(pid: int | None = None) -> list[dict[str, Any]]:
    """Live child processes of ``pid`` (this process by default), zombies included, from /proc."""
    pid = os.getpid() if pid is None else pid
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split at the last ")"
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if int(ppid) == pid:
            found.append({"pid": int(entry.name), "comm": comm, "state": state})
    return found


def rss_bytes() -> int:
    """Resident set size of this process now (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (ru_maxrss, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --- machine -------------------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    return None


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """CPU, cores, RAM, load, library versions, GPU (when asked for and present), date."""
    import importlib.metadata as metadata

    versions = {}
    for package in ("torch", "transformers", "peft", "trl", "bitsandbytes", "datasets", "accelerate"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    info: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gib": _ram_gib(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions,
        "device": device,
    }
    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info["gpu"] = {
                "name": props.name,
                "memory_gib": round(props.total_memory / 2**30, 1),
                "cuda": torch.version.cuda,
            }
    return info


def machine_line(info: dict[str, Any]) -> str:
    v = info["versions"]
    gpu = f", GPU {info['gpu']['name']} ({info['gpu']['memory_gib']} GiB)" if info.get("gpu") else ""
    threads = f", torch threads {info['torch_threads']}" if info.get("torch_threads") else ""
    return (
        f"{info['date']}; {info['cpu']}, {info['usable_cores']} cores{threads}, {info['ram_gib']} GiB RAM{gpu}; "
        f"load average at start {info['load_average'][0]}; Python {info['python']}, torch {v['torch']}, "
        f"transformers {v['transformers']}, peft {v['peft']}, trl {v['trl']}, bitsandbytes {v['bitsandbytes']}"
    )


# --- output --------------------------------------------------------------------------------------


def fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return f"{value:.2g}"
    return str(value)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| benchmark | metric | value | unit | baseline | ratio | target | ok |",
        "| --- | --- | ---: | --- | ---: | ---: | --- | --- |",
    ]
    for row in rows:
        ok = {True: "yes", False: "**no**", None: ""}[row.get("ok")]
        lines.append(
            f"| {row['benchmark']} | {row['metric']} | {fmt(row['value'])} | {row['unit']} | "
            f"{fmt(row['baseline'])} | {fmt(row['ratio'])} | {row['target'] or ''} | {ok} |"
        )
    return "\n".join(lines)


def markdown_report(
    rows: list[dict[str, Any]], info: dict[str, Any], *, quick: bool, seconds: float, errors: dict[str, str]
) -> str:
    notes = [f"- **{r['benchmark']} / {r['metric']}**: {r['note']}" for r in rows if r.get("note")]
    parts = [
        f"# plora benchmarks{' (--quick: tiny sizes, targets not meaningful)' if quick else ''}",
        "",
        f"Machine: {machine_line(info)}. Ran {seconds:.0f} s.",
        "",
        markdown_table(rows),
    ]
    if notes:
        parts += ["", "Notes:", "", *notes]
    if errors:
        parts += ["", "Errors:", "", *(f"- {name}: {error}" for name, error in errors.items())]
    return "\n".join(parts) + "\n"


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


# --- quiet libraries -----------------------------------------------------------------------------


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No progress bars or expected warnings from the ML libraries while a benchmark runs."""
    import logging
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import datasets
            import transformers

            datasets.disable_progress_bars()
            transformers.utils.logging.disable_progress_bar()
            transformers.utils.logging.set_verbosity_error()
        except ImportError:  # pragma: no cover
            pass
        logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
        yield


def measured_run(argv: list[str], out: Path, *, stdout_is_result: bool = False) -> tuple[dict[str, Any], int]:
    """Run ``argv``; its JSON result is ``out`` (written by the command, or its stdout with
    ``stdout_is_result``). Returns the result and the process's peak resident size in bytes."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryFile() as log, out.open("wb") as result:
        stdout = result if stdout_is_result else log
        process = subprocess.Popen(argv, stdout=stdout, stderr=log, env=env, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"{argv[:3]} exited {process.returncode}:\n{tail}")
    return json.loads(out.read_text(encoding="utf-8")), usage.ru_maxrss * 1024
