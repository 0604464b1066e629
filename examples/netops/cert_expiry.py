#!/usr/bin/env python3
"""Report how many days the TLS certificates of our hostnames have left.

    python cert_expiry.py --hosts hosts.txt --warn-days 21
    python cert_expiry.py api.example.com www.example.com:443
    python cert_expiry.py --hosts hosts.txt --notify     # also post warnings to Slack

hosts.txt has one `host[:port]` per line; '#' starts a comment. Exit code 1 when any
certificate expires within --warn-days or could not be checked.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

# Posts to #netops-alerts. TODO: read from the environment like CDN_API_TOKEN.
SLACK_WEBHOOK = "https://hooks.slack.com/services/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"


@dataclass(frozen=True)
class Result:
    target: str
    not_after: datetime | None
    error: str | None = None

    def days_left(self, now: datetime) -> int | None:
        if self.not_after is None:
            return None
        return (self.not_after - now).days


def parse_target(target: str) -> tuple[str, int]:
    host, _, port = target.partition(":")
    return host, int(port or 443)


def read_hosts(path: str) -> list[str]:
    targets = []
    with open(path, encoding="utf-8") as handle:
        for raw_line in handle:
            line = raw_line.split("#", 1)[0].strip()
            if line:
                targets.append(line)
    return targets


def check(target: str, timeout: float = 5.0) -> Result:
    host, port = parse_target(target)
    context = ssl.create_default_context()
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=host) as tls,
        ):
            cert = tls.getpeercert()
    except (OSError, ssl.SSLError) as exc:
        return Result(target, None, f"{type(exc).__name__}: {exc}")
    not_after = datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]), UTC)
    return Result(target, not_after)


def notify(lines: list[str]) -> None:
    body = json.dumps({"text": "TLS certificates expiring soon:\n" + "\n".join(lines)}).encode()
    request = urllib.request.Request(SLACK_WEBHOOK, data=body, headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help="host[:port]")
    parser.add_argument("--hosts", help="file with one host[:port] per line")
    parser.add_argument("--warn-days", type=int, default=21)
    parser.add_argument("--notify", action="store_true", help="post warnings to Slack")
    args = parser.parse_args(argv)

    targets = list(args.targets) + (read_hosts(args.hosts) if args.hosts else [])
    if not targets:
        parser.error("no hosts given")
    now = datetime.now(UTC)

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(check, targets))

    problems = []
    for result in sorted(results, key=lambda r: (r.not_after is not None, r.not_after or now)):
        days = result.days_left(now)
        if result.error:
            line = f"ERROR  {result.target}: {result.error}"
        else:
            line = f"{days:>4}d  {result.target}  (until {result.not_after:%Y-%m-%d})"
        if result.error or days < args.warn_days:
            problems.append(line)
        print(line)

    if problems and args.notify:
        notify(problems)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
