"""The `Redactor`: scans a text, cheapest first, and replaces each secret by `[REDACTED:<type>]`."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Sequence

from pipeline.redaction.blobs import BLOB, PERCENT_RUN, b64_text, percent_decoded
from pipeline.redaction.commands import command_credentials
from pipeline.redaction.credentials import KEYWORD, assigned_credentials
from pipeline.redaction.entropy import high_entropy
from pipeline.redaction.prefilter import candidate_lines
from pipeline.redaction.private_keys import PUBLIC_KEY, find_private_keys
from pipeline.redaction.prose import auth_headers, prose_passwords, session_cookies
from pipeline.redaction.spans import MARKER, SPECIFIC, Finding, Redacted, Span, merge, priority
from pipeline.redaction.text import lower
from pipeline.redaction.tokens import RUN20, token_findings

# Bump when the detection rules change: stored hashes include it, so the next ingest re-redacts.
RULES_VERSION = "3"  # 2: PuTTY keys cut short before their Private-MAC; 3: issue 18 formats, ids


class Redactor:
    """Replaces secrets in text by `[REDACTED:<type>]`. Build once, call `redact` many times;
    it keeps no state between calls."""

    def __init__(self, extra_patterns: Sequence[str] = (), enabled: bool = True) -> None:
        self.enabled = enabled
        self._custom: list[re.Pattern[str]] = []
        for index, pattern in enumerate(extra_patterns):
            try:
                self._custom.append(re.compile(pattern))
            except re.error as e:
                raise ValueError(f"extra_patterns[{index}] {pattern!r} is not a valid regex: {e}") from e

    def redact(self, text: str) -> Redacted:
        if not self.enabled or not text:
            return Redacted(text, ())
        spans = merge(self._detect(text, depth=0))
        if spans and "[REDACTED:" in text:  # never redact a marker of an earlier pass
            markers = [m.span() for m in MARKER.finditer(text)]  # in order, not overlapping
            starts = [a for a, _ in markers]
            spans = [s for s in spans if not _inside(s, markers, starts)]
        if not spans:
            return Redacted(text, ())
        out: list[str] = []
        findings: list[Finding] = []
        pos = 0
        line = 1
        for span in spans:
            line += text.count("\n", pos, span.start)
            out += (text[pos : span.start], f"[REDACTED:{span.type}]")
            findings.append(Finding(span.type, span.start, span.end, line))
            line += text.count("\n", span.start, span.end)
            pos = span.end
        out.append(text[pos:])
        return Redacted("".join(out), tuple(findings))

    def _detect(self, text: str, depth: int) -> list[Span]:
        found = [Span(s, e, t) for s, e, t in find_private_keys(text)]
        for start, end in candidate_lines(text):
            line = text[start:end]
            if line.endswith("\r"):
                line = line[:-1]
            found.extend(Span(start + s, start + e, t) for s, e, t in self._scan_line(line, depth))
        for regex in self._custom:
            for m in regex.finditer(text):
                s, e = m.span("secret") if "secret" in regex.groupindex else m.span()
                if 0 <= s < e:
                    found.append(Span(s, e, "custom"))
        return found

    def _scan_line(self, line: str, depth: int) -> Iterator[tuple[int, int, str]]:
        found = self._scan(line, depth)
        if "AAAA" not in line:
            yield from found
            return
        public = [m.span() for m in PUBLIC_KEY.finditer(line)]  # a public key, even cut short, is none
        for s, e, kind in found:
            if priority(kind) == SPECIFIC or not any(a <= s and e <= b for a, b in public):
                yield s, e, kind

    def _scan(self, line: str, depth: int) -> Iterator[tuple[int, int, str]]:
        low = lower(line)
        keywords = list(KEYWORD.finditer(low))
        long_run = RUN20.search(line) is not None
        yield from token_findings(line, low, long_run)
        if keywords:
            yield from assigned_credentials(line, keywords)
        yield from command_credentials(line, low)
        if "auth" in low:
            yield from auth_headers(line)
        if "cookie" in low or "-b" in low:
            yield from session_cookies(line)
        if "pass" in low or "pwd" in low:
            yield from prose_passwords(line, low)
        if long_run or keywords:
            yield from high_entropy(line, keywords, long_run)
        if long_run and depth < 2:
            for m in BLOB.finditer(line):
                decoded = b64_text(m.group())
                inner = self._detect(decoded, depth + 1) if decoded else None
                if inner:
                    yield m.start(), m.end(), max(inner, key=lambda s: priority(s.type)).type
        if "%" in line and depth < 2:
            for m in PERCENT_RUN.finditer(line):
                found = percent_decoded(m.group())
                if found is None:
                    continue
                decoded, starts = found  # each secret in the decoded text, where it was encoded
                for span in self._detect(decoded, depth + 1):
                    yield m.start() + starts[span.start], m.start() + starts[span.end], span.type


def _inside(span: Span, markers: list[tuple[int, int]], starts: list[int]) -> bool:
    """Whether ``span`` lies within one of ``markers`` (sorted, disjoint; ``starts`` their starts)."""
    i = bisect.bisect_right(starts, span.start) - 1
    return i >= 0 and span.end <= markers[i][1]
