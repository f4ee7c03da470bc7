"""Evaluate one row of a study: greedy answers, their statistics, and each judged evaluation.

Statistics (stats.json): mean gold reward, KL from the starting model, length, repetition,
distinct-2 and the share of answers ending at EOS. KL (the x axis of the DPO paper's figure 2)
is the mean of log π(y|x) − log π_start(y|x) over y sampled from π at temperature 1 (one
answer per evaluated prompt by default, `evaluation.kl_samples` to change it), with a 95%
bootstrap interval over prompts; `kl_samples: 0` uses the greedy answers instead, which costs
nothing extra but is only a log-ratio (it can be negative).

A row whose config names a served model (`generation`, backend openai: the study's own for the
start row, a method entry's for its row, an evaluation's for a "served" baseline) is sampled
over HTTP instead of loading its weights here; a chat API returns no log-probs, so a served
row's KL is not estimated (`kl_estimate` KL_SERVED, noted in the report).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from statistics import fmean

from preftune.errors import ConfigError
from preftune.experiments.config import BENCHMARK_KINDS, Evaluation, Generation, StudyConfig
from preftune.experiments.layout import SFT, START, StudyLayout
from preftune.experiments.results import KL_GREEDY, KL_SAMPLED, KL_SERVED
from preftune.generate.remote import ServedModel
from preftune.io import atomic_write_json, read_jsonl


def served_model(generation: Generation | None) -> ServedModel | None:
    """The served model `generation` names, None for the local backend (or no setting)."""
    if generation is None or not generation.served:
        return None
    from preftune.judges.http_chat import served_model as connect

    options = generation.model_dump(include={"concurrency", "api_key_env", "extra_body"})
    return connect(generation.base_url, generation.model, **options)


def row_model(config: StudyConfig, label: str, local):
    """What answers for row `label`: the served model its `generation` names (the study's own
    for the start row, the method entry's for a method), else `local` (a path or a loaded
    pair)."""
    if label == START:
        generation = config.generation
    else:
        generation = next((m.generation for m in config.methods if m.run_label == label), None)
    return served_model(generation) or local


def sample_answers(
    model, prompts: list[dict], out: Path, config: StudyConfig, seed: int | None = None
) -> list[dict]:
    """Greedy answers to the held-out prompts (temperature 0, as in the HH/TL;DR comparison
    study)."""
    from preftune.generate import generate

    return generate(
        model,
        prompts,
        out,
        max_new_tokens=config.evaluation.max_new_tokens,
        temperature=0.0,
        batch_size=config.evaluation.batch_size,
        seed=config.seed if seed is None else seed,
    )


def kl_sample_count(config: StudyConfig, evaluated: int) -> int:
    """How many prompts are sampled again for the KL estimate: `evaluation.kl_samples`, or
    every evaluated prompt when it is unset; 0 means the greedy log-ratio."""
    wanted = config.evaluation.kl_samples
    return evaluated if wanted is None else min(wanted, evaluated)


def write_stats(config: StudyConfig, samples: Path, start_model, out: Path, *, model=None) -> dict:
    """Statistics of one row's greedy answers; `model` is None for the starting model itself
    (KL 0), else the row's model, sampled again at temperature 1 for the KL estimate (none for
    a served model, which returns no log-probs)."""
    from preftune.evaluate.text_stats import text_stats

    rows = read_jsonl(samples)
    text = text_stats(rows)
    count = kl_sample_count(config, len(rows))
    stats = {
        "n": len(rows),
        "length": text["mean_length"],
        "repetition": text["repeated_trigram_share"],
        "distinct_2": text["distinct_2"],
        "eos_share": text.get("eos_share"),
        "gold_reward": _mean_gold_reward(config, rows),
        "kl": 0.0,
        "kl_ci_low": 0.0,
        "kl_ci_high": 0.0,
        "kl_n": 0 if model is None else count,
        "kl_estimate": KL_SAMPLED if count else KL_GREEDY,
    }
    if isinstance(model, ServedModel):
        stats.update(kl=None, kl_ci_low=None, kl_ci_high=None, kl_n=0, kl_estimate=KL_SERVED)
    elif model is not None:  # answers carry their log-prob under the model that wrote them
        stats.update(_kl_figures(config, model, start_model, rows, out, count))
    atomic_write_json(out, stats)
    return stats


def _mean_gold_reward(config: StudyConfig, rows: list[dict]) -> float | None:
    if config.gold_task is None:
        return None
    from preftune.tasks import get_task

    gold = get_task(config.gold_task).gold
    return fmean(gold(row["prompt"], row["response"]) for row in rows)


def _kl_figures(config, model, start_model, rows, out: Path, count: int) -> dict:
    """kl, kl_ci_low, kl_ci_high: on `count` fresh samples, or on the greedy answers if 0."""
    from preftune.evaluate import kl_from_reference

    kl_rows = rows
    if count:
        kl_rows = _sample_for_kl(model, rows[:count], out.with_name("kl_samples.jsonl"), config)
    reference, tokenizer = start_model
    found = kl_from_reference(None, reference, tokenizer, kl_rows, seed=config.seed)
    return {key: found[key] for key in ("kl", "kl_ci_low", "kl_ci_high")}


def _sample_for_kl(model, rows: list[dict], out: Path, config: StudyConfig) -> list[dict]:
    from preftune.generate import generate

    return generate(
        model,
        [{"id": row["id"], "prompt": row["prompt"]} for row in rows],
        out,
        max_new_tokens=config.evaluation.max_new_tokens,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        batch_size=config.evaluation.batch_size,
        seed=config.seed,
    )


def build_study_judge(config: StudyConfig, spec: Evaluation):
    """The judge an evaluation names; a gold judge defaults to the study task's gold reward."""
    from preftune.judges import build_judge

    options = spec.judge.options
    if spec.judge.type == "gold" and "gold" not in options:
        from preftune.tasks import get_task

        options["gold"] = get_task(config.gold_task).gold_name
    return build_judge(spec.judge.type, **options)


def baseline_rows(
    config: StudyConfig, spec: Evaluation, layout: StudyLayout, samples: Path
) -> list[dict] | Path:
    """The answers a row's `samples` are judged against under `spec`; a served baseline
    answers the same prompts (greedy, once: its file resumes by id)."""
    if spec.baseline == "served":
        answered = [{"id": row["id"], "prompt": row["prompt"]} for row in read_jsonl(samples)]
        out = layout.root / "baselines" / spec.name / "samples.jsonl"
        return sample_answers(served_model(spec.generation), answered, out, config)
    if spec.baseline in (START, SFT):
        return layout.samples(START)
    if spec.baseline == "reference":
        rows = [row for row in read_jsonl(layout.heldout) if "response" in row]
        if not rows:
            raise ConfigError(
                f"evaluation '{spec.name}': baseline 'reference' needs held-out data with "
                "preferred responses; the held-out prompts have none"
            )
        return rows
    path = Path(spec.baseline)
    if not path.is_file():
        raise ConfigError(f"evaluation '{spec.name}': baseline file '{path}' does not exist")
    return path


def judge_row(
    config: StudyConfig,
    spec: Evaluation,
    samples: Path,
    model,
    layout: StudyLayout,
    label: str,
    seed: int | None = None,
) -> dict:
    """Run one evaluation of one row into <eval>/<label>[/seed-<s>]/<evaluation>/: results.json
    for a win rate or a benchmark, mtbench.json for MT-Bench (the answers to a benchmark's or
    MT-Bench's own prompts are generated there)."""
    out = layout.judged(label, spec.name, seed)
    if spec.kind in BENCHMARK_KINDS:
        from preftune.experiments import benchmark_kinds

        return benchmark_kinds.evaluate(
            spec,
            model,
            build_study_judge(config, spec),
            out,
            generation=benchmark_generation(config, spec, seed),
            seed=config.seed,
        )
    if spec.kind == "mt-bench":
        from preftune.evaluate.mtbench import generate_answers, grade_answers

        generation = benchmark_generation(config, spec, seed)
        answers = generate_answers(
            model,
            out,
            limit=spec.limit,
            max_new_tokens=generation["max_new_tokens"],
            batch_size=generation["batch_size"],
        )
        return grade_answers(answers, build_study_judge(config, spec), out)
    from preftune.evaluate.win_rate import win_rate

    return win_rate(
        samples,
        baseline_rows(config, spec, layout, samples),
        build_study_judge(config, spec),
        out,
        seed=config.seed,
    )


def benchmark_generation(config: StudyConfig, spec: Evaluation, seed: int | None) -> dict:
    """How a row answers a benchmark's prompts: greedy, as the held-out answers, with the
    evaluation's `max_new_tokens` when it sets one."""
    return {
        "max_new_tokens": spec.max_new_tokens or config.evaluation.max_new_tokens,
        "temperature": 0.0,
        "batch_size": config.evaluation.batch_size,
        "seed": config.seed if seed is None else seed,
    }


def has_implicit_reward(method: str) -> bool:
    """Whether a method's loss is built on the reward β·log(π/π_ref) (DPO, eq. 5, and kin).
    The policy-gradient methods (grpo, rloo: `preftune.losses.online`) have none: their β
    weighs a KL penalty.

    >>> has_implicit_reward("dpo"), has_implicit_reward("online-dpo"), has_implicit_reward("grpo")
    (True, True, False)
    """
    from preftune.losses import METHODS

    spec = METHODS[method]
    policy_gradient = isinstance(spec.function, str) and spec.function.startswith("online:")
    return spec.needs_reference and "beta" in spec.hparams and not policy_gradient


class HeldOutPairs:
    """The held-out preference pairs, tokenized for the starting model and scored under it once
    (on first use): every row's preference accuracy compares its policy with these same
    reference log-probs."""

    def __init__(self, config: StudyConfig, rows: list[dict], start_model):
        from preftune.data.records import PromptGroup, Response
        from preftune.data.tokenize import tokenize

        self.rows = rows
        self.reference, self.tokenizer = start_model
        groups = [
            PromptGroup(
                row["prompt"],
                [Response(row["chosen"], 1.0), Response(row["rejected"], 0.0)],
                row["id"],
            )
            for row in rows
        ]
        keys = ("max_prompt_length", "max_length")
        limits = {key: config.train[key] for key in keys if key in config.train}
        self.tokenized, _ = tokenize(groups, self.tokenizer, **limits)
        self.batch_size = config.evaluation.batch_size
        self._reference_logps = None
        self._trunk = None  # the start model's bottom-layer states of the pairs (`trunk_for`)

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id or 0

    def reference_logps(self):
        """[pairs, 2] summed log-probs of the usable pairs under the starting model (keeping
        its bottom-layer states for `trunk_for`, when a policy asked for them first)."""
        if self._reference_logps is None:
            from preftune.evaluate.likelihood import summed_logps, usable_pairs

            self._reference_logps, _ = summed_logps(
                self.reference,
                usable_pairs(self.tokenized),
                batch_size=self.batch_size,
                pad_token_id=self.pad_token_id,
                keep_states=self._trunk,
            )
        return self._reference_logps

    def trunk_for(self, policy):
        """The starting model's states of the pairs at the depth up to which `policy` has its
        layers bit for bit (a row trained with `trainable_layers`), or None: scoring the pairs
        then runs only the policy's top layers, with the same numbers (same batches). Kept by
        the first `reference_logps` call after it; a later depth starts empty (the policy's
        own bottom layers fill it). None as well when the states would pass
        `DEFAULT_CAP_BYTES` (they are held in memory)."""
        from preftune.models.trunk import DEFAULT_CAP_BYTES, TrunkStates, shared_depth

        depth = shared_depth(self.reference, policy)
        if depth == 0 or self._states_bytes > DEFAULT_CAP_BYTES:
            return None
        if self._trunk is None or self._trunk.depth != depth:
            self._trunk = TrunkStates(None, depth)
        return self._trunk

    @cached_property
    def _states_bytes(self) -> int:
        """What the pairs' states take in memory (the same for every row)."""
        from preftune.evaluate.likelihood import usable_pairs
        from preftune.models.trunk import estimated_bytes

        return estimated_bytes(self.reference, usable_pairs(self.tokenized))


def write_preference_accuracy(entry, pairs: HeldOutPairs, policy, out: Path) -> dict:
    """How often the implicit reward β·(log π − log π_start) orders a held-out pair as the data
    do (Chen et al. 2024, "Preference learning algorithms do not learn preference rankings");
    `policy` is the row's trained model (a path or `LocalModel`); written to `out` as
    {"accuracy", "n", "beta", "pairs_source"}."""
    from preftune.evaluate.likelihood import ranking_accuracy
    from preftune.generate import load_for_generation
    from preftune.losses import METHODS

    beta = entry.hparams.get("beta", METHODS[entry.method].defaults["beta"])
    model, _, _ = load_for_generation(policy)
    trunk = pairs.trunk_for(model)
    figures = ranking_accuracy(
        model,
        pairs.tokenized,
        reference_logps=pairs.reference_logps(),
        beta=beta,
        batch_size=pairs.batch_size,
        pad_token_id=pairs.pad_token_id,
        trunk=trunk,
    )
    result = {
        "accuracy": figures["reward_accuracy"],
        "n": figures["n"],
        "beta": beta,
        "pairs_source": pairs.rows[0]["source"],
    }
    atomic_write_json(out, result)
    return result
