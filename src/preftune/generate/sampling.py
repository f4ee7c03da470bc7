"""Batched sampling from a causal LM, or from a model served over HTTP, into a resumable
samples file.

Each output line is {"id", "prompt", "response", "model", "generation_config",
"finish_reason", "num_tokens", "logp", "response_token_ids"} plus "sample" when n > 1, and
"model_fingerprint" (the weights files' sizes and times, and the dtype) for a model given by
name or path. A rerun resumes the file only when every row was made by the same model, with
the same settings, for the same prompt text; otherwise it stops and says so (start over with
`overwrite=True` / `--overwrite`, or write elsewhere), so old and new answers never mix.
`num_tokens` counts the generated tokens including the closing EOS; `logp` is their summed
log-prob under the generating model's own distribution (raw logits: no temperature, top-k or
top-p), which under plain sampling from the reference is the reference log-prob for free.
A `ServedModel` (generate/remote.py) is asked over HTTP instead; its rows lack `logp` and
`response_token_ids`, and their generation_config names the backend and the server.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from preftune.errors import ConfigError
from preftune.generate.decode import sample_batch
from preftune.generate.prompts import render_prompt
from preftune.generate.remote import ServedModel, check_served, sample_served
from preftune.io import JsonlAppender, read_numbered_jsonl, require_fields


def resolve_model_path(path: str | Path) -> str:
    """A training run folder stands for its final model (<run>/final); anything else as given.

    >>> import pathlib, tempfile
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> resolve_model_path(run) == str(run)  # no final model yet
    True
    >>> (run / "final").mkdir(); _ = (run / "final" / "config.json").write_text("{}")
    >>> resolve_model_path(run) == str(run / "final")
    True
    >>> resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct")
    'HuggingFaceTB/SmolLM2-135M-Instruct'
    """
    final = Path(path) / "final"
    return str(final) if (final / "config.json").exists() else str(path)


class LocalModel:
    """A local model named by a path, Hub id or run folder, loaded on first use and then kept,
    so the `generate` calls and scorers of one evaluation share one load. Rows it writes are
    labelled and fingerprinted as the path's, exactly as if the path had been given.

    >>> import tempfile
    >>> from preftune.testing import save_tiny_model
    >>> folder = save_tiny_model(tempfile.mkdtemp())
    >>> local = LocalModel(folder)
    >>> model_label(local) == str(folder), load_for_generation(local)[0] is local.loaded()[0]
    (True, True)
    """

    def __init__(self, path: str | Path, dtype: str = "fp32"):
        self.path = str(path)
        self.dtype = dtype
        self._pair = None

    def __str__(self) -> str:
        return self.path

    def loaded(self, dtype: str | None = None) -> tuple:
        """(model, tokenizer), loaded once; ConfigError for a dtype other than its own."""
        if dtype not in (None, self.dtype):
            raise ConfigError(f"{self.path} is kept loaded in {self.dtype}, not {dtype}")
        if self._pair is None:
            from preftune.models.loading import load_model, load_tokenizer

            path = resolve_model_path(self.path)
            self._pair = load_model(path, dtype=self.dtype).eval(), load_tokenizer(path)
        return self._pair


def model_label(model_or_path) -> str:
    """The name rows are labelled with: the path / Hub id given, a served model's name, or a
    loaded model's own."""
    if isinstance(model_or_path, ServedModel):
        return model_or_path.model
    if isinstance(model_or_path, tuple):
        return str(getattr(model_or_path[0].config, "name_or_path", "") or "model")
    return str(model_or_path)


def load_for_generation(model_or_path, dtype: str = "fp32"):
    """(model, tokenizer, name) from a path / Hub id / run folder, a `LocalModel` (its kept
    load) or a loaded pair."""
    if isinstance(model_or_path, tuple):
        model, tokenizer = model_or_path
        return model, tokenizer, model_label(model_or_path)
    if isinstance(model_or_path, LocalModel):
        return *model_or_path.loaded(dtype), model_label(model_or_path)
    from preftune.models.loading import load_model, load_tokenizer

    path = resolve_model_path(model_or_path)
    return load_model(path, dtype=dtype).eval(), load_tokenizer(path), model_label(model_or_path)


def _fingerprint(model_or_path, dtype: str) -> str | None:
    """What identifies a named model's weights (None for a model passed in loaded or served)."""
    if isinstance(model_or_path, (tuple, ServedModel)):
        return None
    from preftune.models.loading import check_model_source
    from preftune.models.reference import model_fingerprint

    path = resolve_model_path(str(model_or_path))
    check_model_source(path)
    local = Path(path).expanduser()
    return model_fingerprint(str(local.resolve()) if local.is_dir() else path, dtype, None)


def _same_model_name(stored: str | None, current: str) -> bool:
    """The same label, or two spellings of one local folder ("./run" and "run")."""
    if stored == current:
        return True
    return (
        bool(stored) and Path(stored).exists() and Path(stored).resolve() == Path(current).resolve()
    )


START_OVER = "pass --overwrite (overwrite=True) to start it over, or write to a new --out"


def _check_resumable(done: dict, prompts: list[dict], config: dict, model: dict, out_path):
    """Refuse to resume a samples file made by another model, with other settings or for
    other prompt text (ConfigError naming the first difference)."""
    prompt_by_id = {str(p["id"]): p["prompt"] for p in prompts}
    for row in done.values():
        if row.get("generation_config") != config:
            raise ConfigError(
                f"{out_path} holds samples made with other generation settings "
                f"({row.get('generation_config')}, now {config}); {START_OVER}"
            )
        same_name = _same_model_name(row.get("model"), model["model"])
        fingerprints = row.get("model_fingerprint"), model["model_fingerprint"]
        if not same_name or (all(fingerprints) and len(set(fingerprints)) > 1):
            changed = "" if not same_name else " (its weights or dtype changed)"
            raise ConfigError(
                f"{out_path} holds samples from model '{row.get('model')}', not "
                f"'{model['model']}'{changed}; {START_OVER}"
            )
        if row["id"] in prompt_by_id and row.get("prompt") != prompt_by_id[row["id"]]:
            raise ConfigError(
                f"{out_path} holds samples for another text of prompt '{row['id']}'; {START_OVER}"
            )


def stop_token_ids(model, tokenizer) -> list[int]:
    """The tokens that end an answer: the tokenizer's EOS and the model's configured ones."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if i is not None)


def pad_token_id(tokenizer, eos_ids: list[int]) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]


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
    overwrite: bool = False,
) -> list[dict]:
    """Sample `n` responses per prompt ({"id", "prompt"}; prompt a string or chat messages).

    `model_or_path` is a Hub id, model folder, training run folder, a loaded
    (model, tokenizer) pair, or a `ServedModel` (asked over HTTP, `batch_size` and `dtype`
    unused; `preftune.judges.http_chat.served_model` makes one). Greedy when temperature is
    0. Rows already in `out_path` (same
    id and sample index) are kept and not generated again; the file must have been written
    by the same model, with the same settings, for the same prompt text (else ConfigError;
    `overwrite=True` starts the file over). `model_name` labels the rows' "model" field
    (default: the path, or the loaded model's name_or_path). Returns the rows for `prompts`,
    in order.
    """
    _check_settings(
        prompts, n=n, max_new_tokens=max_new_tokens, batch_size=batch_size, temperature=temperature
    )
    config = {
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "n": n,
        "seed": seed,
        "chat_template": chat_template,
    }
    served = isinstance(model_or_path, ServedModel)
    if served:
        check_served(config)
        config.update(model_or_path.settings())
    identity = {
        "model": model_name or model_label(model_or_path),
        "model_fingerprint": _fingerprint(model_or_path, dtype),
    }
    done = _resumable_rows(out_path, prompts, config, identity, overwrite=overwrite)
    jobs = [(p, s) for p in prompts for s in range(n) if (str(p["id"]), s) not in done]
    if jobs:
        done.update(
            _sample_jobs(model_or_path, dtype, identity, jobs, out_path, config, batch_size)
        )
    return [done[(str(p["id"]), s)] for p in prompts for s in range(n)]


def _check_settings(prompts: list[dict], *, n, max_new_tokens, batch_size, temperature) -> None:
    if n < 1 or max_new_tokens < 1 or batch_size < 1:
        raise ConfigError("n, max_new_tokens and batch_size must be at least 1")
    if n > 1 and temperature == 0:
        raise ConfigError(f"n={n} samples per prompt need temperature > 0 (greedy repeats itself)")
    ids = [str(p["id"]) for p in prompts]
    if len(set(ids)) != len(ids):
        raise ConfigError("prompt ids must be unique")


def _resumable_rows(out_path, prompts, config: dict, identity: dict, *, overwrite: bool) -> dict:
    """The rows already in `out_path` by (id, sample index), after `_check_resumable`; none
    when `overwrite` (the file is removed)."""
    if overwrite:
        Path(out_path).unlink(missing_ok=True)
    numbered = read_numbered_jsonl(out_path)
    require_fields(out_path, numbered, ("id", "response", "model", "generation_config"))
    done = {(str(r["id"]), r.get("sample", 0)): r for _, r in numbered}
    _check_resumable(done, prompts, config, identity, out_path)
    return done


def _sample_jobs(model_or_path, dtype, identity, jobs, out_path, config, batch_size) -> dict:
    """Sample the (prompt, sample index) jobs: over HTTP for a served model, else with the
    model loaded here in eval mode (its training mode is restored afterwards)."""
    if isinstance(model_or_path, ServedModel):
        return _sample_served_jobs(model_or_path, identity, jobs, out_path, config)
    model, tokenizer, _ = load_for_generation(model_or_path, dtype)
    identity["model_fingerprint"] = _fingerprint(model_or_path, dtype)  # now downloaded
    was_training = model.training
    model.eval()  # no dropout while sampling; a model in training mode gets it back
    try:
        return _run_jobs(model, tokenizer, identity, jobs, out_path, config, batch_size)
    finally:
        model.train(was_training)


def _sample_served_jobs(served, identity, jobs, out_path, config) -> dict:
    """Ask the served model for every job; each row is written as its answer arrives."""
    written = {}
    with JsonlAppender(out_path) as out:

        def write(job, response, finish_reason, num_tokens):
            row = _row(job, identity, config, response, finish_reason)
            if num_tokens is not None:
                row["num_tokens"] = num_tokens
            out.write(row)
            written[(row["id"], job[1])] = row

        sample_served(served, jobs, config, write)
    return written


def _row(job: tuple[dict, int], identity: dict, config: dict, response: str, finish_reason):
    """A samples-file row without the backend's own fields (tokens, log-prob)."""
    prompt, sample = job
    row = {
        "id": str(prompt["id"]),
        "prompt": prompt["prompt"],
        "response": response,
        "model": identity["model"],
        "generation_config": config,
        "finish_reason": finish_reason,
    }
    if config["n"] > 1:
        row["sample"] = sample
    if identity["model_fingerprint"] is not None:
        row["model_fingerprint"] = identity["model_fingerprint"]
    return row


def _batches(jobs: list[tuple[dict, int]], rendered: dict, batch_size: int) -> list[list[int]]:
    """Job indices per batch: prompts in order of length (similar lengths pad less), the
    samples of one prompt in the same batch (its prompt is then encoded once) unless they
    outnumber a batch."""
    by_prompt: dict[str, list[int]] = {}
    for index, (prompt, _) in enumerate(jobs):
        by_prompt.setdefault(str(prompt["id"]), []).append(index)
    batches, current = [], []
    for prompt_id in sorted(by_prompt, key=lambda key: len(rendered[key])):
        samples = by_prompt[prompt_id]
        for start in range(0, len(samples), batch_size):
            part = samples[start : start + batch_size]
            if len(current) + len(part) > batch_size:
                batches.append(current)
                current = []
            current += part
    return [*batches, current] if current else batches


def _run_jobs(model, tokenizer, identity, jobs, out_path, config, batch_size) -> dict:
    torch.manual_seed(config["seed"])
    eos_ids = stop_token_ids(model, tokenizer)
    pad_id = pad_token_id(tokenizer, eos_ids)
    rendered = {
        str(p["id"]): render_prompt(tokenizer, p["prompt"], chat_template=config["chat_template"])
        for p, _ in jobs
    }
    written = {}
    with (
        JsonlAppender(out_path) as out,
        tqdm(total=len(jobs), desc="generate", unit="sample") as bar,
    ):
        for chunk in _batches(jobs, rendered, batch_size):
            prompt_ids = [rendered[str(jobs[i][0]["id"])] for i in chunk]
            results = sample_batch(model, prompt_ids, eos_ids, pad_id, config)
            for i, result in zip(chunk, results, strict=True):
                text = tokenizer.decode(result["token_ids"], skip_special_tokens=True)
                row = _row(jobs[i], identity, config, text, result["finish_reason"])
                row["num_tokens"] = len(result["token_ids"])
                row["logp"] = result["logp"]
                row["response_token_ids"] = result["token_ids"]
                out.write(row)
                written[(row["id"], jobs[i][1])] = row
            bar.update(len(chunk))
    return written
