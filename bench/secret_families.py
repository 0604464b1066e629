"""Seeded families of secrets and of lookalikes, for the redaction benchmark and its tests.

A *family* is one format written the ways people write it: several templates (a config line, a
command, a call, prose), each filled with fresh random values per variant. ``secrets(n, seed)``
gives ``n`` variants of every secret family: ``(family, type, before, secret, after)``, where the
redacted text must be exactly ``before + "[REDACTED:<type>]" + after``. ``lookalikes(n, seed)``
gives ``n`` variants of every lookalike family: texts that only look like secrets and must come
out byte for byte. The same seed gives the same texts on every machine.

Nothing here is a real credential: every value is drawn from ``random.Random``.
"""

from __future__ import annotations

import base64
import json
import random
import string
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass

ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
SYMBOLS = "!#$%^*+=?@~"


@dataclass(frozen=True)
class Case:
    family: str
    type: str
    before: str
    secret: str
    after: str = ""

    @property
    def text(self) -> str:
        return self.before + self.secret + self.after

    @property
    def expected(self) -> str:
        return f"{self.before}[REDACTED:{self.type}]{self.after}"


class _Draw:
    """Random values of the shapes the templates need."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd

    def chars(self, n: int, alphabet: str = ALNUM) -> str:
        while True:
            value = "".join(self.rnd.choice(alphabet) for _ in range(n))
            if alphabet is not ALNUM or (
                any(c.isupper() for c in value) and any(c.islower() for c in value) and any(c.isdigit() for c in value)
            ):
                return value

    def hex(self, n: int) -> str:
        while True:
            value = self.chars(n, HEX)
            if any(c.isalpha() for c in value) and any(c.isdigit() for c in value):
                return value

    def password(self, symbols: str = SYMBOLS, n: int | None = None) -> str:
        """Letters, digits and a symbol or two, never a word: `k7#Qm2vX9p`."""
        n = n or self.rnd.randint(10, 16)
        body = list(self.chars(n - 2))
        for _ in range(2):
            body.insert(self.rnd.randrange(1, len(body)), self.rnd.choice(symbols))
        return "".join(body)

    def word(self) -> str:
        return self.rnd.choice(["alex", "sam", "deploy", "svc-ingest", "admin", "backup", "ci", "ops"])

    def host(self) -> str:
        return self.rnd.choice(["db.internal", "10.20.4.11", "pg-primary", "mysql.prod.example.com", "localhost"])

    def pick(self, *options: str) -> str:
        return self.rnd.choice(options)


Template = Callable[[_Draw], tuple[str, str, str]]  # -> (before, secret, after)


def _sas(d: _Draw) -> str:
    raw = base64.b64encode(d.rnd.randbytes(32)).decode()
    return urllib.parse.quote(raw, safe="")


def _sentry_host(d: _Draw) -> str:
    return d.pick(f"o{d.chars(6, string.digits)}.ingest.sentry.io", "o1.ingest.us.sentry.io", "sentry.example.com")


def _session_cookie(d: _Draw) -> str:
    payload = {"user_id": d.rnd.randint(1, 9999), "api_token": "ghp_" + d.chars(36), "csrf": d.hex(16)}
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    return f"{body}.{d.chars(6)}.{d.chars(27, ALNUM + '-_')}"


def _ssh_blob(d: _Draw, kind: str = "ssh-ed25519") -> str:
    name = kind.encode()
    return base64.b64encode(len(name).to_bytes(4, "big") + name + b"\x00\x00\x00 " + d.rnd.randbytes(32)).decode()


SECRET_FAMILIES: dict[str, tuple[str, list[Template]]] = {
    "azure-sas-sig": (
        "azure_sas_token",
        [
            lambda d: (
                f"https://{d.word().replace('-', '')}logs.blob.core.windows.net/exports/day.csv?sv=2022-11-02&ss=b"
                "&srt=o&sp=r&se=2026-01-01T00:00:00Z&st=2025-01-01T00:00:00Z&spr=https&sig=",
                _sas(d),
                "",
            ),
            lambda d: (
                "BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&ss=bf&sp=rl"
                "&se=2026-02-01T00:00:00Z&sig=",
                _sas(d),
                "\n",
            ),
            lambda d: (
                'az storage blob download --sas-token "',
                "sv=2021-06-08&sr=c&sp=r&sig=" + _sas(d),
                '" -c logs',
            ),  # a whole SAS token assigned to a key: all of it goes
        ],
    ),
    "twilio-auth-token-positional": (
        "twilio_key",
        [
            lambda d: ("from twilio.rest import Client\nclient = Client(account_sid, '", d.hex(32), "')\n"),
            lambda d: ('twilio_client = Client(os.environ["TWILIO_ACCOUNT_SID"], "', d.hex(32), '")'),
            lambda d: ("curl -X POST https://api.twilio.com/2010-04-01/Accounts.json -u $SID:", d.hex(32), ""),
        ],
    ),
    "mailgun-key": (
        "mailgun_key",
        [
            lambda d: ('requests.post(MAILGUN_URL, auth=("api", "', "key-" + d.hex(32), '"), data=msg)'),
            lambda d: ("curl -s --user 'api:", "key-" + d.hex(32), "' https://api.mailgun.net/v3/mg.example.com"),
            lambda d: ("the mailgun key is ", "key-" + d.hex(32), ", rotate it"),
            lambda d: ("MAILGUN_API_KEY=", "key-" + d.hex(32), "\n"),
        ],
    ),
    "url-password-with-hash": (
        "url_credentials",
        [
            lambda d: ("DATABASE_URL=postgres://app:", d.password("#!$"), f"@{d.host()}:5432/app"),
            lambda d: ("mysql://root:", d.password("#?"), "@localhost/shop"),
            lambda d: ("amqp://guest:", d.password("#"), "@rabbit:5672/%2f"),
            lambda d: ("redis://:", d.password("#!"), "@cache:6379/0"),
            lambda d: ("git clone https://alex:", d.password("#"), "@git.example.com/netops.git"),
        ],
    ),
    "age-secret-key": (
        "age_secret_key",
        [
            lambda d: (
                f"# created: 2026-01-0{d.rnd.randint(1, 9)}T10:00:00Z\n# public key: age1{d.chars(58, BECH32)}\n",
                "AGE-SECRET-KEY-1" + d.chars(58, BECH32).upper(),
                "\n",
            ),
            lambda d: ("export SOPS_AGE_KEY=", "AGE-SECRET-KEY-1" + d.chars(58, BECH32).upper(), "\n"),
            lambda d: ("my age identity: ", "AGE-SECRET-KEY-1" + d.chars(58, BECH32).upper(), " (keep it offline)"),
        ],
    ),
    "vault-token": (
        "vault_token",
        [
            lambda d: ("export VAULT_TOKEN=", "hvs." + d.chars(90, ALNUM + "_-"), "\n"),
            lambda d: ("vault login ", "hvs." + d.chars(24), ""),
            lambda d: ("X-Vault-Token: ", "hvb." + d.chars(120, ALNUM + "_-"), "\r\n"),
            lambda d: ("recovery: ", "hvr." + d.chars(24), " (one use)"),
        ],
    ),
    "sentry-dsn": (
        "sentry_dsn",
        [
            lambda d: ("SENTRY_DSN=https://", d.hex(32), f"@{_sentry_host(d)}/{d.chars(7, string.digits)}\n"),
            lambda d: ('Sentry.init({ dsn: "https://', d.hex(32), f'@{_sentry_host(d)}/42" }});'),
            lambda d: ("dsn = 'https://", f"{d.hex(32)}:{d.hex(32)}", "@sentry.io/123'"),
            lambda d: ("X-Sentry-Auth: Sentry sentry_version=7, sentry_key=", d.hex(32), ", sentry_client=raven"),
        ],
    ),
    "shopify-token": (
        "shopify_token",
        [
            lambda d: ("X-Shopify-Access-Token: ", "shpat_" + d.hex(32), "\r\n"),
            lambda d: ("SHOPIFY_ACCESS_TOKEN=", d.pick("shpat_", "shpca_", "shppa_") + d.hex(32), "\n"),
            lambda d: ('session = shopify.Session(shop, "2024-01", "', "shpat_" + d.hex(32), '")'),
            lambda d: ("webhook secret ", "shpss_" + d.hex(32), " from the app settings"),
        ],
    ),
    "digitalocean-token": (
        "digitalocean_token",
        [
            lambda d: ("doctl auth init -t ", "dop_v1_" + d.hex(64), ""),
            lambda d: ("DIGITALOCEAN_TOKEN=", "dop_v1_" + d.hex(64), "\n"),
            lambda d: ("curl -H 'Authorization: Bearer ", "dop_v1_" + d.hex(64), "' https://api.digitalocean.com/v2/"),
            lambda d: ("oauth: ", "doo_v1_" + d.hex(64), " (expires in 30 days)"),
        ],
    ),
    "databricks-token": (
        "databricks_token",
        [
            lambda d: ("DATABRICKS_TOKEN=", "dapi" + d.hex(32), "\n"),
            lambda d: ('[DEFAULT]\nhost = https://adb-1234.azuredatabricks.net\ntoken = "', "dapi" + d.hex(32), '"\n'),
            lambda d: ("use ", "dapi" + d.hex(32) + "-2", " for the jobs API"),
        ],
    ),
    "curl-user": (
        "env_credential",
        [
            lambda d: (f"curl -u {d.word()}:", d.password("!#%^*+=@~"), " https://api.example.com/v1/items"),
            lambda d: (f'curl --user "{d.word()}:', d.password("!#%^*+=@~"), '" https://registry.example.com/v2/'),
            lambda d: (f"curl -s -u '{d.word()}:", d.password("!#%^*+=@~"), "' -X GET http://10.0.0.5:9200/_cat"),
            lambda d: (f"curl -U {d.word()}:", d.password("!#%^*+=~"), " -x proxy.internal:3128 https://example.com"),
        ],
    ),
    "mysql-p": (
        "env_credential",
        [
            lambda d: ("mysql -u root -p", d.password("!#%^*+=@~"), f" -h {d.host()} app"),
            lambda d: ("mysqldump -uroot -p'", d.password("!#%^*+=@~"), "' shop > shop.sql"),
            lambda d: ('mysqladmin -u root -p"', d.password("!#%^*+=@~"), '" status'),
            lambda d: ("mariadb -u app -p", d.password("!#%^*+=@~"), " -e 'select 1'"),
        ],
    ),
    "sshpass-p": (
        "env_credential",
        [
            lambda d: ("sshpass -p '", d.password("!#%^*+=@~"), "' ssh deploy@10.0.0.5 uptime"),
            lambda d: ("sshpass -p", d.password("!#%^*+=@~"), " scp backup.tar.gz ops@backup:"),
            lambda d: ('sshpass -v -p "', d.password("!#%^*+=@~"), '" ssh -o StrictHostKeyChecking=no admin@sw1'),
        ],
    ),
    "login-call": (
        "env_credential",
        [
            lambda d: ('server.login("alerts@example.com", "', d.password(), '")'),
            lambda d: ("smtp.login(user, '", d.password(), "')"),
            lambda d: ('ftp.login("backup", "', d.password(), '")'),
            lambda d: ("imap.login('me@example.com', \"", d.password(), '")'),
            lambda d: ('requests.get(url, auth=("alex", "', d.password(), '"), timeout=10)'),
            lambda d: ('session.auth = HTTPBasicAuth("svc", "', d.password(), '")'),
        ],
    ),
    "redis-password": (
        "env_credential",
        [
            lambda d: ("bind 127.0.0.1\nport 6379\nrequirepass ", d.password("!#%^*+=@~"), "\n"),
            lambda d: ("masterauth ", d.password("!#%^*+=@~"), "\n"),
            lambda d: ('redis-cli CONFIG SET requirepass "', d.password("!#%^*+=@~"), '"'),
            lambda d: ("redis-cli -h cache -a ", d.password("!#%^*+=@~"), " info"),
        ],
    ),
    "pgpass-line": (
        "env_credential",
        [
            lambda d: (f"{d.host()}:5432:app:{d.word()}:", d.password("!#%^*+=@~"), "\n"),
            lambda d: ("*:*:*:postgres:", d.password("!#%^*+=@~"), "\n"),
            lambda d: ("localhost:5432:*:app:", d.password("!#%^*+=@~"), ""),
            lambda d: (f'echo "db:5432:app:{d.word()}:', d.password("!#%^*+=@~"), '" >> ~/.pgpass'),
        ],
    ),
    "pass-keys": (
        "env_credential",
        [
            lambda d: ("DB_PASS=", d.password(), "\n"),
            lambda d: ('SMTP_PASS="', d.password(), '"\n'),
            lambda d: ("database:\n  db_pass: ", d.password("!#%^*+=@~"), "\n"),
            lambda d: ("$dbpass = '", d.password(), "';"),
            lambda d: ("MYSQL_ROOT_PASS=", d.password(), "\n"),
            lambda d: ('{"dbPass": "', d.password(), '"}'),
            lambda d: ("keytool -genkey -alias app -storepass ", d.password("!#%^*+=@~"), " -keystore app.jks"),
        ],
    ),
    "url-encoded-json-password": (
        "env_credential",
        [
            lambda d: (
                f"POST /login data=%7B%22username%22%3A%22{d.word()}%22%2C%22password%22%3A%22",
                urllib.parse.quote(d.password("!#$%^*+=@~"), safe=""),
                "%22%7D",
            ),
            lambda d: (
                "https://app.example.com/api?payload=%7B%22api_key%22%3A%22",
                urllib.parse.quote(d.chars(32), safe=""),
                "%22%7D&v=2",
            ),
            lambda d: (
                "body=%7B%22user%22%3A%22a%22%2C%22secret%22%3A%20%22",
                urllib.parse.quote(d.password(), safe=""),
                "%22%7D",
            ),
        ],
    ),
    "session-cookie": (
        "session_cookie",
        [
            lambda d: ("Cookie: session=", _session_cookie(d), "\r\n"),
            lambda d: ("cookie: _ga=GA1.2.1234.1700000000; session=", _session_cookie(d), "; theme=dark"),
            lambda d: ("Set-Cookie: sessionid=", d.chars(32, ALNUM), "; Path=/; HttpOnly; Secure"),
            lambda d: ("curl -b 'session=", _session_cookie(d), "' https://app.example.com/api/me"),
            lambda d: ('-H "Cookie: connect.sid=', "s%3A" + d.chars(32) + "." + d.chars(43, ALNUM), '"'),
        ],
    ),
}


def _ssh_half(d: _Draw) -> str:
    blob = _ssh_blob(d, d.pick("ssh-ed25519", "ssh-rsa"))
    cut = d.rnd.randint(24, len(blob) - 8)
    kind = "ssh-ed25519" if blob.startswith("AAAAC3") else "ssh-rsa"
    return d.pick(
        f"{kind} {blob[:cut]}",
        f"authorized_keys: {kind} {blob[:cut]}",
        f"the deploy key is {kind} {blob[:cut]}",
        f'public_key: "{kind} {blob[:cut]}"',
    )


LOOKALIKE_FAMILIES: dict[str, list[Callable[[_Draw], str]]] = {
    "ssh-public-key-cut-in-half": [_ssh_half],
    "helm-secret-names": [
        lambda d: (
            f"auth:\n  existingSecret: {d.word()}-db\n  secretKeys:\n    adminPasswordKey: postgres-password\n"
            "    userPasswordKey: password\n"
        ),
        lambda d: f"existingSecret: {d.word()}-credentials\nexistingSecretPasswordKey: password",
        lambda d: "passwordKey: redis-password\nusernameKey: username",
        lambda d: f"tlsSecret: {d.word()}-tls\npasswordSecret: {d.word()}-auth",
    ],
    "key-echo-placeholders": [
        lambda d: d.pick("SECRET_KEY=mysecretkey", "SECRET_KEY=my-secret-key", "secret_key: 'my_secret_key'"),
        lambda d: d.pick("JWT_SECRET=supersecret", "JWT_SECRET=your-jwt-secret", "APP_SECRET=your_app_secret"),
        lambda d: d.pick("API_KEY=my-api-key", "api_key: yourapikey", "SESSION_SECRET=some-session-secret"),
        lambda d: d.pick("AUTH_TOKEN=mytoken", "DB_PASSWORD=mypassword", "ADMIN_PASSWORD=changethis"),
    ],
    "age-public-keys": [lambda d: f"recipients: age1{d.chars(58, BECH32)}"],
    "checksums-near-vendor-words": [
        lambda d: f"twilio-9.0.{d.rnd.randint(0, 9)}.tar.gz md5 {d.hex(32)}",
        lambda d: f"mailgun: build {d.hex(40)} deployed; key-value store warmed",
        lambda d: f"dapi-server sha256 {d.hex(64)}",
    ],
    "urls-without-passwords": [
        lambda d: "http://localhost:3000/?next=me@example.com#top",
        lambda d: f"https://{d.host()}:8443/#/login?user={d.word()}",
        lambda d: "https://www.google.com/search?q=%22password%22+reset+%22mysql%22",
    ],
    "pgpass-lookalikes": [
        lambda d: "root:x:0:0:root:/root:/bin/bash",
        lambda d: ":".join(d.hex(2) for _ in range(6)),
        lambda d: "2001:db8:0:0:0:0:2:1",
        lambda d: "db.internal:5432:app:alex",
    ],
    "commands-without-passwords": [
        lambda d: "mysql -h db -P 3306 -u app -p app",
        lambda d: 'curl -u "$API_USER:$API_TOKEN" https://api.example.com',
        lambda d: "curl -u alex https://api.example.com/v1",
        lambda d: "sshpass -e ssh deploy@host; sshpass -f ~/.pw scp a b:",
        lambda d: 'server.login(user, password)\nsmtp.login(os.environ["U"], os.environ["P"])',
        lambda d: "redis-cli -h cache -a $REDIS_PASSWORD ping",
    ],
    "pass-words": [
        lambda d: "bypass: true\ncompass=north\npass_rate: 0.95\n    pass\n",
        lambda d: "DB_PASS=\nDB_PASS=${DB_PASS}\nSMTP_PASS=<smtp-password>\n",
    ],
    "cookies-without-sessions": [
        lambda d: "Set-Cookie: session=; Max-Age=0; Path=/",
        lambda d: f"Cookie: theme=dark; lang=en; csrftoken={d.chars(32)}",
        lambda d: "The session cookie is HttpOnly and SameSite=Strict.",
    ],
}


def secrets(n: int = 5, seed: int = 18) -> Iterator[Case]:
    """``n`` variants of every template of every secret family."""
    rnd = random.Random(seed)
    draw = _Draw(rnd)
    for family, (kind, templates) in SECRET_FAMILIES.items():
        for template in templates:
            for _ in range(n):
                before, secret, after = template(draw)
                yield Case(family, kind, before, secret, after)


def lookalikes(n: int = 5, seed: int = 18) -> Iterator[tuple[str, str]]:
    """``n`` variants of every template of every lookalike family: (family, text)."""
    rnd = random.Random(seed + 1)
    draw = _Draw(rnd)
    for family, templates in LOOKALIKE_FAMILIES.items():
        for template in templates:
            for _ in range(n):
                yield family, template(draw)
