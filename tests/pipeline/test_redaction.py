"""pipeline.redaction: every supported secret goes, everything that only looks like one stays.

Secret values are made up and built here from a seeded generator (so this file holds no
token-shaped literal a scanner would flag); each has the shape its detector expects.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import string

import pytest

from pipeline.redaction import SECRET_TYPES, Finding, Redacted, Redactor

ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits
LOWER_HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"


def chars(n: int, alphabet: str = ALNUM, seed: int = 0) -> str:
    """A fixed random-looking string (the same on every run)."""
    rnd = random.Random(f"{seed}:{n}:{alphabet}")
    while True:
        value = "".join(rnd.choice(alphabet) for _ in range(n))
        if alphabet != ALNUM or (
            any(c.isupper() for c in value) and any(c.islower() for c in value) and any(c.isdigit() for c in value)
        ):
            return value


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def make_jwt(seed: int = 0) -> str:
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps({"sub": "svc-ingest", "iat": 1760000000 + seed, "scope": "read"}).encode())
    return f"{header}.{payload}.{chars(43, URLSAFE, seed)}"


def pem(label: str, lines: int = 6, seed: int = 0) -> str:
    body = "\n".join(chars(64, B64, seed + i) for i in range(lines)) + "\n" + chars(20, B64, seed) + "=="
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----"


GITHUB = "ghp_" + chars(36, seed=1)
JWT = make_jwt()
SECRET_KEY_40 = chars(40, B64, seed=2)


@dataclasses.dataclass(frozen=True)
class Canary:
    id: str
    type: str
    secret: str
    before: str
    after: str = ""

    @property
    def text(self) -> str:
        return self.before + self.secret + self.after


CANARIES = [
    # Cloud and API tokens, in chats, commit messages, code and config.
    Canary(
        "aws-access-key",
        "aws_access_key",
        "AKIA" + chars(16, UPPER_DIGITS, 3),
        "fix(deploy): drop the hardcoded key ",
        " from terraform.tfvars\n\nIt was rotated already.",
    ),
    Canary(
        "aws-access-key-docs-example",
        "aws_access_key",
        "AKIA" + "IOSFODNN7" + "EXAMPLE",
        "[default]\naws_access_key_id = ",
        "\nregion = eu-central-1\n",
    ),
    Canary(
        "aws-secret-key-ini",
        "aws_secret_key",
        SECRET_KEY_40,
        "[default]\naws_access_key_id = AKIA...\naws_secret_access_key = ",
        "\n",
    ),
    Canary(
        "aws-secret-key-quoted",
        "aws_secret_key",
        chars(40, B64, seed=4),
        'session = boto3.Session(aws_secret_access_key="',
        '")',
    ),
    Canary(
        "github-classic",
        "github_token",
        GITHUB,
        "can you check why CI fails? I exported ",
        " in the runner env and it still 401s",
    ),
    Canary(
        "github-fine-grained",
        "github_token",
        "github_pat_" + chars(22, seed=5) + "_" + chars(59, seed=6),
        "git remote set-url origin https://x-access:",
        "@github.com/acme/netops.git",
    ),
    Canary("gitlab", "gitlab_token", "glpat-" + chars(20, URLSAFE, 7), "```yaml\nvariables:\n  GL_CI: ", "\n```"),
    Canary(
        "slack-bot",
        "slack_token",
        "xoxb-" + "2431" + "86457" + "0123-5129" + "87654" + "3210-" + chars(24, seed=8),
        "const slack = new WebClient('",
        "');",
    ),
    Canary(
        "slack-webhook",
        "slack_webhook",
        "https://hooks.slack.com/services/T0"
        + chars(8, UPPER_DIGITS, 9)
        + "/B0"
        + chars(9, UPPER_DIGITS, 10)
        + "/"
        + chars(24, seed=11),
        'WEBHOOK = "',
        '"  # posts to #netops-alerts',
    ),
    Canary("stripe-live", "stripe_key", "sk_" + "live_" + chars(99, seed=12), 'Stripe::setApiKey("', '");'),
    Canary("stripe-restricted", "stripe_key", "rk_" + "live_" + chars(24, seed=13), "using ", " for the refund job."),
    Canary(
        "google-api-key",
        "google_api_key",
        "AIza" + chars(35, URLSAFE, 14),
        '<script src="https://maps.googleapis.com/maps/api/js?key=',
        '&callback=init"></script>',
    ),
    Canary(
        "google-client-secret",
        "google_client_secret",
        "GOCSPX-" + chars(28, URLSAFE, 15),
        '{"installed": {"client_id": "1234.apps.example.com", "client_se' + 'cret": "',
        '"}}',
    ),
    Canary(
        "openai-project", "openai_key", "sk-" + "proj-" + chars(48, URLSAFE, 16) + chars(20, seed=17), "OPENAI=", "\n"
    ),
    Canary(
        "openai-legacy",
        "openai_key",
        "sk-" + chars(48, seed=18),
        "oh no, I pasted ",
        " into the public notebook, rotating now.",
    ),
    Canary(
        "anthropic",
        "anthropic_key",
        "sk-" + "ant-api03-" + chars(93, URLSAFE, 19) + "AA",
        "client = Anthropic(api_key='",
        "')",
    ),
    Canary(
        "huggingface",
        "huggingface_token",
        "hf_" + chars(34, seed=20),
        "huggingface-cli login --token ",
        " --add-to-git-credential",
    ),
    Canary("jwt-in-chat", "jwt", JWT, "the service returns ", ", then the gateway rejects it. Why?"),
    Canary("npm-token", "npm_token", "npm_" + chars(36, seed=21), "publish with ", " from the vault."),
    Canary("npmrc", "npm_token", "npm_" + chars(36, seed=22), "//registry.npmjs.org/:_authToken=", ""),
    Canary(
        "pypi",
        "pypi_token",
        "pypi-AgEIcHlwaS5vcmc" + chars(80, URLSAFE, 23),
        "[pypi]\n  username = __token__\n  pass" + "word = ",
        "\n",
    ),
    Canary(
        "sendgrid",
        "sendgrid_key",
        "SG." + chars(22, URLSAFE, 24) + "." + chars(43, URLSAFE, 25),
        "mail relay configured with ",
        " yesterday",
    ),
    Canary("mailchimp", "mailchimp_key", chars(32, LOWER_HEX, 26) + "-us14", "MC list sync uses ", " (prod)"),
    Canary("twilio", "twilio_key", "SK" + chars(32, LOWER_HEX, 27), "Twilio API key SID ", " belongs to ops."),
    Canary("square", "square_token", "sq0csp-" + chars(43, URLSAFE, 28), "square app: ", ""),
    Canary(
        "discord",
        "discord_token",
        "M" + chars(23, seed=29) + "." + chars(6, seed=30) + "." + chars(27, seed=31),
        "bot.run('",
        "')",
    ),
    Canary(
        "telegram",
        "telegram_token",
        "5" + chars(9, "0123456789", 32) + ":" + chars(35, seed=33),
        "curl https://api.telegram.org/bot",
        "/getMe",
    ),
    Canary(
        "azure-storage",
        "azure_storage_key",
        chars(86, B64, 34) + "==",
        "DefaultEndpointsProtocol=https;AccountName=edgelogs;AccountKey=",
        ";EndpointSuffix=core.windows.net",
    ),
    Canary(
        "cloudant-url",
        "cloudant_key",
        chars(64, LOWER_HEX, 35),
        "COUCH = 'https://edge-acct:",
        "@edge-acct.cloudant.com'",
    ),
    Canary("ibm-cloud-iam", "ibm_cloud_iam_key", chars(44, URLSAFE, 36), "ibm_cloud_iam_api_key: ", "\n"),
    Canary(
        "softlayer",
        "softlayer_key",
        chars(64, string.ascii_lowercase + string.digits, 37),
        "softlayer_api_key = ",
        "\n",
    ),
    Canary("ibm-cos-hmac", "ibm_cos_hmac_key", chars(48, LOWER_HEX, 38), "ibm_cos_hmac_secret_access_key: ", "\n"),
    # Private key blocks, whole.
    Canary(
        "pem-rsa",
        "private_key",
        pem("RSA PRIVATE KEY", seed=40),
        "Here is the key from the old bastion:\n\n",
        "\n\nplease don't keep it around.",
    ),
    Canary("pem-openssh", "private_key", pem("OPENSSH PRIVATE KEY", seed=41), "$ cat ~/.ssh/id_ed25519\n", "\n$ "),
    Canary("pem-ec", "private_key", pem("EC PRIVATE KEY", 3, seed=42), "```\n", "\n```"),
    Canary("pem-encrypted", "private_key", pem("ENCRYPTED PRIVATE KEY", seed=43), "tls:\n  key: |\n", "\n"),
    Canary(
        "pem-pkcs8-json",
        "private_key",
        pem("PRIVATE KEY", seed=44).replace("\n", "\\n"),
        '{"type": "service_account", "project_id": "edge", "private_key": "',
        '\\n", "client_email": "x@y"}',
    ),
    Canary("pem-pgp", "private_key", pem("PGP PRIVATE KEY BLOCK", seed=45), "", "\n"),
    Canary(
        "pem-indented",
        "private_key",
        pem("PRIVATE KEY", seed=46).replace("\n", "\n   "),
        "   For reference, the old staging key:\n\n   ```\n   ",
        "\n   ```\n",
    ),
    Canary(
        "pem-cut-short",
        "private_key",
        pem("RSA PRIVATE KEY", seed=47).rsplit("\n", 2)[0],
        "pasted the first lines by mistake:\n",
        "\n\nsorry, ignore that",
    ),
    Canary(
        "ssh2-encrypted",
        "private_key",
        pem("SSH2 ENCRYPTED PRIVATE KEY", seed=48)
        .replace("-----", "----")
        .replace("KEY----", "KEY ----")
        .replace("----BEGIN", "---- BEGIN")
        .replace("----END", "---- END"),
        "",
        "\n",
    ),
    Canary(
        "putty",
        "private_key",
        "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: alex@laptop\nPublic-Lines: 2\n"
        + chars(64, B64, 49)
        + "\n"
        + chars(20, B64, 50)
        + "\nPrivate-Lines: 1\n"
        + chars(44, B64, 51)
        + "\nPrivate-MAC: "
        + chars(64, LOWER_HEX, 52),
        "",
        "\n",
    ),
    # Credentials assigned to a key: the value goes, the key stays.
    Canary(
        "dotenv",
        "env_credential",
        "hunter2-" + chars(10, seed=50),
        "DB_HOST=db.internal\nDB_PASSWORD=",
        "\nDB_PORT=5432\n",
    ),
    Canary("dotenv-plain-word", "env_credential", "correcthorsebattery", "ADMIN_PASSWORD=", "\n"),
    Canary("shell-export", "env_credential", chars(24, seed=51), 'export CDN_API_TOKEN="', '"\ndirenv allow\n'),
    Canary("docker-env", "env_credential", "mysecretpassword", "docker run -e POSTGRES_PASSWORD=", " -d postgres:16"),
    Canary(
        "yaml-password", "env_credential", "Tr0ub4dor&3", "database:\n  user: app\n  password: ", "\n  port: 5432\n"
    ),
    Canary("yaml-quoted", "env_credential", "s3cr3t-" + chars(8, seed=52), "smtp:\n  password: '", "'\n"),
    Canary("json-api-key", "env_credential", chars(32, LOWER_HEX, 53), '{"region": "eu", "api_key": "', '"}'),
    Canary(
        "python-kwarg",
        "env_credential",
        "pa55-" + chars(12, seed=54),
        'conn = psycopg.connect(host="db", password="',
        '", dbname="app")',
    ),
    Canary("typed-default", "env_credential", "dev-" + chars(16, seed=55), '    client_secret: str = "', '"\n'),
    Canary("cli-flag", "env_credential", "N0tS0s3cret!", "mysql -u root --password=", " -h db.internal"),
    Canary("cli-flag-space", "env_credential", chars(20, seed=56), "vault login --token ", ""),
    Canary("properties", "env_credential", "Pr0d-" + chars(10, seed=57), "spring.datasource.password=", "\n"),
    Canary(
        "xml",
        "env_credential",
        "M4ven-" + chars(10, seed=58),
        "<server><id>nexus</id><password>",
        "</password></server>",
    ),
    Canary(
        "kubeconfig-token", "env_credential", chars(60, seed=59), "users:\n- name: admin\n  user:\n    token: ", "\n"
    ),
    Canary("chat-password", "env_credential", "Hx7!pq2Lw", "ok the wifi password: ", " (guest network)"),
    Canary("prose-password", "env_credential", "Tr0mb0ne-42", "fyi the staging db password is ", ", rotate it Friday"),
    Canary("netrc", "env_credential", "n3trc-" + chars(8, seed=64), "machine api.example.com login alex password ", ""),
    Canary("ini", "env_credential", "hunter2x", "[client]\nuser = app\npassword = ", "\n"),
    Canary("connection-string", "env_credential", "Str0ng!Pass", "Server=db;User Id=sa;Password=", ";Encrypt=true"),
    Canary(
        "json-escaped-dotenv",
        "env_credential",
        chars(20, seed=65),
        '{"role": "user", "content": "my .env:\\nDB_USER=app\\nDB_PASSWORD=',
        '\\nDB_PORT=5432"}',
    ),
    Canary(
        "k8s-secret-data",
        "env_credential",
        base64.b64encode(b"hunter2-prod").decode(),
        "apiVersion: v1\nkind: Secret\ndata:\n  password: ",
        "\n",
    ),
    # URLs with credentials: the password part only.
    Canary("postgres-url", "url_credentials", "s3cr3tPa55", "DATABASE_URL=postgres://app:", "@db.internal:5432/app"),
    Canary("redis-no-user", "url_credentials", "r3d1s-" + chars(8, seed=60), "redis://:", "@cache:6379/0"),
    Canary(
        "git-url-in-prose",
        "url_credentials",
        "hunter2go",
        "clone it with https://alex:",
        "@git.example.com/netops.git please",
    ),
    # Headers.
    Canary(
        "bearer",
        "auth_header",
        chars(40, URLSAFE, 61),
        "curl -H 'Authorization: Bearer ",
        "' https://api.cdn.example.com/v1/services",
    ),
    Canary(
        "basic", "auth_header", base64.b64encode(b"admin:pa55word").decode(), "Authorization: Basic ", "\r\nHost: x\r\n"
    ),
    # High entropy, only in an assignment or right after a credential word.
    Canary("quoted-assignment", "high_entropy", chars(40, B64, 62), 'SIGNING_MATERIAL = "', '"\n'),
    Canary("after-keyword", "high_entropy", chars(22, seed=63), "the staging token is ", ", don't share it."),
    # Issue 18: formats that were missed, one canary each (tests/pipeline/test_redaction_families.py
    # tests each as a family of variants).
    Canary(
        "azure-sas",
        "azure_sas_token",
        chars(43, B64, 100).replace("+", "%2B").replace("/", "%2F") + "%3D",
        "https://edgelogs.blob.core.windows.net/exports/day.csv?sv=2022-11-02&ss=b&srt=o&sp=r"
        "&se=2026-01-01T00:00:00Z&spr=https&sig=",
        "",
    ),
    Canary(
        "twilio-auth-token",
        "twilio_key",
        chars(32, LOWER_HEX, 101),
        "client = Client(account_sid, '",
        "')  # twilio",
    ),
    Canary(
        "mailgun",
        "mailgun_key",
        "key-" + chars(32, LOWER_HEX, 102),
        "curl -s --user 'api:",
        "' https://api.mailgun.net/v3",
    ),
    Canary("url-password-hash", "url_credentials", "Xq7#pL2m!vR9", "postgres://app:", "@db.internal:5432/app"),
    Canary(
        "age",
        "age_secret_key",
        "AGE-SECRET-KEY-1" + chars(58, "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 103),
        "# created: 2026-01-01T10:00:00Z\n",
        "\n",
    ),
    Canary("vault", "vault_token", "hvs." + chars(90, URLSAFE, 104), "export VAULT_TOKEN=", "\n"),
    Canary(
        "sentry-dsn", "sentry_dsn", chars(32, LOWER_HEX, 105), "SENTRY_DSN=https://", "@o4505.ingest.sentry.io/4506\n"
    ),
    Canary("shopify", "shopify_token", "shpat_" + chars(32, LOWER_HEX, 106), "X-Shopify-Access-Token: ", "\r\n"),
    Canary("digitalocean", "digitalocean_token", "dop_v1_" + chars(64, LOWER_HEX, 107), "doctl auth init -t ", ""),
    Canary("databricks", "databricks_token", "dapi" + chars(32, LOWER_HEX, 108), "DATABRICKS_TOKEN=", "\n"),
    Canary("curl-user", "env_credential", "Kp4!vT9qWz2", "curl -u deploy:", " https://api.example.com/v1/items"),
    Canary("mysql-p", "env_credential", "Rt5#mQ8zLp1", "mysqldump -uroot -p'", "' shop > shop.sql"),
    Canary("sshpass", "env_credential", "Vb3!nX7kPq", "sshpass -p '", "' ssh deploy@10.0.0.5 uptime"),
    Canary("smtp-login", "env_credential", "Mz6$wE2rTy", 'server.login("alerts@example.com", "', '")'),
    Canary("redis-requirepass", "env_credential", "Hq9^sD4fGj", "bind 127.0.0.1\nrequirepass ", "\n"),
    Canary("pgpass", "env_credential", "Lw2*cV8bNm", "db.internal:5432:app:alex:", "\n"),
    Canary("db-pass", "env_credential", "Jn7+kR3tYu", "database:\n  db_pass: ", "\n"),
    Canary(
        "url-encoded-json",
        "env_credential",
        "Gh5%21pZ9xCv",
        "POST /login data=%7B%22username%22%3A%22alex%22%2C%22password%22%3A%22",
        "%22%7D",
    ),
    Canary(
        "session-cookie",
        "session_cookie",
        base64.urlsafe_b64encode(json.dumps({"user": 7, "api_token": "ghp_" + chars(36, seed=109)}).encode())
        .decode()
        .rstrip("=")
        + "."
        + chars(6, seed=110)
        + "."
        + chars(27, URLSAFE, 111),
        "Cookie: _ga=GA1.2.1234.1700000000; session=",
        "; theme=dark",
    ),
    # Base64-wrapped secrets: the whole blob, named after what it hides.
    Canary(
        "kubeconfig-client-key-data",
        "private_key",
        base64.b64encode(pem("RSA PRIVATE KEY", seed=70).encode()).decode(),
        "users:\n- name: admin\n  user:\n    client-certificate-data: LS0tCg==\n    client-key-data: ",
        "\n",
    ),
    Canary(
        "b64-jwt",
        "jwt",
        base64.b64encode(make_jwt(1).encode()).decode(),
        "kind: Secret\ndata:\n  service-account: ",
        "\n",
    ),
    Canary(
        "b64-github",
        "github_token",
        base64.b64encode(("ghp_" + chars(36, seed=71)).encode()).decode(),
        "kind: Secret\ndata:\n  GH: ",
        "\n",
    ),
    Canary(
        "b64-url",
        "url_credentials",
        base64.b64encode(b"postgres://app:Zq9-secretpw@db:5432/app").decode(),
        "data:\n  DATABASE_URL: ",
        "\n",
    ),
]


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


@pytest.mark.parametrize("canary", CANARIES, ids=[c.id for c in CANARIES])
def test_canary_is_redacted(redactor: Redactor, canary: Canary) -> None:
    result = redactor.redact(canary.text)

    assert canary.secret not in result.text
    assert result.text == f"{canary.before}[REDACTED:{canary.type}]{canary.after}"
    start = len(canary.before)
    line = canary.before.count("\n") + 1
    assert result.findings == (Finding(canary.type, start, start + len(canary.secret), line),)


def test_every_type_has_a_canary() -> None:
    assert {c.type for c in CANARIES} | {"custom"} == SECRET_TYPES


def test_findings_never_carry_the_value(redactor: Redactor) -> None:
    assert [f.name for f in dataclasses.fields(Finding)] == ["type", "start", "end", "line"]
    for canary in CANARIES:
        result = redactor.redact(canary.text)
        assert canary.secret not in repr(result.findings)


@pytest.mark.parametrize("canary", CANARIES, ids=[c.id for c in CANARIES])
def test_redacting_twice_finds_nothing_new(redactor: Redactor, canary: Canary) -> None:
    once = redactor.redact(canary.text)
    twice = redactor.redact(once.text)
    assert twice == Redacted(once.text, ())


LOOKALIKES = {
    "git-sha": "Fixed in 3f2a9c1e5b7d8f0a1c2e4b6d8f0a2c4e6b8d0f1a, reverted by 9c1e5b7 and a1c2e4b6d8f0.",
    "git-log": "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3 Merge pull request #412 from acme/auth-retry\n"
    "e3b0c44 fix(auth): retry token refresh on 503\n",
    "uuid": "request 550e8400-e29b-41d4-a716-446655440000 failed; trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
    "uuid-assigned": 'request_id = "123e4567-e89b-12d3-a456-426614174000"',
    "sha256-yaml": "sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "md5-checksum": 'checksum = "d41d8cd98f00b204e9800998ecf8427e"',
    "sha256sum-output": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  bird-2.14.tar.gz",
    "docker-digest": "image: nginx@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31",
    "lockfile-integrity": '"integrity": "sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNK'
    'HfuwvY7kxvUR62LkFH0h4Tn4zBA=="',
    "go-sum": "golang.org/x/net v0.17.0 h1:pVaXccu2ozPjCXewfr1S7xoNMa3G0ZzS8r5z7Qfkz5I=",
    "data-uri": '<img alt="dot" src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4'
    '2mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==">',
    "ssh-public-key": "ssh-ed25519 "
    + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00 " + bytes(range(7, 39))).decode()
    + " alex@laptop",
    "certificate": "-----BEGIN CERTIFICATE-----\n"
    + chars(64, B64, 80)
    + "\n"
    + chars(40, B64, 81)
    + "==\n-----END CERTIFICATE-----",
    "arn": "arn:aws:iam::123456789012:role/edge-deploy and arn:aws:s3:::edge-logs-eu-central-1/*",
    "prose-rotate": "We rotate the API token monthly and keep the password in the vault.",
    "prose-see-vault": "password: see the vault",
    "prose-secret": "The secret is to restart the daemon before the health check gives up.",
    "prose-token-bucket": "The token bucket refills at 100/s; auth fails closed when the IdP is down.",
    "author": "author: Jane Doe\nauthority: https://login.example.com/tenant\nauthors: [alex, sam]",
    "dotenv-example": "DB_PASSWORD=\nAPI_TOKEN=changeme\nSECRET_KEY=${SECRET_KEY}\nGITHUB_TOKEN=<your-token>\n"
    "ADMIN_PASSWORD=xxx\nREDIS_PASSWORD=****\nAUTH_ENABLED=true\nTOKEN_TTL=3600\n"
    "SMTP_PASSWORD=$SMTP_PASSWORD\nNPM_TOKEN={{ npm_token }}\nPASSWORD_FILE=/run/secrets/db\n",
    "code-references": 'token = os.environ["CDN_API_TOKEN"]\npassword = getpass.getpass()\n'
    "client = Client(token=token, secret=self.secret)\nif not api_key:\n"
    '    headers = {"Authorization": f"Bearer {token}"}\n',
    "type-annotations": "class Settings(BaseModel):\n    api_key: SecretStr\n    token: str | None = None\n"
    "    password: Optional[str] = None\n\ninterface Login { password: string; }\n",
    "url-without-password": "ssh://git@github.com/acme/netops.git https://alex@example.com/x "
    "postgres://app:${DB_PASSWORD}@db/app https://user:<password>@host/",
    "k8s-no-secrets": (
        "apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n"
        "      serviceAccountName: cert-expiry\n      automountServiceAccountToken: false\n"
        "      imagePullSecrets:\n        - name: regcred\n      containers:\n        - name: app\n"
        "          env:\n            - name: DB_PASSWORD\n              valueFrom:\n"
        "                secretKeyRef:\n                  name: db-credentials\n                  key: password\n"
        "      volumes:\n        - name: tls\n          secret:\n            secretName: edge-tls\n"
    ),
    "bgp": "AS64512 peers with AS13335 at 185.1.176.12 (DE-CIX); community 64512:100 tags "
    "routes from edge1.fra1.example.net, prefix 2001:db8:1::/48 is blackholed.",
    "identifiers": "test_redaction_handles_multiple_secrets_on_one_line and AbstractSingletonProxyFactoryBean "
    "and task-runner-service-deployment-blue-green and secrets.token_urlsafe(32)",
    "markers": "GITHUB_TOKEN=[REDACTED:github_token] and postgres://app:[REDACTED:url_credentials]@db/app",
    "pem-header-in-prose": "The file must start with -----BEGIN RSA PRIVATE KEY----- or ssh refuses it.",
    "language-model-tokens": 'tokenizer = AutoTokenizer.from_pretrained("mistralai/Mixtral-8x7B-Instruct-v0.1")\n'
    '    pad_token="[PAD]",\n    eos_token: "<|endoftext|>"\nmax_new_tokens=512\n'
    "special tokens: model-specific ones like <mask_1>\n"
    '@auto_docstring(checkpoint="lkhl/VideoLLaMA3-2B-Image-HF")\n',
    "lexer-tokens": "TOKEN_COMMENT: \"comment\",\nToken:   '#dddddd',\natom_to_token: Tensor\n"
    'TOKEN = r"[a-zA-Z_][a-zA-Z0-9_-]*"\ntoken.info = "escape"\n',
    "code-kwargs": "    pad_token=pad_token,\n    password=None,\n    secret=secret_value2,\n"
    "def _format(tokens: _AccessPath) -> str:\nRSAPrivateKeyWithSerialization = RSAPrivateKey\n",
    "prose-password-words": "the password is expired\npassword was reset yesterday\nreset your password today\n"
    "password hashing uses sha256 and bcrypt\nuse the --password flag, not the URL\n",
    # Issue 18's false positives.
    "ssh-public-key-cut": "authorized_keys: ssh-ed25519 "
    + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00 " + bytes(range(40, 72))).decode()[:40],
    "helm-secret-names": "auth:\n  existingSecret: pg-credentials\n  secretKeys:\n"
    "    adminPasswordKey: postgres-password\n    userPasswordKey: password\npasswordKey: redis-password\n",
    "key-echo-placeholders": "SECRET_KEY=mysecretkey\nJWT_SECRET=supersecret\nAPI_KEY=my-api-key\n",
    "oauth-config": "token_endpoint_auth_method: client_secret_basic\n"
    'token_url: "https://idp.example.com/oauth/token"\n'
    'auth_method: oidc\n"token_type": "Bearer"\n',
}


@pytest.mark.parametrize("text", LOOKALIKES.values(), ids=LOOKALIKES.keys())
def test_lookalike_survives(redactor: Redactor, text: str) -> None:
    assert redactor.redact(text) == Redacted(text, ())


SRE_NOTES = """\
# Postmortem: CDN cache collapse, 2026-08-14

## Summary
Between 09:12 and 09:58 UTC the cache hit ratio on the edge fell from 94% to 31% after a
purge by surrogate key matched far more objects than intended. Origin (10.20.4.11, 10.20.4.12)
took the full load and p99 latency rose to 2.4 s. No data was lost; no secrets were exposed.

## Timeline
- 09:12 `cdn_purge.py --key product` run from the runbook; the key was a prefix of 4711 others.
- 09:14 alert `EdgeCacheHitRatioLow` fired for fra1 and ams2; on-call acked at 09:16.
- 09:31 rate limiter on origin (token bucket, 500 rps) started shedding; auth service was healthy.
- 09:58 hit ratio back above 85%.

## What went well
The runbook said where the API token lives (the password manager, loaded by direnv), so nobody
pasted it into the incident channel. Rotating the token afterwards took five minutes.

## Follow-ups
| Owner | Action | Due |
|-------|--------|-----|
| Alex  | Make surrogate keys exact-match only (commit 8c1f0a2) | Aug 21 |
| Sam   | Alert on purge volume, not just hit ratio             | Aug 28 |

```python
def purge(keys: list[str], token: str | None = None) -> None:
    token = token or os.environ["CDN_API_TOKEN"]
    for key in keys:
        response = session.post(f"{API}/services/{SERVICE}/purge/keys",
                                json={"surrogate_keys": [key]},
                                headers={"Authorization": f"Bearer {token}"}, timeout=30)
        response.raise_for_status()
        log.info("purged %s (status %s, id %s)", key, response.status_code, response.json()["id"])
```

```yaml
groups:
  - name: edge
    rules:
      - alert: EdgeCacheHitRatioLow
        expr: sum(rate(cdn_cache_hits_total[5m])) / sum(rate(cdn_requests_total[5m])) < 0.8
        for: 10m
        labels: {severity: page, team: edge}
        annotations:
          summary: "Cache hit ratio {{ $value | humanizePercentage }} on {{ $labels.pop }}"
          runbook_url: https://wiki.example.com/runbooks/cdn-purge-and-cache-hit-drop
```

```
protocol bgp upstream_as13335 {
    local 185.1.176.12 as 64512;
    neighbor 185.1.176.1 as 13335;
    password "{{ bgp_md5_secret }}";
    ipv4 { import filter from_upstream; export filter to_upstream; };
}
```

$ kubectl -n edge get pods -o wide
NAME                          READY   STATUS    RESTARTS   AGE   IP            NODE
cert-expiry-28791520-x2k4p    0/1     Completed 0          3h    10.42.1.17    edge-w1
purger-7d9f8b6c5-qv8zt        1/1     Running   2          14d   10.42.2.33    edge-w2

$ git log --oneline -3
8c1f0a2 fix(purge): exact-match surrogate keys
e3b0c44 docs(runbook): where the CDN token lives
5d41402 alerts: page on purge volume

Checksums: bird-2.14.tar.gz sha256 8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4,
image registry.example.com/edge/purger@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae.
The session cookie is HttpOnly and SameSite=Strict; CSRF tokens rotate per request.
Ask in #netops if the password reset flow for the wiki breaks again; the secret to a calm
on-call is writing things down.
"""


def test_no_false_positives_in_sre_notes(redactor: Redactor) -> None:
    result = redactor.redact(SRE_NOTES)
    assert [(f.type, SRE_NOTES[f.start : f.end]) for f in result.findings] == []
    assert result.text == SRE_NOTES


def test_disabled_redactor_returns_text_unchanged() -> None:
    text = "\n".join(c.text for c in CANARIES)
    assert Redactor(enabled=False).redact(text) == Redacted(text, ())


def test_invalid_extra_pattern_names_its_index() -> None:
    with pytest.raises(ValueError, match=r"extra_patterns\[1\].*corp-\[.*(unterminated|missing)"):
        Redactor(["ok-[0-9]+", "corp-[0-9a-f{32}"])


def test_extra_patterns_are_custom_findings() -> None:
    corp = "corp-" + chars(32, LOWER_HEX, 90)
    pin = chars(8, "0123456789", 91)
    redactor = Redactor([r"corp-[0-9a-f]{32}", r"badge pin (?P<secret>\d{8})"])
    text = f"use {corp} for the proxy\nbadge pin {pin} at the door"
    result = redactor.redact(text)
    assert result.text == "use [REDACTED:custom] for the proxy\nbadge pin [REDACTED:custom] at the door"
    assert [(f.type, text[f.start : f.end], f.line) for f in result.findings] == [
        ("custom", corp, 1),
        ("custom", pin, 2),
    ]


def test_several_secrets_on_one_line() -> None:
    key_id = "AKIA" + chars(16, UPPER_DIGITS, 92)
    url_pw = "pw-" + chars(10, seed=93)
    text = f"AWS_ACCESS_KEY_ID={key_id} AWS_SECRET_ACCESS_KEY={SECRET_KEY_40} GH={GITHUB} db=mysql://root:{url_pw}@db/x"
    result = Redactor().redact(text)
    assert result.text == (
        "AWS_ACCESS_KEY_ID=[REDACTED:aws_access_key] "
        "AWS_SECRET_ACCESS_KEY=[REDACTED:aws_secret_key] "
        "GH=[REDACTED:github_token] db=mysql://root:[REDACTED:url_credentials]@db/x"
    )
    assert [text[f.start : f.end] for f in result.findings] == [key_id, SECRET_KEY_40, GITHUB, url_pw]


@pytest.mark.parametrize(
    ("text", "secret", "kind"),
    [
        # A vendor token assigned to a credential key: env_credential and github_token overlap.
        (f"GITHUB_TOKEN={GITHUB}\n", GITHUB, "github_token"),
        # A JWT as a kubeconfig token: env_credential, high entropy and jwt.
        (f"    token: {JWT}\n", JWT, "jwt"),
        # A token as the password of a URL: url_credentials and github_token.
        (f"https://x-access-token:{GITHUB}@github.com/acme/netops", GITHUB, "github_token"),
        # A quoted AWS secret: detect-secrets' AWS rule, env_credential and high entropy.
        (f'aws_secret_access_key = "{SECRET_KEY_40}"', SECRET_KEY_40, "aws_secret_key"),
        # A bearer token that is a JWT.
        (f"Authorization: Bearer {JWT}", JWT, "jwt"),
    ],
)
def test_overlapping_findings_make_one_replacement_named_by_the_most_specific(
    text: str, secret: str, kind: str
) -> None:
    result = Redactor().redact(text)
    assert result.text == text.replace(secret, f"[REDACTED:{kind}]")
    assert [(f.type, text[f.start : f.end]) for f in result.findings] == [(kind, secret)]


def test_offsets_and_lines_in_a_long_text_with_crlf_and_non_ascii() -> None:
    # "İ" lower-cases to two characters: offsets must still point into the original text.
    text = (
        ("İstanbul PoP notes — Grüße\r\n" * 3) + f"token for the bot: {GITHUB}\r\n" + ("ok\r\n" * 5) + f"JWT {JWT} end"
    )
    result = Redactor().redact(text)
    assert [(f.type, text[f.start : f.end], f.line) for f in result.findings] == [
        ("github_token", GITHUB, 4),
        ("jwt", JWT, 10),
    ]
    assert result.text == text.replace(GITHUB, "[REDACTED:github_token]").replace(JWT, "[REDACTED:jwt]")


def test_all_canaries_in_one_document() -> None:
    text = "\n\n".join(c.text for c in CANARIES)
    result = Redactor().redact(text)
    assert [f.type for f in result.findings] == [c.type for c in CANARIES]
    for canary in CANARIES:
        assert canary.secret not in result.text
    assert {f.type for f in result.findings} <= SECRET_TYPES
