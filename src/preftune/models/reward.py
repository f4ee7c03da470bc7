"""Reward models score tokenized (prompt, response) sequences with their scalar head.

The sequences are the preference data's own tokens (`preftune.data.tokenize`: the chat
template, responses ending with EOS, the same truncation), so a reward model is trained and
used on exactly what a policy generates. The head reads the last token that is not padding,
as `AutoModelForSequenceClassification` does for any caller.
"""

from __future__ import annotations

import torch

from preftune.data.batch import PreferenceBatch


def batch_rewards(
    model: torch.nn.Module, batch: PreferenceBatch, pad_token_id: int
) -> torch.Tensor:
    """r(prompt, response) for every response of `batch`, [G, R] (0 where masked), in one
    right-padded forward pass."""
    sequences = [
        prompt + response
        for prompt, responses in zip(batch.prompt_ids, batch.response_ids, strict=True)
        for response in responses
    ]
    width = max(len(sequence) for sequence in sequences)
    device = next(model.parameters()).device
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = torch.tensor(sequence)
        attention_mask[row, : len(sequence)] = 1
    scores = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
    rewards = scores.new_zeros(batch.mask.shape)
    rewards[batch.mask.to(device)] = scores[:, 0]
    return rewards
