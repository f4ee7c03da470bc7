"""Batched sampling from a causal LM into a resumable samples file.

Each output line is {"id", "prompt", "response", "model", "generation_config",
"finish_reason", "num_tokens", "logp", "response_token_ids"} plus "sample" when n > 1.
`num_tokens` counts the generated tokens including the closing EOS; `logp` is their summed
log-prob under the generating model's own distribution (raw logits: no temperature, top-k or
top-p), which under plain sampling from the reference is the reference log-prob for free.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from preftune.errors import ConfigError
from preftune.generate.prompts import render_prompt
from preftune.io import JsonlAppender, read_jsonl


def resolve_model_path(path: str | Path) -> str:
    """A training run folder stands for its final model (<run>/final); anything else as given."""
    final = Path(path) / "final"
    return str(final) if (final / "config.json").exists() else str(path)


def load_for_generation(model_or_path, dtype: str = "fp32"):
    """(model, tokenizer, name) from a path / Hub id / run folder, or from a loaded pair."""
    if isinstance(model_or_path, tuple):
        model, tokenizer = model_or_path
        return model, tokenizer, str(getattr(model.config, "name_or_path", "") or "model")
    from preftune.models.loading import load_model, load_tokenizer

    path = resolve_model_path(model_or_path)
    return load_model(path, dtype=dtype).eval(), load_tokenizer(path), str(model_or_path)


def _eos_ids(model, tokenizer) -> list[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if i is not None)


def _left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, sequence in enumerate(sequences):
        input_ids[row, longest - len(sequence) :] = torch.tensor(sequence)
        attention_mask[row, longest - len(sequence) :] = 1
    return input_ids, attention_mask


def _sample_batch(model, prompt_ids, eos_ids, pad_id, config) -> list[dict]:
    """Generate one batch; per row the kept tokens (up to and including EOS) and their log-prob."""
    device = next(model.parameters()).device
    input_ids, attention_mask = _left_pad(prompt_ids, pad_id)
    sampling = config["temperature"] > 0
    kwargs = {"do_sample": sampling}
    if sampling:
        kwargs.update(
            temperature=config["temperature"], top_k=config["top_k"], top_p=config["top_p"]
        )
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            max_new_tokens=config["max_new_tokens"],
            eos_token_id=eos_ids,
            pad_token_id=pad_id,
            output_logits=True,
            return_dict_in_generate=True,
            **kwargs,
        )
    generated = out.sequences[:, input_ids.shape[1] :]
    step_logps = torch.stack(
        [
            torch.log_softmax(logits.float(), dim=-1).gather(-1, generated[:, t, None]).squeeze(-1)
            for t, logits in enumerate(out.logits)
        ],
        dim=1,
    )
    rows = []
    for tokens, logps in zip(generated.tolist(), step_logps, strict=True):
        stop = next((t for t, token in enumerate(tokens) if token in eos_ids), None)
        kept = len(tokens) if stop is None else stop + 1
        rows.append(
            {
                "token_ids": tokens[:kept],
                "finish_reason": "length" if stop is None else "eos",
                "logp": float(logps[:kept].sum()),
            }
        )
    return rows


def generate(
    model_or_path,
    prompts: list[dict],
    out_path: str | Path,
    *,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    n: int = 1,
    batch_size: int = 8,
    seed: int = 0,
    chat_template: bool = True,
    dtype: str = "fp32",
    model_name: str | None = None,
) -> list[dict]:
    """Sample `n` responses per prompt ({"id", "prompt"}; prompt a string or chat messages).

    `model_or_path` is a Hub id, model folder, training run folder or a loaded
    (model, tokenizer) pair. Greedy when temperature is 0. Rows already in `out_path` (same
    id and sample index) are kept and not generated again; the file must have been written
    with the same generation settings. `model_name` labels the rows' "model" field (default:
    the path, or the loaded model's name_or_path). Returns the rows for `prompts`, in order.
    """
    if n < 1 or max_new_tokens < 1 or batch_size < 1:
        raise ConfigError("n, max_new_tokens and batch_size must be at least 1")
    if n > 1 and temperature == 0:
        raise ConfigError(f"n={n} samples per prompt need temperature > 0 (greedy repeats itself)")
    ids = [str(p["id"]) for p in prompts]
    if len(set(ids)) != len(ids):
        raise ConfigError("prompt ids must be unique")
    config = {
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "n": n,
        "seed": seed,
        "chat_template": chat_template,
    }
    done = {(str(r["id"]), r.get("sample", 0)): r for r in read_jsonl(out_path)}
    for row in done.values():
        if row["generation_config"] != config:
            raise ConfigError(
                f"{out_path} holds samples made with other generation settings "
                f"({row['generation_config']}, now {config}); write to another file"
            )
    jobs = [(p, s) for p in prompts for s in range(n) if (str(p["id"]), s) not in done]
    if jobs:
        model, tokenizer, name = load_for_generation(model_or_path, dtype)
        was_training = model.training
        model.eval()  # no dropout while sampling; a model in training mode gets it back
        try:
            done.update(
                _run_jobs(model, tokenizer, model_name or name, jobs, out_path, config, batch_size)
            )
        finally:
            model.train(was_training)
    return [done[(str(p["id"]), s)] for p in prompts for s in range(n)]


def _run_jobs(model, tokenizer, name, jobs, out_path, config, batch_size) -> dict:
    torch.manual_seed(config["seed"])
    eos_ids = _eos_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    rendered = [
        render_prompt(tokenizer, p["prompt"], chat_template=config["chat_template"])
        for p, _ in jobs
    ]
    order = sorted(range(len(jobs)), key=lambda i: len(rendered[i]))  # similar lengths pad less
    written = {}
    with (
        JsonlAppender(out_path) as out,
        tqdm(total=len(jobs), desc="generate", unit="sample") as bar,
    ):
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            results = _sample_batch(model, [rendered[i] for i in chunk], eos_ids, pad_id, config)
            for i, result in zip(chunk, results, strict=True):
                prompt, sample = jobs[i]
                row = {
                    "id": str(prompt["id"]),
                    "prompt": prompt["prompt"],
                    "response": tokenizer.decode(result["token_ids"], skip_special_tokens=True),
                    "model": name,
                    "generation_config": config,
                    "finish_reason": result["finish_reason"],
                    "num_tokens": len(result["token_ids"]),
                    "logp": result["logp"],
                    "response_token_ids": result["token_ids"],
                }
                if config["n"] > 1:
                    row["sample"] = sample
                out.write(row)
                written[(row["id"], sample)] = row
            bar.update(len(chunk))
    return written
