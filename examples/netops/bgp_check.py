#!/usr/bin/env python3
"""Summarise `birdc show protocols` output and fail when BGP sessions are down.

Usage:
    sudo birdc show protocols | python bgp_check.py
    python bgp_check.py --birdc            # runs birdc itself
    python bgp_check.py --json < protocols.txt

Exit codes: 0 all BGP sessions Established, 1 some are not, 2 the input made no sense.
Meant for humans during an incident and for the Nagios-style check on the edge routers.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import subprocess
import sys
from dataclasses import asdict, dataclass

TIME_RE = re.compile(r"^\d{2}:\d{2}:\d{2}(\.\d+)?$")
HEADER_RE = re.compile(r"^Name\s+Proto\s+Table\s+State\s+Since\s+Info")


@dataclass(frozen=True)
class Protocol:
    name: str
    proto: str
    table: str
    state: str
    since: str
    info: str

    @property
    def is_bgp(self) -> bool:
        return self.proto == "BGP"

    @property
    def bgp_state(self) -> str:
        """The BGP FSM state from the Info column ('Established', 'Active', ...)."""
        return self.info.split()[0] if self.info else ""

    @property
    def established(self) -> bool:
        return self.state == "up" and self.bgp_state == "Established"

    @property
    def last_error(self) -> str:
        """What BIRD says after the state, e.g. 'Socket: Connection refused'."""
        parts = self.info.split(maxsplit=1)
        return parts[1] if len(parts) == 2 else ""


def parse_protocols(text: str) -> list[Protocol]:
    """Parse the table printed by `birdc show protocols` (BIRD 2).

    The Since column is either a time (`10:00:05`) or a date and a time
    (`2026-03-01 10:00:05`), depending on `timeformat protocol`, so it may span two fields.
    """
    protocols = []
    seen_header = False
    for line in text.splitlines():
        if not line.strip() or line.startswith("BIRD "):
            continue
        if HEADER_RE.match(line):
            seen_header = True
            continue
        if not seen_header:
            raise ValueError(f"no 'Name Proto Table State Since Info' header before {line!r}")
        fields = line.split()
        if len(fields) < 5:
            raise ValueError(f"unexpected line in birdc output: {line!r}")
        name, proto, table, state, since = fields[:5]
        rest = fields[5:]
        if rest and TIME_RE.match(rest[0]):
            since = f"{since} {rest[0]}"
            rest = rest[1:]
        protocols.append(Protocol(name, proto, table, state, since, " ".join(rest)))
    if not seen_header:
        raise ValueError("no 'Name Proto Table State Since Info' header: is this birdc output?")
    return protocols


def down_sessions(protocols: list[Protocol], ignore: list[str] = ()) -> list[Protocol]:
    """BGP sessions that are not Established, minus the ones matching an ignore glob."""
    return [
        p for p in protocols if p.is_bgp and not p.established and not any(fnmatch.fnmatch(p.name, g) for g in ignore)
    ]


def format_report(protocols: list[Protocol], down: list[Protocol]) -> str:
    bgp = [p for p in protocols if p.is_bgp]
    lines = [f"{len(bgp) - len(down)}/{len(bgp)} BGP sessions established"]
    for p in down:
        detail = f" ({p.last_error})" if p.last_error else ""
        lines.append(f"  DOWN {p.name}: {p.state}/{p.bgp_state or '-'} since {p.since}{detail}")
    return "\n".join(lines)


def read_birdc() -> str:
    result = subprocess.run(["birdc", "show", "protocols"], capture_output=True, text=True, timeout=10, check=True)
    return result.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--birdc", action="store_true", help="run `birdc show protocols` itself")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="GLOB",
        help="protocol names to ignore, e.g. 'lab_*' (repeatable)",
    )
    args = parser.parse_args(argv)

    text = read_birdc() if args.birdc else sys.stdin.read()
    try:
        protocols = parse_protocols(text)
    except ValueError as exc:
        print(f"bgp_check: {exc}", file=sys.stderr)
        return 2
    down = down_sessions(protocols, args.ignore)

    if args.json:
        print(
            json.dumps(
                {
                    "sessions": [asdict(p) for p in protocols if p.is_bgp],
                    "down": [p.name for p in down],
                },
                indent=2,
            )
        )
    else:
        print(format_report(protocols, down))
    return 1 if down else 0


if __name__ == "__main__":
    sys.exit(main())
