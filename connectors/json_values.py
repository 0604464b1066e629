"""Reading loose JSON values from exports: a field that may be missing, of the wrong type or odd.

Export formats change without notice and damaged files are common, so connectors never index a
parsed value blindly: each helper returns the value when it has the expected type, else an empty
default (``{}``, ``[]``, None).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any


def as_object(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else ``{}``."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` when it is a JSON array, else ``[]``."""
    return value if isinstance(value, list) else []


def as_str(value: Any) -> str | None:
    """``value`` when it is a non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def from_epoch(value: Any) -> datetime | None:
    """A UTC datetime from epoch seconds (a number or numeric string); None if absent or invalid."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return from_iso(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


_FRACTION = re.compile(r"\.(\d+)")


def from_iso(value: Any) -> datetime | None:
    """A datetime from ISO 8601 ("Z" and any number of fraction digits); naive means UTC."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text, count=1)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    """``value`` as ISO 8601 text, None for None."""
    return value.isoformat() if value is not None else None
