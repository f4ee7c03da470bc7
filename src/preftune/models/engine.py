"""The log-prob engine: everything expensive is this one function (docs/internals.md).

`sequence_logps(model, batch)` returns each response's summed log-prob under `model`, its
token count and, when asked, the per-token log-probs and WPO's collision statistic. Layouts
(all return the same numbers):

- `plain`: the reference path: prompt + response concatenated, right-padded, one forward
  pass, full-vocabulary logits at every position.
- `padded` / `packed` / `shared` (see `preftune.models.layouts`): the decoder runs without its
  LM head; logits are formed only at the positions that predict response tokens, in chunks
  (`preftune.models.chunked`). `shared` computes each prompt once per group.
- `auto` (default): `shared` where the attention implementation takes a 4-D mask (sdpa,
  eager), `packed` under flash-attention (varlen, no padding), `padded` otherwise.

With `trunk` (a `preftune.models.trunk.TrunkStates`), the response-only layouts read the
frozen bottom layers' output from its cache and run only the top layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from preftune.data.batch import PreferenceBatch, TokenizedGroup
from preftune.errors import ConfigError
from preftune.models.chunked import DEFAULT_CHUNK_SIZE, token_logps, token_logps_and_collision
from preftune.models.layouts import LAYOUTS, build_layout
from preftune.models.prefix_attention import prefix_sharing_attention


@dataclass
class SequenceLogps:
    """[G, R] summed log-probs and token counts (0 where `batch.mask` is False).

    `token_logps` / `token_mask` are [G, R, L] (L = longest response) when per-token values
    were asked for, else None. `log_collision` [G, R], when asked for: per response, the sum
    over its tokens of log sum_v p(v | prefix)^2 (WPO's weight alignment), without gradient.
    """

    logps: torch.Tensor
    lengths: torch.Tensor
    token_logps: torch.Tensor | None = None
    token_mask: torch.Tensor | None = None
    log_collision: torch.Tensor | None = None


def merge_by_prompt(
    groups: list[TokenizedGroup], keep: Callable[[list[int], list[int]], bool] | None = None
) -> list[TokenizedGroup]:
    """One group per distinct prompt with each of its distinct responses, in first-seen order:
    scored in the shared layout, a prompt is computed once for all of them (KTO's binary
    singles and mismatched pairs repeat each prompt three times). For scoring only: a merged
    group has its first group's id and no scores or labels. With `keep(prompt, response)`, only
    the responses it keeps (and prompts left with one).

    >>> a = TokenizedGroup("a", [1], [[2]], [1.0], [True])
    >>> [g.response_ids for g in merge_by_prompt([a, TokenizedGroup("b", [1], [[3], [2]], [None] * 2, [None] * 2)])]
    [[[2], [3]]]
    """
    ids: dict[tuple[int, ...], str] = {}
    merged: dict[tuple[int, ...], dict[tuple[int, ...], list[int]]] = {}
    for group in groups:
        ids.setdefault(tuple(group.prompt_ids), group.id)
        responses = merged.setdefault(tuple(group.prompt_ids), {})
        for response in group.response_ids:
            if keep is None or keep(group.prompt_ids, response):
                responses.setdefault(tuple(response), response)
    return [
        TokenizedGroup(
            id=ids[prompt],
            prompt_ids=list(prompt),
            response_ids=list(responses.values()),
            scores=[None] * len(responses),
            labels=[None] * len(responses),
        )
        for prompt, responses in merged.items()
        if responses
    ]


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
    collision: bool = False,
    pad_token_id: int = 0,
    layout: str = "auto",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    trunk=None,
) -> SequenceLogps:
    """Summed response log-probs of every response in `batch` under `model`.

    `layout` is "auto", "plain" or one of `preftune.models.layouts.LAYOUTS`; `chunk_size`
    is how many positions get full-vocabulary logits at once (not used by "plain").
    `collision` also returns `log_collision`, from the logits already formed. `trunk` (not
    with "plain"): the frozen bottom layers' cached states, run from there.
    """
    layout = resolve_layout(model, layout)
    if layout == "plain" and trunk is not None:
        raise ConfigError("engine layout 'plain' runs every layer; it cannot use a trunk cache")
    if layout == "plain":
        return _plain_sequence_logps(
            model, batch, per_token=per_token, collision=collision, pad_token_id=pad_token_id
        )
    if layout not in LAYOUTS:
        raise ConfigError(f"engine layout '{layout}' is not one of {('auto', 'plain', *LAYOUTS)}")
    return _response_only_logps(
        model, batch, layout, per_token, collision, pad_token_id, chunk_size, trunk
    )


def resolve_layout(model, layout: str) -> str:
    """The layout "auto" stands for with `model`'s attention implementation (others as given)."""
    if layout != "auto":
        return layout
    attention = getattr(model.config, "_attn_implementation", None) or "eager"
    if attention in ("sdpa", "eager"):
        return "shared"
    if attention.startswith("flash_attention") or attention.startswith("kernels-community/flash"):
        return "packed"
    return "padded"


# Config fields that change logits beyond lm_head(hidden); the response-only paths refuse them.
_LOGIT_TRANSFORMS = (
    "final_logit_softcapping",
    "logit_scale",
    "logits_scaling",
    "output_multiplier",
)


def _response_only_logps(
    model, batch, layout, per_token, collision, pad_token_id, chunk_size, trunk
) -> SequenceLogps:
    config = (
        model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    )
    transforms = [
        name for name in _LOGIT_TRANSFORMS if getattr(config, name, None) not in (None, 1.0)
    ]
    if transforms:
        raise ConfigError(
            f"engine layout '{layout}' computes logits as lm_head(hidden) but this model also applies "
            f"{transforms}; use layout 'plain'"
        )
    device = next(model.parameters()).device
    inputs = build_layout(batch, layout, pad_token_id=pad_token_id, device=device)
    if trunk is not None:
        hidden = trunk.top_hidden(model, batch, inputs, pad_token_id)
    else:
        with prefix_sharing_attention(model, inputs.prefix_rows) as attention_kwargs:
            hidden = model.get_decoder()(
                input_ids=inputs.input_ids,
                attention_mask=inputs.attention_mask,
                position_ids=inputs.position_ids,
                use_cache=False,
                **attention_kwargs,
            ).last_hidden_state
    score = token_logps_and_collision if collision else token_logps
    scored = score(
        hidden[inputs.score_rows, inputs.score_cols],
        model.get_output_embeddings(),
        inputs.targets,
        chunk_size=chunk_size,
    )
    scored, collisions = scored if collision else (scored, None)

    num_groups, max_responses = batch.mask.shape
    flat = num_groups * max_responses

    def per_response(values):
        summed = values.new_zeros(flat).index_add(0, inputs.slots, values)
        return summed.view(num_groups, max_responses)

    logps = per_response(scored)
    log_collision = per_response(collisions) if collision else None
    lengths = torch.bincount(inputs.slots, minlength=flat).view(num_groups, max_responses)
    if not per_token:
        return SequenceLogps(logps, lengths, log_collision=log_collision)
    longest = int(lengths.max())
    per_token_logps = scored.new_zeros(flat, longest).index_put(
        (inputs.slots, inputs.offsets), scored
    )
    per_token_mask = torch.zeros(flat, longest, dtype=torch.bool, device=device)
    per_token_mask[inputs.slots, inputs.offsets] = True
    shape = (num_groups, max_responses, longest)
    return SequenceLogps(
        logps, lengths, per_token_logps.view(shape), per_token_mask.view(shape), log_collision
    )


def _plain_sequence_logps(model, batch, *, per_token, collision, pad_token_id) -> SequenceLogps:
    """The reference path: full-vocabulary logits over prompt + response, right-padded."""
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
    log_collision = None
    if collision:  # log sum_v p(v)^2 = logsumexp(2 log p) at every scored position
        collisions = torch.logsumexp(2 * log_probs.detach(), dim=-1) * target_mask[:, 1:]
        log_collision = torch.zeros_like(logps).index_put((rows, cols), collisions.sum(-1))
    if not per_token:
        return SequenceLogps(logps, lengths, log_collision=log_collision)

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
    return SequenceLogps(logps, lengths, per_token_logps, per_token_mask, log_collision)
