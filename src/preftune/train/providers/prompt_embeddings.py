"""RPO's `prompt_embeddings` [G, D]: each group's prompt embedded by a sentence embedder
(`preftune.models.embeddings`), computed once before training and cached on disk."""

from __future__ import annotations

import torch

from preftune.models.embeddings import embed_prompts
from preftune.train.providers.base import InputProvider, MicroBatch, RunData, register_provider


@register_provider
class PromptEmbeddings(InputProvider):
    name = "prompt_embeddings"
    provides = ("prompt_embeddings",)

    def __init__(self, run: RunData):
        texts = [group.prompt_text for group in run.groups]
        self.embeddings = embed_prompts(texts, run.config.prompt_embedder)

    def provide(self, micro: MicroBatch) -> dict[str, torch.Tensor]:
        rows = [self.embeddings[group.prompt_text] for group in micro.groups]
        return {"prompt_embeddings": torch.stack(rows).to(micro.device)}
