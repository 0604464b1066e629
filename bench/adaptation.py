"""Does the adapter learn its person, month after month? (issue 14)

A seeded, made-up persona (nothing downloaded): Sam, an SRE of a fictional team, whose notes state
facts no base model can know (hosts, ports, contacts, schedules, retention of made-up services),
whose chats answer in a recognisable voice (every reply opens with ``VOICE``), and who corrected a
few generic replies (the DPO stage learns from those). Then, on the real base (``smollm2-135m``;
``--quick``: the builtin tiny model, few steps, same rows) with plora's own defaults for LoRA and the
learning rate (the bench sets only the step budget and the run's size):

- held-out loss per source: the run's own eval split, adapter vs base (``plora train --json``);
- fact recall: multiple choice (the answer and three distractors of its kind) scored by the mean
  log-likelihood of each option as the assistant's reply, to questions worded unlike the notes;
  plus control facts never in the corpus (they must stay at chance, 25%);
- voice: the share of greedy replies to held-out prompts that open with the person's habit;
- preference: chosen-over-rejected accuracy on held-out pairs of the person's reply vs a generic one;
- forgetting: the general-text probe (``pipeline.probe``), adapter vs base;
- month 2: new notes with new facts, trained three ways from month 1's home: ``continue`` with
  replay (plora's default), ``scratch``, ``continue`` without replay; new-fact recall and how much
  of v1's month-1 recall each keeps;
- cost: wall time and peak resident memory of each ``plora train`` (a process of its own).
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import REPO, Row, Settings, link_models, measured_run

SMOLLM2 = "smollm2-135m"
VOICE = "Short answer:"
CHANCE = 0.25

# --- the persona ---------------------------------------------------------------------------------------

SERVICES = (
    "billing", "ledger", "search", "payments", "inventory", "mailer", "auth", "metrics", "catalog", "checkout",
    "reports", "gateway", "scheduler", "uploads", "pricing", "notifier", "tracking", "profiles", "exports", "quotas",
)  # fmt: skip
POOLS = {
    "host": [f"{a}-{n:02d}" for a in ("marten", "heron", "lynx", "otter", "wren", "vole") for n in (3, 7, 14, 21)],
    "port": [str(p) for p in (4317, 5140, 6380, 7443, 8125, 8843, 9091, 9555, 10250, 11211)],
    "person": ["Ines", "Tomasz", "Priya", "Kwame", "Hedda", "Rafael", "Mei", "Oskar", "Leila", "Bruno"],
    "schedule": [f"{d} at {t}" for d in ("Monday", "Wednesday", "Friday", "Sunday") for t in ("02:30", "04:15")],
    "days": [str(d) for d in (7, 14, 21, 30, 45, 60, 90, 120)],
    "cluster": ["aurora", "basalt", "cobalt", "dune", "ember", "fjord", "granite", "harbor"],
}  # fmt: skip
KINDS = {  # kind -> (pool, statements in the notes, a question worded otherwise)
    "db_host": (
        "host",
        [
            "The primary database for {s} runs on {a}.",
            "When {s} gets slow, look at {a} first: it holds the {s} primary.",
        ],
        "Which machine is the main database server of the {s} service?",
    ),
    "port": (
        "port",
        ["The {s} API listens on port {a}.", "Health checks for {s} go to port {a}."],
        "What port number does {s} accept requests on?",
    ),
    "oncall": (
        "person",
        ["{a} is the escalation contact for {s} incidents.", "Page {a} if {s} is down for more than ten minutes."],
        "Who do I escalate to when {s} has an outage?",
    ),
    "backup": (
        "schedule",
        ["Backups of {s} run every {a} UTC.", "The {s} backup job is scheduled for {a} UTC."],
        "When does the {s} backup happen?",
    ),
    "retention": (
        "days",
        ["Logs of {s} are kept for {a} days.", "We delete {s} logs after {a} days."],
        "For how many days are the {s} logs retained?",
    ),
    "cluster": (
        "cluster",
        ["{s} is deployed on the {a} cluster.", "All of {s}'s containers run on the {a} cluster."],
        "Which cluster hosts the {s} workloads?",
    ),
}


@dataclass(frozen=True)
class Fact:
    kind: str
    service: str
    answer: str
    options: tuple[str, ...]  # the answer and three distractors of its kind, shuffled

    @property
    def statements(self) -> list[str]:
        return [s.format(s=self.service, a=self.answer) for s in KINDS[self.kind][1]]

    @property
    def question(self) -> str:
        return KINDS[self.kind][2].format(s=self.service)


def facts(rnd: random.Random, count: int, used: set[tuple[str, str]]) -> list[Fact]:
    out = []
    while len(out) < count:
        kind, service = rnd.choice(sorted(KINDS)), rnd.choice(SERVICES)
        if (kind, service) in used:
            continue
        used.add((kind, service))
        pool = POOLS[KINDS[kind][0]]
        answer = rnd.choice(pool)
        options = [answer, *rnd.sample([p for p in pool if p != answer], 3)]
        rnd.shuffle(options)
        out.append(Fact(kind, service, answer, tuple(options)))
    return out


def notes_of(known: list[Fact], month: int, rnd: random.Random) -> dict[str, str]:
    """Markdown notes stating each fact twice, in different notes and words, among ordinary prose."""
    per_note = 3
    files: dict[str, str] = {}
    order = known[:]
    for round_ in range(2):
        rnd.shuffle(order)
        for start in range(0, len(order), per_note):
            group = order[start : start + per_note]
            name = f"month{month}/note-{round_}-{start // per_note:02d}.md"
            lines = [f"# Notes on {', '.join(f.service for f in group)}", ""]
            for fact in group:
                lines += [f"## {fact.service}", "", fact.statements[round_], "Keep this page up to date.", ""]
            files[name] = "\n".join(lines)
    return files


TOPICS = (
    "restart a stuck worker", "rotate the log files", "check free disk space", "find a slow query",
    "drain a node", "roll back a deploy", "renew a certificate", "tail the error log", "clear a full queue",
    "scale a deployment", "check memory pressure", "find who holds a lock", "compare two configs",
    "test DNS resolution", "check open ports", "follow a request id", "pause a cron job", "read a core dump",
)  # fmt: skip
ADVICE = (
    "do it on one host first and watch the graphs", "write down what you changed in the ticket",
    "check the runbook before touching production", "keep the old version around until it is stable",
    "make sure the alert is silenced while you work", "ask in the team channel if anything looks odd",
)  # fmt: skip


def person_reply(topic: str, rnd: random.Random) -> str:
    return f"{VOICE} {topic}, then {rnd.choice(ADVICE)}. If that fails, {rnd.choice(ADVICE)}."


def generic_reply(topic: str) -> str:
    return f"There are several ways to {topic}. It depends on your setup, so consult the documentation."


def chats_of(count: int, rnd: random.Random, corrected: int) -> tuple[list[dict[str, Any]], list[int]]:
    """``count`` chats in the person's voice; the last ``corrected`` have a generic reply that the
    person corrects (label bad + correction), for the DPO stage."""
    lines = []
    for i in range(count):
        topic = TOPICS[i % len(TOPICS)]
        reply = generic_reply(topic) if i >= count - corrected else person_reply(topic, rnd)
        lines.append(
            {
                "id": f"chat-{i:03d}",
                "messages": [
                    {"role": "user", "content": f"How do I {topic} on the {SERVICES[i % len(SERVICES)]} box?"},
                    {"role": "assistant", "content": reply},
                ],
            }
        )
    return lines, list(range(count - corrected, count))


HELD_OUT = ("restart the cache", "check the load balancer", "reset a password", "find a memory leak")


def held_out_pairs(rnd: random.Random) -> list[dict[str, Any]]:
    return [
        {
            "prompt": [{"role": "user", "content": f"How do I {topic} on the {rnd.choice(SERVICES)} box?"}],
            "chosen": [{"role": "assistant", "content": person_reply(topic, rnd)}],
            "rejected": [{"role": "assistant", "content": generic_reply(topic)}],
        }
        for topic in HELD_OUT * 2
    ]


# --- a home, trained by `plora train` ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    base: str
    steps: int
    month2_steps: int
    chats: int
    corrected: int
    facts_month1: int
    facts_month2: int
    controls: int
    max_length: int
    batch_size: int

    @classmethod
    def of(cls, settings: Settings) -> Plan:
        if settings.quick:
            return cls("builtin:tiny-llama", 2, 2, 24, 4, 4, 2, 2, 384, 2)  # a byte-level tokenizer
        return cls(SMOLLM2, 60, 40, 36, 8, 12, 6, 6, 256, 4)


def _config(plan: Plan, stages: str) -> str:
    return f"""
[base_model]
name = "{plan.base}"

[[sources]]
name = "notes"
type = "markdown"
path = "notes"

[[sources]]
name = "chats"
type = "jsonl"
path = "chats.jsonl"

[profiles.work]
sources = ["notes", "chats"]
stages = {stages}
mode = "continue"
eval_percent = 10
include_unlabelled = true
train = {{ max_steps = {plan.steps}, batch_size = {plan.batch_size}, max_length = {plan.max_length}, \
save_steps = 100000 }}
"""


def write_home(home: Path, plan: Plan, notes: dict[str, str], chats: list[dict[str, Any]], stages: str) -> None:
    for name, text in notes.items():
        (home / "notes" / name).parent.mkdir(parents=True, exist_ok=True)
        (home / "notes" / name).write_text(text, encoding="utf-8")
    (home / "chats.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chats), encoding="utf-8")
    (home / "plora.toml").write_text(_config(plan, stages), encoding="utf-8")


def ingest(home: Path) -> None:
    from pipeline.ingest import ingest as run_ingest
    from pipeline.workspace import open_workspace

    with open_workspace(home) as workspace:
        reports = run_ingest(workspace)
    failed = {name: r.error for name, r in reports.items() if r.error}
    if failed:
        raise RuntimeError(f"ingest of {home} failed: {failed}")


def train(home: Path, *args: str) -> dict[str, Any]:
    """``plora train --json`` in a process of its own (after an ingest); the result with the train
    process's peak resident size."""
    ingest(home)
    plora = str(Path(sys.executable).with_name("plora"))
    out = home.parent / f"{home.name}-train.json"
    result, peak = measured_run([plora, "train", "--home", str(home), "--json", *args], out, stdout_is_result=True)
    return {**result, "peak_rss": peak}


def correct(home: Path, chats: list[dict[str, Any]], corrected: list[int], rnd: random.Random) -> None:
    from pipeline.labels import set_label
    from pipeline.workspace import open_workspace

    with open_workspace(home) as workspace:
        for i in corrected:
            topic = TOPICS[i % len(TOPICS)]
            set_label(workspace, f"chats:{chats[i]['id']}", "bad", position=1, correction=person_reply(topic, rnd))


# --- measuring -----------------------------------------------------------------------------------------------


def recall(model: Any, tokenizer: Any, known: list[Fact]) -> float:
    """Share of facts whose answer is the most likely option (mean log-probability per token)."""
    if not known:
        return 0.0
    from pipeline.evaluate import token_logprob_sums
    from pipeline.tokenization import chat_template, tokenize_completion

    template = chat_template(tokenizer)
    examples = [
        tokenize_completion(
            [{"role": "user", "content": f.question}], [{"role": "assistant", "content": o}], template, 256
        )
        for f in known
        for o in f.options
    ]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores = token_logprob_sums(model, examples, pad_token_id=pad, batch_size=8)
    hits = 0
    for i, fact in enumerate(known):
        mine = scores[4 * i : 4 * i + 4]
        best = max(range(4), key=lambda j: mine[j][0] / max(1, mine[j][1]))
        hits += fact.options[best] == fact.answer
    return hits / len(known)


def voice(model: Any, tokenizer: Any, prompts: list[str]) -> float:
    import torch

    shown = 0
    for prompt in prompts:
        batch = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_dict=True, return_tensors="pt"
        )
        with torch.inference_mode():
            out = model.generate(**batch, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        reply = tokenizer.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        shown += reply.strip().startswith(VOICE)
    return shown / len(prompts)


class Measurer:
    """The base loaded once (as plora trains it); each version attached, measured, taken off."""

    def __init__(self, home: Path) -> None:
        from pipeline.base_model import import_bitsandbytes, load_base
        from pipeline.workspace import open_workspace

        import_bitsandbytes()
        with open_workspace(home) as workspace:
            config = workspace.config.base_model
            self.base = load_base(
                config.name, home=home, quantization=config.quantization, double_quant=config.double_quant
            )

    def measure(self, home: Path, ref: str | None, checks: dict[str, Any]) -> dict[str, float]:
        from pipeline import registry
        from pipeline.evaluate import preference_accuracy
        from pipeline.workspace import open_workspace

        model, tokenizer = self.base.model, self.base.tokenizer
        if ref is not None:
            with open_workspace(home) as workspace:
                version = registry.resolve(workspace, ref)
            model = registry.attach(model, version, base_fingerprint=self.base.fingerprint)
        try:
            out = {name: recall(model, tokenizer, known) for name, known in checks["facts"].items()}
            out["voice"] = voice(model, tokenizer, checks["prompts"])
            out["preference"] = preference_accuracy(model, checks["pairs"], tokenizer).accuracy or 0.0
            return out
        finally:
            if ref is not None:
                model.unload()


# --- the benchmark -----------------------------------------------------------------------------------------


def trained_facts(home: Path, known: list[Fact]) -> list[Fact]:
    """The facts with at least one statement in a training row (a note that fell in the eval split
    is never trained on: its facts can't be recalled, and are not counted)."""
    from pipeline.snapshots import latest
    from pipeline.workspace import open_workspace

    with open_workspace(home) as workspace:
        snapshot = latest(workspace, "work", "text")
        text = "\n".join(row["text"] for row in snapshot.load()["train"]) if snapshot else ""
    return [f for f in known if any(s in text for s in f.statements)]


def run(settings: Settings) -> list[Row]:
    plan = Plan.of(settings)
    rnd = random.Random(14)
    used: set[tuple[str, str]] = set()
    month1, month2, controls = (facts(rnd, n, used) for n in (plan.facts_month1, plan.facts_month2, plan.controls))
    chats, corrected = chats_of(plan.chats, rnd, plan.corrected)
    home = settings.work / "month1"
    (home / "notes").mkdir(parents=True)
    if settings.models is not None:
        link_models(settings.models, home)
    write_home(home, plan, notes_of(month1, 1, rnd), chats, '["sft", "dpo"]')
    print("[bench] adaptation: month 1 (ingest, label, train)", file=sys.stderr, flush=True)
    ingest(home)
    correct(home, chats, corrected, rnd)
    first = train(home, "--max-steps", str(plan.steps))
    month1 = trained_facts(home, month1)

    # month 2: new notes with new facts, three ways from month 1's home
    month2_notes = notes_of(month2, 2, rnd)
    ways = {"continue + replay": [], "scratch": ["--mode", "scratch"], "continue, no replay": []}
    seconds: dict[str, dict[str, Any]] = {"month 1": first}
    homes: dict[str, Path] = {}
    for way, flags in ways.items():
        print(f"[bench] adaptation: month 2, {way}", file=sys.stderr, flush=True)
        target = settings.work / f"month2-{len(homes)}"
        shutil.copytree(home, target, symlinks=True)
        for name, text in month2_notes.items():
            (target / "notes" / name).parent.mkdir(parents=True, exist_ok=True)
            (target / "notes" / name).write_text(text, encoding="utf-8")
        config = (target / "plora.toml").read_text(encoding="utf-8").replace('["sft", "dpo"]', '["sft"]')
        if way == "continue, no replay":
            config = config.replace("save_steps = 100000 }", "save_steps = 100000, replay_fraction = 0.0 }")
        (target / "plora.toml").write_text(config, encoding="utf-8")
        seconds[way] = train(target, "--max-steps", str(plan.month2_steps), "--force", *flags)
        homes[way] = target
    month2 = trained_facts(next(iter(homes.values())), month2)
    checks = {
        "facts": {"month1": month1, "month2": month2, "controls": controls},
        "prompts": [f"How do I {t} on the {s} box?" for t, s in zip(HELD_OUT, SERVICES[-4:], strict=True)],
        "pairs": held_out_pairs(rnd),
    }
    print("[bench] adaptation: measuring", file=sys.stderr, flush=True)
    measurer = Measurer(home)
    base = measurer.measure(home, None, checks)
    v1 = measurer.measure(home, "work@v1", checks)
    month2_scores = {way: measurer.measure(target, "work@v2", checks) for way, target in homes.items()}
    counted = {name: len(known) for name, known in checks["facts"].items()}
    return rows(plan, first, base, v1, month2_scores, seconds, counted)


def rows(
    plan: Plan,
    first: dict[str, Any],
    base: dict[str, float],
    v1: dict[str, float],
    month2: dict[str, dict[str, float]],
    runs: dict[str, dict[str, Any]],
    facts_counted: dict[str, int],
) -> list[Row]:
    quick = plan.base != SMOLLM2
    what = (
        f"{plan.base}, plora's default LoRA and learning rate, "
        f"{plan.steps} steps of {plan.batch_size} x {plan.max_length}"
    )

    def target(text: str) -> str | None:
        return None if quick else text

    out = []
    for source in ("chats", "notes"):
        loss = (first["source_eval_loss"]["new"] or {}).get(source)
        base_loss = (first["source_eval_loss"]["base"] or {}).get(source)
        out.append(
            Row(
                "adaptation",
                f"held-out loss, {source}: adapter vs base",
                loss,
                "nats",
                baseline=base_loss,
                target=target("ratio <= 0.8"),
                note=what,
            )
        )
    out += [
        Row(
            "adaptation",
            "fact recall (paraphrased questions, 4 options): adapter",
            v1["month1"],
            "share",
            baseline=base["month1"],
            target=target("value >= 0.75"),
            note=f"{plan.facts_month1} facts stated twice each in the notes ({facts_counted['month1']} in training "
            f"rows, counted); baseline = base; chance {CHANCE}",
        ),
        Row(
            "adaptation",
            "control facts never in the corpus: adapter",
            v1["controls"],
            "share",
            baseline=base["controls"],
            target=target("value <= 0.5"),
            note=f"{plan.controls} facts; should stay near chance ({CHANCE})",
        ),
        Row(
            "adaptation",
            f"voice: greedy replies opening with {VOICE!r}: adapter",
            v1["voice"],
            "share",
            baseline=base["voice"],
            target=target("value >= 0.8"),
            note="held-out prompts; baseline = base",
        ),
        Row(
            "adaptation",
            "preference: person's reply over a generic one, held-out pairs: adapter",
            v1["preference"],
            "share",
            baseline=base["preference"],
            target=target("value >= 0.75"),
            note=f"after a DPO stage on {plan.corrected} corrections; baseline = base",
        ),
        Row(
            "adaptation",
            "forgetting: general-text loss, adapter vs base",
            first["general_loss"]["new"],
            "nats",
            baseline=first["general_loss"]["base"],
            target=target("ratio <= 1.05"),
            note="pipeline.probe's fixed everyday English",
        ),
    ]
    for way, scores in month2.items():
        kept = scores["month1"] / v1["month1"] if v1["month1"] else 1.0  # v1 knew nothing to lose
        out += [
            Row(
                "adaptation",
                f"month 2 ({way}): new-fact recall",
                scores["month2"],
                "share",
                target=target("value >= 0.75"),
                note=f"{plan.facts_month2} new facts ({facts_counted['month2']} in training rows), "
                f"{plan.month2_steps} steps",
            ),
            Row(
                "adaptation",
                f"month 2 ({way}): month-1 recall kept vs v1",
                kept,
                "ratio",
                target=target("value >= 0.9"),
                note=f"v2 {scores['month1']:.2f} vs v1 {v1['month1']:.2f}",
            ),
        ]
    for name, result in runs.items():
        out += [
            Row("adaptation", f"cost, {name}: wall seconds of plora train", result["wall_seconds"], "s", note=what),
            Row("adaptation", f"cost, {name}: peak RSS of plora train", result["peak_rss"] / 2**30, "GiB"),
        ]
    return out


if __name__ == "__main__":  # pragma: no cover - `python -m bench --only adaptation` is the entry point
    print(f"run it as: python -m bench --only adaptation (from {REPO})", file=sys.stderr)
