"""Which reader handles which source ``type``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

from connectors.records import ItemStream
from connectors.settings import SOURCE_TYPES

Reader = Callable[[Any, Mapping[str, Any] | None], ItemStream]


def reader_for(source_type: str) -> Reader:
    if source_type not in SOURCE_TYPES:
        raise ValueError(f"unknown source type {source_type!r}")
    return import_module(f"connectors.{source_type}").read
