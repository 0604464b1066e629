r"""Secret redaction: every text ingest stores goes through `Redactor.redact` first.

Each secret is replaced by `[REDACTED:<type>]` (the names are `SECRET_TYPES`); a `Finding` says
where it was (offsets in the original text, 1-based line) and never carries the value.

How a text is scanned, cheapest first (`redactor`):

1. Private key blocks (PEM, OpenSSH, PGP, SSH2, PuTTY) over the whole text, only when one of
   detect-secrets' `PrivateKeyDetector` markers is in it. The whole block goes, and so does the
   second half of one pasted on its own: body lines up to an END marker (`private_keys`).
2. A prefilter (one pass of a literal trie over the lower-cased text, a few simple shape regexes)
   flags the lines that could hold a secret: a token prefix, a credential word, userinfo in a
   URL, a long base64 run, a long quoted token. No other line is looked at again (`prefilter`).
3. On a flagged line: detect-secrets' regex plugins (their `denylist` patterns with `finditer`,
   for positions; none of its settings / `SecretsCollection` machinery, so no global state) and
   our own token rules, each only if its prefix is on the line (`tokens`); `KEY=value` /
   `key: value` credentials (the value only, unless it is a placeholder, a reference or code;
   `credentials`); credentials given as arguments (`curl -u`, `mysql -p`, `smtp.login(u, pw)`,
   `requirepass`, `.pgpass` lines; `commands`); `Authorization:` headers, session cookies and
   "the password is ..." in prose (`prose`);
   high-entropy strings, only when assigned to a key or right after a credential word
   (`entropy`); base64 blobs that decode to text holding any of these (kubeconfig
   `client-key-data`, Kubernetes `Secret` data, a wrapped token) and URL-encoded runs that do
   (`%22password%22%3A%22...`; `blobs`). Generic findings inside an SSH public key (whole or
   cut short) are dropped: a public key is no secret.
4. `extra_patterns` over the whole text (type `custom`; only the `secret` group if it has one).

Overlapping findings become one replacement, named after the most specific of them (`spans`).
How a value is judged (random or a word, placeholder, reference, code) is `values`. A whole
record (its fields, then the fields derived from them, then the scrub of copies) is `records`,
which also redacts identifiers and paths (`redact_identifier`: a secret in an id becomes
`REDACTED-<type>-<digest>`, the same on every run) and a connector's cursor (`redact_strings`).
Text a person types into plora goes through `redact_text`, under the same `[redaction]` settings.

Only the names in `__all__` are the package's interface; its modules' other names are shared
between its modules only.

What comes from detect-secrets, and why not more. Its token plugins (AWS, Azure storage,
Cloudant, Discord, GitHub, GitLab, IBM Cloud IAM and COS HMAC, JWT, Mailchimp, OpenAI, PyPI,
SendGrid, Slack, SoftLayer, Square, Stripe, Telegram, Twilio) and `PrivateKeyDetector`'s markers
are used as they are: their `denylist` regexes, run with `finditer` (`tokens`, `private_keys`).
Not their `analyze_line`, which returns values without positions and reads detect-secrets' global
settings. Written by us instead, measured on the canaries and lookalikes of
tests/pipeline/test_redaction.py (`python -m bench --only redaction` repeats the comparison):

- `KeywordDetector` (`key = value` after a credential word): its regexes depend on the file type
  and know no placeholder, reference or code. Of the 29 credential canaries it finds 3 when told
  the text is `.md`, `.py` or `.env`, and 10 as `.yaml`, where it also flags 18 lookalikes
  ("see the vault", `getpass.getpass()`, `SecretStr`, `Optional[str] = None`, a secret's name
  `edge-tls`, ...). A person's notes and chats have no file type, and mix all of these.
  `credentials` and `commands` find 29 of 29 and flag none.
- `Base64HighEntropyString` / `HexHighEntropyString`: quoted strings and an entropy limit only;
  they find 1 of the 2 high-entropy canaries and flag a lockfile's `sha512-` integrity hash and
  an MD5 checksum. `entropy` also asks for a credential context and a random shape (not hex, not
  made of words).
- `BasicAuthDetector`'s `://[^{}\s]+:([^{}\s]+)@` is greedy: it takes a password up to the last
  `@` of the line (`mailto://user:pw@example.com?to=x@y`: `pw@example.com?to=x`), and no `#` or
  `@` inside one: `tokens` has a URL rule of its own.
- `NpmDetector`'s `//.+/:_authToken=` backtracks over every `//` of a long line: anchored instead.
- `ArtifactoryDetector`'s `AP[0-9A-F]...` form matches upper-case words (`APACHE2LICENSE`);
  `IPPublicDetector`: a public address is not a secret here.
"""

from __future__ import annotations

import functools
import json
from typing import Protocol

from connectors.records import content_hash
from pipeline.redaction.records import (
    MIN_SCRUB_LENGTH,
    SCRUB_VERSION,
    redact_identifier,
    redact_record,
    redact_strings,
)
from pipeline.redaction.redactor import RULES_VERSION, Redactor
from pipeline.redaction.spans import SECRET_TYPES, Finding, Redacted

__all__ = [
    "MIN_SCRUB_LENGTH",
    "RULES_VERSION",
    "SCRUB_VERSION",
    "SECRET_TYPES",
    "Finding",
    "Redacted",
    "Redactor",
    "redact_identifier",
    "redact_record",
    "redact_strings",
    "redact_text",
    "settings_salt",
]


class RedactionSettings(Protocol):
    """What `redact_text` needs of the `[redaction]` config (pipeline.config.RedactionConfig)."""

    @property
    def enabled(self) -> bool: ...
    @property
    def extra_patterns(self) -> list[str]: ...


def redact_text(text: str, settings: RedactionSettings | None = None) -> Redacted:
    """``text`` redacted as ingest redacts every text, under ``settings`` (the `[redaction]` table;
    None: the defaults). The entry point for text a person types into plora (label notes,
    corrections, imported labels): it goes through the same rules as ingested text."""
    enabled, patterns = (True, ()) if settings is None else (settings.enabled, tuple(settings.extra_patterns))
    return _redactor(enabled, patterns).redact(text)


@functools.lru_cache(maxsize=8)
def _redactor(enabled: bool, patterns: tuple[str, ...]) -> Redactor:
    return Redactor(patterns, enabled=enabled)


def settings_salt(enabled: bool, patterns: list[str]) -> str:
    """What every stored hash includes: changing the rules, the scrub or the redaction settings
    makes the next ingest process every document again."""
    return content_hash(RULES_VERSION, json.dumps({"enabled": enabled, "patterns": patterns, "scrub": SCRUB_VERSION}))
