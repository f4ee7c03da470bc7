"""Evaluation: win rate against a baseline, MT-Bench grading, ranking accuracy, KL and
response statistics."""

from preftune.evaluate.likelihood import kl_from_reference, ranking_accuracy
from preftune.evaluate.stats import bootstrap_ci, length_controlled_win_rate
from preftune.evaluate.text_stats import text_stats
from preftune.evaluate.win_rate import win_rate

__all__ = [
    "bootstrap_ci",
    "kl_from_reference",
    "length_controlled_win_rate",
    "ranking_accuracy",
    "text_stats",
    "win_rate",
]
