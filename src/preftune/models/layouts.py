"""How a `PreferenceBatch` is laid out as model input, and which hidden states score which tokens.

- `padded`: one row per response, prompt + response, right-padded (what most libraries do).
- `packed`: every prompt + response back to back in a single row, no padding; `position_ids`
  restart at 0 for each sequence, so transformers builds the block-diagonal mask itself (a
  varlen kernel under flash-attention; a dense mask under SDPA).
- `shared`: prefix sharing ("Accelerating Direct Preference Optimization with Prefix Sharing",
  Wang & Hegde 2024): one row per group, the prompt once and the group's responses behind it.
  A 4-D boolean mask lets each response attend to the prompt and to itself only, and its
  `position_ids` restart right after the prompt, so each response sees exactly what it sees
  in the padded layout.

Every response token y_j is scored by the hidden state just before it: the last prompt token
for j = 0 (shared by all of a group's responses), response token j - 1 otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from preftune.data.batch import PreferenceBatch
from preftune.errors import DataError

LAYOUTS = ("padded", "packed", "shared")


@dataclass
class Layout:
    """Model inputs [B, T] plus, for the M scored tokens, where to read them ([M] each).

    `attention_mask` is a [B, T] padding mask, a [B, 1, T, T] boolean mask (True = attend),
    or None (packed: the mask follows from `position_ids`). Token m is predicted by the hidden
    state at (`score_rows[m]`, `score_cols[m]`); it is `targets[m]`, token `offsets[m]` of
    response `slots[m]` (flat index g * R + r). `pieces` say where each prompt and response
    was placed: (row, column, group g, response r or None for the prompt). `prefix_rows`
    (shared only): each row's (prompt length, width without padding), what
    `preftune.models.prefix_attention` needs to skip the masked-out scores.
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    score_rows: torch.Tensor
    score_cols: torch.Tensor
    targets: torch.Tensor
    slots: torch.Tensor
    offsets: torch.Tensor
    pieces: list[tuple[int, int, int, int | None]]
    prefix_rows: list[tuple[int, int]] | None = None


class _Builder:
    """Collects rows of tokens and the scoring coordinates of their response tokens."""

    def __init__(self):
        self.rows: list[list[int]] = []
        self.positions: list[list[int]] = []
        self.segments: list[list[int]] = []
        self.pieces: list[tuple[int, int, int, int | None]] = []
        self.score = {"rows": [], "cols": [], "targets": [], "slots": [], "offsets": []}

    def new_row(self):
        self.rows.append([])
        self.positions.append([])
        self.segments.append([])

    def add(self, tokens: list[int], first_position: int, segment: int, piece) -> int:
        """Append `tokens` (`piece` = (group, response or None)) to the current row; return
        the column where they start."""
        start = len(self.rows[-1])
        self.pieces.append((len(self.rows) - 1, start, *piece))
        self.rows[-1].extend(tokens)
        self.positions[-1].extend(range(first_position, first_position + len(tokens)))
        self.segments[-1].extend([segment] * len(tokens))
        return start

    def score_response(self, response: list[int], prompt_end: int, start: int, slot: int):
        """Score `response` (placed at column `start`), whose prompt ends at column `prompt_end`."""
        row = len(self.rows) - 1
        for j, token in enumerate(response):
            self.score["rows"].append(row)
            self.score["cols"].append(prompt_end if j == 0 else start + j - 1)
            self.score["targets"].append(token)
            self.score["slots"].append(slot)
            self.score["offsets"].append(j)

    def build(self, pad_token_id: int, device, attention: str) -> Layout:
        width = max(len(row) for row in self.rows)

        def padded(rows, fill):
            return torch.tensor([row + [fill] * (width - len(row)) for row in rows], device=device)

        input_ids = padded(self.rows, pad_token_id)
        position_ids = padded(self.positions, 0)
        segments = padded(self.segments, -1)
        prefix_rows = None
        if attention == "padding":
            attention_mask = (segments >= 0).long()
        elif attention == "prefix":
            attention_mask = _prefix_sharing_mask(segments)
            prefix_rows = [(row.count(0), len(row)) for row in self.segments]
        else:
            attention_mask = None
        score = {k: torch.tensor(v, dtype=torch.long, device=device) for k, v in self.score.items()}
        return Layout(
            input_ids,
            position_ids,
            attention_mask,
            score["rows"],
            score["cols"],
            score["targets"],
            score["slots"],
            score["offsets"],
            self.pieces,
            prefix_rows,
        )


def _prefix_sharing_mask(segments: torch.Tensor) -> torch.Tensor:
    """[B, 1, T, T] bool: causal, and a query sees a key only in the prompt (segment 0) or its own segment.

    Padding (segment -1) sees the prompt and earlier padding, so no row is fully masked
    (a fully masked row would give NaN in the softmax and its gradient).
    """
    width = segments.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool, device=segments.device).tril()
    same = segments[:, :, None] == segments[:, None, :]
    in_prompt = (segments == 0)[:, None, :]
    return (causal & (same | in_prompt))[:, None]


def _check_prompts(batch: PreferenceBatch):
    for group_id, prompt in zip(batch.ids, batch.prompt_ids, strict=True):
        if not prompt:
            raise DataError(
                "empty prompt: the first response token needs at least one token before it "
                "(a BOS token or the chat template) to be scored",
                source=f"group '{group_id}'",
            )


def build_layout(
    batch: PreferenceBatch, layout: str, *, pad_token_id: int = 0, device=None
) -> Layout:
    """Lay `batch` out as `layout` (one of LAYOUTS)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout '{layout}' is not one of {LAYOUTS}")
    _check_prompts(batch)
    builder = _Builder()
    width = batch.max_responses
    if layout == "packed":
        builder.new_row()
    for g, (prompt, responses) in enumerate(zip(batch.prompt_ids, batch.response_ids, strict=True)):
        if layout == "shared":
            builder.new_row()
            prompt_end = builder.add(prompt, 0, 0, (g, None)) + len(prompt) - 1
        for r, response in enumerate(responses):
            if layout == "padded":
                builder.new_row()
            if layout != "shared":
                prompt_end = builder.add(prompt, 0, 0, (g, None)) + len(prompt) - 1
            start = builder.add(response, len(prompt), r + 1, (g, r))
            builder.score_response(response, prompt_end, start, g * width + r)
    attention = {"padded": "padding", "packed": "positions", "shared": "prefix"}[layout]
    return builder.build(pad_token_id, device, attention)
