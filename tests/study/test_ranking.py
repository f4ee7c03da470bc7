"""Ranking inside a study: outcomes read back from what the study wrote, judge request counts."""

from __future__ import annotations

import json

import pytest

from preftune.experiments.config import Evaluation
from preftune.experiments.layout import StudyLayout
from preftune.experiments.ranking import anchored_outcomes, judge_requests, mtbench_scores


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _spec(**changes) -> Evaluation:
    return Evaluation(name="helpful", judge={"type": "hf-llm", "model": "m"}, **changes)


def testanchored_outcomes_reuse_each_rows_judgments_of_its_current_answers(tmp_path):
    layout = StudyLayout(tmp_path)
    answers = [{"id": i, "prompt": f"p{i}", "response": f"answer {i}"} for i in ("a", "b", "c")]
    _write(layout.samples("start"), answers)
    _write(layout.samples("dpo", 1), answers)
    decisions = [
        {"id": "a", "response_a": "answer a", "winner": "a"},
        {"id": "b", "response_a": "answer b", "winner": "error"},  # failed: left out...
        {"id": "b", "response_a": "answer b", "winner": "tie"},  # ...until decided again
        {"id": "c", "response_a": "an older answer", "winner": "a"},  # not the current answer
        {"id": "c", "response_a": "answer c", "winner": "b"},
    ]
    _write(layout.judged("dpo", "helpful", 1) / "judgments.jsonl", decisions)
    outcomes = anchored_outcomes(_spec(), layout, [("start", None), ("dpo", 1)])
    assert outcomes["start"] == {(None, "a"): 0.5, (None, "b"): 0.5, (None, "c"): 0.5}
    assert outcomes["dpo"] == {(1, "a"): 1.0, (1, "b"): 0.5, (1, "c"): 0.0}


def test_mtbench_rows_are_scored_per_question_by_the_mean_of_both_turns(tmp_path):
    layout = StudyLayout(tmp_path)
    grades = [
        {"id": 81, "turn": 1, "score": 8},
        {"id": 81, "turn": 2, "score": 5},
        {"id": 82, "turn": 1, "score": None},  # a failed grade does not count
        {"id": 82, "turn": 2, "score": 3},
    ]
    _write(layout.judged("start", "mt") / "grades.jsonl", grades)
    spec = Evaluation(name="mt", kind="mt-bench", judge={"type": "hf-llm", "model": "m"})
    assert mtbench_scores(layout, spec, [("start", None)]) == {
        "start": {(None, "81"): 6.5, (None, "82"): 3.0}
    }


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        # 3 method rows x 2 seeds x 10 prompts against the start, both orders each
        ({}, 2 * 3 * 2 * 10),
        # ... plus every pair of the 4 rows (6 pairs) on every seed and prompt
        ({"pairs": "all"}, 2 * (3 * 2 * 10 + 6 * 2 * 10)),
        # a fixed baseline: the start is judged against it too (once, it has no seeds)
        ({"baseline": "reference"}, 2 * (3 * 2 * 10 + 10)),
    ],
)
def test_the_plan_counts_judge_requests(changes, expected):
    assert judge_requests(_spec(**changes), rows=4, seeds=2, prompts=10) == expected


def test_scoring_judges_cost_no_requests():
    gold = Evaluation(name="gold", judge={"type": "gold"}, pairs="all")
    assert judge_requests(gold, rows=4, seeds=2, prompts=10) == 0
