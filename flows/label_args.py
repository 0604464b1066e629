"""Text from the command line for ``plora label`` and ``plora annotate``: ``--correction TEXT|@FILE``,
``--since DATE``, ``--kind KIND``. Each mistake is one UsageError line naming the option.

Imported inside the commands (it loads the store's models), not when the CLI starts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pipeline.errors import UsageError
from storage.models import DocumentKind


def correction_argument(text: str) -> str:
    """``--correction TEXT`` or ``@FILE`` (the text read from FILE); ``@@...`` is a literal ``@...``."""
    if text.startswith("@@"):
        return text[1:]
    if not text.startswith("@"):
        return text
    path = Path(text[1:]).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--correction @{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"--correction @{path}: is a folder, not a file") from None
    except UnicodeDecodeError:
        raise UsageError(f"--correction @{path}: not UTF-8 text") from None
    except OSError as e:
        raise UsageError(f"--correction @{path}: {e.strerror}") from None


def parse_since(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--since {text!r}: expected a date like 2025-01-31 (or an ISO date and time)") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_kind(text: str) -> DocumentKind:
    try:
        return DocumentKind(text.strip().lower())
    except ValueError:
        kinds = ", ".join(kind.value for kind in DocumentKind)
        raise UsageError(f"--kind {text!r}: expected one of {kinds}") from None
