"""Reference log-probs: precomputed once and cached on disk, or from a live reference model.

The precomputed cache is content-addressed: one entry per (prompt tokens, response tokens),
in a folder per reference model (`cache_dir()/reference/<fingerprint>`). Runs of different
methods on the same data and tokenization (a DPO pair and KTO's binary singles share their
sequences) reuse each other's entries; new data only pays for what is new. Entries keep the
per-token log-probs, so token-level methods (ppo-offline) use the same cache.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch
from tqdm.auto import tqdm

from preftune.data.batch import PreferenceBatch, TokenizedGroup, collate
from preftune.models.disk_cache import TensorCache, content_key
from preftune.models.engine import (
    SequenceLogps,
    merge_by_prompt,
    resolve_layout,
    sequence_logps,
)
from preftune.models.loading import DEMO_MODEL, cache_dir, resolve
from preftune.models.trunk import TrunkStates


def model_fingerprint(name_or_path: str, dtype: str, attn_implementation: str | None) -> str:
    """Identifies a reference model's weights: its name, settings and, for the folder that holds
    them (a Hub model's cached snapshot, named by its commit), the config and weight files'
    size and mtime. A new Hub revision or rewritten local weights get a new cache folder."""
    digest = hashlib.blake2b(
        f"{name_or_path}|{dtype}|{attn_implementation}".encode(), digest_size=12
    )
    folder = _weights_folder(name_or_path)
    if folder is not None:
        digest.update(str(folder.resolve()).encode())
        for file in sorted(folder.iterdir()):
            if file.suffix in (".json", ".safetensors", ".bin"):
                stat = file.stat()
                digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _weights_folder(name_or_path: str) -> Path | None:
    """The local folder the weights load from: the demo model's, a path, or the Hugging Face
    cache's snapshot of a Hub model's current revision (None if it is not cached)."""
    if name_or_path == DEMO_MODEL:
        return Path(resolve(name_or_path))
    if Path(name_or_path).is_dir():
        return Path(name_or_path)
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(name_or_path, "config.json")
    except ValueError:  # not a valid repo id
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def _sequence_key(prompt_ids: list[int], response_ids: list[int]) -> str:
    return content_key(prompt_ids, response_ids)


class PrecomputedReference:
    """Reference log-probs looked up from the cache (every sequence must have been computed)."""

    def __init__(self, cache: TensorCache):
        self.cache = cache

    def __call__(self, batch: PreferenceBatch, per_token: bool = False) -> SequenceLogps:
        num_groups, max_responses = batch.mask.shape
        rows = [
            [self.cache[_sequence_key(prompt, response)] for response in responses]
            for prompt, responses in zip(batch.prompt_ids, batch.response_ids, strict=True)
        ]
        longest = max(len(tokens) for row in rows for tokens in row)
        token_logps = torch.zeros(num_groups, max_responses, longest)
        token_mask = torch.zeros(num_groups, max_responses, longest, dtype=torch.bool)
        for g, row in enumerate(rows):
            for r, tokens in enumerate(row):
                token_logps[g, r, : len(tokens)] = tokens
                token_mask[g, r, : len(tokens)] = True
        logps, lengths = token_logps.sum(-1), token_mask.sum(-1)
        if not per_token:
            return SequenceLogps(logps, lengths)
        return SequenceLogps(logps, lengths, token_logps, token_mask)


def precompute_reference(
    model: torch.nn.Module,
    groups: list[TokenizedGroup],
    fingerprint: str,
    *,
    groups_per_forward: int,
    pad_token_id: int,
    shard: tuple[int, int] = (0, 1),
    merge: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
    write: bool = True,
    trunk: TrunkStates | None = None,
) -> PrecomputedReference:
    """Score every response of `groups` not yet in the cache with `model` (before training).

    On several processes, process `shard[0]` of `shard[1]` scores its share of what is missing,
    `merge` gathers every process's entries, and only the process with `write` stores them.
    `trunk` (one process only) keeps the frozen trunk's states from the same forward passes.
    """
    cache = TensorCache(cache_dir() / "reference" / fingerprint)
    # each prompt once, with all its responses not cached yet (shared layout)
    todo = merge_by_prompt(groups, keep=lambda p, r: _sequence_key(p, r) not in cache)
    index, count = shard
    todo = todo[index::count]
    new: dict[str, torch.Tensor] = {}
    was_training = model.training
    model.eval()
    layout = resolve_layout(model, "auto")
    with torch.no_grad():
        starts = range(0, len(todo), groups_per_forward)
        for start in tqdm(starts, desc="reference log-probs", unit="batch", disable=not todo):
            chunk = todo[start : start + groups_per_forward]
            batch = collate(chunk)
            with trunk.capturing(model, batch, layout) if trunk else nullcontext():
                out = sequence_logps(
                    model, batch, per_token=True, pad_token_id=pad_token_id, layout=layout
                )
            for g, group in enumerate(chunk):
                for r, response in enumerate(group.response_ids):
                    tokens = out.token_logps[g, r, : len(response)].float().cpu()
                    new[_sequence_key(group.prompt_ids, response)] = tokens.clone()
    model.train(was_training)
    if merge is not None:
        new = merge(new)
    cache.add(new, persist=write)
    return PrecomputedReference(cache)


class LiveReference:
    """A reference model run under no_grad at every step (`reference: live`).

    For LoRA the model is the policy itself and `context` disables its adapters, so there is
    no second copy of the weights.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        pad_token_id: int,
        context: Callable[[], AbstractContextManager] = nullcontext,
    ):
        self.model = model
        self.pad_token_id = pad_token_id
        self.context = context

    def __call__(self, batch: PreferenceBatch, per_token: bool = False) -> SequenceLogps:
        with torch.no_grad(), self.context():
            return sequence_logps(
                self.model, batch, per_token=per_token, pad_token_id=self.pad_token_id
            )
