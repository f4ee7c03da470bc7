"""Training: `train(config) -> run folder` for every method (loop.py), and the `Trainer` it
steps (trainer.py)."""

from preftune.train.loop import train
from preftune.train.trainer import Trainer

__all__ = ["Trainer", "train"]
