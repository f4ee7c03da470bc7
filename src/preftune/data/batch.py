"""Token-level groups and the batch the log-prob engine consumes.

The batch keeps each prompt separate from its responses: the engine decides the layout
(prompt + response concatenated and padded, or the prompt once per group with its responses
packed behind it). Responses already end with EOS; prompt tokens are never scored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TokenizedGroup:
    """One prompt group in token ids. `scores`/`labels` align with `response_ids`."""

    id: str
    prompt_ids: list[int]
    response_ids: list[list[int]]
    scores: list[float | None]
    labels: list[bool | None]
    margin: float | None = None
    tie: bool = False
    prompt_text: str = ""


@dataclass
class PreferenceBatch:
    """G prompt groups, up to R responses each.

    Tensors are [G, R]; `mask[g, r]` is False where group g has fewer than R responses.
    `scores` is None when no group carries scores (likewise `labels`); missing entries of
    present tensors are 0 / False and masked. What some methods need beyond these (margins,
    ties, prompt texts) stays on the groups, where the trainer's input providers read it.
    """

    ids: list[str]
    prompt_ids: list[list[int]]
    response_ids: list[list[list[int]]]
    mask: torch.Tensor
    scores: torch.Tensor | None = None
    labels: torch.Tensor | None = None

    @property
    def num_groups(self) -> int:
        return len(self.ids)

    @property
    def max_responses(self) -> int:
        return int(self.mask.shape[1])

    def num_tokens(self) -> int:
        """Prompt + response tokens as a plain (unshared) layout would see them."""
        return sum(
            len(prompt) * len(responses) + sum(len(r) for r in responses)
            for prompt, responses in zip(self.prompt_ids, self.response_ids, strict=True)
        )


def collate(groups: list[TokenizedGroup]) -> PreferenceBatch:
    """Stack tokenized groups into a batch, padding ragged groups with masked slots."""
    num_groups = len(groups)
    max_responses = max(len(g.response_ids) for g in groups)
    mask = torch.zeros(num_groups, max_responses, dtype=torch.bool)
    scores = torch.zeros(num_groups, max_responses, dtype=torch.float64)
    labels = torch.zeros(num_groups, max_responses, dtype=torch.bool)
    has_scores = has_labels = False
    for g, group in enumerate(groups):
        mask[g, : len(group.response_ids)] = True
        for r, (score, label) in enumerate(zip(group.scores, group.labels, strict=True)):
            if score is not None:
                scores[g, r], has_scores = score, True
            if label is not None:
                labels[g, r], has_labels = label, True
    return PreferenceBatch(
        ids=[g.id for g in groups],
        prompt_ids=[g.prompt_ids for g in groups],
        response_ids=[g.response_ids for g in groups],
        mask=mask,
        scores=scores if has_scores else None,
        labels=labels if has_labels else None,
    )
