"""Judging a value: does it look machine-made, is it a placeholder, a reference, code or a word."""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter

_HEX = re.compile(r"[0-9a-fA-F]+")
_SEPARATORS = re.compile(r"[-_./]")
_WORDS = re.compile(r"[A-Z][a-z]{2,}|[a-z]{3,}")


def entropy(value: str) -> float:
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def _char_class(c: str) -> int:
    return 0 if c.isupper() else 1 if c.islower() else 2 if c.isdigit() else 3


def looks_random(value: str, min_len: int = 20, min_piece: int = 10) -> bool:
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
    return entropy(piece) >= 0.75 * min(math.log2(n), 5.5)


def has_letter_and_digit(value: str) -> bool:
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


# Values that are not secrets whatever they are assigned to.
_NOT_SECRET = re.compile(
    r"""(?ix)
    (?: changeme | change[_-]?(?:me|this|it) | none | null | nil | true | false | yes | no | on | off
      | undefined | redacted | hidden | secret | secrets | password | passwd | token | example
      | dummy | test | testing | todo | tbd | tba | fixme | placeholder | required | optional
      | string | str | bytes | bool | boolean | int | integer | float | number | any | object
      | dict | list | env | default | empty | unset | notset | not[_-]set | n/?a | sample
      | foo | bar | foobar | foobared | bearer | basic | pass | my[_-]?pass | hunter2   # documentation's own
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
CODE_CHARS = frozenset("()[]{}")
DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(?:[.:][A-Za-z_]\w*)+")  # a.b.c, pkg.module:func
IDENTIFIER_WORDS = re.compile(
    r"[A-Z]?[a-z]+(?:[A-Z][a-z]*)+|[a-z][a-z0-9]*(?:_[a-z0-9]+)+|[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+"
)
PLAIN_WORD = re.compile(r"[A-Za-z]+")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PASSWORD_SYMBOLS = frozenset("!#$%&*+=?@^~|")
REGEX_OR_TEMPLATE = re.compile(r"""(?x)
    \(\? | \[\^ | \\[wdsbWDS] | \.[*+] | \[[^\]]*\w-\w[^\]]*\] | \{\d+(?:,\d*)?\}   # a regex
    | <[A-Za-z_|/!][^<>]*> | %[sd]\b | \\[uUx][0-9a-fA-F]                       # a tag, a format, escapes
    | ^[A-Za-z_][\w.]*\[.*\]$                                                  # a type: Optional[Key]
    | \*{3} | (?:\.\.\.|…)$                                                    # masked, truncated
""")


def is_placeholder(value: str) -> bool:
    return len(value) < 4 or bool(_NOT_SECRET.match(value)) or is_prose_name(value)


# Words a made-up sentence has and a passphrase rarely does: `this-will-be-detected-by-a-plugin`.
_STOPWORDS = frozenset({"the", "a", "an", "be", "by", "will", "this", "is", "to", "of", "here", "your", "my", "not"})
_DASHED_WORDS = re.compile(r"[a-z]+(?:[-_][a-z]+){3,}")
_CAMEL_WORDS = re.compile(r"(?:[A-Z][a-z]+){3,}")


def is_prose_name(value: str) -> bool:
    """A sentence written as a name: `this-will-ordinarily-be-detected-by-a-plugin` (two stopwords
    or more), `WillAlsoBeIgnored` (three capitalised words, nothing else)."""
    if _DASHED_WORDS.fullmatch(value):
        return len(_STOPWORDS.intersection(re.split(r"[-_]", value))) >= 2
    return _CAMEL_WORDS.fullmatch(value) is not None and len(value) <= 40


def not_placeholder(value: str) -> bool:
    return not is_placeholder(value)


def mixed(value: str) -> bool:
    """Upper, lower and digits: every real token of these shapes has all three."""
    body = value.split("-", 1)[-1] if value.startswith("sk-") else value
    return any(c.isupper() for c in body) and any(c.islower() for c in body) and any(c.isdigit() for c in body)


# Words a placeholder pads its key's words with: `SECRET_KEY=mysecretkey`, `JWT_SECRET=supersecret`.
_FILLER = (
    "my", "your", "our", "some", "super", "very", "top", "the", "a", "not", "so", "change", "this", "me",
    "here", "dummy", "fake", "sample", "example", "test", "dev", "local", "default", "value", "insecure",
    "please", "replace", "put", "set",
)  # fmt: skip
_SEPARATOR = re.compile(r"[-_. ]")


def echoes_key(value: str, parts: list[str]) -> bool:
    """A placeholder made of its key's own words and filler: `SECRET_KEY=mysecretkey`,
    `api_key: my-api-key`, `SESSION_SECRET=some_session_secret`. One real word more is a
    password (`POSTGRES_PASSWORD=mysecretpassword`), and so are digits (`mytoken123`)."""
    text = _SEPARATOR.sub("", value.lower())
    words = {p for p in parts if len(p) >= 3}
    if not text.isalpha() or len(text) > 64 or not words:
        return False
    vocabulary = sorted(words.union(_FILLER), key=len, reverse=True)
    reach = {0: False}  # position -> whether a key word was used to get there
    for pos in range(len(text)):
        if pos not in reach:
            continue
        for word in vocabulary:
            if text.startswith(word, pos):
                nxt = pos + len(word)
                reach[nxt] = reach.get(nxt, False) or reach[pos] or word in words
    return reach.get(len(text), False)
