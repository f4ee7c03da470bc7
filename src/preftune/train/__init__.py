"""Training: `train(config) -> run folder` for every method (loop.py), the `Trainer` it steps
(trainer.py), and the providers of the methods' extra loss inputs (providers/)."""

from preftune.train.loop import train
from preftune.train.trainer import Trainer

__all__ = ["Trainer", "train"]
