"""Redaction throughput and false positives on ordinary text.

    .venv/bin/python bench/redaction_fp.py [--mb 8] [--examples]

Generates prose, Python, YAML and log lines with no secrets in them (seeded, so runs compare),
times `Redactor.redact` over them on one core and prints MB/s and every finding (there should be
none). `--examples` also scans the files under examples/ and lists what it finds there. Not run
by the tests.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.redaction import Redactor  # noqa: E402

_PROSE = [
    "The BGP session to AS{asn} on {host} flapped twice overnight; hold timer expired at {time}.",
    "We rotate the API token monthly and keep the password in the vault, never in the repo.",
    "Cache hit ratio on the CDN dropped to {pct}% after the purge; origin {ip} took the load.",
    "The secret is to restart the daemon before the health check marks the node NotReady.",
    "Fixed in commit {sha} (see {short}): the auth middleware now retries on 503 from the IdP.",
    "Postmortem: disk on {host} filled with journald logs; the token bucket limiter hid it.",
    "Checksum for the release tarball is sha256:{sha256}, verify before deploying.",
    "Request {uuid} timed out after 30s talking to the credentials service on {ip}:8443.",
    "Ask Alex about the password reset flow; the author of the runbook left in May.",
]
_CODE = [
    "def fetch_{name}(session: Session, token: str | None = None) -> dict[str, Any]:",
    '    headers = {{"Authorization": f"Bearer {{token}}", "Accept": "application/json"}}',
    '    response = client.get(f"{{API}}/v1/{name}", timeout=30, params={{"limit": {n}}})',
    '    password = os.environ.get("DB_PASSWORD")',
    '    if not secret_name.startswith("tls-"):',
    '        raise ConfigError(f"{{path}}: token_url must be https, got {{url!r}}")',
    "    digest = hashlib.sha256(payload).hexdigest()  # e.g. {sha256}",
    '    return [Record(external_id=row.id, content_hash="{sha}") for row in rows]',
    "class {Name}Settings(BaseModel):\n    api_key: SecretStr\n    timeout_s: int = {n}",
]
_YAML = [
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  labels:\n    app: {name}",
    "      containers:\n        - name: {name}\n          image: registry.example.com/{name}:1.{n}.0",
    "          env:\n            - name: DB_PASSWORD\n              valueFrom:\n                secretKeyRef:\n"
    "                  name: {name}-db\n                  key: password",
    "      volumes:\n        - name: tls\n          secret:\n            secretName: {name}-tls",
    "      serviceAccountName: {name}\n      automountServiceAccountToken: false",
    "integrity: sha512-{b64}\nresolved: https://registry.npmjs.org/{name}/-/{name}-1.{n}.0.tgz",
]
_LOG = [
    "{time} {host} bird[{n}]: BGP {ip}: state changed from Established to Idle (hold timer)",
    "{time} {host} kubelet[{n}]: pod {name}-{short}-x2k4p status=Running restarts={n}",
    '{time} {host} nginx: {ip} - - "GET /static/app.{short}.css HTTP/2.0" 200 {n} "-" "curl/8.5"',
]


def _fill(template: str, rnd: random.Random) -> str:
    hexd = "0123456789abcdef"
    words = ["edge", "purge", "bgp", "ingest", "cert", "alert", "origin", "router", "cache"]
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    name = rnd.choice(words) + "-" + rnd.choice(words)
    return template.format(
        asn=rnd.randint(64512, 65534),
        host=f"edge{rnd.randint(1, 9)}.fra{rnd.randint(1, 3)}",
        time=f"2026-10-{rnd.randint(10, 28)}T0{rnd.randint(0, 9)}:{rnd.randint(10, 59)}:00Z",
        pct=rnd.randint(40, 99),
        ip=f"10.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}",
        sha="".join(rnd.choice(hexd) for _ in range(40)),
        short="".join(rnd.choice(hexd) for _ in range(8)),
        sha256="".join(rnd.choice(hexd) for _ in range(64)),
        uuid="-".join("".join(rnd.choice(hexd) for _ in range(k)) for k in (8, 4, 4, 4, 12)),
        b64="".join(rnd.choice(b64) for _ in range(86)) + "==",
        name=name.replace("-", "_"),
        Name=name.title().replace("-", ""),
        n=rnd.randint(1, 500),
    )


def corpus(size: int, seed: int = 7) -> str:
    rnd = random.Random(seed)
    kinds = [_PROSE, _PROSE, _CODE, _YAML, _LOG]
    parts: list[str] = []
    total = 0
    while total < size:
        part = _fill(rnd.choice(rnd.choice(kinds)), rnd)
        parts.append(part)
        total += len(part) + 1
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=8.0, help="megabytes of generated text")
    parser.add_argument("--examples", action="store_true", help="also scan examples/")
    args = parser.parse_args()

    redactor = Redactor()
    documents = [corpus(16_000, seed) for seed in range(max(1, int(args.mb * 1_000_000 / 16_000)))]
    size = sum(len(d.encode()) for d in documents)
    redactor.redact(documents[0])  # warm up
    started = time.perf_counter()
    findings = [f for d in documents for f in redactor.redact(d).findings]
    elapsed = time.perf_counter() - started
    print(f"{size / 1e6:.1f} MB in {len(documents)} documents: {elapsed:.2f} s, {size / 1e6 / elapsed:.1f} MB/s")
    print(f"false positives: {len(findings)} {dict(Counter(f.type for f in findings))}")
    for document in documents:
        for f in redactor.redact(document).findings:
            print(f"  {f.type} line {f.line}: {document[f.start : f.end][:40]!r}")

    if args.examples:
        for path in sorted((REPO / "examples").rglob("*")):
            if path.is_file():
                text = path.read_text(errors="replace")
                for f in redactor.redact(text).findings:
                    print(f"examples: {path.relative_to(REPO)}:{f.line} {f.type}")


if __name__ == "__main__":
    main()
