"""Issue 18's secrets, each tested as a family: every format written several ways, several random
values each (the seeded generator of bench/secret_families.py, which the redaction benchmark runs
at a larger size), lookalike families that must survive byte for byte, a private key pasted across
chat messages, and secrets in identifiers and paths."""

from __future__ import annotations

import base64
from collections import Counter

import pytest

from bench.secret_families import LOOKALIKE_FAMILIES, SECRET_FAMILIES, lookalikes, secrets
from connectors.conversation_text import render_conversation
from connectors.records import Message, Record
from pipeline.redaction import Redacted, Redactor, redact_identifier, redact_record, redact_strings, redact_text
from tests.pipeline.test_redaction import B64, chars, pem

CASES = list(secrets(n=6, seed=18))
LOOKALIKE_CASES = list(lookalikes(n=6, seed=18))


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


def test_every_family_has_several_templates_and_variants() -> None:
    per_family = Counter(case.family for case in CASES)
    assert set(per_family) == set(SECRET_FAMILIES)
    assert all(len(templates) >= 3 for _, templates in SECRET_FAMILIES.values())
    assert min(per_family.values()) >= 18
    assert {family for family, _ in LOOKALIKE_CASES} == set(LOOKALIKE_FAMILIES)
    assert len({case.secret for case in CASES}) == len(CASES)  # fresh values for every variant


@pytest.mark.parametrize("family", list(SECRET_FAMILIES))
def test_every_variant_of_a_family_is_redacted_exactly(redactor: Redactor, family: str) -> None:
    wrong = [
        (case.text, result.text)
        for case in CASES
        if case.family == family and (result := redactor.redact(case.text)).text != case.expected
    ]
    assert wrong == []


@pytest.mark.parametrize("family", list(LOOKALIKE_FAMILIES))
def test_every_variant_of_a_lookalike_family_survives(redactor: Redactor, family: str) -> None:
    damaged = [
        (text, [(f.type, text[f.start : f.end]) for f in result.findings])
        for name, text in LOOKALIKE_CASES
        if name == family and (result := redactor.redact(text)).findings
    ]
    assert damaged == []


def _chat(*contents: str) -> Record:
    messages = tuple(
        Message("user" if i % 2 == 0 else "assistant", text, position=i, external_id=f"m{i}")
        for i, text in enumerate(contents)
    )
    return Record("c1", "conversation", "", render_conversation(messages), "h", messages=messages)


KEYS = {
    "rsa": pem("RSA PRIVATE KEY", lines=8, seed=120),
    "openssh": pem("OPENSSH PRIVATE KEY", lines=8, seed=121),
    "pkcs8": pem("PRIVATE KEY", lines=8, seed=122),
    "encrypted": pem("ENCRYPTED PRIVATE KEY", lines=8, seed=123),
}


def _body_lines(key: str) -> list[str]:
    return [line for line in key.splitlines() if "-----" not in line and len(line) >= 8]


@pytest.mark.parametrize("name", list(KEYS))
@pytest.mark.parametrize("cut", [2, 5, 8, 9, 10])
def test_a_private_key_split_across_two_messages_is_redacted_in_both(name: str, cut: int) -> None:
    """The first message holds BEGIN and the start of the body, the next one the rest and END
    (cut 10: the END line alone), each with words around it."""
    lines = KEYS[name].split("\n")
    first, second = "\n".join(lines[:cut]), "\n".join(lines[cut:])
    record = _chat(f"here is the key:\n{first}", "go on", f"{second}\nthat's all of it")
    redacted, spans = redact_record(record, Redactor())
    stored = "\n".join([redacted.content, redacted.title, *(m.content for m in redacted.messages)])
    assert [line for line in _body_lines(KEYS[name]) if line in stored] == []
    assert "-----END" not in stored and "-----BEGIN" not in stored
    assert redacted.messages[2].content.endswith("\nthat's all of it")
    assert {s.secret_type for s in spans} == {"private_key"}


def test_a_private_key_split_across_three_messages_and_in_a_json_field() -> None:
    lines = KEYS["rsa"].split("\n")
    record = _chat(
        "key part 1:\n" + "\n".join(lines[:3]),
        "\n".join(lines[3:6]),  # the middle: body lines only
        "\n".join(lines[6:]) + "\ndone",
    )
    redacted, _ = redact_record(record, Redactor())
    stored = "\n".join(m.content for m in redacted.messages)
    assert [line for line in _body_lines(KEYS["rsa"]) if line in stored] == []
    escaped = KEYS["pkcs8"].replace("\n", "\\n")
    tail = escaped[len(escaped) // 2 :]
    text = f'{{"private_key": "{tail}", "client_email": "x@y"}}'
    result = Redactor().redact(text)
    assert result.text == '{"private_key": "[REDACTED:private_key]", "client_email": "x@y"}'


def test_the_end_of_a_key_is_not_confused_with_prose() -> None:
    prose = "The file must end with -----END RSA PRIVATE KEY----- or ssh refuses it."
    assert Redactor().redact(prose) == Redacted(prose, ())
    record = _chat("what goes last in a key file?", prose)
    redacted, spans = redact_record(record, Redactor())
    assert redacted.messages[1].content == prose and spans == []


def test_a_putty_key_split_across_two_messages() -> None:
    header = "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: alex@laptop\nPublic-Lines: 2\n"
    public = chars(64, B64, 130) + "\n" + chars(20, B64, 131) + "\n"
    private = "Private-Lines: 1\n" + chars(44, B64, 132) + "\nPrivate-MAC: " + "ab12" * 16
    redacted, _ = redact_record(_chat(header + public, private + "\nthat was the rest"), Redactor())
    assert chars(44, B64, 132) not in redacted.content
    assert redacted.messages[1].content == "[REDACTED:private_key]\nthat was the rest"


# --- identifiers and paths --------------------------------------------------------------------


def test_identifiers_are_redacted_stably_and_distinctly() -> None:
    redactor = Redactor()
    token_a, token_b = "ghp_" + chars(36, seed=140), "ghp_" + chars(36, seed=141)
    a = redact_identifier(f"file:secrets/{token_a}.txt", redactor)
    assert token_a not in a and a.startswith("file:secrets/REDACTED-github_token-") and a.endswith(".txt")
    assert a == redact_identifier(f"file:secrets/{token_a}.txt", Redactor())  # the same on every run
    assert a != redact_identifier(f"file:secrets/{token_b}.txt", redactor)  # two secrets, two ids
    slack = "xoxb-" + "2431864570123-5129876543210-" + chars(24, seed=142)
    note = redact_identifier(f"inbox/token-{slack}.md", redactor)
    assert slack not in note and note.startswith("inbox/token-REDACTED-slack_token-") and note.endswith(".md")
    for plain in ("notes/edge.md", "file:src/app.py", "commit:" + "9fceb02d" * 5, "c1", None, ""):
        assert redact_identifier(plain, redactor) == plain
    cursor = {"blobs": {f"secrets/{token_a}.txt": "9fceb02d" * 5}, "head": "ab" * 20, "n": 3}
    cleaned = redact_strings(cursor, redactor)
    assert token_a not in repr(cleaned) and cleaned["head"] == "ab" * 20 and cleaned["n"] == 3


def test_a_record_s_identifiers_are_redacted_with_its_text() -> None:
    token = "ghp_" + chars(36, seed=143)
    record = Record(
        f"file:secrets/{token}.txt",
        "code",
        f"secrets/{token}.txt",
        "print('hi')\n",
        "h",
        metadata={"path": f"secrets/{token}.txt", "language": "text"},
    )
    redacted, _ = redact_record(record, Redactor())
    assert token not in repr(redacted)
    assert redacted.external_id == "file:" + redacted.metadata["path"]  # the path and the id agree
    assert redacted.title == "secrets/[REDACTED:github_token].txt"


def test_redact_text_is_ingest_s_redaction_under_the_config() -> None:
    class Settings:
        def __init__(self, enabled: bool) -> None:
            self.enabled = enabled
            self.extra_patterns = [r"badge (?P<secret>\d{6})"]

    text = "DB_PASS=Jn7+kR3tYu and badge 771234"
    assert redact_text(text).text == "DB_PASS=[REDACTED:env_credential] and badge 771234"
    assert redact_text(text, Settings(True)).text == "DB_PASS=[REDACTED:env_credential] and badge [REDACTED:custom]"
    assert redact_text(text, Settings(False)).text == text


def test_ssh_public_keys_survive_cut_anywhere() -> None:
    redactor = Redactor()
    for seed in range(20):
        blob = base64.b64encode(
            b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00 " + bytes((seed * 7 + i) % 256 for i in range(32))
        )
        text = blob.decode()
        for cut in range(20, len(text), 7):
            for line in (f"the key is ssh-ed25519 {text[:cut]}", f"authorized_keys: {text[:cut]}"):
                assert redactor.redact(line).findings == (), line
