"""What a scan finds: `Finding`s (where a secret was, never its value), the `Redacted` result, the
secret types, and how overlapping finds become one replacement."""

from __future__ import annotations

import re
from dataclasses import dataclass

MARKER = re.compile(r"\[REDACTED:[a-z0-9_]+\]")  # what a secret becomes


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
GENERIC_PRIORITY = {
    "high_entropy": 0,
    "env_credential": 1,
    "url_credentials": 2,
    "auth_header": 2,
    "custom": 3,
    "jwt": 4,
}
SPECIFIC = 5  # every other type: a vendor's token, a private key

SECRET_TYPES: frozenset[str] = frozenset(
    {
        *GENERIC_PRIORITY,
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
        "azure_sas_token",
        "mailgun_key",
        "age_secret_key",
        "vault_token",
        "sentry_dsn",
        "shopify_token",
        "digitalocean_token",
        "databricks_token",
        "session_cookie",
    }
)


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    type: str


def priority(kind: str) -> int:
    return GENERIC_PRIORITY.get(kind, SPECIFIC)


def merge(spans: list[Span]) -> list[Span]:
    """One span per group of overlapping ones, named after its most specific member (the longest
    of those on a tie)."""
    merged: list[Span] = []
    best: tuple[int, int] = (0, 0)
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        rank = (priority(span.type), span.end - span.start)
        if merged and span.start < merged[-1].end:
            last = merged[-1]
            kind = span.type if rank > best else last.type
            best = max(best, rank)
            merged[-1] = Span(last.start, max(last.end, span.end), kind)
        else:
            merged.append(span)
            best = rank
    return merged
