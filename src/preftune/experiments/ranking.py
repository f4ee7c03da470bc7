"""Rank a study's rows on one evaluation from what the study already wrote.

A unit of comparison is (seed, prompt id); `start` has seed None (it does not vary by seed).
- Gold and reward-model judges: each answer's score, so every pair of rows is compared for
  free.
- MT-Bench: each question's grade (the mean of its two turns), compared like scores.
- The published benchmarks (AlpacaEval, Arena-Hard, MT-Bench pairwise): each row's outcome
  on each prompt against the benchmark's fixed baseline, already paid for, compared like
  scores (anchored; the benchmark's own judge prompts cannot compare two rows directly).
- LLM judges, `pairs: anchored`: each row's judgments against the baseline, already paid for;
  the baseline row (`start` when it is the baseline) scores 0.5 on every prompt.
- LLM judges, `pairs: all`: every pair of rows judged on every prompt, into rank/<evaluation>/.
`preftune.evaluate.rank` turns the outcomes into ranking.json (two-level bootstrap intervals,
paired tests) and ranking.md / head_to_head.png beside it.
"""

from __future__ import annotations

from collections import defaultdict
from statistics import fmean

from preftune.evaluate.win_rate import OUTCOME
from preftune.experiments.config import BENCHMARK_KINDS, Evaluation, StudyConfig
from preftune.experiments.evaluation import build_study_judge
from preftune.experiments.layout import SFT, START, StudyLayout
from preftune.io import read_jsonl

Row = tuple[str, int | None]  # (label, seed): one set of answers
SCORING_JUDGES = ("gold", "reward-model")  # judges that score each answer on its own


def answers(layout: StudyLayout, row: Row) -> list[dict]:
    """The row's answers, one per prompt (the first sample), each tagged with its seed."""
    label, seed = row
    first: dict[str, dict] = {}
    for answer in read_jsonl(layout.samples(label, seed)):
        first.setdefault(str(answer["id"]), {**answer, "seed": seed})
    return list(first.values())


def rank_evaluation(
    config: StudyConfig, spec: Evaluation, layout: StudyLayout, rows: list[Row], log=print
) -> dict:
    """Write rank/<evaluation>/ for `rows` (those with answers); returns ranking.json's dict."""
    from preftune.evaluate.rank import outcomes_from_scores, rank
    from preftune.evaluate.rank_judging import judge_all_pairs, score_entries
    from preftune.evaluate.rank_report import write_ranking

    out = layout.ranking(spec.name)
    if spec.kind == "mt-bench":
        outcomes = outcomes_from_scores(mtbench_scores(layout, spec, rows))
    elif spec.kind in BENCHMARK_KINDS:
        outcomes = outcomes_from_scores(benchmark_outcomes(layout, spec, rows))
    elif spec.judge.type in SCORING_JUDGES:
        judge = build_study_judge(config, spec)
        outcomes = outcomes_from_scores(score_entries(_entries(layout, rows), judge))
    elif spec.pairs == "all":
        judge = build_study_judge(config, spec)
        outcomes = judge_all_pairs(_entries(layout, rows), judge, out, log=log)
    else:  # each row's outcome against the baseline, compared like a score
        outcomes = outcomes_from_scores(anchored_outcomes(spec, layout, rows))
    labels = list(dict.fromkeys(label for label, _ in rows))
    result = rank(outcomes, labels, seed=config.seed)
    write_ranking(result, out, title=f"Ranking on {spec.name}")
    return result


def _entries(layout: StudyLayout, rows: list[Row]) -> dict[str, list[dict]]:
    """Each label's answers over its seeds (rows tagged with "seed")."""
    entries: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        entries[row[0]].extend(answers(layout, row))
    return dict(entries)


def mtbench_scores(layout, spec, rows) -> dict[str, dict]:
    scores: dict[str, dict] = defaultdict(dict)
    for label, seed in rows:
        by_question = defaultdict(list)
        for grade in read_jsonl(layout.judged(label, spec.name, seed) / "grades.jsonl"):
            if grade["score"] is not None:
                by_question[str(grade["id"])].append(grade["score"])
        for question, grades in by_question.items():
            scores[label][(seed, question)] = fmean(grades)
    return dict(scores)


def benchmark_outcomes(layout, spec, rows) -> dict[str, dict]:
    """Each row's outcome against a benchmark's baseline per unit (seed, prompt id)."""
    from preftune.experiments.benchmark_kinds import prompt_outcomes

    outcomes: dict[str, dict] = defaultdict(dict)
    for label, seed in rows:
        found = prompt_outcomes(layout.judged(label, spec.name, seed), spec.kind)
        outcomes[label].update({(seed, prompt): value for prompt, value in found.items()})
    return dict(outcomes)


def anchored_outcomes(spec, layout, rows) -> dict[str, dict]:
    """Each row's outcome against the baseline per unit, from its judgments.jsonl (the last
    decision about its current answer to each prompt; failed decisions left out)."""
    outcomes: dict[str, dict] = defaultdict(dict)
    for row in rows:
        label, seed = row
        if label == START and spec.baseline in (START, SFT):
            outcomes[label] = {(seed, str(a["id"])): 0.5 for a in answers(layout, row)}
            continue
        current = {str(a["id"]): a["response"] for a in answers(layout, row)}
        for decision in read_jsonl(layout.judged(label, spec.name, seed) / "judgments.jsonl"):
            prompt_id = str(decision["id"])
            if decision["winner"] in OUTCOME and current.get(prompt_id) == decision["response_a"]:
                outcomes[label][(seed, prompt_id)] = OUTCOME[decision["winner"]]
    return dict(outcomes)


def judge_requests(spec: Evaluation, rows: int, seeds: int, prompts: int) -> int:
    """Judge requests of an evaluation at most (both orders of each comparison): each method
    row (per seed) against the baseline, plus, with `pairs: all`, every pair of rows on every
    prompt and seed; a benchmark judges every row (start too) on its own prompts (`prompts`
    does not apply). MT-Bench grades and gold scores are not counted (no comparisons)."""
    from preftune.evaluate.rank_judging import REQUESTS_PER_COMPARISON

    if spec.kind in BENCHMARK_KINDS:
        from preftune.experiments import benchmark_kinds

        return benchmark_kinds.judge_requests(spec, answer_sets=1 + (rows - 1) * seeds)
    if spec.kind == "mt-bench" or spec.judge.type in SCORING_JUDGES:
        return 0
    anchored = (rows - 1) * seeds * prompts + (0 if spec.baseline in (START, SFT) else prompts)
    every_pair = rows * (rows - 1) // 2 * seeds * prompts if spec.pairs == "all" else 0
    return REQUESTS_PER_COMPARISON * (anchored + every_pair)
