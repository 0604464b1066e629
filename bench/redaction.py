"""Redaction benchmark: recall, false positives and cost (``python -m bench --only redaction``).

- Recall on the generated families of bench/secret_families.py (every format of issue 18 written
  several ways, fresh seeded values per variant): a variant counts when the text comes out exactly
  as ``before + [REDACTED:<type>] + after``. Target >= 98%.
- False positives on the generated lookalike families (cut SSH public keys, Helm secret names,
  placeholders that echo their key, checksums next to vendor names, ...): variants with any
  finding. Target 0.
- False positives on a public docs corpus: the text and markdown documentation that ships inside
  the installed packages (``*.md``, ``*.rst``, ``*.txt`` and ``METADATA`` under site-packages;
  nothing downloaded; ``--quick``: every 8th file). Target 0.
- detect-secrets' `KeywordDetector` on the credential canaries and lookalikes of
  tests/pipeline/test_redaction.py, beside ours: why pipeline/redaction has its own lexer.
- Cost: a whole ``plora ingest`` of one document of 1, 5 and 20 MB (``--quick``: 0.05, 0.25, 1)
  holding a distinct secret per kilobyte; seconds per MB of the largest against the smallest
  (near-linear: target <= 2).
"""

from __future__ import annotations

import json
import random
import string
import sys
import sysconfig
import time
from collections import Counter
from pathlib import Path

from bench.common import Row, Settings, quiet
from bench.secret_families import lookalikes, secrets

_ALNUM = string.ascii_letters + string.digits


def run(settings: Settings) -> list[Row]:
    with quiet():
        rows = _recall_rows(settings)
        rows += _docs_rows(settings)
        rows += _keyword_detector_rows()
        rows += _cost_rows(settings)
    return rows


def _recall_rows(settings: Settings) -> list[Row]:
    from pipeline.redaction import Redactor

    redactor = Redactor()
    n = 2 if settings.quick else 40
    cases = list(secrets(n=n, seed=18))
    missed = Counter(case.family for case in cases if redactor.redact(case.text).text != case.expected)
    families = Counter(case.family for case in cases)
    recall = 100 * (1 - sum(missed.values()) / len(cases))
    worst = min(families, key=lambda f: (families[f] - missed[f]) / families[f])
    damaged = Counter(family for family, text in lookalikes(n=n, seed=18) if redactor.redact(text).findings)
    looks = sum(1 for _ in lookalikes(n=n, seed=18))
    return [
        Row(
            "redaction",
            "generated secret families: recall",
            round(recall, 2),
            "%",
            target="value >= 98",
            note=f"{len(cases)} variants of {len(families)} families ({n} per template, seed 18); "
            f"missed: {dict(missed) or 'none'}; lowest: {worst} {families[worst] - missed[worst]}/{families[worst]}",
        ),
        Row(
            "redaction",
            "generated lookalike families: variants damaged",
            sum(damaged.values()),
            "variants",
            target="value == 0",
            note=f"of {looks} variants of {len({f for f, _ in lookalikes(n=1)})} families; {dict(damaged) or 'none'}",
        ),
    ]


def docs_corpus() -> list[Path]:
    """The documentation files that ship inside the installed packages."""
    root = Path(sysconfig.get_paths()["purelib"])
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and (p.suffix in (".md", ".rst", ".txt") or p.name == "METADATA") and p.stat().st_size < 4 << 20
    )


def _docs_rows(settings: Settings) -> list[Row]:
    from pipeline.redaction import Redactor

    redactor = Redactor()
    files = docs_corpus()[:: 8 if settings.quick else 1]  # --quick: every 8th file
    size = 0
    found: list[str] = []
    started = time.perf_counter()
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        size += len(text.encode())
        found += [f"{path.name}:{f.line} {f.type}" for f in redactor.redact(text).findings]
    seconds = time.perf_counter() - started
    return [
        Row(
            "redaction",
            "public docs corpus (installed packages' docs): false positives",
            len(found),
            "findings",
            target="value == 0",
            note=f"{len(files)} files, {size / 1e6:.1f} MB of site-packages docs, scanned at "
            f"{size / 1e6 / seconds:.1f} MB/s; {found[:5] or 'none'}",
        )
    ]


def _keyword_detector_rows() -> list[Row]:
    """detect-secrets' KeywordDetector on our credential canaries and lookalikes, told the text is YAML
    (where it finds the most), beside pipeline.redaction."""
    from detect_secrets.plugins.keyword import KeywordDetector
    from detect_secrets.settings import default_settings

    from pipeline.redaction import Redactor

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.pipeline.test_redaction import CANARIES, LOOKALIKES, SRE_NOTES

    credentials = [c for c in CANARIES if c.type == "env_credential"]
    texts = [*LOOKALIKES.values(), SRE_NOTES]
    with default_settings():
        detector = KeywordDetector()

        def values(text: str) -> list[str]:
            return [
                str(secret.secret_value)
                for number, line in enumerate(text.splitlines(), 1)
                for secret in detector.analyze_line(filename="notes.yaml", line=line, line_number=number)
            ]

        theirs = sum(1 for c in credentials if c.secret in values(c.text))
        their_fps = sum(len(values(text)) for text in texts)
    redactor = Redactor()
    ours = sum(1 for c in credentials if c.secret not in redactor.redact(c.text).text)
    our_fps = sum(len(redactor.redact(text).findings) for text in texts)
    return [
        Row(
            "redaction",
            "credential canaries found: detect-secrets KeywordDetector (as .yaml) vs pipeline.redaction",
            theirs,
            "canaries",
            baseline=ours,
            note=f"of {len(credentials)}; lookalikes flagged: KeywordDetector {their_fps}, ours {our_fps}",
        )
    ]


def secret_note(size: int, seed: int = 7) -> tuple[str, int]:
    """About ``size`` characters of notes with a distinct secret per kilobyte, and how many."""
    rnd = random.Random(seed)
    words = ["the", "bgp", "session", "to", "transit", "flapped", "twice", "and", "hold", "timer", "expired", "on"]
    parts: list[str] = []
    total = secrets_planted = 0
    while total < size:
        token = "".join(rnd.choice(_ALNUM) for _ in range(36))
        part = " ".join(rnd.choice(words) for _ in range(150)) + f"\nexport API_TOKEN=ghp_{token}\n"
        parts.append(part)
        total += len(part)
        secrets_planted += 1
    return "".join(parts), secrets_planted


def _cost_rows(settings: Settings) -> list[Row]:
    from pipeline.ingest import ingest
    from pipeline.workspace import open_workspace

    sizes = (0.05, 0.25, 1.0) if settings.quick else (1.0, 5.0, 20.0)
    rows: list[Row] = []
    per_mb: list[float] = []
    for mb in sizes:
        home = settings.work / f"home-{mb:g}mb"
        home.mkdir(parents=True)
        note, planted = secret_note(int(mb * 1e6))
        chats = home / "note.jsonl"
        line = {"id": "note", "messages": [{"role": "user", "content": note}, {"role": "assistant", "content": "ok"}]}
        chats.write_text(json.dumps(line) + "\n", encoding="utf-8")
        (home / "plora.toml").write_text(f'[[sources]]\nname = "notes"\ntype = "jsonl"\npath = "{chats}"\n')
        with open_workspace(home) as workspace:
            started = time.perf_counter()
            report = ingest(workspace)["notes"]
            seconds = time.perf_counter() - started
        if report.error or report.redactions < planted:
            raise RuntimeError(f"{mb} MB note: {report.as_dict()}")
        per_mb.append(seconds / mb)
        rows.append(
            Row(
                "redaction",
                f"ingest of one {mb:g} MB note with a distinct secret per KB: seconds",
                round(seconds, 2),
                "s",
                note=f"{planted} distinct secrets, {report.redactions} redactions",
            )
        )
    rows.append(
        Row(
            "redaction",
            f"ingest seconds per MB: {sizes[-1]:g} MB note vs {sizes[0]:g} MB note",
            round(per_mb[-1], 3),
            "s/MB",
            baseline=round(per_mb[0], 3),
            target="ratio <= 2",
            note="near-linear: was quadratic in the number of distinct secrets (2 MB: 128 s)",
        )
    )
    return rows
