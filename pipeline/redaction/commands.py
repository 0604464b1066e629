"""Credentials given as arguments rather than assigned to a key: command lines (`curl -u user:pw`,
`mysql -pPW`, `sshpass -p PW`, `redis-cli -a PW`, `docker login -p PW`), calls (`smtp.login("u",
"pw")`, `auth=("u", "pw")`, `HTTPBasicAuth("u", "pw")`), config directives (`requirepass` and
`masterauth` in redis.conf) and `.pgpass` lines (`host:port:db:user:password`).

Each form runs only on a line that names its command or shape (`LITERALS` feed the prefilter);
the value goes unless it is a placeholder or a reference (`$PASS`, `${PASS}`, `<password>`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pipeline.redaction.values import is_placeholder

_QUOTED_OR_BARE = r"""(?:"([^"\s]+)"|'([^'\s]+)'|([^\s"'`;|&<>()]+))"""


def _form(words: str, pattern: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    return re.compile(words), re.compile(pattern)


# (what the lower-cased line must hold, the value's pattern: its groups 1-3 are the value)
_FORMS = (
    # curl/wget/httpie: -u user:pw, --user=user:pw, -U proxyuser:pw, http -a user:pw
    _form(
        r"\b(?:curl|wget|httpie)\b",
        r"""(?<!\S)(?:-u|-U|--user|--proxy-user|-a|--auth)(?:[ =]+|(?=["']))["']?[^\s:"']*:"""
        r"""(?:([^\s"']+)["']|([^\s"'`;|&<>()]+))""",
    ),
    # mysql -pPW (attached: `-p PW` prompts and takes PW as the database)
    _form(r"\b(?:mysql\w*|mariadb\w*)\b", r"(?<!\S)-p" + _QUOTED_OR_BARE),
    # sshpass -p PW / -pPW
    _form(r"\bsshpass\b", r"\bsshpass\b(?:\s+-[a-oq-z]\S*)*\s+-p\s*" + _QUOTED_OR_BARE),
    # redis-cli -a PW
    _form(r"\bredis-cli\b", r"(?<!\S)-a\s+" + _QUOTED_OR_BARE),
    # docker/podman/helm/nerdctl login -p PW
    _form(r"\b(?:docker|podman|nerdctl|helm|buildah|skopeo)\b.*\blogin\b", r"(?<!\S)-p[ =]+" + _QUOTED_OR_BARE),
    # redis.conf, CONFIG SET: requirepass PW, masterauth PW
    _form(r"\b(?:requirepass|masterauth)\b", r"(?i)\b(?:requirepass|masterauth)[ \t]+" + _QUOTED_OR_BARE),
    # smtp.login("u", "pw"), ftp.login(user, 'pw'), auth=("u", "pw"), HTTPBasicAuth("u", "pw")
    _form(
        r"login\(|auth\s*[=(]|auth\(",
        r"""(?:\.login|\.auth|\b(?:HTTP)?(?:Basic|Digest|Proxy)Auth|\bauth\s*=\s*)\(\s*"""
        r"""(?:"[^"\n]*"|'[^'\n]*'|[\w.\[\]"']+)\s*,\s*(?:"([^"\n]+)"|'([^'\n]+)')""",
    ),
)
LITERALS = (
    "curl",
    "wget",
    "httpie",
    "mysql",
    "mariadb",
    "sshpass",
    "redis-cli",
    "login",
    "requirepass",
    "masterauth",
    "pgpass",
)
# Whether a lower-cased line may hold any of the forms: one search instead of one per form.
_ANY_FORM = re.compile(r"curl|wget|httpie|mysql|mariadb|sshpass|redis-cli|login|requirepass|masterauth|auth")
# The prefilter's shape of a .pgpass line (`:port:db:user:`), cheap to look for anywhere.
PGPASS_SHAPE = re.compile(r":(?:\d{1,5}|\*):[^\s:]+:[^\s:]+:\S")
# hostname:port:database:username:password, a whole line (or quoted, on a line naming .pgpass)
# (anywhere on a line when the host is a host: `db.internal`, `localhost`, `*`, an address)
PGPASS_LINE = re.compile(
    r"(?m)^[ \t]*[A-Za-z0-9._*\[\]-]+:(?:\d{1,5}|\*):[^\s:]+:[^\s:]+:\S"
    r"|(?<![^\s\"'`])(?:[\w-]+\.[\w.-]+|localhost|\*):(?:\d{1,5}|\*):[^\s:]+:[^\s:]+:\S"
)
_PGPASS = re.compile(
    r"""(?:^[ \t]*(?:[A-Za-z0-9._*-]+|\[[0-9A-Fa-f:]+\])|(?<![^\s"'`])(?:[\w-]+\.[\w.-]+|localhost|\*))"""
    r""":(?:\d{1,5}|\*):[^\s:"']+:[^\s:"']+:((?:\\:|[^\s"'`])+)"""
)
_PGPASS_NAMED = re.compile(  # on a line naming .pgpass: any host
    r"""(?<![^\s"'`])(?:[A-Za-z0-9._*-]+|\[[0-9A-Fa-f:]+\]):(?:\d{1,5}|\*):[^\s:"']+:[^\s:"']+:((?:\\:|[^\s"'`])+)"""
)
_HEXISH = re.compile(r"[0-9A-Fa-f:]+")


def command_credentials(line: str, low: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, type) of every credential given as an argument on ``line`` (``low``: it
    lower-cased, same offsets)."""
    forms = _FORMS if _ANY_FORM.search(low) else ()
    for words, pattern in forms:
        if words.search(low) is None:
            continue
        for m in pattern.finditer(line):
            group = next((g for g in range(1, (m.lastindex or 0) + 1) if m.group(g)), None)
            if group is None:
                continue
            value = m.group(group)
            if _is_value(value):
                yield m.start(group), m.end(group), "env_credential"
    named = "pgpass" in low
    if named or (PGPASS_SHAPE.search(line) and PGPASS_LINE.search(line)):
        for m in (_PGPASS_NAMED if named else _PGPASS).finditer(line):
            value = m.group(1)
            if _is_value(value) and not _HEXISH.fullmatch(value):
                yield m.start(1), m.end(1), "env_credential"


def _is_value(value: str) -> bool:
    return not is_placeholder(value) and not value.startswith(("$", "%", "<", "-"))
