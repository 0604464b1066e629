#!/usr/bin/env python3
"""Purge objects from the CDN, narrowest scope first. Dry run unless --execute.

    python cdn_purge.py --url https://www.example.com/static/app.css
    python cdn_purge.py --key product-4711 --key product-4712 --execute
    python cdn_purge.py --prefix /static/v231/ --execute
    python cdn_purge.py --everything --incident INC-2031 --execute
    python cdn_purge.py --history --since 2h

The API token is read from CDN_API_TOKEN (direnv loads it from the password manager).
Surrogate keys are purged in batches of 50, the API's limit per request.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.request
from collections.abc import Iterator

API = os.environ.get("CDN_API_URL", "https://api.cdn.example.com/v1")
SERVICE = os.environ.get("CDN_SERVICE", "www-prod")
BATCH = 50
SINCE_RE = re.compile(r"^(\d+)([mhd])$")


def batches(items: list[str], size: int = BATCH) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def since_to_minutes(value: str) -> int:
    match = SINCE_RE.match(value)
    if not match:
        raise argparse.ArgumentTypeError(f"--since wants e.g. 30m, 2h, 1d, not {value!r}")
    amount, unit = int(match.group(1)), match.group(2)
    return amount * {"m": 1, "h": 60, "d": 1440}[unit]


def plan(args: argparse.Namespace) -> list[tuple[str, str, dict]]:
    """The API calls to make, as (method, path, body), narrowest scope first."""
    calls = []
    for url in args.url:
        calls.append(("POST", f"/services/{SERVICE}/purge/url", {"url": url}))
    for keys in batches(args.key):
        calls.append(("POST", f"/services/{SERVICE}/purge/keys", {"surrogate_keys": keys}))
    for prefix in args.prefix:
        if not prefix.startswith("/"):
            raise SystemExit(f"cdn_purge: prefix must start with '/': {prefix!r}")
        calls.append(("POST", f"/services/{SERVICE}/purge/prefix", {"prefix": prefix}))
    if args.everything:
        if not args.incident:
            raise SystemExit("cdn_purge: --everything needs --incident (and an IC's OK)")
        calls.append(("POST", f"/services/{SERVICE}/purge/all", {"reason": args.incident}))
    return calls


def call(method: str, path: str, body: dict | None = None) -> dict:
    token = os.environ.get("CDN_API_TOKEN")
    if not token:
        raise SystemExit("cdn_purge: CDN_API_TOKEN is not set (run `direnv allow`?)")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        API + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", action="append", default=[], help="purge one URL")
    parser.add_argument("--key", action="append", default=[], help="purge a surrogate key")
    parser.add_argument("--prefix", action="append", default=[], help="purge a path prefix")
    parser.add_argument("--everything", action="store_true", help="purge the whole service")
    parser.add_argument("--incident", help="incident id, required with --everything")
    parser.add_argument("--execute", action="store_true", help="really purge (default: dry run)")
    parser.add_argument("--history", action="store_true", help="show recent purges and exit")
    parser.add_argument("--since", type=since_to_minutes, default=120, help="with --history")
    args = parser.parse_args(argv)

    if args.history:
        for event in call("GET", f"/services/{SERVICE}/purges?minutes={args.since}")["purges"]:
            print(f"{event['time']}  {event['user']:<12} {event['scope']:<7} {event['target']}")
        return 0

    calls = plan(args)
    if not calls:
        parser.error("nothing to purge: give --url, --key, --prefix or --everything")
    for method, path, body in calls:
        if not args.execute:
            print(f"[dry run] {method} {path} {json.dumps(body)}")
            continue
        result = call(method, path, body)
        print(f"purged {path.rsplit('/', 1)[-1]}: {result.get('status', 'ok')} id={result.get('id')}")
    if not args.execute:
        print("dry run only; add --execute to purge", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
