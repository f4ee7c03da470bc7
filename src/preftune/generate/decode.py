"""Our own decode loop for a local causal LM: shared prompt prefill, early exit, raw log-probs.

transformers' `generate` encodes every row's prompt in full, so n samples of one prompt pay n
prefills, and it keeps finished rows in the batch (padding them) until the longest is done.
`sample_batch` instead
- encodes what the batch's prompts share once: the longest common prefix of all prompts
  (e.g. a chat template's system message) in one row, then each distinct prompt's rest, and
  copies the key/value cache to the rows that continue it (n samples of a prompt share all
  of it);
- drops each row from the batch (and from the cache) as soon as it emits an end token;
- chooses each token with `draw.next_tokens`: greedy (argmax) at temperature 0, else an exact
  inverse-CDF draw from the logits filtered by transformers' own temperature, top-k and
  top-p warpers, in the order `generate` applies them; and records the token's log-prob under
  the raw logits (no temperature, top-k or top-p).

The random stream is the global torch generator (one float64 uniform per row and sampled
token), so a caller seeding it gets reproducible samples; they are not the tokens `generate`
would draw for the same seed.
"""

from __future__ import annotations

import inspect

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from preftune.generate.draw import next_tokens


def _keeps_last_logits_only(model) -> dict:
    """{"logits_to_keep": 1} when the model can skip the LM head on all but the last position."""
    forward = getattr(model, "get_base_model", lambda: model)().forward
    return (
        {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(forward).parameters else {}
    )


def _masks_any_position(model) -> bool:
    """Whether the attention takes masks with holes (the padding between a shared prefix and
    a shorter prompt's rest): sdpa and eager do; flash-attention kernels expect padding at
    the ends only."""
    return getattr(model.config, "_attn_implementation", None) in ("sdpa", "eager")


def _common_prefix_length(prompts: list[list[int]]) -> int:
    """Tokens every prompt starts with, leaving each at least one token of its own (whose
    logits start its answer)."""
    shortest = min(len(p) for p in prompts)
    length = 0
    while length < shortest - 1 and all(p[length] == prompts[0][length] for p in prompts):
        length += 1
    return length


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), sequences aligned to the right."""
    longest = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, sequence in enumerate(sequences):
        input_ids[row, longest - len(sequence) :] = torch.tensor(sequence)
        attention_mask[row, longest - len(sequence) :] = 1
    return input_ids, attention_mask


class _RoomyLayer(DynamicLayer):
    """A `DynamicLayer` whose keys and values sit in buffers with room for `room` more tokens,
    so a decode step writes its token in place instead of concatenating (copying) the whole
    cache, as `DynamicLayer.update` does."""

    def __init__(self, room: int):
        super().__init__()
        self.room = room
        self.buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length = self.get_seq_length()
        total = length + key_states.shape[-2]
        if not self._fits(total):  # first call, rows dropped or copied, or out of room
            self.buffers = (
                self._grown(self.keys, key_states, length, total),
                self._grown(self.values, value_states, length, total),
            )
        for buffer, states in zip(self.buffers, (key_states, value_states), strict=True):
            buffer[:, :, length:total] = states
        self.keys, self.values = (buffer[:, :, :total] for buffer in self.buffers)
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep the rows `indices`: their keys and values are copied once, into buffers with
        the same room (`DynamicLayer`'s copies them out of the buffers, and the next `update`
        copies them again into new ones)."""
        length = self.get_seq_length()
        if not self._fits(length):
            super().batch_select_indices(indices)
            return
        self.buffers = tuple(_rows_of(buffer, indices, length) for buffer in self.buffers)
        self.keys, self.values = (buffer[:, :, :length] for buffer in self.buffers)

    def _fits(self, total: int) -> bool:
        return (
            self.buffers is not None
            and self.keys.data_ptr() == self.buffers[0].data_ptr()
            and self.values.data_ptr() == self.buffers[1].data_ptr()
            and self.buffers[0].shape[-2] >= total
        )

    def _grown(self, cached, states, length: int, total: int) -> torch.Tensor:
        rows, heads, _, width = states.shape
        buffer = states.new_empty(rows, heads, total + self.room, width)
        if length:
            buffer[:, :, :length] = cached
        return buffer


def _rows_of(buffer: torch.Tensor, indices: torch.Tensor, length: int) -> torch.Tensor:
    """A buffer of `buffer`'s size holding the first `length` positions of its rows `indices`
    (the room after them is left unwritten, not copied)."""
    selected = buffer.new_empty(len(indices), *buffer.shape[1:])
    torch.index_select(buffer[:, :, :length], 0, indices, out=selected[:, :, :length])
    return selected


class _Batch:
    """The rows still generating: their cache, attention mask and next position."""

    def __init__(self, model, cache, attention_mask, positions, logits):
        self.model = model
        self.cache = cache
        self.attention_mask = attention_mask
        self.positions = positions  # position of each row's next token
        self.logits = logits  # [rows, vocab] float, predicting each row's next token
        # each live row's index in the caller's batch
        self.rows = torch.arange(len(logits), device=logits.device)

    def keep(self, mask: torch.Tensor) -> None:
        """Drop the rows where `mask` is False."""
        kept = mask.nonzero().squeeze(1)
        self.cache.batch_select_indices(kept)
        self.attention_mask = self.attention_mask[kept]
        self.positions = self.positions[kept]
        self.rows = self.rows[kept]

    def step(self, tokens: torch.Tensor) -> None:
        """Feed each row its chosen token; logits now predict the one after."""
        self.attention_mask = torch.cat(
            [self.attention_mask, self.attention_mask.new_ones(len(tokens), 1)], dim=1
        )
        out = self.model(
            input_ids=tokens[:, None].to(self.attention_mask.device),
            attention_mask=self.attention_mask,
            position_ids=self.positions[:, None],
            cache=self.cache,
            use_cache=True,
        )
        self.logits = out.logits[:, -1].float()
        self.positions = self.positions + 1


def prefill(model, prompt_ids: list[list[int]], pad_id: int, room: int) -> _Batch:
    """Encode the prompts, sharing work: their common prefix once, each distinct prompt's rest
    once, the cache then copied to every row."""
    device = next(model.parameters()).device
    distinct = list(dict.fromkeys(map(tuple, prompt_ids)))
    row_source = torch.tensor([distinct.index(tuple(p)) for p in prompt_ids])
    shared = _common_prefix_length(distinct) if _masks_any_position(model) else 0
    cache = DynamicCache(config=model.config)
    cache.layers = [
        _RoomyLayer(room) if type(layer) is DynamicLayer else layer for layer in cache.layers
    ]
    if shared:
        prefix = torch.tensor([distinct[0][:shared]], device=device)
        model(input_ids=prefix, cache=cache, use_cache=True, **_keeps_last_logits_only(model))
        cache.batch_select_indices(torch.zeros(len(distinct), dtype=torch.long, device=device))
    rest_ids, rest_mask = left_pad([list(p[shared:]) for p in distinct], pad_id)
    attention_mask = torch.cat([rest_mask.new_ones(len(distinct), shared), rest_mask], dim=1)
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(
        input_ids=rest_ids.to(device),
        attention_mask=attention_mask.to(device),
        position_ids=positions[:, shared:].to(device),
        cache=cache,
        use_cache=True,
        **_keeps_last_logits_only(model),
    )
    logits = out.logits[:, -1].float()
    if len(distinct) < len(prompt_ids):
        cache.batch_select_indices(row_source.to(device))
    return _Batch(
        model,
        cache,
        attention_mask[row_source].to(device),
        positions[row_source, -1].to(device) + 1,
        logits[row_source.to(device)],
    )


def sample_batch(model, prompt_ids, eos_ids, pad_id, config) -> list[dict]:
    """Continue each token-id prompt with `config`'s max_new_tokens, temperature, top_k, top_p
    (greedy at temperature 0); per row the kept tokens (up to and including an end token in
    `eos_ids`), why it stopped ("eos" or "length") and their summed raw log-prob.

    >>> from preftune.testing import build_tiny_model
    >>> settings = {"max_new_tokens": 3, "temperature": 0.0, "top_k": 0, "top_p": 1.0}
    >>> rows = sample_batch(build_tiny_model(50), [[1, 2, 3], [4, 5]], [0], 0, settings)
    >>> [(len(r["token_ids"]), r["finish_reason"]) for r in rows]
    [(3, 'length'), (3, 'length')]
    """
    max_new = config["max_new_tokens"]
    with torch.no_grad():
        batch = prefill(model, prompt_ids, pad_id, room=max_new)
        device = batch.logits.device
        end_tokens = torch.tensor(eos_ids, dtype=torch.long, device=device)
        tokens = torch.full((len(prompt_ids), max_new), -1, dtype=torch.long, device=device)
        logps = torch.zeros(len(prompt_ids), device=device)
        for step in range(max_new):
            chosen, logp = next_tokens(batch.logits, config)
            tokens[batch.rows, step] = chosen
            logps[batch.rows] += logp
            going = ~torch.isin(chosen, end_tokens)
            if step == max_new - 1 or not going.any():
                break
            if not going.all():
                batch.keep(going)
                chosen = chosen[going]
            batch.step(chosen)
    rows = zip(tokens.tolist(), logps.tolist(), strict=True)
    return [_finished_row(row, eos_ids, logp) for row, logp in rows]


def _finished_row(tokens: list[int], eos_ids: list[int], logp: float) -> dict:
    kept = [t for t in tokens if t >= 0]
    ended = bool(kept) and kept[-1] in eos_ids
    return {"token_ids": kept, "finish_reason": "eos" if ended else "length", "logp": logp}
