"""Training: ``train_profile`` turns a profile's dataset snapshots into a new LoRA adapter version.

The recipe is pipeline.train.run (plan, set up, measure, train the stages, gate, register); the
modules beside it each do one of those jobs: plan (what a run trains, resuming), data (its rows),
stages (the stage loop and checkpoints), sft / preference (one trainer each), recipe (settings to
library objects), resume (run state and checkpoints), replay, packing, progress, result.
"""

from pipeline.train.progress import Progress, TrainProgress
from pipeline.train.result import TrainResult
from pipeline.train.run import train_profile

__all__ = ["Progress", "TrainProgress", "TrainResult", "train_profile"]
