"""Typed settings of each source type, as written in plora.toml's ``[[sources]]`` tables.

Paths arrive already resolved (``~`` and relative-to-home) by pipeline.config, which validates
with ``context={"home": Path}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

SourceName = Annotated[str, Field(pattern=r"^[a-z0-9_-]+$", min_length=1, max_length=64)]


class SourceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: SourceName
    path: Path

    @field_validator("path", mode="before")
    @classmethod
    def _resolve_path(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str | Path):
            return value
        if "\x00" in str(value):
            raise ValueError("path contains a NUL byte")
        if not str(value).strip():
            raise ValueError("empty; give the source's file or folder (an empty path would mean the home itself)")
        path = Path(value).expanduser()
        home = (info.context or {}).get("home")
        if not path.is_absolute() and home is not None:
            path = Path(home) / path
        return path


class ChatGPTSource(SourceSettings):
    type: Literal["chatgpt"]


class ClaudeSource(SourceSettings):
    type: Literal["claude"]


class JsonlSource(SourceSettings):
    type: Literal["jsonl"]


class MarkdownSource(SourceSettings):
    type: Literal["markdown"]
    include: list[str] = ["**/*.md"]
    exclude: list[str] = []


class GitSource(SourceSettings):
    type: Literal["git"]
    authors: list[str] = []
    include: list[str] = ["**/*"]
    exclude: list[str] = []
    max_file_kb: int = Field(default=256, gt=0)
    code: bool = True
    commits: bool = True


Source = ChatGPTSource | ClaudeSource | JsonlSource | MarkdownSource | GitSource
AnySource = Annotated[Source, Field(discriminator="type")]
SOURCE_TYPES = ("chatgpt", "claude", "jsonl", "markdown", "git")
