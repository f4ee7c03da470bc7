"""Gather every figure of a study from its folder into one dict (written as results.json).

Nothing here runs a model: the report is rebuilt from disk only. With several seeds
(study.yaml `seeds: [0, 1, 2]`) a method's files live under `eval/<label>/seed-<s>/` and its
row holds the means over seeds (`start` and `sft` do not vary by seed: one row each); the
per-seed figures stay under `row["per_seed"]`. `paper_views` arranges the rows in the
published papers' shape (win rates by evaluation set; MT-Bench and Arena-Hard).
"""

from __future__ import annotations

import re
from pathlib import Path
from statistics import fmean
from urllib.parse import urlsplit

import yaml

from preftune.errors import ConfigError
from preftune.experiments import benchmark_kinds, budget, examples, provenance
from preftune.experiments.config import BENCHMARK_KINDS, trains_online
from preftune.experiments.dynamics import describe_run
from preftune.experiments.layout import SFT, START, StudyLayout, read_json

KL_SAMPLED = "sampled"  # mean log π(y) − log π_start(y) over y ~ π (temperature 1): KL(π ‖ π_start)
KL_GREEDY = "greedy log-ratio"  # the same over the greedy answers: cheaper, not a KL, any sign
KL_SERVED = "not estimated (served)"  # a row sampled over HTTP: no log-probs, no KL
WIN_FIELDS = (
    "win_rate",
    "ci_low",
    "ci_high",
    "lc_win_rate",
    "wins",
    "losses",
    "ties",
    "errors",
    "n",
)
STAT_FIELDS = (
    "gold_reward",
    "kl",
    "kl_ci_low",
    "kl_ci_high",
    "kl_estimate",
    "length",
    "repetition",
    "distinct_2",
    "eos_share",
    "n",
)
# Intervals of one seed's figures; the mean over seeds has none of its own.
INTERVAL_FIELDS = ("ci_low", "ci_high", "lc_ci_low", "lc_ci_high", "kl_ci_low", "kl_ci_high")
COUNT_FIELDS = ("wins", "losses", "ties", "errors")  # "n" (prompts) is averaged
# What a task's gold reward is, for a reader (tasks name their gold judge by `gold_name`).
GOLD_TITLES = {"vader-sentiment": "VADER compound sentiment"}
SERVED = "served"  # an evaluation's baseline answered by a server (its `generation`)
CLAIM = re.compile(r"^\s*(\S+)\s*>\s*(\S+)\s*$")
FEW_PROMPTS = 20  # below this, intervals are wide: the report says so


def read_study_config(layout: StudyLayout) -> dict:
    if not layout.config.is_file():
        raise ConfigError(f"'{layout.root}' is not a study folder: it has no study.yaml")
    return yaml.safe_load(layout.config.read_text())


def row_labels(study: dict) -> list[str]:
    """The table's rows: the starting model, then every method in config order."""
    return [START] + [m.get("label") or m["method"] for m in study["methods"]]


def gold_task(study: dict) -> str | None:
    """The task whose gold reward scores answers (as `StudyConfig.gold_task`), if any."""
    data = study.get("data") or {}
    return (data.get("heldout") or {}).get("task") or (data.get("train") or {}).get("task")


def gold_title(study: dict) -> str | None:
    """The gold reward in words, e.g. "VADER compound sentiment"; None without a gold task."""
    task = gold_task(study)
    if not task:
        return None
    from preftune.tasks import get_task

    name = get_task(task).gold_name
    return GOLD_TITLES.get(name, name)


def _evaluation_figures(folder: Path, evaluation: dict) -> dict | None:
    if evaluation.get("kind") in BENCHMARK_KINDS:
        return benchmark_kinds.row_figures(folder, evaluation["kind"])
    if evaluation.get("kind") == "mt-bench":
        grades = read_json(folder / "mtbench.json")
        if grades is None:
            return None
        return {
            "score": grades.get("overall"),
            **{field: grades.get(field) for field in ("n", "errors", "turn_1", "turn_2")},
        }
    results = read_json(folder / "results.json")
    return None if results is None else {field: results.get(field) for field in WIN_FIELDS}


def mean_over_seeds(figures: list[dict | None]) -> dict | None:
    """One seed's figures as they are; for several, means of the numbers (counts summed,
    intervals dropped: the ranking's intervals account for seeds)."""
    present = [f for f in figures if f]
    if len(present) <= 1:
        return present[0] if present else None
    merged = {"seeds": len(present)}
    for field in present[0]:
        values = [f.get(field) for f in present if f.get(field) is not None]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if field in INTERVAL_FIELDS:
            merged[field] = None
        elif numbers and len(numbers) == len(values):
            merged[field] = sum(numbers) if field in COUNT_FIELDS else fmean(numbers)
        else:
            merged[field] = values[0] if values else None
    return merged


def _per_seed(layout: StudyLayout, study: dict, label: str, seed: int | None) -> dict:
    folder = layout.eval_dir(label, seed)
    stats = read_json(folder / "stats.json")
    return {
        "seed": seed,
        "stats": None if stats is None else {field: stats.get(field) for field in STAT_FIELDS},
        "evaluations": {
            e["name"]: _evaluation_figures(folder / e["name"], e)
            for e in study["evaluation"]["evaluations"]
        },
        "preference": read_json(folder / "preference.json"),
    }


def _budget(layout: StudyLayout, study: dict, entry: dict | None, seeds: list, sampled):
    """A method row's sample budget (means over seeds); None for the starting model."""
    if entry is None:
        return None
    online = trains_online(entry["method"], entry.get("online"))
    label = entry.get("label") or entry["method"]
    return mean_over_seeds(
        [budget.run_budget(layout, label, seed, entry["method"], online, sampled) for seed in seeds]
    )


def _row(layout: StudyLayout, study: dict, label: str, sampled: dict | None = None) -> dict:
    methods = {m.get("label") or m["method"]: m for m in study["methods"]}
    seeds = [None] if label == START else StudyLayout.seeds(study)
    per_seed = [_per_seed(layout, study, label, seed) for seed in seeds]
    stats = mean_over_seeds([s["stats"] for s in per_seed])
    failure = read_json(layout.failure(label))
    row = {
        "label": label,
        "method": methods[label]["method"] if label in methods else None,
        "status": "failed" if failure else ("ok" if stats else "incomplete"),
        "failure": failure,
        "seeds": len([s for s in per_seed if s["stats"]]),
        "evaluations": {
            e["name"]: mean_over_seeds([s["evaluations"][e["name"]] for s in per_seed])
            for e in study["evaluation"]["evaluations"]
        },
        "stats": stats or {field: None for field in STAT_FIELDS},
        "preference": mean_over_seeds([s["preference"] for s in per_seed]),
        "budget": _budget(layout, study, methods.get(label), seeds, sampled),
        "per_seed": per_seed if len(seeds) > 1 else [],
    }
    if label in methods or (label == START and study.get("sft")):
        row["dynamics"] = describe_run(
            layout.run(SFT if label == START else label, seeds[0]) / "metrics.jsonl"
        )
    return row


def read_rankings(layout: StudyLayout, evaluations: list[dict]) -> dict:
    """rank/<evaluation>/ranking.json of each evaluation that has one, with the heatmap's path."""
    found = {}
    for evaluation in evaluations:
        folder = layout.root / "rank" / evaluation["name"]
        ranking = read_json(folder / "ranking.json")
        if ranking is None:
            continue
        heatmap = folder / "head_to_head.png"
        found[evaluation["name"]] = {
            **ranking,
            "heatmap": heatmap.relative_to(layout.root).as_posix() if heatmap.is_file() else None,
        }
    return found


def head_to_head(table: dict, x: str, y: str) -> dict | None:
    """x against y from a ranking's head_to_head; read from y's side (flipped) when only
    that direction is stored."""
    if y in table.get(x, {}):
        return table[x][y]
    other = table.get(y, {}).get(x)
    if other is None:
        return None
    flipped = {**other, "wins": other.get("losses"), "losses": other.get("wins")}
    for field, source in (("win_rate", "win_rate"), ("ci_low", "ci_high"), ("ci_high", "ci_low")):
        value = other.get(source)
        flipped[field] = None if value is None else 1 - value
    return flipped


def beats(figures: dict | None) -> bool:
    """Whether a head-to-head entry says its row wins: significant, win rate above one half."""
    return bool(figures and figures.get("significant")) and (figures.get("win_rate") or 0) > 0.5


def evaluate_claim(claim: str, rankings: dict) -> dict:
    """A claim "x > y": supported on an evaluation when x beats y there with a significant
    paired test and a win rate above one half."""
    match = CLAIM.match(claim)
    if not match:
        return {"claim": claim, "error": "not of the form 'x > y'", "evaluations": {}}
    x, y = match.groups()
    verdicts = {}
    for name, ranking in rankings.items():
        figures = head_to_head(ranking.get("head_to_head", {}), x, y)
        if figures is None:
            verdicts[name] = {"supported": None, "reason": f"no head-to-head of {x} and {y}"}
            continue
        verdicts[name] = {
            "supported": beats(figures),
            **{k: figures.get(k) for k in ("win_rate", "ci_low", "ci_high", "p_value", "p_holm")},
            "significant": bool(figures.get("significant")),
        }
    return {"claim": claim, "x": x, "y": y, "evaluations": verdicts}


def _evaluation_entry(raw: dict) -> dict:
    """An evaluation of study.yaml as the report reads it (benchmarks: `benchmark_kinds.settings`;
    a served baseline: `served_baseline`)."""
    entry = {
        "name": raw["name"],
        "kind": raw.get("kind", "pairwise"),
        "baseline": raw.get("baseline", START),
        "judge": raw["judge"].get("type"),
    }
    if entry["kind"] in BENCHMARK_KINDS:
        entry.update(benchmark_kinds.settings(raw))
    if entry["baseline"] == SERVED:
        entry.update(served_baseline(raw.get("generation") or {}))
    return entry


def served_baseline(generation: dict) -> dict:
    """A served baseline as the report names it: the model the server answers to and the
    server's host (never the rest of the URL, which may carry credentials, nor the key).

    >>> served_baseline({"model": "dpo", "base_url": "http://user:pw@127.0.0.1:8000/v1?k=x"})
    {'baseline': 'served dpo at 127.0.0.1:8000', 'served_baseline': {'model': 'dpo', \
'host': '127.0.0.1:8000'}}
    """
    parts = urlsplit(generation.get("base_url") or "")
    host = parts.hostname or "?"
    host = f"[{host}]" if ":" in host else host  # an IPv6 address
    host += f":{parts.port}" if parts.port else ""
    model = generation.get("model") or "?"
    return {
        "baseline": f"served {model} at {host}",
        "served_baseline": {"model": model, "host": host},
    }


def _view_column(evaluation: dict, title: str, field: str = "win_rate", prefix: str = "") -> dict:
    return {"title": title, "evaluation": evaluation["name"], "field": field, "prefix": prefix}


def _win_rate_columns(evaluations: list[dict]) -> list[dict]:
    """A column per win-rate evaluation; AlpacaEval gives two, LC then raw (as published)."""
    columns = []
    for evaluation in evaluations:
        name, baseline = evaluation["name"], evaluation["baseline"]
        if evaluation["kind"] == "alpaca-eval":
            columns.append(_view_column(evaluation, f"{name} LC win % vs {baseline}", prefix="lc_"))
            columns.append(_view_column(evaluation, f"{name} raw win % vs {baseline}"))
        elif evaluation["kind"] != "mt-bench":
            columns.append(_view_column(evaluation, f"{name} win % vs {baseline}"))
    return columns


def _score_columns(evaluations: list[dict]) -> list[dict]:
    """MT-Bench's mean grade (1-10) and Arena-Hard's score (its win rate against the baseline)."""
    columns = []
    for evaluation in evaluations:
        name = evaluation["name"]
        if evaluation["kind"] == "mt-bench":
            columns.append(_view_column(evaluation, f"{name} score (1-10)", field="score"))
        elif evaluation["kind"] == "arena-hard":
            columns.append(
                _view_column(evaluation, f"{name} score: win % vs {evaluation['baseline']}")
            )
    return columns


def _view(results: dict, columns: list[dict]) -> dict:
    """{"columns": [titles], "units": ["grade" (MT-Bench's 1-10) or "fraction"], "rows":
    [{"label", "cells": [{"value", "ci_low", "ci_high"}]}]}."""
    rows = []
    for row in results["rows"]:
        cells = []
        for column in columns:
            figures = row["evaluations"].get(column["evaluation"]) or {}
            prefix = column["prefix"]
            cells.append(
                {
                    "value": figures.get(prefix + column["field"]),
                    "ci_low": figures.get(prefix + "ci_low"),
                    "ci_high": figures.get(prefix + "ci_high"),
                }
            )
        rows.append({"label": row["label"], "cells": cells})
    return {
        "columns": [column["title"] for column in columns],
        "units": ["grade" if column["field"] == "score" else "fraction" for column in columns],
        "rows": rows,
    }


def paper_views(results: dict) -> dict:
    """The rows in the papers' shape, each view only when the study has its evaluations:
    "win_rates", the HH/TL;DR comparison study's Table 3 (a column per evaluation set's win
    rate with its interval, AlpacaEval as LC and raw), when the study has a published
    benchmark; "mt_bench_arena_hard", the MPPO paper's (MT-Bench score, Arena-Hard score),
    when it has MT-Bench or Arena-Hard."""
    evaluations = results["evaluations"]
    kinds = {evaluation["kind"] for evaluation in evaluations}
    views = {}
    if kinds & set(BENCHMARK_KINDS):
        views["win_rates"] = _view(results, _win_rate_columns(evaluations))
    if kinds & {"mt-bench", "arena-hard"}:
        views["mt_bench_arena_hard"] = _view(results, _score_columns(evaluations))
    return views


def collect(layout: StudyLayout) -> dict:
    """Every row's win rates (fractions, under `win_rate`), stats, sample budget (`budget`),
    dynamics and failures; the rankings, claims, example answers, settings and cost."""
    study = read_study_config(layout)
    evaluations = [_evaluation_entry(e) for e in study["evaluation"]["evaluations"]]
    rankings = read_rankings(layout, evaluations)
    sampled = budget.sampling_budget(layout)
    results = {
        "study": study.get("name"),
        "model": study.get("model"),
        "start": SFT if study.get("sft") else START,
        "gold": gold_title(study),
        "seeds": len(StudyLayout.seeds(study)),
        "seed_list": [s for s in StudyLayout.seeds(study) if s is not None]
        or [study.get("seed", 0)],
        "evaluations": evaluations,
        "rows": [_row(layout, study, label, sampled) for label in row_labels(study)],
        "sampling_budget": sampled,
        "ranking": {name: r.get("ranking", []) for name, r in rankings.items()},
        "head_to_head": {name: r.get("head_to_head", {}) for name, r in rankings.items()},
        "ranking_details": {
            name: {k: r.get(k) for k in ("method", "seeds", "n_prompts", "warnings", "heatmap")}
            for name, r in rankings.items()
        },
        "claims": [evaluate_claim(claim, rankings) for claim in study.get("claims") or []],
    }
    results["paper_views"] = paper_views(results)
    results["examples"] = examples.pick(layout, study, results, gold_task(study))
    results["settings"] = provenance.settings(layout, study, row_labels(study)[1:])
    results["cost"] = provenance.cost(layout)
    return results


def kl_kind(results: dict) -> str:
    """How the rows' KL was estimated: KL_SAMPLED, or KL_GREEDY (also when rows differ);
    served rows, which have none, aside."""
    kinds = {row["stats"].get("kl_estimate") for row in results["rows"]} - {None, KL_SERVED}
    return kinds.pop() if len(kinds) == 1 else KL_GREEDY
