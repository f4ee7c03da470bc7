"""The published benchmarks as study evaluations: `kind: alpaca-eval | arena-hard |
mt-bench-pairwise` (docs/benchmarks.md).

Each row of the study (start, every method and seed) answers the benchmark's own prompts
greedily with its model and is judged against the benchmark's fixed baseline (AlpacaEval's
reference outputs, or a baseline model's Arena-Hard / MT-Bench answers) by
`preftune.evaluate.benchmarks`, into eval/<label>[/seed-<s>]/<evaluation>/: the answers
(resumable by id), the judge's cache (a rerun pays nothing twice) and results.json. The study
then reads back, from those files only:

- `row_figures`: the row's win rate against the baseline with its 95% interval (Arena-Hard:
  the Bradley-Terry score, which is that win rate; AlpacaEval: also the LC win rate);
- `prompt_outcomes`: each prompt's outcome against the baseline (1 win, 0.5 tie, 0 loss;
  AlpacaEval's weighted annotator gives a probability), which the ranking compares across
  rows like scores (the anchored path of `experiments.ranking`);
- `judge_requests`: what the plan announces before anything runs.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from statistics import NormalDist, fmean

from preftune.errors import ConfigError, DataError
from preftune.experiments.config import Evaluation
from preftune.experiments.layout import read_json
from preftune.io import atomic_write_json

DEFAULT_ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"  # the AlpacaEval 2.0 leaderboard's
HUB_REFERENCE_GENERATOR = "gpt4_turbo"  # who wrote the Hub set's reference outputs
# Prompts of each benchmark when neither `limit` nor a file says otherwise.
SIZES = {"alpaca-eval": 805, "arena-hard": 500, "mt-bench-pairwise": 80}
# Judge requests per prompt: one annotation; two games; two turns in both orders.
REQUESTS_PER_PROMPT = {"alpaca-eval": 1, "arena-hard": 2, "mt-bench-pairwise": 4}
PROMPT_FILES = {"alpaca-eval": "reference", "arena-hard": "questions"}
Z_95 = NormalDist().inv_cdf(0.975)
OUTCOMES = {"a": 1.0, "tie": 0.5, "b": 0.0}  # MT-Bench pairwise winners, the model as A


def annotator(spec: Evaluation) -> str:
    return spec.annotator or DEFAULT_ANNOTATOR


def annotator_problem(spec: Evaluation) -> str | None:
    """What stops an AlpacaEval evaluation, naming its field: `kind` when the alpaca-eval
    package is missing, `annotator` when it has no such annotator config; None when it can
    run."""
    from preftune.evaluate.benchmarks.alpaca_eval import annotator_names

    try:
        names = annotator_names()
    except ConfigError as error:
        return f"kind: {error}"
    if annotator(spec) not in names:
        return f"annotator: '{annotator(spec)}' is not one of {names}"
    return None


def baseline_name(evaluation: dict) -> str:
    """Who the rows are judged against, for a reader: a file's stem, or the Hub set's writer.

    >>> baseline_name({"kind": "arena-hard", "baseline": "answers/gpt-4-0314.jsonl"})
    'gpt-4-0314'
    >>> baseline_name({"kind": "alpaca-eval"})
    'gpt4_turbo'
    """
    if evaluation["kind"] == "alpaca-eval":
        reference = evaluation.get("reference")
        return Path(reference).stem if reference else HUB_REFERENCE_GENERATOR
    return Path(evaluation["baseline"]).stem


def settings(raw: dict) -> dict:
    """What the report says of a benchmark evaluation of study.yaml: who the baseline is, the
    annotator, judge model, style control and limit."""
    return {
        "baseline": baseline_name(raw),
        "annotator": (raw.get("annotator") or DEFAULT_ANNOTATOR)
        if raw["kind"] == "alpaca-eval"
        else None,
        "judge_model": raw["judge"].get("model"),
        "style_control": bool(raw.get("style_control")),
        "limit": raw.get("limit"),
    }


def describe(evaluation: dict) -> str:
    """How a benchmark evaluation decides, in one clause (for the report); `evaluation` holds
    `settings`."""
    kind, baseline = evaluation["kind"], evaluation["baseline"]
    judge = f"the judge {evaluation.get('judge_model')}"
    limit = evaluation.get("limit")
    first = f" (first {limit})" if limit else ""
    if kind == "alpaca-eval":
        return (
            f"AlpacaEval 2.0: each row's answers to the instructions{first} against "
            f"{baseline}'s reference outputs, annotated by {evaluation.get('annotator')} with "
            f"{judge}; raw and length-controlled (LC) win rates"
        )
    if kind == "arena-hard":
        style = ", style-controlled" if evaluation.get("style_control") else ""
        return (
            f"Arena-Hard-Auto v0.1: each row's answers to the questions{first} against "
            f"{baseline}'s, two games per question decided by {judge}; the score is the "
            f"Bradley-Terry win rate against {baseline}{style}"
        )
    return (
        f"MT-Bench pairwise: each row's answers to both turns of the questions{first} against "
        f"{baseline}'s, both orders, decided by {judge}"
    )


# -- running ---------------------------------------------------------------------------------


def evaluate(spec: Evaluation, model, judge, out: Path, *, generation: dict, seed: int) -> dict:
    """Answer the benchmark's prompts with `model` (greedy, `generation` settings) and judge
    them with `judge` (an `OpenAIJudge`) into `out`; returns what results.json holds. A bad
    input file is an error naming the evaluation as well as the file, row and field."""
    run = {
        "alpaca-eval": _alpaca_eval,
        "arena-hard": _arena_hard,
        "mt-bench-pairwise": _mtbench_pairwise,
    }[spec.kind]
    try:
        return run(spec, model, judge, Path(out), generation, seed)
    except (ConfigError, DataError) as error:
        raise type(error)(f"evaluation '{spec.name}' ({spec.kind}): {error}") from None


def _alpaca_eval(spec, model, judge, out: Path, generation: dict, seed: int) -> dict:
    from preftune.evaluate.benchmarks import alpaca_eval as ae

    evaluation = ae.evaluation_set(spec.reference)[: spec.limit]
    outputs = ae.generate_outputs(model, evaluation, out, **generation)
    return ae.alpaca_eval(
        outputs,
        evaluation,
        out,
        judge.client,
        annotator=annotator(spec),
        concurrency=judge.concurrency,
    )


def _arena_hard(spec, model, judge, out: Path, generation: dict, seed: int) -> dict:
    from preftune.evaluate.benchmarks import arena_hard as ah

    questions = ah.load_questions(spec.questions)[: spec.limit]
    baseline = ah.load_answers(spec.baseline, what="baseline answers")
    answers = ah.answer_questions(model, questions, out / "answers.jsonl", **generation)
    judge.client.max_tokens = ah.JUDGE_MAX_TOKENS  # the judge answers the prompt itself first
    return ah.arena_hard(
        questions, answers, baseline, judge, out, style_control=spec.style_control, seed=seed
    )


def _mtbench_pairwise(spec, model, judge, out: Path, generation: dict, seed: int) -> dict:
    """MT-Bench pairwise writes mtbench_pairwise.json; results.json adds the win rate's 95%
    bootstrap interval over questions (both turns of a question move together)."""
    from preftune.evaluate.benchmarks import mtbench_pairwise as mp
    from preftune.evaluate.mtbench import generate_answers
    from preftune.evaluate.stats import bootstrap_ci

    baseline = mp.load_answers(spec.baseline, what="baseline answers")
    rows = generate_answers(model, out, limit=spec.limit, **generation)
    answers = {row["id"]: row["answers"] for row in rows}
    summary = mp.mtbench_pairwise(answers, baseline, judge, out, limit=spec.limit)
    decided = [j for j in summary["judgments"] if j["winner"] in OUTCOMES]
    outcomes = [OUTCOMES[j["winner"]] for j in decided]
    low, high = bootstrap_ci(outcomes, [j["id"] for j in decided], seed=seed)
    overall = summary["overall"]
    results = {
        "benchmark": summary["benchmark"],
        "judge": summary["judge"],
        "win_rate": overall["win_rate"],
        "ci_low": low if decided else None,
        "ci_high": high if decided else None,
        "ci_level": 0.95,
        "wins": overall["win"],
        "ties": overall["tie"],
        "losses": overall["loss"],
        "errors": overall["errors"],
        "n": len({j["id"] for j in decided}),
        "n_questions": summary["n_questions"],
    }
    atomic_write_json(out / "results.json", results)
    return results


# -- reading back ----------------------------------------------------------------------------


def _normal_interval(value, standard_error) -> tuple[float | None, float | None]:
    """value ± 1.96 standard errors, within [0, 1] (AlpacaEval reports a standard error).

    >>> [round(bound, 3) for bound in _normal_interval(0.5, 0.1)]
    [0.304, 0.696]
    >>> _normal_interval(0.9, 0.1)[1]
    1.0
    """
    if value is None or standard_error is None:
        return None, None
    spread = Z_95 * standard_error
    return max(0.0, value - spread), min(1.0, value + spread)


def row_figures(folder: Path, kind: str) -> dict | None:
    """One row's figures on a benchmark from its results.json: win_rate, ci_low, ci_high,
    n, errors (AlpacaEval also lc_win_rate, lc_ci_low, lc_ci_high, lc_unavailable)."""
    results = read_json(folder / "results.json")
    if results is None:
        return None
    if kind == "alpaca-eval":
        low, high = _normal_interval(results["win_rate"], results.get("standard_error"))
        lc_low, lc_high = _normal_interval(
            results.get("lc_win_rate"), results.get("lc_standard_error")
        )
        return {
            "win_rate": results["win_rate"],
            "ci_low": low,
            "ci_high": high,
            "lc_win_rate": results.get("lc_win_rate"),
            "lc_ci_low": lc_low,
            "lc_ci_high": lc_high,
            "lc_unavailable": results.get("lc_unavailable"),
            "n": results.get("n"),
            "errors": results.get("errors"),
        }
    if kind == "arena-hard":
        return {
            "win_rate": results["score"],
            "ci_low": results.get("ci_low"),
            "ci_high": results.get("ci_high"),
            "n": results.get("n_questions"),
            "errors": results.get("errors"),
        }
    fields = ("win_rate", "ci_low", "ci_high", "wins", "ties", "losses", "errors", "n")
    return {field: results.get(field) for field in fields}


def prompt_outcomes(folder: Path, kind: str) -> dict[str, float]:
    """Each prompt's outcome against the baseline (prompt id -> 0..1) from the row's files;
    prompts the judge could not decide are left out. Arena-Hard: the battles of both games
    (a strong verdict counts three); MT-Bench pairwise: the mean over both turns."""
    if kind == "alpaca-eval":
        return _alpaca_eval_outcomes(folder)
    if kind == "arena-hard":
        return _arena_hard_outcomes(folder)
    return _mtbench_pairwise_outcomes(folder)


def _alpaca_eval_outcomes(folder: Path) -> dict[str, float]:
    """AlpacaEval's preference is 1 (reference better) to 2 (output better), 0 or 1.5 a draw."""
    path = folder / "annotations.json"
    if not path.is_file():
        return {}
    from preftune.evaluate.benchmarks.common import read_rows

    outcomes = {}
    for row in read_rows(path, what="annotations"):
        preference = row.get("preference")
        if preference is None:
            continue
        preference = 1.5 if preference == 0 else float(preference)
        if 1.0 <= preference <= 2.0:
            outcomes[str(row["id"])] = preference - 1.0
    return outcomes


def _arena_hard_outcomes(folder: Path) -> dict[str, float]:
    from preftune.evaluate.benchmarks.arena_hard import battles

    results = read_json(folder / "results.json") or {}
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for judgment in results.get("judgments", []):
        if judgment["verdict"] is None:
            continue
        outcome, weight = battles(judgment["verdict"], model_is_a=judgment["game"] == 2)
        totals[str(judgment["id"])][0] += outcome * weight
        totals[str(judgment["id"])][1] += weight
    return {question: won / weight for question, (won, weight) in totals.items()}


def _mtbench_pairwise_outcomes(folder: Path) -> dict[str, float]:
    summary = read_json(folder / "mtbench_pairwise.json") or {}
    by_question: dict[str, list[float]] = defaultdict(list)
    for judgment in summary.get("judgments", []):
        if judgment["winner"] in OUTCOMES:
            by_question[str(judgment["id"])].append(OUTCOMES[judgment["winner"]])
    return {question: fmean(outcomes) for question, outcomes in by_question.items()}


# -- cost ------------------------------------------------------------------------------------


def prompt_count(spec: Evaluation) -> int:
    """The benchmark's prompts: `limit`, else the rows of its questions / reference file,
    else the published set's size (MT-Bench: 80 at most)."""
    size = SIZES[spec.kind]
    field = PROMPT_FILES.get(spec.kind)
    path = getattr(spec, field) if field else None
    if path and Path(path).is_file():
        from preftune.evaluate.benchmarks.common import read_rows

        size = len(read_rows(path, what=PROMPT_FILES[spec.kind]))
    return size if spec.limit is None else min(spec.limit, size)


def judge_requests(spec: Evaluation, answer_sets: int) -> int:
    """Judge requests of a benchmark for `answer_sets` rows (each seed its own), before the
    re-asks of verdicts that do not parse."""
    return REQUESTS_PER_PROMPT[spec.kind] * prompt_count(spec) * answer_sets
