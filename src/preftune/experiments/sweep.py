"""Per-method tuning on the dev prompts: the metric of a sweep point and the choice.

A point's dev metric is the mean gold reward of its greedy answers to the dev prompts when the
study has a gold reward, else its win rate over the starting model's answers to them, judged by
the study's first pairwise evaluation. The best point is kept (the first of equal ones); the
test prompts are never seen while choosing.
"""

from __future__ import annotations

from pathlib import Path
from statistics import fmean

from preftune.errors import PreftuneError
from preftune.experiments.config import MethodEntry, StudyConfig
from preftune.io import read_jsonl

DEV_ANSWERS = "dev_samples.jsonl"  # a point's (or the start's) greedy answers to the dev prompts


def mean_gold(config: StudyConfig, answers: Path) -> tuple[float, int, str]:
    """(mean gold reward, n, what the metric is) of a point's dev answers."""
    from preftune.tasks import get_task

    gold = get_task(config.gold_task).gold
    rows = read_jsonl(answers)
    return fmean(gold(r["prompt"], r["response"]) for r in rows), len(rows), "mean gold reward"


def win_rate_over_start(
    config: StudyConfig, point: Path, start_answers: Path
) -> tuple[float | None, int, str]:
    """(win rate, n judged, what) of a point's dev answers over the start's, judged into
    <point>/dev-judged/ by the first pairwise evaluation's judge (cached like any judging)."""
    from preftune.evaluate.win_rate import win_rate
    from preftune.experiments.evaluation import build_study_judge

    spec = next(e for e in config.evaluation.evaluations if e.kind == "pairwise")
    judge = build_study_judge(config, spec)
    figures = win_rate(
        point / DEV_ANSWERS, start_answers, judge, point / "dev-judged", seed=config.seed
    )
    return figures["win_rate"], figures["n"], f"win rate against start ({spec.name}'s judge)"


def summary(entry: MethodEntry, scored: list[dict], metric: str) -> dict:
    """sweep.json: every point with its dev metric, and the best one as the chosen setting.

    >>> entry = MethodEntry(method="dpo", sweep={"beta": [0.1, 0.5]})
    >>> points = [{"point": "p0", "values": {"beta": 0.1}, "dev_metric": 0.4, "dev_n": 8},
    ...           {"point": "p1", "values": {"beta": 0.5}, "dev_metric": 0.6, "dev_n": 8}]
    >>> summary(entry, points, "mean gold reward")["chosen"]
    {'beta': 0.5}
    """
    usable = [point for point in scored if point["dev_metric"] is not None]
    if not usable:
        raise PreftuneError(
            f"sweep of {entry.run_label}: no point has a dev metric (every judgment failed)"
        )
    best = max(usable, key=lambda point: point["dev_metric"])  # max keeps the first of equals
    return {
        "metric": f"{metric} on the dev prompts",
        "swept": list(entry.sweep),
        "points": scored,
        "chosen": best["values"],
        "chosen_point": best["point"],
    }
