"""The prefilter: which lines are worth a closer look. One pass of a literal trie over the
lower-cased text and a few simple shape regexes over the text itself."""

from __future__ import annotations

import re
from collections.abc import Iterator

from pipeline.redaction.commands import LITERALS as COMMAND_LITERALS
from pipeline.redaction.commands import PGPASS_SHAPE
from pipeline.redaction.credentials import GUARDED_KEYWORDS, KEYWORD_LITERALS
from pipeline.redaction.text import lower, trie
from pipeline.redaction.tokens import RULES

# Literals whose preceding character matters: "sk-" but not "task-", "SG." but not "msg.".
_GUARDED_LITERALS = {"sk-": r"sk-(?<![a-z0-9_-]sk-)", "sg.": r"sg\.(?<![a-z0-9]sg\.)", **GUARDED_KEYWORDS}
# Every rule's hint, except those of rules that need a long run (the run shape below finds it).
_LITERALS = sorted(
    {
        *KEYWORD_LITERALS,
        *COMMAND_LITERALS,
        "cloudant",
        "cookie",
        "softlayer",
        *(
            h.lower()
            for rule in RULES
            if not rule.run
            for h in rule.hints
            if h not in _GUARDED_LITERALS and h not in ("sk-ant-", "://")
        ),
    }
)
_PREFILTER_LOWER = re.compile("|".join((trie(_LITERALS), *_GUARDED_LITERALS.values())))  # on lower(text)
# Over the text itself, each on its own: re is faster at a few simple passes than at one big one.
_PREFILTER_SHAPES = (
    re.compile(r"[^A-Za-z0-9+/=_-][A-Za-z0-9+/_-]{32}"),  # a long base64 / token run
    re.compile(r"[\"'][A-Za-z0-9+/=_-]{20}"),  # a long quoted token
    re.compile(r"[MNO][A-Za-z\d_-]{23,25}\.[A-Za-z\d_-]{6}\."),  # a Discord bot token
    re.compile(r"://[^\s/@]*@"),  # userinfo in a URL
    PGPASS_SHAPE,  # a .pgpass line
)
_RUN_AT_START = re.compile(r"[A-Za-z0-9+/_-]{32}")


def candidate_lines(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of every line the prefilter flags, in order."""
    hits = [m.end() - 1 for m in _PREFILTER_LOWER.finditer(lower(text))]
    for shape in _PREFILTER_SHAPES:
        hits.extend(m.end() - 1 for m in shape.finditer(text))
    if _RUN_AT_START.match(text):
        hits.append(0)
    line_end = -1
    for hit in sorted(hits):
        if hit < line_end:
            continue
        start = text.rfind("\n", 0, hit) + 1
        line_end = text.find("\n", hit)
        if line_end < 0:
            line_end = len(text)
        yield start, line_end
