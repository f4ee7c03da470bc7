"""The log-prob engine: everything expensive is this one function (DESIGN.md).

`sequence_logps(model, batch)` returns each response's summed log-prob under `model`, its
token count and, when asked, the per-token log-probs. This is the plain reference path:
prompt + response concatenated, right-padded, one forward pass. Faster layouts live behind
the same function and must return the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from preftune.data.batch import PreferenceBatch


@dataclass
class SequenceLogps:
    """[G, R] summed log-probs and token counts (0 where `batch.mask` is False).

    `token_logps` / `token_mask` are [G, R, L] (L = longest response) when per-token values
    were asked for, else None.
    """

    logps: torch.Tensor
    lengths: torch.Tensor
    token_logps: torch.Tensor | None = None
    token_mask: torch.Tensor | None = None


def _flatten(batch: PreferenceBatch):
    """Every existing (group, slot) as one prompt+response sequence."""
    sequences, prompt_lengths, slots = [], [], []
    for g, (prompt, responses) in enumerate(zip(batch.prompt_ids, batch.response_ids, strict=True)):
        for r, response in enumerate(responses):
            sequences.append(prompt + response)
            prompt_lengths.append(len(prompt))
            slots.append((g, r))
    return sequences, prompt_lengths, slots


def sequence_logps(
    model: torch.nn.Module,
    batch: PreferenceBatch,
    *,
    per_token: bool = False,
    pad_token_id: int = 0,
) -> SequenceLogps:
    """Summed response log-probs of every response in `batch` under `model`."""
    sequences, prompt_lengths, slots = _flatten(batch)
    device = next(model.parameters()).device
    longest = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), longest), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    target_mask = torch.zeros(len(sequences), longest, dtype=torch.bool)
    for i, (sequence, prompt_length) in enumerate(zip(sequences, prompt_lengths, strict=True)):
        input_ids[i, : len(sequence)] = torch.tensor(sequence)
        attention_mask[i, : len(sequence)] = 1
        target_mask[i, prompt_length : len(sequence)] = True
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    target_mask = target_mask.to(device)

    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    # Position t predicts token t + 1.
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    token_logps = log_probs.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    token_logps = token_logps * target_mask[:, 1:]

    num_groups, max_responses = batch.mask.shape
    logps = torch.zeros(num_groups, max_responses, device=device, dtype=token_logps.dtype)
    lengths = torch.zeros(num_groups, max_responses, device=device, dtype=torch.long)
    rows = torch.tensor([g for g, _ in slots], device=device)
    cols = torch.tensor([r for _, r in slots], device=device)
    logps = logps.index_put((rows, cols), token_logps.sum(-1))
    lengths = lengths.index_put((rows, cols), target_mask.sum(-1))
    if not per_token:
        return SequenceLogps(logps, lengths)

    longest_response = int(lengths.max())
    per_token_logps = torch.zeros(
        num_groups, max_responses, longest_response, device=device, dtype=token_logps.dtype
    )
    per_token_mask = torch.zeros_like(per_token_logps, dtype=torch.bool)
    for i, ((g, r), prompt_length) in enumerate(zip(slots, prompt_lengths, strict=True)):
        n = len(sequences[i]) - prompt_length
        per_token_logps = per_token_logps.index_put(
            (torch.tensor(g), torch.tensor(r), torch.arange(n, device=device)),
            token_logps[i, prompt_length - 1 : prompt_length - 1 + n],
        )
        per_token_mask[g, r, :n] = True
    return SequenceLogps(logps, lengths, per_token_logps, per_token_mask)
