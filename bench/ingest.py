"""Ingest and dataset-build benchmarks on a generated corpus.

``ingest``: Markdown notes, chat conversations (JSONL) and a git repository (files + commits, made
with ``git fast-import``), all seeded so runs compare. Measured, in one home:

- the first ingest: documents/s and MB/s, against a plain copy of the same corpus (walk + read +
  ``json.loads`` + ``git cat-file --batch``, rows into a bare SQLite table: no parsing, redaction,
  hashing or ORM), run alternately over fresh stores;
- a second, unchanged ingest: seconds as a fraction of the first (target < 5%);
- an ingest after touching 1% of the items (notes edited, conversations edited, one git commit
  changing 1% of the files): seconds as a fraction of the first, and the cost per changed item
  against the first ingest's cost per item (target: proportional, i.e. about 1x);
- child ``git`` processes left behind afterwards (target 0).

``datasets``: rows/s of the SFT, DPO and KTO builds (from chats with good/bad labels and
corrections), the rebuild of an unchanged store as a fraction of the first build, and the token
utilisation of packed vs unpacked SFT at ``max_length``, which comes from
``bench.datasets_build.run`` (reused as it is).
"""

from __future__ import annotations

import gc
import json
import random
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Row, Settings, child_processes, median, median_ratio, quiet

_PROSE = [
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
    "kubelet",
    "eviction",
    "disk",
    "pressure",
    "journald",
    "certificate",
    "renewal",
    "dns",
    "ttl",
    "anycast",
]


def _sentence(rnd: random.Random, words: int) -> str:
    return " ".join(rnd.choice(_PROSE) for _ in range(words)).capitalize() + "."


def _paragraphs(rnd: random.Random, mean_bytes: int) -> str:
    """Sentences up to about ``mean_bytes`` (log-normal), in paragraphs of 1-4 sentences."""
    target = max(30, int(rnd.lognormvariate(0, 0.6) * mean_bytes))
    text = _sentence(rnd, rnd.randint(4, 14))
    while len(text) < target:
        text += ("\n\n" if rnd.random() < 0.3 else " ") + _sentence(rnd, rnd.randint(4, 14))
    return text


# --- the corpus ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    notes: int
    conversations: int
    files: int
    commits: int

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        return cls(200, 100, 100, 50) if quick else cls(5_000, 2_000, 2_000, 1_000)

    @property
    def documents(self) -> int:
        return self.notes + self.conversations + self.files + self.commits


def _note(rnd: random.Random, i: int) -> str:
    lines = []
    if i % 3 == 0:
        lines += [
            "---",
            f"title: Note {i}",
            f"tags: [{rnd.choice(_PROSE)}, {rnd.choice(_PROSE)}]",
            "type: runbook" if i % 9 == 0 else "type: note",
            "---",
            "",
        ]
    lines += [f"# {_sentence(rnd, 4)[:-1]}", "", _paragraphs(rnd, 900)]
    if i % 4 == 0:
        lines += ["", "## Steps", "", *(f"{k}. {_sentence(rnd, 7)}" for k in range(1, rnd.randint(3, 7)))]
    if i % 5 == 0:
        lines += ["", "```sh", f"kubectl -n {rnd.choice(_PROSE)} rollout restart deploy/{rnd.choice(_PROSE)}", "```"]
    lines += ["", f"See [[note-{rnd.randrange(max(i, 1))}|the earlier note]]."]
    return "\n".join(lines) + "\n"


def write_notes(folder: Path, count: int, seed: int = 1) -> int:
    rnd = random.Random(seed)
    size = 0
    for i in range(count):
        path = folder / f"area-{i % 20:02d}" / f"note-{i:05d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = _note(rnd, i)
        path.write_text(text, encoding="utf-8")
        size += len(text.encode())
    return size


def chat_lines(
    count: int, seed: int = 2, *, user_bytes: int = 150, reply_bytes: int = 600, exchanges: int = 4
) -> list[dict[str, Any]]:
    """``count`` JSONL conversations of 1 to ``exchanges`` exchanges (lengths log-normal around the
    given means), 80% labelled good, 10% bad."""
    rnd = random.Random(seed)
    lines = []
    for i in range(count):
        messages = []
        if rnd.random() < 0.3:
            messages.append({"role": "system", "content": "You are Sam, an SRE. Answer briefly."})
        for _ in range(rnd.randint(1, exchanges)):
            messages.append({"role": "user", "content": _paragraphs(rnd, user_bytes)})
            messages.append({"role": "assistant", "content": _paragraphs(rnd, reply_bytes)})
        line: dict[str, Any] = {"id": f"c{i:06d}", "messages": messages}
        roll = rnd.random()
        if roll < 0.8:
            line["label"] = "good"
        elif roll < 0.9:
            line["label"] = "bad"
        lines.append(line)
    return lines


def write_chats(path: Path, lines: list[dict[str, Any]]) -> int:
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    path.write_bytes(data)
    return len(data)


def _code(rnd: random.Random, i: int, version: int) -> str:
    name = f"{rnd.choice(_PROSE)}_{i}"
    body = [
        f'"""{_sentence(rnd, 10)}"""',
        "",
        "import subprocess",
        "",
        f"def check_{name}(host: str, retries: int = {version + 3}) -> bool:",
        f"    # {_sentence(rnd, 8)}",
    ]
    for k in range(rnd.randint(4, 30)):
        body.append(f"    result_{k} = subprocess.run(['ping', '-c1', host], check=False)  # {rnd.choice(_PROSE)}")
    body.append("    return True")
    return "\n".join(body) + "\n"


def _fast_import_commit(
    out: list[bytes], mark: int, parent: int | None, when: int, author: str, message: str, files: dict[str, str]
) -> None:
    msg = message.encode()
    out.append(
        f"commit refs/heads/main\nmark :{mark}\n"
        f"author {author} <{author.lower()}@example.com> {when} +0000\n"
        f"committer {author} <{author.lower()}@example.com> {when} +0000\n"
        f"data {len(msg)}\n".encode()
        + msg
        + b"\n"
    )
    if parent is not None:
        out.append(f"from :{parent}\n".encode())
    for path, text in files.items():
        data = text.encode()
        out.append(f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n")
    out.append(b"\n")


def make_repo(repo: Path, files: int, commits: int, seed: int = 3) -> int:
    """A repository whose HEAD has ``files`` files after ``commits`` commits; returns HEAD's bytes."""
    rnd = random.Random(seed)
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    out: list[bytes] = []
    head: dict[str, str] = {}
    per_commit = -(-files // commits)
    made = 0
    for c in range(commits):
        changed: dict[str, str] = {}
        for _ in range(per_commit):
            if made < files:
                ext = ("py", "py", "yaml", "md")[made % 4]
                path = f"src/pkg{made % 25:02d}/mod_{made:05d}.{ext}"
                changed[path] = _code(rnd, made, 0)
                made += 1
        if head and rnd.random() < 0.5:  # also edit an earlier file now and then
            path = rnd.choice(sorted(head))
            changed[path] = _code(rnd, c, c)
        head.update(changed)
        _fast_import_commit(
            out,
            c + 1,
            c if c else None,
            1_700_000_000 + 3600 * c,
            rnd.choice(["Sam", "Alex"]),
            f"{_sentence(rnd, 6)[:-1]}\n\n{_paragraphs(rnd, 200)}\n",
            changed,
        )
    subprocess.run(["git", "-C", str(repo), "fast-import", "--quiet"], input=b"".join(out), check=True)
    subprocess.run(["git", "-C", str(repo), "reset", "-q", "--hard", "main"], check=True)
    (repo / ".bench-marks").write_text(str(commits), encoding="utf-8")
    return sum(len(t.encode()) for t in head.values())


def commit_touch(repo: Path, fraction: float, seed: int) -> int:
    """One more commit that rewrites ``fraction`` of HEAD's files; returns how many."""
    rnd = random.Random(seed)
    paths = subprocess.run(
        ["git", "-C", str(repo), "ls-files"], check=True, capture_output=True, text=True
    ).stdout.split()
    chosen = rnd.sample(paths, max(1, round(len(paths) * fraction)))
    out: list[bytes] = []
    msg = f"Touch {len(chosen)} files\n".encode()
    out.append(
        b"commit refs/heads/main\ncommitter Sam <sam@example.com> 1800000000 +0000\n"
        + f"data {len(msg)}\n".encode()
        + msg
        + b"from refs/heads/main^0\n"
    )
    for path in chosen:
        data = _code(rnd, seed, seed + 1).encode()
        out.append(f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n")
    out.append(b"\n")
    subprocess.run(["git", "-C", str(repo), "fast-import", "--quiet", "--force"], input=b"".join(out), check=True)
    return len(chosen)


@dataclass
class Corpus:
    root: Path
    sizes: Sizes
    bytes: int
    lines: list[dict[str, Any]]

    @property
    def notes(self) -> Path:
        return self.root / "notes"

    @property
    def chats(self) -> Path:
        return self.root / "chats.jsonl"

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    def touch(self, fraction: float, seed: int) -> int:
        """Edit ``fraction`` of the notes and conversations and commit ``fraction`` of the files;
        returns how many documents that changes (the new commit included)."""
        rnd = random.Random(seed)
        notes = sorted(self.notes.rglob("*.md"))
        touched = rnd.sample(notes, max(1, round(len(notes) * fraction)))
        for path in touched:
            with path.open("a", encoding="utf-8") as handle:
                handle.write(f"\nEdited in round {seed}: {_sentence(rnd, 8)}\n")
        chosen = rnd.sample(range(len(self.lines)), max(1, round(len(self.lines) * fraction)))
        for index in chosen:
            self.lines[index]["messages"][-1]["content"] += f" (edited {seed})"
        write_chats(self.chats, self.lines)
        files = commit_touch(self.repo, fraction, seed)
        return len(touched) + len(chosen) + files + 1


def make_corpus(root: Path, sizes: Sizes) -> Corpus:
    root.mkdir(parents=True, exist_ok=True)
    size = write_notes(root / "notes", sizes.notes)
    lines = chat_lines(sizes.conversations)
    size += write_chats(root / "chats.jsonl", lines)
    size += make_repo(root / "repo", sizes.files, sizes.commits)
    log = subprocess.run(
        ["git", "-C", str(root / "repo"), "log", "--format=%B"], check=True, capture_output=True
    ).stdout
    return Corpus(root, sizes, size + len(log), lines)


def write_home(home: Path, corpus: Corpus) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "plora.toml").write_text(
        f"""
[[sources]]
name = "notes"
type = "markdown"
path = "{corpus.notes}"

[[sources]]
name = "chats"
type = "jsonl"
path = "{corpus.chats}"

[[sources]]
name = "code"
type = "git"
path = "{corpus.repo}"
authors = []

[profiles.bench]
sources = ["notes", "chats", "code"]
""",
        encoding="utf-8",
    )


SOURCES = ("notes", "chats", "code")


def plora_ingest(home: Path) -> dict[str, Any]:
    """``plora ingest`` of every source (one ``ingest`` call per source, which is what ``ingest`` does
    for all of them), with the seconds each source took."""
    from pipeline.ingest import ingest
    from pipeline.workspace import open_workspace

    reports, seconds = {}, {}
    with open_workspace(home) as workspace:
        for source in SOURCES:
            started = time.perf_counter()
            reports.update(ingest(workspace, [source]))
            seconds[source] = time.perf_counter() - started
    errors = {name: r.error for name, r in reports.items() if r.error}
    if errors:
        raise RuntimeError(f"ingest failed: {errors}")
    total: dict[str, Any] = {
        key: sum(getattr(r, key) for r in reports.values()) for key in ("added", "updated", "unchanged", "deleted")
    }
    total["skipped"] = sum(len(r.skipped) for r in reports.values())
    total["seconds"] = seconds
    return total


def plain_copy(corpus: Corpus, db: Path) -> int:
    """The plain alternative: read every item and insert it into a bare SQLite table (no parsing,
    redaction, hashing, ORM or incremental state). Returns rows written."""
    db.unlink(missing_ok=True)
    rows: list[tuple[str, str]] = []
    for path in sorted(corpus.notes.rglob("*.md")):
        rows.append((str(path), path.read_text(encoding="utf-8")))
    with corpus.chats.open(encoding="utf-8") as handle:
        for line in handle:
            item = json.loads(line)
            rows.append((item["id"], "\n".join(m["content"] for m in item["messages"])))
    tree = subprocess.run(
        ["git", "-C", str(corpus.repo), "ls-tree", "-r", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    blobs = [(line.split("\t", 1)[1], line.split()[2]) for line in tree]
    batch = subprocess.run(
        ["git", "-C", str(corpus.repo), "cat-file", "--batch"],
        check=True,
        capture_output=True,
        input="".join(sha + "\n" for _, sha in blobs).encode(),
    ).stdout
    offset = 0
    for path, _ in blobs:
        header_end = batch.index(b"\n", offset)
        size = int(batch[offset:header_end].split()[2])
        rows.append((f"file:{path}", batch[header_end + 1 : header_end + 1 + size].decode("utf-8", "replace")))
        offset = header_end + 1 + size + 1
    log = subprocess.run(
        ["git", "-C", str(corpus.repo), "log", "--no-merges", "--format=%H%x00%B%x00"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\x00")
    rows += [(f"commit:{sha.strip()}", body) for sha, body in zip(log[0::2], log[1::2], strict=False) if sha.strip()]
    connection = sqlite3.connect(db)
    with connection:
        connection.execute("CREATE TABLE documents (id TEXT PRIMARY KEY, content TEXT)")
        connection.executemany("INSERT INTO documents VALUES (?, ?)", rows)
    connection.close()
    return len(rows)


def run(settings: Settings) -> list[Row]:
    sizes = Sizes.of(settings.quick)
    rounds = settings.rounds or (1 if settings.quick else 2)
    root = settings.work / "ingest"
    with quiet():
        corpus = make_corpus(root / "corpus", sizes)
        mb = corpus.bytes / 1e6
        # the first ingest, alternating with the plain copy; each round on a fresh store
        first_s, plain_s, documents, first_sources = [], [], 0, []
        for round_ in range(rounds):
            home = root / f"home-{round_}"
            write_home(home, corpus)
            order = ("plain", "plora") if round_ % 2 else ("plora", "plain")
            for who in order:
                gc.collect()
                started = time.perf_counter()
                if who == "plora":
                    report = plora_ingest(home)
                    first_s.append(time.perf_counter() - started)
                    documents = report["added"]
                    first_sources.append(report["seconds"])
                else:
                    plain_copy(corpus, root / "plain.db")
                    plain_s.append(time.perf_counter() - started)
        home = root / f"home-{rounds - 1}"
        first = median(first_s)
        # unchanged re-ingests, and re-ingests after touching 1% (a different 1% each round)
        unchanged_s, touched_s, changed_counts, touched_reports = [], [], [], []
        touched5_s, touched5_reports = [], []
        for round_ in range(max(rounds, 2)):
            # a collection before each timed ingest, as before the first: these take ~0.1 s, and a
            # full collection of this process's heap (torch, the corpus) costs about as much
            gc.collect()
            started = time.perf_counter()
            report = plora_ingest(home)
            unchanged_s.append(time.perf_counter() - started)
            if report["added"] or report["updated"]:
                raise RuntimeError(f"unchanged re-ingest wrote documents: {report}")
            changed_counts.append(corpus.touch(0.01, seed=100 + round_))
            gc.collect()
            started = time.perf_counter()
            touched_reports.append(plora_ingest(home))
            touched_s.append(time.perf_counter() - started)
            corpus.touch(0.05, seed=200 + round_)  # a bigger change: the slope of cost against change size
            gc.collect()
            started = time.perf_counter()
            touched5_reports.append(plora_ingest(home))
            touched5_s.append(time.perf_counter() - started)
        gc.collect()
        time.sleep(0.2)
        leftovers = [p for p in child_processes() if "git" in p["comm"]]
    shutil.rmtree(root, ignore_errors=True)

    changed = median(changed_counts)

    def by_source(reports: list[dict[str, float]]) -> str:
        return ", ".join(f"{source} {median([r[source] for r in reports]):.2f} s" for source in SOURCES)

    written = median([r["added"] + r["updated"] for r in touched_reports])
    written5 = median([r["added"] + r["updated"] for r in touched5_reports])
    per_item_first = first / documents
    per_item_changed = (median(touched_s) - median(unchanged_s)) / max(written, 1)
    # cost = fixed + marginal x documents written, through the 1% and 5% points
    marginal = (median(touched5_s) - median(touched_s)) / max(written5 - written, 1)
    fixed = median(touched_s) - marginal * written
    name = "ingest"
    docs = f"{sizes.notes} notes, {sizes.conversations} conversations, {sizes.files}-file repo, {sizes.commits} commits"
    return [
        Row(
            name,
            "first ingest: documents/s",
            documents / first,
            "docs/s",
            baseline=documents / median(plain_s),
            ratio=median_ratio(plain_s, first_s),
            note=f"{docs} ({documents} documents, {mb:.1f} MB). Baseline: a plain copy of the same corpus into a "
            "bare SQLite table (read + json.loads + git cat-file, no parsing, redaction or hashing); "
            f"median of {rounds} alternating rounds on fresh stores; by source: {by_source(first_sources)}",
        ),
        Row(
            name,
            "first ingest: MB/s",
            mb / first,
            "MB/s",
            baseline=mb / median(plain_s),
            ratio=median_ratio(plain_s, first_s),
        ),
        Row(
            name, "unchanged re-ingest: time vs first", median(unchanged_s), "s", baseline=first, target="ratio <= 0.05"
        ),
        Row(
            name,
            "1% touched: time vs first",
            median(touched_s),
            "s",
            baseline=first,
            note=f"{changed:.0f} items changed per round ({written:.0f} documents written: notes, conversations, "
            f"git files and the new commit); by source: {by_source([r['seconds'] for r in touched_reports])}; "
            "a changed export file (the JSONL) is read and hashed whole, and each line hashed: only new or "
            "changed lines are parsed",
        ),
        Row(
            name,
            "5% touched: time vs first",
            median(touched5_s),
            "s",
            baseline=first,
            note=f"{written5:.0f} documents written; by source: {by_source([r['seconds'] for r in touched5_reports])}",
        ),
        Row(
            name,
            "touched ingest: marginal cost per changed document vs first ingest's",
            marginal,
            "s/doc",
            baseline=per_item_first,
            target="ratio <= 2",
            note="slope of the touched ingest's time against documents written, through the 1% and 5% points, "
            "against first ingest / documents: about 1 means each changed document costs what it cost the "
            "first time (cost proportional to the change)",
        ),
        Row(
            name,
            "touched ingest: fixed cost of finding the changes",
            max(fixed, 0.0),
            "s",
            baseline=first,
            note="the same line's intercept: what a changed source costs before any document is written (hashing "
            "a changed export file, git ls-tree / log of the repository, rewriting cursors)",
        ),
        Row(
            name,
            "1% touched: cost per changed document vs first ingest's",
            per_item_changed,
            "s/doc",
            baseline=per_item_first,
            note="(touched ingest - unchanged ingest) / documents written, against first ingest / documents: the "
            "fixed cost above spread over a 1% change",
        ),
        Row(
            name,
            "child git processes left",
            len(leftovers),
            "processes",
            target="value == 0",
            note=", ".join(f"{p['comm']}:{p['pid']} ({p['state']})" for p in leftovers),
        ),
    ]


# --- dataset build -------------------------------------------------------------------------------


def _dataset_home(home: Path, count: int, max_length: int) -> None:
    home.mkdir(parents=True, exist_ok=True)
    write_chats(home / "chats.jsonl", chat_lines(count, seed=5))
    (home / "plora.toml").write_text(
        f"""
[[sources]]
name = "chats"
type = "jsonl"
path = "chats.jsonl"

[profiles.dpo]
sources = ["chats"]
stages = ["sft", "dpo"]
train = {{ max_length = {max_length} }}

[profiles.kto]
sources = ["chats"]
stages = ["sft", "kto"]
train = {{ max_length = {max_length} }}
""",
        encoding="utf-8",
    )


def _corrections(workspace: Any, lines: list[dict[str, Any]], every: int) -> int:
    """A correction (bad + the reply wanted) on the last reply of every ``every``-th conversation."""
    from pipeline.labels import set_label

    made = 0
    for line in lines[::every]:
        position = len(line["messages"]) - 1
        set_label(
            workspace,
            f"chats:{line['id']}",
            "bad",
            position=position,
            correction="Drain the pop first, then restart the session and check the counters.",
        )
        made += 1
    return made


def _build(workspace: Any, profile: str) -> tuple[float, dict[str, float], dict[str, int]]:
    from pipeline.datasets import build_datasets

    marks: dict[str, float] = {}

    def progress(kind: str, done: int, total: int) -> None:
        if done == 0:
            marks[kind] = time.perf_counter()

    started = time.perf_counter()
    result = build_datasets(workspace, profile, progress=progress)
    ended = time.perf_counter()
    kinds = list(marks)
    seconds = {
        kind: (marks[kinds[i + 1]] if i + 1 < len(kinds) else ended) - marks[kind] for i, kind in enumerate(kinds)
    }
    rows = {kind: sum(s.rows.values()) for kind, s in result.snapshots.items()}
    return ended - started, seconds, rows


def _plain_tokenize(workspace: Any) -> tuple[float, int]:
    """The plain alternative for SFT: apply the chat template to every conversation, no cleaning,
    windows, labels, dedup or mask checks."""
    from pipeline.base_model import load_tokenizer

    tokenizer = load_tokenizer(workspace.config.base_model.name, home=workspace.home.root)
    lines = [json.loads(line) for line in (workspace.home.root / "chats.jsonl").open(encoding="utf-8")]
    started = time.perf_counter()
    for line in lines:
        tokenizer.apply_chat_template(line["messages"], tokenize=True)
    return time.perf_counter() - started, len(lines)


def run_datasets(settings: Settings) -> list[Row]:
    from bench import datasets_build
    from pipeline.base_model import ensure_builtin
    from pipeline.ingest import ingest
    from pipeline.workspace import open_workspace

    count = 150 if settings.quick else 2_000
    max_length = 1024
    rounds = settings.rounds or (1 if settings.quick else 2)
    first: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    rebuild: dict[str, list[float]] = {}
    plain: list[float] = []
    rows: dict[str, int] = {}
    with quiet():
        for round_ in range(rounds):  # each round builds in a fresh home (ingest + labels untimed)
            home = settings.work / f"datasets-{round_}"
            _dataset_home(home, count, max_length)
            ensure_builtin(home)
            with open_workspace(home) as workspace:
                ingest(workspace)
                _corrections(workspace, chat_lines(count, seed=5), every=5)
                for profile in ("dpo", "kto"):
                    total, per_kind, built = _build(workspace, profile)
                    first.setdefault(profile, []).append(total)
                    for kind, s in per_kind.items():
                        if kind in ("sft", "text") and profile == "kto":
                            continue
                        seconds.setdefault(kind, []).append(s)
                        rows[kind] = built[kind]
                    total, _, _ = _build(workspace, profile)
                    rebuild.setdefault(profile, []).append(total)
                plain_s, conversations = _plain_tokenize(workspace)
                plain.append(plain_s)
            shutil.rmtree(home, ignore_errors=True)
        utilisation = datasets_build.run(settings.quick, messages=600 if settings.quick else None)

    name = "datasets"
    plain_rate = conversations / median(plain)
    out = [
        Row(
            name,
            f"{kind} build: rows/s",
            rows[kind] / median(seconds[kind]),
            "rows/s",
            note=f"{rows[kind]} {kind} rows from {count} conversations"
            + (
                f"; baseline: applying the chat template to every conversation ({plain_rate:.0f}/s), "
                "no cleaning, windows, labels, dedup or mask checks"
                if kind == "sft"
                else ""
            ),
            baseline=plain_rate if kind == "sft" else None,
        )
        for kind in ("sft", "dpo", "kto")
    ]
    first_all = [a + b for a, b in zip(first["dpo"], first["kto"], strict=True)]
    rebuild_all = [a + b for a, b in zip(rebuild["dpo"], rebuild["kto"], strict=True)]
    out.append(
        Row(
            name,
            "rebuild of an unchanged store: time vs first build",
            median(rebuild_all),
            "s",
            baseline=median(first_all),
            ratio=median_ratio(rebuild_all, first_all),
            target="ratio <= 0.05",
            note="both profiles (sft+text+dpo, sft+text+kto) built, then built again with nothing changed",
        )
    )
    util = utilisation["utilisation"]
    note = (
        f"bench/datasets_build.py: {utilisation['messages']} messages, max_length {utilisation['max_length']}, "
        f"batch {utilisation['batch_size']}; non-padding tokens / all tokens"
    )
    out += [
        Row(
            name,
            "SFT token utilisation: packed (BFD) vs unpacked (pad to longest in batch)",
            util["packed_bfd"],
            "fraction",
            baseline=util["unpacked_batch"],
            note=note + "; long chats: most rows are over half of max_length, so two rarely share a block and "
            "packing can't beat padding per batch here (the training benchmark's rows of mixed lengths "
            "carry that target)",
        ),
        Row(
            name,
            "SFT token utilisation: packed (BFD) vs unpacked (pad to max_length)",
            util["packed_bfd"],
            "fraction",
            baseline=util["unpacked_fixed"],
            target="ratio >= 1.0",
        ),
        Row(
            name,
            "build (datasets_build.py): rows/s",
            utilisation["rows_per_s"],
            "rows/s",
            note=f"{utilisation['rows']} rows (sft+text+kto) in {utilisation['build_s']} s",
        ),
    ]
    return out
