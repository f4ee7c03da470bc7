"""Example answers side by side: a few held-out prompts with every row's answer next to the
start's, so what a number hides (reward hacking: "a beautiful silver finish and a beautiful
silver finish") is there to read.

The prompts are those where the rows disagree most (the largest spread of the gold reward
across rows; without a gold reward, of the first pairwise evaluation's judge outcomes), then a
few drawn at random (seeded by the study's seed), so the reader sees typical answers too.
"""

from __future__ import annotations

import random

from preftune.data.messages import prompt_text, response_text
from preftune.experiments.layout import START, StudyLayout
from preftune.io import read_jsonl

DISAGREEING = 3
RANDOM = 2


def _answers(layout: StudyLayout, study: dict, labels: list[str]) -> dict[str, dict[str, dict]]:
    """label -> prompt id -> answer row (a method's first seed), for rows that have answers."""
    seed = StudyLayout.seeds(study)[0]
    found = {}
    for label in labels:
        rows = read_jsonl(layout.eval_dir(label, seed) / "samples.jsonl")
        if rows:
            found[label] = {str(row["id"]): row for row in rows}
    return found


def _gold_scores(task: str | None, answers: dict) -> dict[str, dict[str, float]] | None:
    if task is None:
        return None
    from preftune.tasks import get_task

    gold = get_task(task).gold
    return {
        label: {i: float(gold(row["prompt"], row["response"])) for i, row in rows.items()}
        for label, rows in answers.items()
    }


def _judge_outcomes(layout: StudyLayout, study: dict, labels: list[str]) -> tuple[str, dict]:
    """label -> prompt id -> outcome (1 win, 0.5 tie, 0 loss) on the first pairwise evaluation."""
    from preftune.evaluate.win_rate import OUTCOME

    evaluations = study["evaluation"]["evaluations"]
    pairwise = [e for e in evaluations if e.get("kind", "pairwise") == "pairwise"]
    if not pairwise:
        return "", {}
    name, seed = pairwise[0]["name"], StudyLayout.seeds(study)[0]
    outcomes = {}
    for label in labels:
        path = layout.eval_dir(label, seed) / name / "judgments.jsonl"
        decided = [row for row in read_jsonl(path) if row.get("winner") in OUTCOME]
        if decided:
            outcomes[label] = {str(row["id"]): OUTCOME[row["winner"]] for row in decided}
    return f"judge outcomes on {name}", outcomes


def _spread(ids: list[str], scores: dict[str, dict[str, float]]) -> dict[str, float]:
    spread = {}
    for prompt_id in ids:
        values = [by_id[prompt_id] for by_id in scores.values() if prompt_id in by_id]
        spread[prompt_id] = max(values) - min(values) if len(values) > 1 else 0.0
    return spread


def pick(layout: StudyLayout, study: dict, results: dict, gold_task: str | None) -> list[dict]:
    """[{"id", "prompt", "why", "answers": [{"label", "response", "gold"}...]}], start first;
    `gold_task` names the task whose gold reward scores the answers (None: judge outcomes)."""
    answers = _answers(layout, study, [row["label"] for row in results["rows"]])
    if START not in answers or len(answers) < 2:
        return []
    ids = [i for i in answers[START] if all(i in rows for rows in answers.values())]
    gold = _gold_scores(gold_task, answers)
    if gold is not None:
        measure, scores = f"gold reward ({results.get('gold')})", gold
    else:
        measure, scores = _judge_outcomes(layout, study, list(answers))
    spread = _spread(ids, scores) if scores else {}  # none without a gold or pairwise judge
    chosen = [
        (i, f"largest spread of {measure}: {spread[i]:.2f}")
        for i in sorted(spread, key=lambda i: -spread[i])[:DISAGREEING]
        if spread[i] > 0
    ]
    rest = [i for i in ids if i not in {c for c, _ in chosen}]
    draw = random.Random(study.get("seed", 0)).sample(rest, min(RANDOM, len(rest)))
    chosen += [(i, "drawn at random") for i in draw]
    return [
        {
            "id": prompt_id,
            "prompt": prompt_text(answers[START][prompt_id]["prompt"]),
            "why": why,
            "answers": [
                {
                    "label": label,
                    "response": response_text(rows[prompt_id]["response"]),
                    "gold": None if gold is None else gold[label][prompt_id],
                }
                for label, rows in answers.items()
            ],
        }
        for prompt_id, why in chosen
    ]
