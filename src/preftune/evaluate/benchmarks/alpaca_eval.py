"""AlpacaEval 2.0 (Dubois et al. 2024, "Length-Controlled AlpacaEval") through the maintained
`alpaca-eval` package.

The package owns the method: the annotator configs and their prompts, the requests they
make (logprobs of one token for `weighted_alpaca_eval_gpt4_turbo`, a function call for
`alpaca_eval_gpt4_turbo_fn`), the output parsing, the win rate, its standard error and the
length-controlled (LC) win rate. preftune supplies the evaluated outputs, the reference
outputs, the client settings (endpoint, judge model, key, timeout, retries) and caching:
every annotation is written to annotations.json after each chunk, keyed by annotator, judge
model, endpoint, instruction and both outputs, so a rerun pays nothing twice and an
interrupted run resumes.

How the package is driven, through its own options only: the named annotator config is
copied with `model_name` set to the judge model (`annotators_config` accepts any config
path), the endpoint goes in a client config file (`client_config_path`, base URL only; the
key is passed in memory as `client_kwargs`), chat completions are forced with
`requires_chatml` (the package would send model names containing "instruct" to the legacy
completions API), and the package's own cache is off (`caching_path=None`).

LC needs each instruction's difficulty, which the package reads from `df_gamed.csv` in the
`tatsu-lab/alpaca_eval` Hub dataset (through the Hugging Face cache, so it works offline
once cached). It is reported only for the AlpacaEval instructions (rows that know their
index in the 805-instruction set) and when the package can fit it; otherwise
`lc_win_rate` is null and `lc_unavailable` says why.
"""

from __future__ import annotations

import math
from pathlib import Path

from preftune.errors import ConfigError, DataError
from preftune.evaluate.benchmarks.common import (
    answer_prompts,
    read_rows,
    require_fields,
    unmatched,
)
from preftune.generate.prompts import prompt_text
from preftune.io import atomic_write_json, atomic_write_text, read_text, register_secret
from preftune.judges.base import JudgeError
from preftune.judges.http_chat import ChatClient
from preftune.judges.store import judgment_key

DEFAULT_ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
HUB_DATASET = ("tatsu-lab/alpaca_eval", "alpaca_eval_gpt4_baseline.json")
ALPACA_EVAL_SIZE = 805
INSTALL = "pip install 'preftune[alpacaeval]'"
RESULT_FIELDS = ("instruction", "output", "generator")


def _package():
    """The alpaca_eval package, or a ConfigError naming the pip command."""
    try:
        import alpaca_eval
        import alpaca_eval.annotators  # noqa: F401
        import alpaca_eval.metrics  # noqa: F401
    except ImportError as error:
        raise ConfigError(
            f"AlpacaEval needs the alpaca-eval package ({error}): {INSTALL}"
        ) from None
    return alpaca_eval


def check_annotator(name: str) -> None:
    """ConfigError (naming the pip command, or listing the valid names) before any work."""
    valid = annotator_names()
    if name not in valid:
        raise ConfigError(f"--annotator '{name}' is not one of {valid}")


def annotator_names() -> list[str]:
    """The package's annotator configs that call an OpenAI-compatible chat endpoint."""
    import yaml

    root = Path(_package().constants.EVALUATORS_CONFIG_DIR)
    names = []
    for config in sorted(root.glob("*/configs.yaml")):
        annotators = yaml.safe_load(read_text(config, what="annotator config")) or {}
        if len(annotators) == 1 and all(
            entry.get("fn_completions") == "openai_completions" for entry in annotators.values()
        ):
            names.append(config.parent.name)
    return names


def _annotator_config(name: str, judge_model: str, base_url: str, folder: Path) -> Path:
    """The package's config for `name` with the judge model set, and the client config that
    points it at `base_url`; both written under `folder`. Returns the annotator config."""
    import yaml

    check_annotator(name)
    source = Path(_package().constants.EVALUATORS_CONFIG_DIR) / name / "configs.yaml"
    ((key, settings),) = yaml.safe_load(read_text(source, what="annotator config")).items()
    settings["prompt_template"] = str(source.parents[1] / settings["prompt_template"])
    settings["completions_kwargs"]["model_name"] = judge_model
    config = folder / name / "configs.yaml"
    atomic_write_text(config, yaml.safe_dump({key: settings}, sort_keys=False))
    atomic_write_text(
        folder / "client_configs.yaml", yaml.safe_dump({"default": [{"base_url": base_url}]})
    )
    return config


def evaluation_set(path: str | Path | None = None) -> list[dict]:
    """The instructions with their reference outputs: {"instruction", "output", "generator",
    "dataset", "index"}, from a local JSON/JSONL file or the Hub (`tatsu-lab/alpaca_eval`,
    GPT-4 Turbo references). `index` is the row's place in the 805 AlpacaEval instructions
    (the file's `index` field, else the row position when the file holds all 805), None for
    a custom set; LC needs it.

    >>> import json, pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "set.json"
    >>> _ = path.write_text(json.dumps([{"instruction": "Hi?", "output": "Hi!", "generator": "g"}]))
    >>> evaluation_set(path)
    [{'instruction': 'Hi?', 'output': 'Hi!', 'generator': 'g', 'dataset': None, 'index': None}]
    """
    if path is None:
        from huggingface_hub import hf_hub_download

        repo, filename = HUB_DATASET
        try:
            path = hf_hub_download(repo, filename, repo_type="dataset")
        except OSError as error:
            raise DataError(
                f"cannot load {repo}/{filename} from the Hub ({type(error).__name__}); "
                "give --reference FILE (JSON/JSONL with instruction, output, generator)"
            ) from None
    rows = read_rows(path, what="AlpacaEval reference")
    require_fields(rows, RESULT_FIELDS, source=str(path))
    whole_set = len(rows) == ALPACA_EVAL_SIZE
    return [
        {
            "instruction": row["instruction"],
            "output": row["output"],
            "generator": row["generator"],
            "dataset": row.get("dataset"),
            "index": row.get("index", position if whole_set else None),
        }
        for position, row in enumerate(rows)
    ]


def outputs_from_samples(path: str | Path, evaluation: list[dict]) -> dict[str, dict]:
    """The evaluated outputs by instruction, from preftune samples ({"id", "prompt",
    "response"}) or AlpacaEval outputs ({"instruction", "output"}); outputs whose instruction
    is not in the evaluation set are an error naming their ids."""
    rows = read_rows(path, what="samples")
    outputs: dict[str, dict] = {}
    for number, row in enumerate(rows, start=1):
        instruction = row.get("instruction")
        if instruction is None and row.get("prompt") is not None:
            instruction = prompt_text(row["prompt"])
        output = row.get("output", row.get("response"))
        for field, value in (("instruction", instruction), ("output", output)):
            if value is None:
                raise DataError(f"row {number} has no value", source=str(path), field=field)
        outputs.setdefault(
            instruction,
            {
                "id": str(row.get("id", number)),
                "output": output,
                "generator": row.get("generator") or row.get("model") or Path(path).stem,
            },
        )
    wanted = {row["instruction"] for row in evaluation}
    stray = [out["id"] for instruction, out in outputs.items() if instruction not in wanted]
    if stray:
        raise unmatched(stray, f"outputs in {path} answer no instruction of the evaluation set")
    return outputs


def generate_outputs(model_or_path, evaluation: list[dict], out_dir, **options) -> dict[str, dict]:
    """Answer every instruction with `model_or_path` (resumable: DIR/outputs.jsonl)."""
    prompts = [{"id": str(n), "prompt": row["instruction"]} for n, row in enumerate(evaluation)]
    samples = answer_prompts(model_or_path, prompts, Path(out_dir) / "outputs.jsonl", **options)
    return {
        row["instruction"]: {
            "id": str(n),
            "output": samples[str(n)]["response"],
            "generator": samples[str(n)]["model"],
        }
        for n, row in enumerate(evaluation)
    }


def _pairs(evaluation: list[dict], outputs: dict[str, dict], identity: str) -> list[dict]:
    missing = [str(n) for n, row in enumerate(evaluation) if row["instruction"] not in outputs]
    if missing:
        raise unmatched(missing, "instructions of the evaluation set (by row) have no output")
    pairs = []
    for row in evaluation:
        output = outputs[row["instruction"]]
        pairs.append(
            {
                "key": judgment_key(identity, row["instruction"], row["output"], output["output"]),
                "id": output["id"],
                "index": row["index"],
                "dataset": row["dataset"],
                "instruction": row["instruction"],
                "output_1": row["output"],
                "generator_1": row["generator"],
                "output_2": output["output"],
                "generator_2": output["generator"],
            }
        )
    return pairs


def _plain(value):
    """A JSON-ready value: numpy scalars to Python, NaN to None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _annotate(annotator, todo: list[dict], client: dict, chunk_size: int, save) -> None:
    """Annotate `todo` in chunks with the package, calling `save(rows)` after each chunk."""
    import openai

    for start in range(0, len(todo), chunk_size):
        chunk = todo[start : start + chunk_size]
        try:
            annotated = annotator.annotate_pairs(chunk, **client)
        except openai.OpenAIError as error:
            raise JudgeError(
                f"the judge endpoint failed after every retry ({type(error).__name__}: {error}); "
                "finished annotations are kept, rerun to resume"
            ) from None
        save([_plain(row) for row in annotated])


def _length_controlled(annotations: list[dict]) -> tuple[dict, str | None]:
    """The package's LC win rate, or why it cannot be computed here."""
    import pandas as pd
    from alpaca_eval.metrics import get_length_controlled_winrate

    if any(row["index"] is None for row in annotations):
        return {}, (
            "LC needs each instruction's place in the 805 AlpacaEval instructions "
            "(an `index` field, or the whole set); this is a custom set"
        )
    frame = pd.DataFrame(annotations)
    try:
        metrics = get_length_controlled_winrate(
            frame, save_weights_dir=None, is_add_glm_preference_inplace=False
        )
    except OSError as error:
        return {}, (
            "LC needs df_gamed.csv from the tatsu-lab/alpaca_eval Hub dataset, which is not "
            f"in the Hugging Face cache ({type(error).__name__})"
        )
    except ValueError as error:
        return {}, f"the package could not fit the LC model ({error})"
    return metrics, None


def alpaca_eval(
    outputs: dict[str, dict],
    evaluation: list[dict],
    out_dir,
    client: ChatClient,
    *,
    annotator: str = DEFAULT_ANNOTATOR,
    concurrency: int = 8,
    chunk_size: int = 32,
) -> dict:
    """Annotate every (reference, output) pair with an AlpacaEval annotator and report the
    package's metrics as fractions; writes DIR/annotations.json and DIR/results.json.

    `outputs` maps each instruction to {"id", "output", "generator"}
    (`outputs_from_samples` / `generate_outputs`); `evaluation` comes from `evaluation_set`;
    `client` gives the endpoint, judge model, key, timeout and retries.
    """
    package = _package()
    out_dir = Path(out_dir)
    base_url = client.url.removesuffix("/chat/completions")
    config = _annotator_config(annotator, client.model, base_url, out_dir / "annotator")
    identity = f"alpaca_eval:{annotator}:{client.model}:{base_url}"
    pairs = _pairs(evaluation, outputs, identity)
    path = out_dir / "annotations.json"
    done = _usable_annotations(path)
    cache_hits = sum(pair["key"] in done for pair in pairs)
    todo = [pair for pair in pairs if pair["key"] not in done]

    def save(rows: list[dict]) -> None:
        done.update((row["key"], row) for row in rows)
        atomic_write_json(path, [done.get(pair["key"], pair) for pair in pairs])

    settings = _annotation_settings(client, config, concurrency)
    annotator_pool = package.annotators.PairwiseAnnotator(
        annotators_config=str(config), caching_path=None
    )
    _annotate(annotator_pool, todo, settings, chunk_size, save)
    annotations = [done.get(pair["key"], {**pair, "preference": None}) for pair in pairs]
    save(annotations)
    results = {
        "benchmark": "alpaca_eval",
        "annotator": annotator,
        "judge_model": client.model,
        **_annotation_metrics(package, pairs, annotations),
        "cache_hits": cache_hits,
    }
    results = _plain(results)
    atomic_write_json(out_dir / "results.json", results)
    return results


def _usable_annotations(path: Path) -> dict[str, dict]:
    """The annotations an earlier run saved with a preference, by key (a rerun keeps them)."""
    rows = read_rows(path, what="annotations") if path.exists() else []
    return {row["key"]: row for row in rows if row.get("preference") is not None}


def _annotation_settings(client: ChatClient, config: Path, concurrency: int) -> dict:
    """The annotator's client settings; the key is registered as a secret, so never logged."""
    register_secret(client.api_key)
    return {
        "client_config_path": str(config.parents[1] / "client_configs.yaml"),
        # a local server needs no key, but the openai client insists on one
        "client_kwargs": {
            "api_key": client.api_key or "none",
            "timeout": client.timeout,
            "max_retries": client.max_retries,
        },
        "num_procs": concurrency,
        "requires_chatml": True,
    }


def _annotation_metrics(package, pairs: list[dict], annotations: list[dict]) -> dict:
    """The package's win rates (as fractions), LC win rate and counts over the judged pairs."""
    judged = [row for row in annotations if row.get("preference") is not None]
    if not judged:
        raise JudgeError(f"the judge gave no usable annotation for any of {len(pairs)} pairs")
    metrics = _plain(package.metrics.get_winrate(judged))
    lc, lc_unavailable = _length_controlled(judged)
    return {
        "generator": pairs[0]["generator_2"],
        "reference_generator": pairs[0]["generator_1"],
        "win_rate": metrics["win_rate"] / 100,
        "standard_error": metrics["standard_error"] / 100
        if metrics["standard_error"] is not None
        else None,
        "lc_win_rate": lc["length_controlled_winrate"] / 100 if lc else None,
        "lc_standard_error": lc["lc_standard_error"] / 100 if lc else None,
        "lc_unavailable": lc_unavailable,
        "discrete_win_rate": metrics["discrete_win_rate"] / 100,
        "n": metrics["n_total"],
        "n_wins": metrics["n_wins"],
        "n_wins_base": metrics["n_wins_base"],
        "n_draws": metrics["n_draws"],
        "errors": len(annotations) - len(judged),
    }
