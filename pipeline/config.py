"""plora.toml: loaded into typed models; every mistake becomes one ConfigError naming the key.

Paths (``~`` and relative ones) are resolved against the home folder. Environment overrides:
``PLORA_STORE_URL`` replaces ``store.url`` (``PLORA_HOME`` is read by the CLI to find the home).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.settings import SOURCE_TYPES, AnySource
from pipeline.errors import UsageError
from pipeline.kinds import Quantization, Stage, TrainingMode
from storage.engine import resolve_url

CONFIG_FILE = "plora.toml"
ProfileName = Annotated[str, Field(pattern=r"^[a-z0-9_-]+$", min_length=1, max_length=64)]
ModuleName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$", max_length=200)]
MAX_LENGTH = 1 << 20  # tokens per example: far beyond any base's context, far below an out-of-memory surprise


class ConfigError(UsageError):
    """A config mistake: ``file: key: what is wrong`` (the CLI prints it and exits 2); ``file``, ``key``."""

    def __init__(self, file: Path | str, key: str | None, message: str) -> None:
        where = f"{Path(file).name}: {key}: " if key else f"{Path(file).name}: "
        super().__init__(where + message, file=file, key=key)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # inf and nan are no setting


class StoreConfig(_Strict):
    url: str = "sqlite:///plora.db"

    @field_validator("url")
    @classmethod
    def _a_database_url(cls, url: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            make_url(url).get_dialect()
        except ArgumentError:
            raise ValueError(
                f"{url!r} is not a database URL; write e.g. 'sqlite:///plora.db' or 'postgresql+psycopg://user@host/db'"
            ) from None
        except NoSuchModuleError:
            raise ValueError(
                f"{url.split(':', 1)[0]!r} is not a database SQLAlchemy knows; use sqlite:/// or postgresql+psycopg://"
            ) from None
        return url


class BaseModelConfig(_Strict):
    name: str = "builtin:tiny-llama"
    quantization: Quantization = Quantization.NF4
    double_quant: bool = True


class RedactionConfig(_Strict):
    enabled: bool = True
    extra_patterns: list[str] = []

    @field_validator("extra_patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for index, pattern in enumerate(patterns):
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"pattern {index} ({pattern!r}) is not a valid regex: {e}") from e
        return patterns


class LoraConfig(_Strict):
    r: int = Field(default=16, gt=0, le=1024)
    alpha: float = Field(default=32, gt=0)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: Annotated[list[ModuleName], Field(min_length=1)] | Literal["all-linear"] = ["q_proj", "v_proj"]


class TrainConfig(_Strict):
    max_steps: int = Field(default=200, gt=0)
    learning_rate: float = Field(default=2e-4, gt=0)
    batch_size: int = Field(default=4, gt=0)
    gradient_accumulation_steps: int = Field(default=1, gt=0)
    max_length: int = Field(default=1024, ge=32, le=MAX_LENGTH)
    packing: bool = True
    seed: int = 42
    save_steps: int = Field(default=50, gt=0)
    replay_fraction: float = Field(default=0.2, ge=0, le=1)
    # recompute each layer's activations in the backward pass; unset: on (pipeline.train.recipe)
    gradient_checkpointing: bool | None = None


class GateConfig(_Strict):
    min_improvement: float = Field(default=0.0, ge=0)
    max_source_regression: float = Field(default=0.05, ge=0)
    # the general-text probe's loss may rise at most this much (relative) above the base's; None: report only
    max_forgetting: float | None = Field(default=0.05, ge=0)
    # held-out preference pairs: the candidate's accuracy must be at least this; None: report only
    min_preference_accuracy: float | None = Field(default=None, ge=0, le=1)


class ProfileConfig(_Strict):
    sources: list[str] = Field(min_length=1)
    stages: list[Stage] = [Stage.SFT]
    mode: TrainingMode = TrainingMode.CONTINUE
    eval_percent: int = Field(default=10, ge=0, le=50)
    include_unlabelled: bool = False
    note_questions: bool = True
    lora: LoraConfig = LoraConfig()
    train: TrainConfig = TrainConfig()
    gate: GateConfig = GateConfig()

    @field_validator("stages")
    @classmethod
    def _stage_order(cls, stages: list[Stage]) -> list[Stage]:
        if not stages or stages[0] != Stage.SFT:
            raise ValueError('must start with "sft", optionally followed by "dpo" or "kto"')
        if len(stages) > 2 or len(set(stages)) != len(stages):
            raise ValueError('at most one preference stage after "sft": ["sft"], ["sft", "dpo"] or ["sft", "kto"]')
        return stages


class Config(_Strict):
    store: StoreConfig = StoreConfig()
    base_model: BaseModelConfig = BaseModelConfig()
    redaction: RedactionConfig = RedactionConfig()
    sources: list[AnySource] = []
    profiles: dict[ProfileName, ProfileConfig] = {}

    _home: Path = PrivateAttr(default_factory=Path.cwd)
    _file: Path = PrivateAttr(default=Path(CONFIG_FILE))

    @property
    def home(self) -> Path:
        return self._home

    @property
    def file(self) -> Path:
        return self._file

    @model_validator(mode="after")
    def _names(self) -> Config:
        seen: dict[str, int] = {}
        for index, source in enumerate(self.sources):
            if source.name in seen:
                raise _KeyError(
                    f"sources[{index}].name",
                    f"duplicate source name {source.name!r} (also sources[{seen[source.name]}])",
                )
            seen[source.name] = index
        for profile_name, profile in self.profiles.items():
            for index, source_name in enumerate(profile.sources):
                if source_name not in seen:
                    known = ", ".join(seen) or "none defined"
                    raise _KeyError(
                        f"profiles.{profile_name}.sources[{index}]",
                        f"unknown source {source_name!r} (sources: {known})",
                    )
        return self

    def source(self, name: str) -> AnySource:
        for source in self.sources:
            if source.name == name:
                return source
        raise ConfigError(
            self.file, "sources", f"no source named {name!r} (known: {', '.join(self.source_names) or 'none'})"
        )

    @property
    def source_names(self) -> list[str]:
        return [s.name for s in self.sources]

    def profile(self, name: str | None) -> tuple[str, ProfileConfig]:
        """The named profile, or the only/first one when ``name`` is None."""
        if not self.profiles:
            raise ConfigError(self.file, "profiles", "no profile defined: add a [profiles.<name>] table")
        if name is None:
            name = next(iter(self.profiles))
        if name not in self.profiles:
            raise ConfigError(self.file, "profiles", f"no profile named {name!r} (known: {', '.join(self.profiles)})")
        return name, self.profiles[name]

    @property
    def store_url(self) -> str:
        return resolve_url(self.store.url, self.home)


class _KeyError(ValueError):
    """Raised inside validators to point the error at a precise key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class EnvOverrides(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PLORA_", extra="ignore")

    home: Path | None = None
    store_url: str | None = None


def load_config(home: Path, *, check_paths: bool = True) -> Config:
    """Load ``home/plora.toml`` (defaults when it doesn't exist).

    ``check_paths`` makes a missing source path a config error; ingest turns it off and
    reports a missing path as that source's error, so the other sources still ingest.
    """
    file = home / CONFIG_FILE
    data: dict[str, Any] = {}
    if file.exists():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(file, None, f"not valid TOML: {e}") from e
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(file, None, f"can't read it: {e}") from e
    return parse_config(data, home=home, file=file, check_paths=check_paths)


def parse_config(data: dict[str, Any], *, home: Path, file: Path, check_paths: bool = True) -> Config:
    env = EnvOverrides()
    if env.store_url:
        data = {**data, "store": {**data.get("store", {}), "url": env.store_url}}
    _check_source_types(data, file)
    try:
        config = Config.model_validate(data, context={"home": home})
    except ValidationError as e:
        raise _to_config_error(e, file) from None
    config._home, config._file = home, file
    if check_paths:
        for index, source in enumerate(config.sources):
            if not source.path.exists():
                raise ConfigError(
                    file, f"sources[{index}].path", f"{source.path} does not exist (fix the path or remove the source)"
                )
    return config


def _check_source_types(data: dict[str, Any], file: Path) -> None:
    sources = data.get("sources", [])
    if not isinstance(sources, list):
        raise ConfigError(file, "sources", "must be an array of tables: write each one as [[sources]]")
    for index, source in enumerate(sources):
        if not isinstance(source, dict):
            raise ConfigError(file, f"sources[{index}]", "must be a table ([[sources]])")
        kind = source.get("type")
        if kind is None:
            raise ConfigError(file, f"sources[{index}].type", f"missing; one of {', '.join(SOURCE_TYPES)}")
        if kind not in SOURCE_TYPES:
            raise ConfigError(
                file,
                f"sources[{index}].type",
                f"unknown source type {kind!r}; expected one of {', '.join(SOURCE_TYPES)}",
            )


def _to_config_error(error: ValidationError, file: Path) -> ConfigError:
    first = error.errors()[0]
    ctx_error = (first.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _KeyError):
        return ConfigError(file, ctx_error.key, str(ctx_error))
    loc = list(first["loc"])
    if len(loc) >= 3 and loc[0] == "sources" and loc[2] in SOURCE_TYPES:
        del loc[2]  # the discriminator's tag is not a key the person wrote
    loc = [part for part in loc if not (isinstance(part, str) and "[" in part)]  # a union member's tag, neither
    key = _format_loc(loc)
    if first["type"] == "extra_forbidden":
        return ConfigError(file, key, "unknown key (check the spelling; see README, 'Config')")
    if first["type"] == "missing":
        return ConfigError(file, key, "missing (required)")
    message = first["msg"].removeprefix("Value error, ")
    if "input" in first and first["type"] not in ("model_type", "dict_type"):
        message += f" (got {first['input']!r})"
    return ConfigError(file, key, message)


def _format_loc(loc: list[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
