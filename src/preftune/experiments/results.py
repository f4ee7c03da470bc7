"""Gather every figure of a study from its folder into one dict (written as results.json).

Nothing here runs a model: the report is rebuilt from disk only.
"""

from __future__ import annotations

import yaml

from preftune.errors import ConfigError
from preftune.experiments.dynamics import describe_run
from preftune.experiments.layout import SFT, START, StudyLayout, read_json

KL_SAMPLED = "sampled"  # mean log π(y) − log π_start(y) over y ~ π (temperature 1): KL(π ‖ π_start)
KL_GREEDY = "greedy log-ratio"  # the same over the greedy answers: cheaper, not a KL, any sign
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
    "kl_estimate",
    "length",
    "repetition",
    "distinct_2",
    "eos_share",
    "n",
)


def read_study_config(layout: StudyLayout) -> dict:
    if not layout.config.is_file():
        raise ConfigError(f"'{layout.root}' is not a study folder: it has no study.yaml")
    return yaml.safe_load(layout.config.read_text())


def row_labels(study: dict) -> list[str]:
    """The table's rows: the starting model, then every method in config order."""
    return [START] + [m.get("label") or m["method"] for m in study["methods"]]


def _evaluation_figures(layout: StudyLayout, label: str, evaluation: dict) -> dict | None:
    folder = layout.judged(label, evaluation["name"])
    if evaluation.get("kind") == "mt-bench":
        grades = read_json(folder / "mtbench.json")
        return (
            None
            if grades is None
            else {
                "score": grades.get("overall"),
                **{field: grades.get(field) for field in ("n", "errors", "turn_1", "turn_2")},
            }
        )
    results = read_json(folder / "results.json")
    return None if results is None else {field: results.get(field) for field in WIN_FIELDS}


def _row(layout: StudyLayout, study: dict, label: str) -> dict:
    methods = {m.get("label") or m["method"]: m for m in study["methods"]}
    failure = read_json(layout.failure(label))
    stats = read_json(layout.stats(label)) or {}
    run = layout.run(SFT if label == START and study.get("sft") else label)
    row = {
        "label": label,
        "method": methods[label]["method"] if label in methods else None,
        "status": "failed" if failure else ("ok" if stats else "incomplete"),
        "failure": failure,
        "evaluations": {
            e["name"]: _evaluation_figures(layout, label, e)
            for e in study["evaluation"]["evaluations"]
        },
        "stats": {field: stats.get(field) for field in STAT_FIELDS},
    }
    if label in methods or (label == START and study.get("sft")):
        row["dynamics"] = describe_run(run / "metrics.jsonl")
    return row


def collect(layout: StudyLayout) -> dict:
    """Every row's win rates (fractions, under `win_rate`), stats, dynamics and failures."""
    study = read_study_config(layout)
    return {
        "study": study.get("name"),
        "model": study.get("model"),
        "start": SFT if study.get("sft") else START,
        "evaluations": [
            {
                "name": e["name"],
                "kind": e.get("kind", "pairwise"),
                "baseline": e.get("baseline", START),
                "judge": e["judge"].get("type"),
            }
            for e in study["evaluation"]["evaluations"]
        ],
        "rows": [_row(layout, study, label) for label in row_labels(study)],
    }


def kl_kind(results: dict) -> str:
    """How the rows' KL was estimated: KL_SAMPLED, or KL_GREEDY (also when rows differ)."""
    kinds = {row["stats"].get("kl_estimate") for row in results["rows"]} - {None}
    return kinds.pop() if len(kinds) == 1 else KL_GREEDY
