"""Rollouts: G samples per prompt from the current policy, as token-id groups for training.

Prompts are rendered exactly as `preftune generate` renders them (`render_prompt`, the chat
template when the tokenizer has one), cut from the left to `max_prompt_length` as the offline
data path cuts them, and sampled with `preftune.generate.sampling.sample_batch` (KV cache, the
evaluation's stop and length rules) in batches of `generation_batch_size` sequences. The
response ids are the sampled tokens themselves, so the policy is scored on exactly what it
produced. On one process sampling draws from torch's global RNG, which checkpoints save and
restore; with several, each process draws from its own stream (`ProcessRNG`).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from preftune.data.batch import TokenizedGroup
from preftune.generate.prompts import render_prompt
from preftune.generate.sampling import pad_token_id, sample_batch, stop_token_ids


@dataclass
class Rollout:
    """One generation batch: a group of samples per prompt, their texts and token counts."""

    groups: list[TokenizedGroup]
    texts: list[list[str]]
    truncated: int  # samples that hit max_new_tokens without EOS

    @property
    def num_samples(self) -> int:
        return sum(len(group.response_ids) for group in self.groups)

    @property
    def num_tokens(self) -> int:
        """Generated tokens."""
        return sum(len(r) for group in self.groups for r in group.response_ids)


class Sampler:
    """Samples `samples_per_prompt` responses to prompt rows {"id", "prompt"} from `model`."""

    def __init__(self, tokenizer, model, online, *, max_prompt_length: int):
        self.tokenizer = tokenizer
        self.online = online
        self.max_prompt_length = max_prompt_length
        self.eos_ids = stop_token_ids(model, tokenizer)
        self.pad_id = pad_token_id(tokenizer, self.eos_ids)
        self.chat_template = bool(getattr(tokenizer, "chat_template", None))

    def prompt_ids(self, prompt) -> list[int]:
        ids = render_prompt(self.tokenizer, prompt, chat_template=self.chat_template)
        return ids[-self.max_prompt_length :]

    def __call__(self, model, rows: list[dict]) -> Rollout:
        samples = self.online.samples_per_prompt
        prompts = [self.prompt_ids(row["prompt"]) for row in rows]
        jobs = [prompt for prompt in prompts for _ in range(samples)]
        size = self.online.generation_batch_size
        results = []
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for start in range(0, len(jobs), size):
                chunk = jobs[start : start + size]
                results += sample_batch(
                    model, chunk, self.eos_ids, self.pad_id, self.online.sampling
                )
        model.train(was_training)
        groups, texts = [], []
        for index, (row, prompt) in enumerate(zip(rows, prompts, strict=True)):
            drawn = results[index * samples : (index + 1) * samples]
            responses = [result["token_ids"] for result in drawn]
            groups.append(
                TokenizedGroup(
                    id=str(row["id"]),
                    prompt_ids=prompt,
                    response_ids=responses,
                    scores=[None] * samples,
                    labels=[None] * samples,
                )
            )
            texts.append([self.tokenizer.decode(r, skip_special_tokens=True) for r in responses])
        truncated = sum(result["finish_reason"] == "length" for result in results)
        return Rollout(groups, texts, truncated)


class ProcessRNG:
    """The sampling RNG of process `index` of several: torch's RNG state seeded by (`seed`,
    `index`), so the processes draw independent samples, swapped in while sampling. Checkpoints
    keep every process's `states` after its last draw (`restore`), so a resumed run samples on
    as an uninterrupted one.

    >>> cpu = torch.device("cpu")
    >>> first, second = ProcessRNG(0, 0, cpu), ProcessRNG(0, 1, cpu)
    >>> with first.active():
    ...     drawn = torch.rand(2)
    >>> with second.active():
    ...     other = torch.rand(2)
    >>> again = ProcessRNG(0, 0, cpu)
    >>> with again.active():
    ...     repeated = torch.rand(2)
    >>> bool((drawn != other).all()), torch.equal(drawn, repeated)
    (True, True)
    """

    def __init__(self, seed: int, index: int, device: torch.device):
        self.index, self.device = index, device
        value = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
        self.states = {"cpu": torch.Generator().manual_seed(value).get_state()}
        if device.type == "cuda":
            self.states["cuda"] = torch.Generator(device).manual_seed(value).get_state()

    @contextmanager
    def active(self):
        """torch's RNG is this stream inside the block; outside, as it was."""
        cuda = self.device.type == "cuda"
        with torch.random.fork_rng(devices=[self.device] if cuda else []):
            torch.set_rng_state(self.states["cpu"])
            if cuda:
                torch.cuda.set_rng_state(self.states["cuda"], self.device)
            yield
            self.states = {"cpu": torch.get_rng_state()}
            if cuda:
                self.states["cuda"] = torch.cuda.get_rng_state(self.device)

    def saved(self) -> dict[str, list[int]]:
        """The states as a checkpoint's state.json keeps them (byte lists)."""
        return {device: state.tolist() for device, state in self.states.items()}

    def restore(self, saved: list[dict]) -> None:
        """Take this process's states from a checkpoint's list (`saved()` of each process)."""
        if len(saved) > self.index:
            mine = saved[self.index].items()
            self.states = {device: torch.tensor(state, dtype=torch.uint8) for device, state in mine}
        if len(saved) != 0 and len(saved) <= self.index:
            warnings.warn(
                f"resume: the checkpoint holds the sampling RNG of {len(saved)} processes; "
                f"process {self.index} samples from a fresh stream",
                stacklevel=2,
            )
