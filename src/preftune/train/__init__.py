"""The training loop: `train(config) -> run folder` for every method (see loop.py)."""

from preftune.train.loop import train

__all__ = ["train"]
