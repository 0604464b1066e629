"""Dataset build time per 10k messages, and token utilisation of the SFT set packed vs unpacked.

    .venv/bin/python bench/datasets_build.py [--quick] [--messages N] [--max-length 1024] [--json FILE]

Generates N messages of synthetic conversations (seeded, so runs compare: prose, commands and code
of varied lengths, a system prompt in some, tool messages in some, 5% exact or near duplicates,
80% labelled good, 10% bad, 10% unlabelled) as a JSONL export in a temporary home, ingests it with
the real connector, then times ``build_datasets`` (the builtin tokenizer is built before the clock
starts). Reports rows/s and messages/s of the build, seconds per 10k messages, where the time went
per kind, and the token utilisation (non-padding tokens / all tokens) of the built SFT train set at
the profile's ``max_length``:

- ``unpacked_fixed``: every example padded to ``max_length``;
- ``unpacked_batch``: batches of ``batch_size`` in dataset order, padded to their longest example
  (what TRL's collator does without packing);
- ``packed_bfd``: examples packed into ``max_length`` blocks by best-fit decreasing (TRL's "bfd"
  packing), utilisation = tokens / (blocks x max_length).

Computed from the examples' token lengths (the chat template through the base tokenizer), not by
running a trainer. ``run(quick)`` returns the numbers as a dict; not run by the tests.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from bisect import bisect_left, insort
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_WORDS = [
    "the",
    "bgp",
    "session",
    "to",
    "the",
    "transit",
    "flapped",
    "twice",
    "overnight",
    "and",
    "the",
    "hold",
    "timer",
    "expired",
    "on",
    "edge",
    "router",
    "cache",
    "hit",
    "ratio",
    "dropped",
    "after",
    "purge",
    "origin",
    "took",
    "load",
    "drain",
    "the",
    "pop",
    "before",
    "maintenance",
    "check",
    "prefix",
    "limits",
    "filters",
    "rpki",
    "roa",
    "interface",
    "counters",
    "errors",
    "mtu",
    "wireguard",
    "tunnel",
    "latency",
    "deploy",
    "rollback",
    "canary",
    "kubernetes",
    "node",
    "notready",
    "kubelet",
    "eviction",
    "disk",
    "pressure",
    "journald",
    "logs",
    "certificate",
    "renewal",
    "expiry",
    "cert-manager",
    "acme",
    "dns",
    "ttl",
    "anycast",
    "withdraw",
    "health",
    "check",
]
_COMMANDS = [
    "birdc show protocols all {w}",
    "kubectl get pods -n {w} -o wide",
    "dig +short {w}.example.com",
    "journalctl -u {w} --since -1h",
    "ip -s link show {w}0",
    "curl -sI https://{w}.example.com/",
]
_CODE = [
    'def {w}_check(host: str) -> bool:\n    result = run(["ping", "-c1", host])\n    return result.ok',
    "for pop in pops:\n    drain(pop)\n    wait_until_quiet(pop, minutes=5)",
]


def _text(rnd: random.Random, mean_words: int) -> str:
    words = max(3, int(rnd.lognormvariate(0, 0.6) * mean_words))
    parts: list[str] = []
    while sum(len(p.split()) for p in parts) < words:
        roll = rnd.random()
        if roll < 0.1:
            parts.append("```sh\n" + rnd.choice(_COMMANDS).format(w=rnd.choice(_WORDS)) + "\n```")
        elif roll < 0.15:
            parts.append("```python\n" + rnd.choice(_CODE).format(w=rnd.choice(_WORDS)) + "\n```")
        else:
            parts.append(" ".join(rnd.choice(_WORDS) for _ in range(rnd.randint(6, 18))).capitalize() + ".")
    return "\n\n".join(parts)


def conversations(messages: int, seed: int = 11) -> list[dict[str, Any]]:
    """Synthetic chat JSONL lines holding ``messages`` messages in all."""
    rnd = random.Random(seed)
    lines: list[dict[str, Any]] = []
    total = 0
    while total < messages:
        turns: list[dict[str, str]] = []
        if rnd.random() < 0.3:
            turns.append({"role": "system", "content": "You are Sam, an SRE. Answer briefly with commands."})
        for _ in range(rnd.randint(1, 5)):
            turns.append({"role": "user", "content": _text(rnd, 25)})
            if rnd.random() < 0.1:
                turns.append({"role": "tool", "content": _text(rnd, 40)})
            turns.append({"role": "assistant", "content": _text(rnd, 90)})
        turns = turns[: max(2, messages - total)]
        line: dict[str, Any] = {"id": f"c{len(lines):06d}", "messages": turns}
        roll = rnd.random()
        if roll < 0.8:
            line["label"] = "good"
        elif roll < 0.9:
            line["label"] = "bad"
        if lines and rnd.random() < 0.05:  # a duplicate (exact or with one word changed) of an earlier chat
            twin = json.loads(json.dumps(rnd.choice(lines)))
            if rnd.random() < 0.5:
                twin["messages"][-1]["content"] += " indeed"
            line["messages"] = twin["messages"]
        lines.append(line)
        total += len(line["messages"])
    return lines


def packed_blocks(lengths: list[int], max_length: int) -> int:
    """Blocks of ``max_length`` tokens needed by best-fit decreasing packing."""
    free: list[int] = []  # remaining space of each open block, sorted
    blocks = 0
    for raw_length in sorted(lengths, reverse=True):
        length = min(raw_length, max_length)
        index = bisect_left(free, length)
        if index == len(free):
            blocks += 1
            remaining = max_length - length
        else:
            remaining = free.pop(index) - length
        if remaining:
            insort(free, remaining)
    return blocks


def utilisation(lengths: list[int], max_length: int, batch_size: int) -> dict[str, float]:
    tokens = sum(lengths)
    if not lengths:
        return {"unpacked_fixed": 0.0, "unpacked_batch": 0.0, "packed_bfd": 0.0}
    batches = [lengths[i : i + batch_size] for i in range(0, len(lengths), batch_size)]
    padded = sum(max(batch) * len(batch) for batch in batches)
    return {
        "unpacked_fixed": round(tokens / (len(lengths) * max_length), 4),
        "unpacked_batch": round(tokens / padded, 4),
        "packed_bfd": round(tokens / (packed_blocks(lengths, max_length) * max_length), 4),
    }


def run(quick: bool, *, messages: int | None = None, max_length: int = 1024, batch_size: int = 4) -> dict[str, Any]:
    from pipeline.base_model import ensure_builtin
    from pipeline.datasets import build_datasets, load_tokens
    from pipeline.ingest import ingest
    from pipeline.workspace import open_workspace

    messages = messages or (2_000 if quick else 10_000)
    with tempfile.TemporaryDirectory(prefix="plora-bench-") as folder:
        home = Path(folder)
        chats = home / "chats.jsonl"
        lines = conversations(messages)
        chats.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        (home / "plora.toml").write_text(
            f"""
[[sources]]
name = "chats"
type = "jsonl"
path = "{chats}"

[profiles.bench]
sources = ["chats"]
stages = ["sft", "kto"]
eval_percent = 10
train = {{ max_length = {max_length}, batch_size = {batch_size}, packing = true }}
""",
            encoding="utf-8",
        )
        ensure_builtin(home)
        with open_workspace(home) as workspace:
            started = time.perf_counter()
            ingest(workspace)
            ingest_s = time.perf_counter() - started
            marks: dict[str, float] = {}

            def progress(kind: str, done: int, total: int) -> None:
                if done == 0:
                    marks[kind] = time.perf_counter()

            started = time.perf_counter()
            result = build_datasets(workspace, "bench", progress=progress)
            build_s = time.perf_counter() - started
            kinds = [*marks, "end"]
            marks["end"] = started + build_s
            per_kind = {kind: round(marks[kinds[i + 1]] - marks[kind], 3) for i, kind in enumerate(kinds[:-1])}
            sft = result.snapshots["sft"]
            tokens = load_tokens(workspace)
            lengths = [tokens.chat_length(row["messages"]) for row in sft.load()["train"]]
    rows = sum(sum(s.rows.values()) for s in result.snapshots.values())
    return {
        "messages": messages,
        "conversations": len(lines),
        "ingest_s": round(ingest_s, 3),
        "build_s": round(build_s, 3),
        "build_s_per_10k_messages": round(build_s * 10_000 / messages, 3),
        "messages_per_s": round(messages / build_s, 1),
        "rows": rows,
        "rows_per_s": round(rows / build_s, 1),
        "seconds_per_kind": per_kind,
        "sft": {
            "train_examples": len(lengths),
            "tokens": sum(lengths),
            "meta_cut": sft.meta.get("cut", {}),
            "meta_dropped": sft.meta.get("dropped", {}),
        },
        "max_length": max_length,
        "batch_size": batch_size,
        "utilisation": utilisation(lengths, max_length, batch_size),
    }


def markdown(result: dict[str, Any]) -> str:
    util = result["utilisation"]
    return "\n".join(
        [
            f"## Dataset build ({result['messages']} messages, {result['conversations']} conversations)",
            "",
            "| metric | value |",
            "| --- | --- |",
            f"| build seconds | {result['build_s']} |",
            f"| build seconds per 10k messages | {result['build_s_per_10k_messages']} |",
            f"| messages/s | {result['messages_per_s']} |",
            f"| rows/s | {result['rows_per_s']} |",
            f"| seconds per kind | {', '.join(f'{k} {v}' for k, v in result['seconds_per_kind'].items())} |",
            f"| SFT train examples / tokens | {result['sft']['train_examples']} / {result['sft']['tokens']} |",
            f"| utilisation at max_length {result['max_length']}: unpacked (pad to max) "
            f"| {util['unpacked_fixed']:.1%} |",
            f"| unpacked (pad to longest in batch of {result['batch_size']}) | {util['unpacked_batch']:.1%} |",
            f"| packed (BFD) | {util['packed_bfd']:.1%} |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2k messages instead of 10k")
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    result = run(args.quick, messages=args.messages, max_length=args.max_length)
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
