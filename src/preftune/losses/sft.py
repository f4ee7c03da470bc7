"""Supervised fine-tuning as a method of the registry (the `chosen` view)."""

from __future__ import annotations

from preftune.losses.responses import LossTerms, Responses


def sft(ranked: Responses) -> LossTerms:
    """-s(y_w) / l(y_w): the mean token negative log-likelihood of each group's preferred
    response (the best scored, else column 0), [G]; the SFT stage of Rafailov et al. 2023."""
    return LossTerms(-ranked.mean_logps[:, 0], rewards=None)
