"""Secret redaction: every text ingest stores goes through `Redactor.redact` first.

Each secret is replaced by `[REDACTED:<type>]` (the names are `SECRET_TYPES`); a `Finding` says
where it was (offsets in the original text, 1-based line) and never carries the value.

How a text is scanned, cheapest first:

1. Private key blocks (PEM, OpenSSH, PGP, SSH2, PuTTY) over the whole text, only when one of
   detect-secrets' `PrivateKeyDetector` markers is in it. The whole block goes.
2. A prefilter (one pass of a literal trie over the lower-cased text, a few simple shape regexes)
   flags the lines that could hold a secret: a token prefix, a credential word, userinfo in a
   URL, a long base64 run, a long quoted token. No other line is looked at again.
3. On a flagged line: detect-secrets' regex plugins (their `denylist` patterns with `finditer`,
   for positions; none of its settings / `SecretsCollection` machinery, so no global state) and
   our own token rules, each only if its prefix is on the line; `KEY=value` / `key: value`
   credentials (the value only, unless it is a placeholder, a reference or code);
   `Authorization:` headers; "the password is ..." in prose; high-entropy strings, only when
   assigned to a key or right after a credential word; base64 blobs that decode to text holding
   any of these (kubeconfig `client-key-data`, Kubernetes `Secret` data, a wrapped token).
4. `extra_patterns` over the whole text (type `custom`; only the `secret` group if it has one).

Overlapping findings become one replacement, named after the most specific of them.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math
import re
import string
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.cloudant import CloudantDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.ibm_cloud_iam import IbmCloudIamDetector
from detect_secrets.plugins.ibm_cos_hmac import IbmCosHmacDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.softlayer import SoftlayerDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

__all__ = ["RULES_VERSION", "SECRET_TYPES", "Finding", "Redacted", "Redactor"]


# Bump when the detection rules change: stored hashes include it, so the next ingest re-redacts.
RULES_VERSION = "2"  # 2: PuTTY keys cut short before their Private-MAC


@dataclass(frozen=True)
class Finding:
    type: str
    start: int  # offsets in the original text
    end: int
    line: int  # 1-based line of `start`


@dataclass(frozen=True)
class Redacted:
    text: str
    findings: tuple[Finding, ...]


# How specific each type is: of overlapping findings, the most specific names the replacement.
_GENERIC_PRIORITY = {
    "high_entropy": 0,
    "env_credential": 1,
    "url_credentials": 2,
    "auth_header": 2,
    "custom": 3,
    "jwt": 4,
}
_SPECIFIC = 5  # every other type: a vendor's token, a private key

SECRET_TYPES: frozenset[str] = frozenset(
    {
        *_GENERIC_PRIORITY,
        "private_key",
        "aws_access_key",
        "aws_secret_key",
        "azure_storage_key",
        "github_token",
        "gitlab_token",
        "slack_token",
        "slack_webhook",
        "stripe_key",
        "google_api_key",
        "google_client_secret",
        "openai_key",
        "anthropic_key",
        "huggingface_token",
        "npm_token",
        "pypi_token",
        "sendgrid_key",
        "mailchimp_key",
        "twilio_key",
        "square_token",
        "discord_token",
        "telegram_token",
        "ibm_cloud_iam_key",
        "ibm_cos_hmac_key",
        "softlayer_key",
        "cloudant_key",
    }
)


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
        spans = _merge(self._detect(text, depth=0))
        if spans and "[REDACTED:" in text:  # never redact a marker of an earlier pass
            markers = [m.span() for m in _MARKER.finditer(text)]
            spans = [s for s in spans if not any(a <= s.start and s.end <= b for a, b in markers)]
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

    def _detect(self, text: str, depth: int) -> list[_Span]:
        found = [_Span(s, e, t) for s, e, t in _private_keys(text)]
        for start, end in _candidate_lines(text):
            line = text[start:end]
            if line.endswith("\r"):
                line = line[:-1]
            found.extend(_Span(start + s, start + e, t) for s, e, t in self._scan_line(line, depth))
        for regex in self._custom:
            for m in regex.finditer(text):
                s, e = m.span("secret") if "secret" in regex.groupindex else m.span()
                if 0 <= s < e:
                    found.append(_Span(s, e, "custom"))
        return found

    def _scan_line(self, line: str, depth: int) -> Iterator[tuple[int, int, str]]:
        low = _lower(line)
        keywords = list(_KEYWORD.finditer(low))
        long_run = _RUN20.search(line) is not None
        rules: dict[_Rule, None] = {}
        for hint, lower, hinted in _HINTED_RULES:
            if hint in (low if lower else line):
                rules.update(dict.fromkeys(r for r in hinted if long_run or not r.run))
        if long_run:
            rules.update(dict.fromkeys(r for r in _GATED_RULES if r.gate and r.gate.search(low)))
        for rule in rules:
            for s, e in rule.find(line):
                yield s, e, rule.type
        if keywords:
            yield from _credentials(line, keywords)
        if "auth" in low:
            yield from _auth_headers(line)
        if "pass" in low or "pwd" in low:
            yield from _prose_passwords(line, low)
        if long_run or keywords:
            yield from _high_entropy(line, keywords, long_run)
        if long_run and depth < 2:
            for m in _BLOB.finditer(line):
                decoded = _b64_text(m.group())
                inner = self._detect(decoded, depth + 1) if decoded else None
                if inner:
                    yield m.start(), m.end(), max(inner, key=lambda s: _priority(s.type)).type


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    type: str


def _priority(kind: str) -> int:
    return _GENERIC_PRIORITY.get(kind, _SPECIFIC)


def _merge(spans: list[_Span]) -> list[_Span]:
    """One span per group of overlapping ones, named after its most specific member (the longest
    of those on a tie)."""
    merged: list[_Span] = []
    best: tuple[int, int] = (0, 0)
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        rank = (_priority(span.type), span.end - span.start)
        if merged and span.start < merged[-1].end:
            last = merged[-1]
            kind = span.type if rank > best else last.type
            best = max(best, rank)
            merged[-1] = _Span(last.start, max(last.end, span.end), kind)
        else:
            merged.append(span)
            best = rank
    return merged


# ---------------------------------------------------------------------------------------------
# Judging a value.

_HEX = re.compile(r"[0-9a-fA-F]+")
_MARKER = re.compile(r"\[REDACTED:[a-z0-9_]+\]")
_SEPARATORS = re.compile(r"[-_./]")
_WORDS = re.compile(r"[A-Z][a-z]{2,}|[a-z]{3,}")
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _lower(text: str) -> str:
    """Lower-cased with the same offsets (every literal we look for is ASCII)."""
    low = text.lower()
    return low if len(low) == len(text) else text.translate(_ASCII_LOWER)  # "İ".lower() is 2 chars


def _entropy(value: str) -> float:
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def _char_class(c: str) -> int:
    return 0 if c.isupper() else 1 if c.islower() else 2 if c.isdigit() else 3


def _looks_random(value: str, min_len: int = 20, min_piece: int = 10) -> bool:
    """A machine-made string: long, mixed case (and digits), not hex (hashes, SHAs), not made of
    words (identifiers, paths, model names), with the entropy of random characters. Judged on its
    longest piece between separators: `org/Model-7B-v0.1` is names, a token is one blob."""
    if len(value) < min_len or _HEX.fullmatch(value):
        return False
    piece = max(_SEPARATORS.split(value), key=len)
    n = len(piece)
    if n < min_piece or not (any(c.isupper() for c in piece) and any(c.islower() for c in piece)):
        return False
    if n < 20 and not any(c.isdigit() for c in piece):
        return False
    classes = [_char_class(c) for c in piece]
    if sum(1 for a, b in itertools.pairwise(classes) if a != b) < 0.4 * (n - 1):
        return False  # CamelCaseIdentifiers change case only between words
    if sum(len(w) for w in _WORDS.findall(piece)) > 0.5 * n:
        return False  # MyComponentName2, Kubernetes1Dot29Upgrade
    return _entropy(piece) >= 0.75 * min(math.log2(n), 5.5)


def _has_letter_and_digit(value: str) -> bool:
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


# Values that are not secrets whatever they are assigned to.
_NOT_SECRET = re.compile(
    r"""(?ix)
    (?: changeme | change[_-]me | none | null | nil | true | false | yes | no | on | off
      | undefined | redacted | hidden | secret | secrets | password | passwd | token | example
      | dummy | test | testing | todo | tbd | tba | fixme | placeholder | required | optional
      | string | str | bytes | bool | boolean | int | integer | float | number | any | object
      | dict | list | env | default | empty | unset | notset | not[_-]set | n/?a | sample
      | foo | bar | foobar | bearer | basic
      | x+ | \*+ | \.{2,} | … | -+ | _+ | \#+ | •+ | 0+ )$
    | \$\{ | \$\( | \$[A-Za-z_]\w*$ | \{\{ | \{% | <[^<>]*>$ | %\(?\w+\)?s?%?$        # references, templates
    | \[REDACTED: | ENC\[ | !\w | @Microsoft\.KeyVault\(
    | (?:vault|op|ssm|arn|secretsmanager|awssm|gcpsm|azkv|keychain|env|file|ref|sops|doppler
       |infisical|k8s|secretref)://?                                                 # secret-store references
    | your[_-] | .*[_-]here$ | .*\{[A-Za-z_][\w.]*\} | \[[^\]]*\]+$
    | [a-z][a-z0-9+.-]*://                              # a URL: credentials in it are their own rule
    | (?:~?/|\.\.?/|[A-Za-z]:[\\/])                     # a path
    | [\w.+-]+@[\w-]+(?:\.[\w-]+)+$                     # an email address
    | \#[0-9a-fA-F]{3,8}$                               # a colour
    | v?[\d.:,_+/-]+[a-z]{0,3}$                         # numbers, durations, versions, IPs, dates
    | \d{4}-\d\d-\d\d[T\ ][\d:.]+(?:Z|[+-][\d:]+)?$     # timestamps
    """
)
_CODE_CHARS = frozenset("()[]{}")
_DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(?:[.:][A-Za-z_]\w*)+")  # a.b.c, pkg.module:func
_IDENTIFIER_WORDS = re.compile(
    r"[A-Z]?[a-z]+(?:[A-Z][a-z]*)+|[a-z][a-z0-9]*(?:_[a-z0-9]+)+|[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+"
)
_PLAIN_WORD = re.compile(r"[A-Za-z]+")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PASSWORD_SYMBOLS = frozenset("!#$%&*+=?@^~|")
_REGEX_OR_TEMPLATE = re.compile(r"""(?x)
    \(\? | \[\^ | \\[wdsbWDS] | \.[*+] | \[[^\]]*\w-\w[^\]]*\] | \{\d+(?:,\d*)?\}   # a regex
    | <[A-Za-z_|/!][^<>]*> | %[sd]\b | \\[uUx][0-9a-fA-F]                       # a tag, a format, escapes
    | ^[A-Za-z_][\w.]*\[.*\]$                                                  # a type: Optional[Key]
    | \*{3} | (?:\.\.\.|…)$                                                    # masked, truncated
""")


def _is_placeholder(value: str) -> bool:
    return len(value) < 4 or bool(_NOT_SECRET.match(value))


def _not_placeholder(value: str) -> bool:
    return not _is_placeholder(value)


def _mixed(value: str) -> bool:
    """Upper, lower and digits: every real token of these shapes has all three."""
    body = value.split("-", 1)[-1] if value.startswith("sk-") else value
    return any(c.isupper() for c in body) and any(c.islower() for c in body) and any(c.isdigit() for c in body)


# ---------------------------------------------------------------------------------------------
# Token rules: a regex each, from a detect-secrets plugin's `denylist` or our own.

_TOKEN_TAIL = re.compile(r"[A-Za-z0-9_-]*")
_JWT_TAIL = re.compile(r"(?:[A-Za-z0-9_=-]|\.(?=[A-Za-z0-9_-]))*")
_ALNUM = frozenset(string.ascii_letters + string.digits)


@dataclass(frozen=True)
class _Rule:
    type: str
    regex: re.Pattern[str]
    hints: tuple[str, ...] = ()  # it runs on a line holding one (lower-case ones: any case)...
    gate: re.Pattern[str] | None = None  # ... or, instead, on a lower-cased line this matches
    run: bool = False  # ... that also has a 20-character token run (the secret is one)
    group: int = 0  # the secret is this group; 0: the whole match, widened to its token's end
    strip: str = ""  # a literal prefix of the match that is not secret
    key_hints: tuple[str, ...] = ()  # the text before the group must name one of these
    check: Callable[[str], bool] | None = None
    tail: re.Pattern[str] | None = _TOKEN_TAIL
    bounded: bool = True  # a whole match must not start inside a longer word

    def find(self, line: str) -> Iterator[tuple[int, int]]:
        for m in self.regex.finditer(line):
            if self.group:
                start, end = m.span(self.group)
                if start < 0 or start == end:
                    continue
                if self.key_hints and not any(h in line[m.start() : start].lower() for h in self.key_hints):
                    continue
            else:
                start, end = m.span()
                if self.bounded and start > 0 and line[start - 1] in _ALNUM:
                    continue  # matched inside a longer word
                if self.strip and line.startswith(self.strip, start):
                    start += len(self.strip)
                if self.tail is not None:  # detect-secrets' fixed lengths would leave a longer token's rest
                    end = self.tail.match(line, end).end()
            if self.check is None or self.check(line[start:end]):
                yield start, end


def _plugin(plugin: type, index: int, kind: str, **options: object) -> _Rule:
    return _Rule(kind, plugin.denylist[index], **options)  # type: ignore[arg-type, attr-defined]


def _own(kind: str, pattern: str, **options: object) -> _Rule:
    return _Rule(kind, re.compile(pattern), **options)  # type: ignore[arg-type]


_GITLAB_PREFIXES = (
    "glpat-",
    "gldt-",
    "glft-",
    "glsoat-",
    "glrt-",
    "glcbt-",
    "glimt-",
    "glptt-",
    "glagent-",
    "gloas-",
    "gr1348941",
)
_RULES: tuple[_Rule, ...] = (
    _plugin(AWSKeyDetector, 0, "aws_access_key", hints=("akia", "asia", "abia", "acca", "a3t")),
    _plugin(AWSKeyDetector, 1, "aws_secret_key", group=1, hints=("aws",), run=True),
    _plugin(AzureStorageKeyDetector, 0, "azure_storage_key", hints=("accountkey=",), strip="AccountKey=", tail=None),
    _plugin(BasicAuthDetector, 0, "url_credentials", group=1, hints=("://",), check=_not_placeholder),
    _own(
        "url_credentials",
        r"(?i)\b[a-z][a-z0-9+.-]{0,20}://[^\s:/?#@\"'<>]*:([^\s/?#@\"'<>]+)@(?=[\w\[])",
        group=1,
        hints=("://",),
        check=_not_placeholder,
    ),  # also `redis://:pw@`, `$` and `!` in passwords
    _plugin(DiscordBotTokenDetector, 0, "discord_token", hints=(".",), run=True, check=_mixed),
    _plugin(GitHubTokenDetector, 0, "github_token", hints=("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    _own("github_token", r"github_pat_[A-Za-z0-9_]{22,}", hints=("github_pat_",)),
    *(
        _plugin(GitLabTokenDetector, i, "gitlab_token", hints=_GITLAB_PREFIXES)
        for i in range(len(GitLabTokenDetector.denylist))
    ),
    _plugin(SlackDetector, 0, "slack_token", hints=("xox",)),
    _own("slack_token", r"xox[abposer]-[A-Za-z0-9-]{10,}|xapp-\d-[A-Za-z0-9-]{10,}", hints=("xox", "xapp-")),
    _plugin(SlackDetector, 1, "slack_webhook", hints=("hooks.slack.com",)),
    _plugin(StripeDetector, 0, "stripe_key", hints=("k_live_",)),
    _own("stripe_key", r"(?:sk|rk)_test_[0-9a-zA-Z]{24,}|whsec_[A-Za-z0-9+/=]{24,}", hints=("k_test_", "whsec_")),
    _own("google_api_key", r"AIza[0-9A-Za-z_-]{35}", hints=("aiza",)),
    _own("google_client_secret", r"GOCSPX-[A-Za-z0-9_-]{28}", hints=("gocspx-",)),
    _plugin(OpenAIDetector, 0, "openai_key", hints=("t3blbkfj",)),  # legacy keys only
    _own(
        "openai_key", r"(?<![\w-])sk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}", hints=("sk-",), check=_mixed
    ),
    _own("anthropic_key", r"(?<![\w-])sk-ant-[A-Za-z0-9_-]{20,}", hints=("sk-ant-",), check=_has_letter_and_digit),
    _own("huggingface_token", r"hf_[A-Za-z0-9]{34,}", hints=("hf_",), check=_mixed),
    _plugin(JwtTokenDetector, 0, "jwt", hints=("eyj",), tail=_JWT_TAIL),  # its pattern stops before the signature
    # NpmDetector's `//.+/:_authToken=...` backtracks over every "//" of a long line; anchored instead:
    _own(
        "npm_token",
        r"(?<=/):_authToken=\s*([^\s\"'()\\]+)(?![(\\])",
        group=1,
        hints=("_authtoken",),
        check=_not_placeholder,
    ),
    _own("npm_token", r"npm_[A-Za-z0-9]{36}", hints=("npm_",)),
    *(_plugin(PypiTokenDetector, i, "pypi_token", hints=("pypi-",)) for i in range(len(PypiTokenDetector.denylist))),
    _plugin(SendGridDetector, 0, "sendgrid_key", hints=("sg.",)),
    _plugin(MailchimpDetector, 0, "mailchimp_key", hints=("-us",), run=True),
    *(
        _plugin(TwilioKeyDetector, i, "twilio_key", hints=(prefix,), run=True, check=_has_letter_and_digit)
        for i, prefix in enumerate(("AC", "SK"))
    ),
    _plugin(SquareOAuthDetector, 0, "square_token", hints=("sq0csp-",)),
    _plugin(
        TelegramBotTokenDetector, 0, "telegram_token", hints=(":",), run=True, check=_mixed, bounded=False
    ),  # api.telegram.org/bot<token>
    # These patterns try every position of a line (they open with optional groups): each runs only
    # on a line that names its key.
    _plugin(
        IbmCloudIamDetector,
        0,
        "ibm_cloud_iam_key",
        group=1,
        run=True,
        key_hints=("ibm", "iam", "cloud"),
        gate=re.compile(r"(?:ibm|iam|cloud)[_-]?(?:api[_-]?)?(?:key|pwd|pass|token)"),
    ),
    _plugin(
        IbmCosHmacDetector,
        0,
        "ibm_cos_hmac_key",
        group=1,
        run=True,
        key_hints=("cos",),
        gate=re.compile(r"cos[_-]?(?:hmac[_-]?)?secret"),
    ),
    *(
        _plugin(
            SoftlayerDetector,
            i,
            "softlayer_key",
            group=1,
            run=True,
            gate=re.compile(r"(?:softlayer|sl)[_-]?(?:api[_-]?)?(?:key|pwd|pass|token)|api\.softlayer\.com"),
        )
        for i in range(len(SoftlayerDetector.denylist))
    ),
    *(
        _plugin(
            CloudantDetector,
            i,
            "cloudant_key",
            group=1,
            run=True,
            gate=re.compile(r"(?:cloudant|cl|clou)[_-]?(?:api)?(?:key|pwd|pw|pass|token)|cloudant\.com"),
        )
        for i in range(len(CloudantDetector.denylist))
    ),
)
assert all(bool(rule.hints) != bool(rule.gate) for rule in _RULES)
_HINTED_RULES: tuple[tuple[str, bool, tuple[_Rule, ...]], ...] = tuple(
    (hint, hint == hint.lower(), tuple(rule for rule in _RULES if hint in rule.hints))
    for hint in dict.fromkeys(h for rule in _RULES for h in rule.hints)
)
_GATED_RULES = tuple(rule for rule in _RULES if rule.gate is not None)
_RUN20 = re.compile(r"[A-Za-z0-9+/_-]{20}")


# ---------------------------------------------------------------------------------------------
# Credentials assigned to a key: `.env`, shell, YAML, INI, JSON, code, CLI flags, XML.


def _trie(words: Sequence[str]) -> str:
    """One regex for many literals, factored by prefix (re tries the alternatives in turn)."""
    children: dict[str, list[str]] = {}
    ends = False
    for word in words:
        if word:
            children.setdefault(word[0], []).append(word[1:])
        else:
            ends = True
    if not children:
        return ""
    branches = [re.escape(c) + _trie(rest) for c, rest in sorted(children.items())]
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    return f"(?:{body})?" if ends else body


_KEYWORD_LITERALS = (
    "passw",
    "passphrase",
    "pwd",
    "secret",
    "credential",
    "apikey",
    *(
        f"{word}{sep}key"
        for word in ("api", "access", "private", "signing", "encryption", "master")
        for sep in ("_", "-", "")
    ),
)
# "token" but not "tokenizer"; "auth", "authorization" but not "author", "authority".
_GUARDED_KEYWORDS = {"token": r"token(?!i[sz])", "auth": r"auth(?!or(?!i[sz]))"}
# Matched in the lower-cased line.
_SECRET_KEYWORD = re.compile(_trie(_KEYWORD_LITERALS))
_KEYWORD = re.compile("|".join((_SECRET_KEYWORD.pattern, *_GUARDED_KEYWORDS.values())))

_MAX_VALUE = 4096  # the longest assigned value looked at
_MAX_LOOKBACK = 256  # how far back the start of a key's line is looked for
_KEY_CHARS = frozenset(string.ascii_letters + string.digits + "_.-")
_KEY_LEFT = frozenset(" \t\"'{[(,;:$`<?&")
_ESCAPES = ("\\n", "\\r", "\\t")  # line breaks inside JSON-escaped text
_KEY_PARTS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
# The key names something about a credential, not the credential: `secretName`, `token_url`.
_NOT_VALUE_KEY = frozenset(
    {
        "name",
        "names",
        "ref",
        "reference",
        "file",
        "files",
        "path",
        "dir",
        "url",
        "uri",
        "endpoint",
        "host",
        "hostname",
        "server",
        "port",
        "id",
        "ids",
        "type",
        "types",
        "kind",
        "length",
        "len",
        "size",
        "min",
        "max",
        "count",
        "ttl",
        "expiry",
        "expires",
        "expiration",
        "timeout",
        "lifetime",
        "duration",
        "age",
        "at",
        "header",
        "headers",
        "prefix",
        "suffix",
        "env",
        "var",
        "field",
        "policy",
        "mode",
        "method",
        "methods",
        "scheme",
        "strategy",
        "provider",
        "providers",
        "backend",
        "enabled",
        "disabled",
        "required",
        "hint",
        "label",
        "description",
        "placeholder",
        "message",
        "msg",
        "error",
        "help",
        "text",
        "title",
        "format",
        "pattern",
        "regex",
        "rotation",
        "version",
        "algorithm",
        "alg",
        "location",
        "store",
        "manager",
        "source",
        "class",
        "module",
        "validator",
        "user",
        "username",
        "login",
        "email",
        "account",
        "issuer",
        "audience",
        "scope",
        "scopes",
        "realm",
        "domain",
        "level",
        "plugin",
        "handler",
        "mount",
        "volume",
        "item",
    }
)
_PLURAL_KEYS = frozenset({"tokens", "secrets", "passwords", "credentials", "keys", "auths"})
# A language model's tokens: pad_token="[PAD]", max_new_tokens=512.
_NLP_TOKEN_KEY = re.compile(
    r"(?i)(?:pad|eos|bos|unk|sep|cls|mask|special|start|end|stop|image|audio|video|vision|boi|eoi|begin"
    r"|added|max|min|num|new|extra|additional|placeholder|think|tool|per|prompt|output|input|context"
    r"|generated|total|sample|decoder|encoder|eot|eom|sot|bot|embed|vocab|unknown|padding)[_-]?tokens?(?![a-z])"
)
_AWS_SECRET_KEY = re.compile(r"(?i)(?:aws_?)?secret_?access_?key|aws_?secret(?:_?key)?")
_AWS_SECRET_VALUE = re.compile(r"[A-Za-z0-9/+]{40}")
_OPERATOR = re.compile(r"""(?x)
    [ \t]*
    (?: :[ \t]*[A-Za-z_][\w.\[\]|, ]*?[ \t]*=(?!=)    # a type annotation, then `=`
      | := | => | =(?![=~]) | :(?!:) )
    [ \t]*""")
_UPPER_KEY = re.compile(r"[A-Z][A-Z0-9_]*")
_INI_VALUE = re.compile(r"[^\s\"'`]+[ \t]*(?:[#;].*)?")


@dataclass(frozen=True)
class _Value:
    start: int
    end: int
    quoted: bool


def _credentials(line: str, keywords: list[re.Match[str]]) -> Iterator[tuple[int, int, str]]:
    last_end = -1
    for km in keywords:
        if km.start() < last_end:
            continue  # a second credential word in the same key: `auth_token`
        start, end = km.start(), km.end()
        while start > 0 and line[start - 1] in _KEY_CHARS and km.start() - start < 100:
            start -= 1
        while end < len(line) and line[end] in _KEY_CHARS:
            end += 1
        last_end = end
        if start > 0 and line[start - 1] == "\\" and line[start] in "nrt" and start < km.start():
            start += 1  # JSON-escaped text: ...\nDB_PASSWORD=...
        if start > 0 and line[start - 1] not in _KEY_LEFT and not line.startswith(_ESCAPES, start - 2):
            continue  # inside a path or a word: /run/secrets/x, foo@token
        key = line[start:end].lstrip("-")
        flag = len(key) < end - start
        start = end - len(key)
        parts = _key_parts(key)
        if not parts or parts[-1] in _NOT_VALUE_KEY:
            continue
        low_key = key.lower()
        if _NLP_TOKEN_KEY.search(low_key) and not _KEYWORD.search(_NLP_TOKEN_KEY.sub("", low_key)):
            continue
        found = _assigned_value(line, start, end, key, flag)
        if found is None:
            continue
        value, context = found
        if context in ("other", "ini") and parts[-1] in _PLURAL_KEYS:
            continue  # "special tokens: ...", `def f(tokens: Path)`: a heading or a parameter
        text = line[value.start : value.end]
        if text == key:
            continue  # f(token=token)
        if (
            value.quoted
            and value.start >= 2
            and line[value.start - 2] in "rR"
            and (value.start < 3 or not line[value.start - 3].isalnum())
        ):
            continue  # a raw string: a regex in all but name
        strength = "strong" if _SECRET_KEYWORD.search(low_key) else "token" if "token" in low_key else "auth"
        if _is_credential(text, value.quoted, context, strength):
            aws = _AWS_SECRET_KEY.search(key) and _AWS_SECRET_VALUE.fullmatch(text)
            yield value.start, value.end, "aws_secret_key" if aws else "env_credential"


def _key_parts(key: str) -> list[str]:
    """The words of a key, lower-cased: `secretKeyRef` -> secret, key, ref; numbers dropped."""
    return [p.lower() for p in _KEY_PARTS.findall(key) if not p.isdigit()]


def _assigned_value(line: str, key_start: int, key_end: int, key: str, flag: bool) -> tuple[_Value, str] | None:
    """The value assigned to the key at key_start:key_end, and its context: "env" (`.env`, shell),
    "yaml", "ini", "xml" or "other" (code, JSON, prose)."""
    n = len(line)
    before = line[max(0, key_start - _MAX_LOOKBACK) : key_start]
    before = before[before.rfind("\\n") + 2 :] if "\\n" in before else before  # JSON-escaped lines
    at_line_start = not before
    before = before.strip()
    if key_start > 0 and line[key_start - 1] == "<":  # <password>value</password>
        if line.startswith(">", key_end):
            value = _parse_value(line, key_end + 1, "xml")
            if value and line.startswith(f"</{key}>", value.end):
                return value, "xml"
        return None
    pos = key_end
    for _ in range(2):  # the key's closing quote or bracket: "api_key": or ['token']=
        if pos < n and line[pos] in "\"']":
            pos += 1
    op = _OPERATOR.match(line, pos)
    if op is None:
        if flag and pos < n and line[pos] in " \t":  # --password hunter2, or prose: "the --password flag"
            value = _parse_value(line, pos + 1, "other")
            return (value, "other") if value else None
        return None
    symbol = op.group().strip()
    if flag:
        context = "flag"
    elif (
        symbol == "="
        and op.end() - pos == 1
        and (
            at_line_start or before in ("export", "set") or (_UPPER_KEY.fullmatch(key) and line[key_start - 1] in " \t")
        )
    ):
        context = "env"  # DB_PASSWORD=x, export X=y, docker run -e X=y; not an indented `kwarg=value,`
    elif symbol == ":" and before in ("", "-") and (op.end() == n or line[op.end() - 1] in " \t"):
        context = "yaml"
    elif symbol == "=" and at_line_start and _INI_VALUE.fullmatch(line, op.end()):
        context = "ini"  # password = ... in .ini, .cfg, ~/.aws/credentials
    else:
        context = "other"
    value = _parse_value(line, op.end(), context)
    if value is not None and not value.quoted and context in ("env", "yaml") and line[value.end - 1] in ",)":
        context = "other"  # code after all: `password=None,`, `secret: Secret,`
        value = _parse_value(line, op.end(), context)
    if value is None or value.start == value.end:
        return None
    return value, context


def _parse_value(line: str, pos: int, context: str) -> _Value | None:
    n = min(len(line), pos + _MAX_VALUE)  # bounded: a long line must not make this quadratic
    if pos >= n:
        return None
    c = line[pos]
    if c in "rbfuRBFU" and pos + 1 < n and line[pos + 1] in "\"'":  # Python string prefixes
        pos += 1
        c = line[pos]
    if c == "\\" and line.startswith(('\\"', "\\'"), pos):  # JSON-escaped text: TOKEN=\"abc\"
        close = line.find(line[pos : pos + 2], pos + 2, n)
        return None if close < 0 else _Value(pos + 2, close, True)
    if c in "\"'`":
        i = pos + 1
        while i < n and line[i] != c:
            i += 2 if line[i] == "\\" and c != "`" else 1
        return None if i >= n else _Value(pos + 1, i, True)  # None: the string goes on past the line
    if context == "xml":
        end = line.find("<", pos, n)
        return _Value(pos, n if end < 0 else end, False)
    if context == "yaml":  # the rest of the line, less a comment
        end = n
        for stop in (" #", "\\n"):
            at = line.find(stop, pos, end)
            if at >= 0:
                end = at
        while end > pos and line[end - 1] in " \t":
            end -= 1
        return _Value(pos, end, False)
    end = pos
    stops = "" if context in ("env", "ini") else ";&,"  # Password=x;Encrypt=true, ?token=x&page=2
    while (
        end < n
        and not line[end].isspace()
        and line[end] not in stops
        and not (line[end] == "\\" and line.startswith(_ESCAPES, end))
    ):
        end += 1
    if stops:  # code or prose around the value: `f(token=abc123)`, "pass=abc123."
        while end > pos and line[end - 1] in ".:)]}'\"`":
            end -= 1
    return _Value(pos, end, False)


def _is_credential(value: str, quoted: bool, context: str, strength: str) -> bool:
    """Whether a value assigned to a credential key is the credential itself. `strength` is what
    the key says: "strong" (password, secret, api_key...), "token" (maybe a lexer's or a language
    model's token) or "auth" (mostly settings: `auth: oidc`)."""
    if _is_placeholder(value):
        return False
    if any(c.isspace() for c in value):
        # A passphrase in a `.env` line; anywhere else it is prose ("password: see the vault").
        return quoted and context == "env"
    if not quoted and _CODE_CHARS.intersection(value):
        return False  # an expression: `token = get_token()`
    if _DOTTED_NAME.fullmatch(value) or _REGEX_OR_TEMPLATE.search(value):
        return False  # `settings.SECRET_KEY`, a hostname, r"(?:token)\w+", "<EOT>", "sk-..."
    if strength == "auth":
        return _looks_random(value, 12)  # not `auth: oidc`, `auth_method: client_secret_basic`
    if strength == "token" and not (
        _has_letter_and_digit(value) or _PASSWORD_SYMBOLS.intersection(value) or _looks_random(value, 16)
    ):
        return False  # a kind of token, not a credential: `TOKEN_COMMENT: "comment"`, `token: Tensor`
    if _PLAIN_WORD.fullmatch(value) and len(value) < 6:
        return False
    if not quoted and context != "env":
        if _IDENTIFIER_WORDS.fullmatch(value):
            return False  # a type or a variable: `api_key: SecretStr`, `token = access_token`
        if context == "ini":
            return _has_letter_and_digit(value) or bool(_PASSWORD_SYMBOLS.intersection(value))
        if context == "other":
            # Code or prose: a name there is a reference (`secret=client_secret2`), so a random
            # string, or something no identifier looks like: letters, digits and symbols.
            if _IDENTIFIER.fullmatch(value):
                return _looks_random(value, 12)
            return _has_letter_and_digit(value) or bool(_PASSWORD_SYMBOLS.intersection(value))
    return True


_PROSE_PASSWORD = re.compile(
    r"\b(?:pass(?:word|wd|phrase)|pwd)\s+(?:is|was|set to|(?=\S+\s*$)|(?=\S+\s+(?:machine|login)\b))\s*"
    r"[\"'`]?([^\s\"'`]+)"
)
_HASH_NAME = re.compile(r"(?i)(?:sha\d*|md5|bcrypt|scrypt|argon2\w*|pbkdf2\w*)$")


def _prose_passwords(line: str, low: str) -> Iterator[tuple[int, int, str]]:
    """ "the wifi password is Hx7!pq2Lw", a `.netrc`'s "login alex password s3cr3t-x": only a value
    that cannot be a word ("the password is expired" stays)."""
    for m in _PROSE_PASSWORD.finditer(low):
        start, end = m.span(1)
        while end > start and line[end - 1] in ".,;:!?)]}'\"`":
            end -= 1
        value = line[start:end]
        if len(value) < 6 or _is_placeholder(value) or _HASH_NAME.match(value) or _CODE_CHARS.intersection(value):
            continue
        symbols = _PASSWORD_SYMBOLS.intersection(value) and not _DOTTED_NAME.fullmatch(value)
        if _has_letter_and_digit(value) or symbols:
            yield start, end, "env_credential"


_HEADER = re.compile(
    r"(?i)\b(?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?(?:bearer|basic|token|bot|digest|apikey)"
    r"\s+([A-Za-z0-9._~+/=-]{8,})"
)


def _auth_headers(line: str) -> Iterator[tuple[int, int, str]]:
    for m in _HEADER.finditer(line):
        if not _is_placeholder(m.group(1)):
            yield m.start(1), m.end(1), "auth_header"


# ---------------------------------------------------------------------------------------------
# High entropy, only in a credential context: never a free-floating random-looking string.

_QUOTED_RUN = re.compile(r"([\"'])([A-Za-z0-9+/=_-]{20,})\1")
_HASH_PREFIX = re.compile(r"(?i)(?:sha\d+|md5)[-:]")
# Keys whose random-looking values are hashes, ids or names.
_HASHISH_KEY = frozenset(
    {
        "id",
        "ids",
        "uuid",
        "guid",
        "sha",
        "sha1",
        "sha256",
        "sha384",
        "sha512",
        "md5",
        "hash",
        "hashes",
        "digest",
        "checksum",
        "checksums",
        "sum",
        "integrity",
        "etag",
        "fingerprint",
        "commit",
        "rev",
        "revision",
        "ref",
        "version",
        "nonce",
        "kid",
        "crc",
        "oid",
        "cid",
        "tag",
        "image",
        "key",
        "path",
        "url",
        "name",
        "file",
        "class",
        "icon",
        "font",
        "color",
        "data",
        "src",
        "href",
        "checkpoint",
        "model",
        "repo",
        "dataset",
        "branch",
    }
)
_RUN = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}")


def _high_entropy(line: str, keywords: list[re.Match[str]], long_run: bool) -> Iterator[tuple[int, int, str]]:
    for m in _QUOTED_RUN.finditer(line) if long_run else ():
        # `signing_material = "q8Xk..."`: a random quoted string assigned to a key that is not a hash.
        key = _key_before(line, m.start(2))
        value = m.group(2)
        if key is None or _HASHISH_KEY.intersection(_key_parts(key)) or _HASH_PREFIX.match(value):
            continue
        if _looks_random(value.rstrip("="), 20, 16) and _b64_text(value) is None:
            yield m.start(2), m.end(2), "high_entropy"
    for km in keywords:
        # "the staging token is 8fKd93...": a random string soon after a credential word.
        for r in _RUN.finditer(line, km.end(), min(len(line), km.end() + 48)):
            value = r.group().rstrip("=")
            if _looks_random(value, 16, 16) and _b64_text(value) is None:
                yield r.start(), r.end(), "high_entropy"


def _key_before(line: str, pos: int) -> str | None:
    """The key a quoted value at `pos` is assigned to (`key = "`, `"key": "`, `key => '`), if any."""
    i = pos - 1  # the opening quote
    while i > 0 and line[i - 1] in " \t":
        i -= 1
    if i > 1 and line[i - 2 : i] in (":=", "=>"):
        i -= 2
    elif i > 0 and line[i - 1] in ":=":
        i -= 1
    else:
        return None
    while i > 0 and line[i - 1] in " \t":
        i -= 1
    for _ in range(2):
        if i > 0 and line[i - 1] in "\"']":
            i -= 1
    end = i
    while i > 0 and line[i - 1] in _KEY_CHARS and end - i < 100:
        i -= 1
    return line[i:end] or None


# ---------------------------------------------------------------------------------------------
# Base64 blobs: decoded text that holds a secret makes the blob one (text, never binary).

_BLOB = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{32,}={0,2}")
_MAX_BLOB = 1 << 18


def _b64_text(blob: str) -> str | None:
    if len(blob) > _MAX_BLOB:
        return None
    body = blob.rstrip("=")
    if len(body) % 4 == 1:
        return None
    urlsafe = "-" in body or "_" in body
    if urlsafe and ("+" in body or "/" in body):
        return None
    padded = body + "=" * (-len(body) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded) if urlsafe else base64.b64decode(padded, validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    printable = sum(1 for c in text if c.isprintable() or c in "\n\r\t")
    return text if text and printable >= 0.95 * len(text) else None


# ---------------------------------------------------------------------------------------------
# Private key blocks, across lines.

# detect-secrets' markers, and the generic ones it lacks (PKCS#8 "ENCRYPTED PRIVATE KEY", PuTTY v3).
_KEY_MARKERS = (*(r.pattern for r in PrivateKeyDetector.denylist), "PRIVATE KEY", "PuTTY-User-Key-File-")
_PEM_BEGIN = re.compile(r"-{4,5} ?BEGIN ((?:[A-Z0-9]+ )*?)PRIVATE KEY( BLOCK)? ?-{4,5}")
_PEM_BODY_LINE = re.compile(r"[ \t>*#/\"']*(?:[A-Za-z0-9+/=]+|[A-Za-z-]+: .*|)[ \t\"',\\n]*")
_KEY_BODY = re.compile(r"[A-Za-z0-9+/]{20}")
_PUTTY_BEGIN = re.compile(r"PuTTY-User-Key-File-\d:")
_PUTTY = re.compile(r"PuTTY-User-Key-File-\d:.*?Private-(?:MAC|Hash): *[0-9a-fA-F]+", re.DOTALL)


def _private_keys(text: str) -> Iterator[tuple[int, int, str]]:
    if not any(marker in text for marker in _KEY_MARKERS):
        return
    pos = 0
    while (m := _PEM_BEGIN.search(text, pos)) is not None:
        label, block = re.escape(m.group(1)), re.escape(m.group(2) or "")
        end_marker = re.compile(rf"-{{4,5}} ?END {label}PRIVATE KEY{block} ?-{{4,5}}")
        end = end_marker.search(text, m.end(), m.end() + (1 << 16))
        stop = end.end() if end is not None else _unterminated_key_end(text, m.end())
        if _KEY_BODY.search(text, m.end(), stop):  # not just the markers, quoted in prose or code
            yield m.start(), stop, "private_key"
        pos = max(stop, m.end())
    pos = 0
    while (m := _PUTTY_BEGIN.search(text, pos)) is not None:
        whole = _PUTTY.match(text, m.start())
        stop = whole.end() if whole is not None else _unterminated_key_end(text, m.end())  # cut short
        if whole is not None or _KEY_BODY.search(text, m.end(), stop):
            yield m.start(), stop, "private_key"
        pos = max(stop, m.end())


def _unterminated_key_end(text: str, pos: int) -> int:
    """A block cut short (a pasted fragment): up to the last line that still looks like key body."""
    end = text.find("\n", pos)
    if end < 0:
        return len(text)
    stop = end
    while end >= 0:
        nxt = text.find("\n", end + 1)
        if not text[end + 1 : nxt if nxt >= 0 else len(text)].strip() or not _PEM_BODY_LINE.fullmatch(
            text, end + 1, nxt if nxt >= 0 else len(text)
        ):
            break
        stop = nxt if nxt >= 0 else len(text)
        end = nxt
    return stop


# ---------------------------------------------------------------------------------------------
# The prefilter: which lines are worth a closer look.

# Literals whose preceding character matters: "sk-" but not "task-", "SG." but not "msg.".
_GUARDED_LITERALS = {"sk-": r"sk-(?<![a-z0-9_-]sk-)", "sg.": r"sg\.(?<![a-z0-9]sg\.)", **_GUARDED_KEYWORDS}
# Every rule's hint, except those of rules that need a long run (the run shape below finds it).
_LITERALS = sorted(
    {
        *_KEYWORD_LITERALS,
        "cloudant",
        "softlayer",
        *(
            h
            for rule in _RULES
            if not rule.run
            for h in rule.hints
            if h not in _GUARDED_LITERALS and h not in ("sk-ant-", "://")
        ),
    }
)
_PREFILTER_LOWER = re.compile("|".join((_trie(_LITERALS), *_GUARDED_LITERALS.values())))  # on _lower(text)
# Over the text itself, each on its own: re is faster at a few simple passes than at one big one.
_PREFILTER_SHAPES = (
    re.compile(r"[^A-Za-z0-9+/=_-][A-Za-z0-9+/_-]{32}"),  # a long base64 / token run
    re.compile(r"[\"'][A-Za-z0-9+/=_-]{20}"),  # a long quoted token
    re.compile(r"[MNO][A-Za-z\d_-]{23,25}\.[A-Za-z\d_-]{6}\."),  # a Discord bot token
    re.compile(r"://[^\s/?#@]*@"),  # userinfo in a URL
)
_RUN_AT_START = re.compile(r"[A-Za-z0-9+/_-]{32}")


def _candidate_lines(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of every line the prefilter flags, in order."""
    hits = [m.end() - 1 for m in _PREFILTER_LOWER.finditer(_lower(text))]
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
