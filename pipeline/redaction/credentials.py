"""Credentials assigned to a key: `.env`, shell, YAML, INI, JSON, code, CLI flags, XML. A small
lexer finds the key around a credential word, its operator and its value; the value goes unless
it is a placeholder, a reference or code."""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline.redaction.text import trie
from pipeline.redaction.values import (
    CODE_CHARS,
    DOTTED_NAME,
    IDENTIFIER,
    IDENTIFIER_WORDS,
    PASSWORD_SYMBOLS,
    PLAIN_WORD,
    REGEX_OR_TEMPLATE,
    echoes_key,
    has_letter_and_digit,
    is_placeholder,
    looks_random,
)

KEYWORD_LITERALS = (
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
# "token" but not "tokenizer"; "auth", "authorization" but not "author", "authority"; "pass" as the
# end of a word (`DB_PASS`, `dbPass`, `-storepass`), checked again on the whole key (`_is_pass_key`).
GUARDED_KEYWORDS = {"token": r"token(?!i[sz])", "auth": r"auth(?!or(?!i[sz]))", "pass": r"pass(?![a-z])"}
# Matched in the lower-cased line.
SECRET_KEYWORD = re.compile(trie(KEYWORD_LITERALS))
KEYWORD = re.compile("|".join((SECRET_KEYWORD.pattern, *GUARDED_KEYWORDS.values())))

_MAX_VALUE = 4096  # the longest assigned value looked at
_MAX_LOOKBACK = 256  # how far back the start of a key's line is looked for
KEY_CHARS = frozenset(string.ascii_letters + string.digits + "_.-")
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
    (?: :[ \t]*[A-Za-z_][\w.\[\]|, ]*?[ \t]+=(?!=)    # a type annotation, then ` =` (`pw: x=y` is YAML)
      | := | => | =(?![=~]) | :(?!:) )
    [ \t]*""")
_UPPER_KEY = re.compile(r"[A-Z][A-Z0-9_]*")
_INI_VALUE = re.compile(r"[^\s\"'`]+[ \t]*(?:[#;].*)?")


@dataclass(frozen=True)
class _Value:
    start: int
    end: int
    quoted: bool


def assigned_credentials(line: str, keywords: list[re.Match[str]]) -> Iterator[tuple[int, int, str]]:
    last_end = -1
    for km in keywords:
        if km.start() < last_end:
            continue  # a second credential word in the same key: `auth_token`
        start, end = km.start(), km.end()
        while start > 0 and line[start - 1] in KEY_CHARS and km.start() - start < 100:
            start -= 1
        while end < len(line) and line[end] in KEY_CHARS:
            end += 1
        last_end = end
        if start > 0 and line[start - 1] == "\\" and line[start] in "nrt" and start < km.start():
            start += 1  # JSON-escaped text: ...\nDB_PASSWORD=...
        if start > 0 and line[start - 1] not in _KEY_LEFT and not line.startswith(_ESCAPES, start - 2):
            continue  # inside a path or a word: /run/secrets/x, foo@token
        key = line[start:end].lstrip("-")
        flag = len(key) < end - start
        start = end - len(key)
        parts = key_parts(key)
        if not parts or parts[-1] in _NOT_VALUE_KEY or _names_a_secret(parts):
            continue
        low_key = key.lower()
        pass_key = km.group() == "pass"
        if pass_key and not _is_pass_key(low_key, parts):
            continue
        if "csrf" in low_key or "xsrf" in low_key:
            continue  # a form's anti-forgery token, not a credential
        if _NLP_TOKEN_KEY.search(low_key) and not KEYWORD.search(_NLP_TOKEN_KEY.sub("", low_key)):
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
        strength = "strong" if pass_key or SECRET_KEYWORD.search(low_key) else "token" if "token" in low_key else "auth"
        if _is_credential(text, value.quoted, context, strength) and not echoes_key(text, parts):
            aws = _AWS_SECRET_KEY.search(key) and _AWS_SECRET_VALUE.fullmatch(text)
            yield value.start, value.end, "aws_secret_key" if aws else "env_credential"


# Words ending in "pass" that are no password: `bypass: true`, `compass=...`.
_PASS_WORDS = frozenset(
    {"bypass", "compass", "surpass", "trespass", "overpass", "underpass", "encompass", "impass", "multipass"}
)


def _is_pass_key(low_key: str, parts: list[str]) -> bool:
    """`DB_PASS`, `db_pass`, `dbPass`, `smtp-pass`, `pass`, `storepass`, `$dbpass`: a password."""
    if "pass" in parts:
        return True
    word = parts[-1] if parts else low_key
    return word.endswith("pass") and word not in _PASS_WORDS


# Keys that name a secret held elsewhere, as Helm charts do: `existingSecret: db-creds`,
# `passwordKey: postgres-password`, `existingSecretPasswordKey`, `passwordSecret: pg-auth`.
_NAMED_KEY_OF = frozenset({"password", "passwords", "pass", "token", "user", "username", "secret"})
_NAMED_SECRET_OF = frozenset({"password", "passwords", "credentials", "credential", "tls", "cert", "certificate"})


def _names_a_secret(parts: list[str]) -> bool:
    if "existing" in parts:
        return True
    if len(parts) >= 2 and parts[-1] == "key" and parts[-2] in _NAMED_KEY_OF and parts[-2] != "secret":
        return True
    return len(parts) >= 2 and parts[-1] == "secret" and bool(_NAMED_SECRET_OF.intersection(parts[:-1]))


def key_parts(key: str) -> list[str]:
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
    if is_placeholder(value):
        return False
    if any(c.isspace() for c in value):
        # A passphrase in a `.env` line; anywhere else it is prose ("password: see the vault").
        return quoted and context == "env"
    if not quoted and CODE_CHARS.intersection(value):
        return False  # an expression: `token = get_token()`
    if DOTTED_NAME.fullmatch(value) or REGEX_OR_TEMPLATE.search(value):
        return False  # `settings.SECRET_KEY`, a hostname, r"(?:token)\w+", "<EOT>", "sk-..."
    if strength == "auth":
        return looks_random(value, 12)  # not `auth: oidc`, `auth_method: client_secret_basic`
    if strength == "token" and not (
        has_letter_and_digit(value) or PASSWORD_SYMBOLS.intersection(value) or looks_random(value, 16)
    ):
        return False  # a kind of token, not a credential: `TOKEN_COMMENT: "comment"`, `token: Tensor`
    if PLAIN_WORD.fullmatch(value) and len(value) < 6:
        return False
    if not quoted and context != "env":
        if IDENTIFIER_WORDS.fullmatch(value):
            return False  # a type or a variable: `api_key: SecretStr`, `token = access_token`
        if context == "ini":
            return has_letter_and_digit(value) or bool(PASSWORD_SYMBOLS.intersection(value))
        if context == "other":
            # Code or prose: a name there is a reference (`secret=client_secret2`), so a random
            # string, or something no identifier looks like: letters, digits and symbols.
            if IDENTIFIER.fullmatch(value):
                return looks_random(value, 12)
            return has_letter_and_digit(value) or bool(PASSWORD_SYMBOLS.intersection(value))
    return True
