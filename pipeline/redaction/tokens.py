"""Token rules: one regex per vendor token shape, from a detect-secrets plugin's `denylist` or our
own, each run only on a line that holds its hint (a literal prefix) or matches its gate."""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.cloudant import CloudantDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.ibm_cloud_iam import IbmCloudIamDetector
from detect_secrets.plugins.ibm_cos_hmac import IbmCosHmacDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.softlayer import SoftlayerDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

from pipeline.redaction.values import IDENTIFIER_WORDS, has_letter_and_digit, mixed, not_placeholder

_TOKEN_TAIL = re.compile(r"[A-Za-z0-9_-]*")
_JWT_TAIL = re.compile(r"(?:[A-Za-z0-9_=-]|\.(?=[A-Za-z0-9_-]))*")
_ALNUM = frozenset(string.ascii_letters + string.digits)


@dataclass(frozen=True)
class Rule:
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
                    rest = self.tail.match(line, end)
                    end = rest.end() if rest is not None else end
            if self.check is None or self.check(line[start:end]):
                yield start, end


def _plugin(plugin: type, index: int, kind: str, **options: object) -> Rule:
    return Rule(kind, plugin.denylist[index], **options)  # type: ignore[arg-type, attr-defined]


def _own(kind: str, pattern: str, **options: object) -> Rule:
    return Rule(kind, re.compile(pattern), **options)  # type: ignore[arg-type]


def _url_password(value: str) -> bool:
    """Not a placeholder, nor a port followed by a query or fragment (`host:8080?to=a@b`). Letters
    only is a documentation's placeholder when short (`user:pass`, `key:seed`), made of words
    (`ApiKey:ApiSecret`, `mySendingPassword`) or naming a credential (`userid:mypass`)."""
    value = value.strip("<>")
    if not not_placeholder(value) or _PORT_THEN_QUERY.match(value) is not None:
        return False
    if value.isalpha() and value.isascii():
        low = value.lower()
        if len(value) <= 8 or IDENTIFIER_WORDS.fullmatch(value) or any(w in low for w in _CREDENTIAL_WORDS):
            return False
    return True


_CREDENTIAL_WORDS = ("pass", "pwd", "secret", "token", "key", "seed", "auth", "cred")


_PORT_THEN_QUERY = re.compile(r"\d{1,5}[?#][\w.%-]*[=&/]")
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
RULES: tuple[Rule, ...] = (
    _plugin(AWSKeyDetector, 0, "aws_access_key", hints=("akia", "asia", "abia", "acca", "a3t")),
    _plugin(AWSKeyDetector, 1, "aws_secret_key", group=1, hints=("aws",), run=True),
    _plugin(AzureStorageKeyDetector, 0, "azure_storage_key", hints=("accountkey=",), strip="AccountKey=", tail=None),
    _own(
        "url_credentials",
        r"(?i)\b[a-z][a-z0-9+.-]{0,20}://[^\s:/?#@\"'<>]*:([^\s/\"'<>]+?)@(?=[\w\[][\w.\[\]:-]*(?:[/?#\s\"'<>;,)]|$))",
        group=1,
        hints=("://",),
        check=_url_password,
    ),  # also `redis://:pw@`; `$`, `!`, `#`, `?` and `@` in passwords (unencoded, as people paste them):
    # the first `@` that a host and the end of the authority follow
    _plugin(DiscordBotTokenDetector, 0, "discord_token", hints=(".",), run=True, check=mixed),
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
        "openai_key", r"(?<![\w-])sk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}", hints=("sk-",), check=mixed
    ),
    _own("anthropic_key", r"(?<![\w-])sk-ant-[A-Za-z0-9_-]{20,}", hints=("sk-ant-",), check=has_letter_and_digit),
    _own("huggingface_token", r"hf_[A-Za-z0-9]{34,}", hints=("hf_",), check=mixed),
    _plugin(JwtTokenDetector, 0, "jwt", hints=("eyj",), tail=_JWT_TAIL),  # its pattern stops before the signature
    # NpmDetector's `//.+/:_authToken=...` backtracks over every "//" of a long line; anchored instead:
    _own(
        "npm_token",
        r"(?<=/):_authToken=\s*([^\s\"'()\\]+)(?![(\\])",
        group=1,
        hints=("_authtoken",),
        check=not_placeholder,
    ),
    _own("npm_token", r"npm_[A-Za-z0-9]{36}", hints=("npm_",)),
    *(_plugin(PypiTokenDetector, i, "pypi_token", hints=("pypi-",)) for i in range(len(PypiTokenDetector.denylist))),
    _plugin(SendGridDetector, 0, "sendgrid_key", hints=("sg.",)),
    _plugin(MailchimpDetector, 0, "mailchimp_key", hints=("-us",), run=True),
    *(
        _plugin(TwilioKeyDetector, i, "twilio_key", hints=(prefix,), run=True, check=has_letter_and_digit)
        for i, prefix in enumerate(("AC", "SK"))
    ),
    # The auth token beside its account SID, as a positional argument: Client("AC...", "<token>"),
    # curl -u AC...:<token>. Alone, 32 hex digits are a checksum.
    _own(
        "twilio_key",
        r"(?:(?<=[\"':])|(?<=,\s))[0-9a-f]{32}(?![0-9A-Za-z])",
        run=True,
        gate=re.compile(r"twilio|account_?sid|(?<![0-9a-z])ac[0-9a-f]{32}(?![0-9a-z])"),
        check=has_letter_and_digit,
        tail=None,
        bounded=False,
    ),
    _plugin(SquareOAuthDetector, 0, "square_token", hints=("sq0csp-",)),
    _own(
        "azure_sas_token",
        r"(?i)(?:[?&;]|\bSharedAccessSignature=)sig=([A-Za-z0-9%+/=]{30,})",
        group=1,
        hints=("sig=",),
        check=has_letter_and_digit,
    ),
    _own(
        "azure_storage_key", r"(?i)\bSharedAccessKey=([A-Za-z0-9+/]{30,}={0,2})", group=1, hints=("sharedaccesskey=",)
    ),
    _own("mailgun_key", r"key-[0-9a-f]{32}", hints=("key-",), check=has_letter_and_digit, tail=None),
    _own(
        "mailgun_key",
        r"(?<![0-9a-zA-Z])[0-9a-f]{32}-[0-9a-f]{8}-[0-9a-f]{8}(?![0-9a-zA-Z-])",
        run=True,
        gate=re.compile(r"mailgun|\bmg[_-]"),
        tail=None,
    ),
    _own("age_secret_key", r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}", hints=("AGE-SECRET-KEY-1",)),
    _own(
        "age_secret_key",
        r"AGE-PLUGIN-[A-Z0-9]+-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{20,}",
        hints=("AGE-PLUGIN-",),
    ),
    _own(
        "vault_token",
        r"hv[sbr]\.[A-Za-z0-9_-]{24,}",
        hints=("hvs.", "hvb.", "hvr."),
        check=has_letter_and_digit,
    ),
    # A DSN's key (and the secret of an old-style one): https://<key>@o1.ingest.sentry.io/2
    _own(
        "sentry_dsn",
        r"(?i)\bhttps?://([0-9a-f]{32}(?::[0-9a-f]{32})?)@[A-Za-z0-9.-]+(?::\d+)?/(?:[\w.-]+/)*\d+\b",
        group=1,
        hints=("://",),
    ),
    _own("sentry_dsn", r"(?i)\bsentry_(?:key|secret)=([0-9a-f]{32})\b", group=1, hints=("sentry_",)),
    _own("shopify_token", r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}", hints=("shpat_", "shpca_", "shppa_", "shpss_")),
    _own("digitalocean_token", r"do[por]_v1_[a-f0-9]{64}", hints=("dop_v1_", "doo_v1_", "dor_v1_")),
    _own("databricks_token", r"dapi[a-f0-9]{32}(?:-\d)?", hints=("dapi",), tail=None, check=has_letter_and_digit),
    _plugin(
        TelegramBotTokenDetector, 0, "telegram_token", hints=(":",), run=True, check=mixed, bounded=False
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
assert all(bool(rule.hints) != bool(rule.gate) for rule in RULES)
HINTED_RULES: tuple[tuple[str, bool, tuple[Rule, ...]], ...] = tuple(
    (hint, hint == hint.lower(), tuple(rule for rule in RULES if hint in rule.hints))
    for hint in dict.fromkeys(h for rule in RULES for h in rule.hints)
)
GATED_RULES = tuple(rule for rule in RULES if rule.gate is not None)
RUN20 = re.compile(r"[A-Za-z0-9+/_-]{20}")
# Which hints a line holds, in one pass: the lower-case ones over the lower-cased line, the rest
# (case matters: "AC", "SK", "AGE-SECRET-KEY-1") over the line itself.
_BY_HINT = {hint: (any_case, hinted) for hint, any_case, hinted in HINTED_RULES}
_ANY_CASE = sorted((h for h in _BY_HINT if h == h.lower()), key=len, reverse=True)
_ANY_CASE_HINTS = re.compile("(" + "|".join(map(re.escape, _ANY_CASE)) + ")")  # longest first
_WITHIN = {h: [other for other in _ANY_CASE if other in h] for h in _ANY_CASE}  # "sk-" in "sk-ant-"
_CASED_HINTS = tuple(h for h in _BY_HINT if h != h.lower())


def token_findings(line: str, low: str, long_run: bool) -> Iterator[tuple[int, int, str]]:
    """(start, end, type) of every token on ``line`` (``low`` is it lower-cased; ``long_run``:
    whether it holds a 20-character token run, which some rules need)."""
    rules: dict[Rule, None] = {}
    present = {h for m in _ANY_CASE_HINTS.finditer(low) for h in _WITHIN[m.group(1)]}
    present.update(h for h in _CASED_HINTS if h in line)
    for hint in present:
        rules.update(dict.fromkeys(r for r in _BY_HINT[hint][1] if long_run or not r.run))
    if long_run:
        rules.update(dict.fromkeys(r for r in GATED_RULES if r.gate and r.gate.search(low)))
    for rule in rules:
        for s, e in rule.find(line):
            yield s, e, rule.type
