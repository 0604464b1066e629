"""The vocabulary the pipeline shares: training modes, training stages (in their order), dataset
snapshot kinds and base-model quantization, each one StrEnum.

Their values are the strings plora.toml, the CLI, the store and the JSON documents use, so a member
compares equal to its string and serializes as it (``json.dumps(TrainingMode.SCRATCH) == '"scratch"'``).
"""

from __future__ import annotations

from enum import StrEnum


class TrainingMode(StrEnum):
    """``continue`` trains on from the profile's current adapter; ``scratch`` starts a fresh one."""

    CONTINUE = "continue"
    SCRATCH = "scratch"


class Stage(StrEnum):
    """A training stage, in the order a run trains them: always ``sft``, then at most one preference
    stage."""

    SFT = "sft"
    DPO = "dpo"
    KTO = "kto"


PREFERENCE_STAGES = (Stage.DPO, Stage.KTO)


class DatasetKind(StrEnum):
    """What a dataset snapshot holds: chats (``sft``), plain text (``text``, every token learned),
    preference pairs (``dpo``) or single rated completions (``kto``)."""

    SFT = "sft"
    TEXT = "text"
    DPO = "dpo"
    KTO = "kto"


LM_KINDS = (DatasetKind.SFT, DatasetKind.TEXT)  # what SFT trains on and eval loss is measured on
PREFERENCE_KINDS = (DatasetKind.DPO, DatasetKind.KTO)  # one per preference stage, same name


class Quantization(StrEnum):
    """How the base model is loaded: 4-bit NF4 (QLoRA) or in its own precision."""

    NF4 = "nf4"
    NONE = "none"
