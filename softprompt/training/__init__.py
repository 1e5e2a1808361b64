"""Training: the options (`config`), the loop (`trainer`), optimizers beside AdamW (`optimizers`),
checkpoints, and the run's outputs. `train()` runs all of it; importing this package loads none of the
heavy parts (accelerate, tqdm, matplotlib) until a run starts."""
from __future__ import annotations

from .config import TrainConfig


def train(config: TrainConfig | None = None, base=None, **overrides):
    """Train a soft prompt: `softprompt.train(task="sst2", method="prompt-tuning")`. Returns a TrainResult."""
    from ..configs import from_options
    from .checkpoints import load
    from .outputs import finish
    from .trainer import Trainer

    config = config or from_options(TrainConfig, overrides, "train()")
    trainer = Trainer(config, base)
    if config.resume:
        load(trainer)
    trainer.train()
    return finish(trainer)


__all__ = ["TrainConfig", "train"]
