"""Arena-Hard-Auto against the loopback chat server: both orders, strong verdicts weighted
three times, the Bradley-Terry score (hand-computed), style control, retries and caching."""

import json
import math
import re

import pytest

from preftune.errors import DataError
from preftune.evaluate.benchmarks.arena_hard import (
    arena_hard,
    battles,
    bradley_terry_win_rate,
    load_answers,
    load_questions,
    parse_verdict,
    style_counts,
)
from preftune.judges.http_chat import ChatClient
from preftune.judges.openai_judge import OpenAIJudge

# the evaluated model's answer names how the judge should rate it against the baseline
RATING = {"much": "B>>A", "better": "B>A", "tie": "A=B", "worse": "A>B", "awful": "A>>B"}
MIRROR = {"A>>B": "B>>A", "A>B": "B>A", "A=B": "A=B", "B>A": "A>B", "B>>A": "A>>B"}


def answers_shown(messages):
    text = messages[-1]["content"]
    a = re.search(r"Assistant A's Answer\|>\n(.*?)\n<\|The End of Assistant A", text, re.S)
    b = re.search(r"Assistant B's Answer\|>\n(.*?)\n<\|The End of Assistant B", text, re.S)
    return a.group(1), b.group(1)


def fair_judge(messages, attempt):
    """Rates by the word the model's answer starts with (verdicts written with the model as
    B, mirrored when the model is shown as A)."""
    assert "[[A>>B]]" in messages[0]["content"]  # the paper's system prompt
    a, b = answers_shown(messages)
    model_is_a = not a.startswith("baseline")
    verdict = RATING[(a if model_is_a else b).split()[0]]
    return f"My answer... My final verdict is: [[{MIRROR[verdict] if model_is_a else verdict}]]"


def make_case(folder, kinds):
    questions = [
        {"question_id": f"q{i}", "turns": [{"content": f"question {i}"}]} for i in range(len(kinds))
    ]
    model = [{"id": f"q{i}", "response": f"{kind} answer {i}"} for i, kind in enumerate(kinds)]
    base = [
        {"question_id": f"q{i}", "choices": [{"turns": [{"content": f"baseline answer {i}"}]}]}
        for i in range(len(kinds))
    ]
    for name, rows in (("questions", questions), ("model", model), ("baseline", base)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return (
        load_questions(folder / "questions.jsonl"),
        load_answers(folder / "model.jsonl", what="samples"),
        load_answers(folder / "baseline.jsonl", what="baseline"),
    )


def make_judge(server, **options):
    client = ChatClient(server.base_url, "judge", **{"timeout": 2.0, "backoff": 0.01, **options})
    return OpenAIJudge(client, concurrency=4)


KINDS = ["much"] * 4 + ["better"] * 2 + ["tie"] * 2 + ["worse", "awful"]


def test_weighted_verdicts_both_orders_and_the_score(tmp_path, chat_server):
    server = chat_server(fair_judge)
    results = arena_hard(*make_case(tmp_path, KINDS), make_judge(server), tmp_path / "out")
    # battles with the model's outcome: much 4 x 2 games x 3, better 2 x 2, tie 2 x 2 (half),
    # worse 1 x 2, awful 1 x 2 x 3  ->  (24 + 4 + 2) / 40
    assert results["battles"] == 40
    assert results["score"] == pytest.approx(30 / 40)
    assert results["ci_low"] <= results["score"] <= results["ci_high"]
    assert results["verdicts"]["game_1"] == {"B>>A": 4, "B>A": 2, "A=B": 2, "A>B": 1, "A>>B": 1}
    assert results["verdicts"]["game_2"] == {"A>>B": 4, "A>B": 2, "A=B": 2, "B>A": 1, "B>>A": 1}
    assert len(server.requests) == 20 and results["errors"] == 0
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk["judgments"][0]["raw"][0].startswith("My answer")


def test_position_bias_cancels_over_both_orders(tmp_path, chat_server):
    server = chat_server(lambda messages, attempt: "[[A>B]]")
    results = arena_hard(*make_case(tmp_path, KINDS), make_judge(server), tmp_path / "out")
    assert results["score"] == pytest.approx(0.5)


def test_unparseable_verdicts_are_asked_again_counted_and_never_guessed(tmp_path, chat_server):
    def judge(messages, attempt):
        a, b = answers_shown(messages)
        if "answer 0" in a + b and attempt == 0:
            return "I think A is better."  # no verdict: asked again
        if "answer 9" in a + b:
            return "[[A>B]] or rather [[B>A]]"  # never parses: an error
        if "answer 1" in a + b and attempt == 0:
            return ("status", 500)  # retried by the client
        return fair_judge(messages, attempt)

    server = chat_server(judge)
    results = arena_hard(*make_case(tmp_path, KINDS), make_judge(server), tmp_path / "out")
    assert results["errors"] == 2  # both games of question 9
    assert results["score"] == pytest.approx(30 / 34)  # its 6 battles (both losses) left out
    assert results["reasked"] == 2 + 2 * 2  # q0's two games once; q9's twice each
    errors = [r for r in results["judgments"] if r["verdict"] is None]
    assert [r["id"] for r in errors] == ["q9", "q9"] and len(errors[0]["raw"]) == 3


def test_rerun_pays_nothing_twice(tmp_path, chat_server):
    server = chat_server(fair_judge)
    case = make_case(tmp_path, KINDS)
    first = arena_hard(*case, make_judge(server), tmp_path / "out")
    before = len(server.requests)
    second = arena_hard(*case, make_judge(server), tmp_path / "out")
    assert len(server.requests) == before and second["cache_hits"] == 20
    assert second["score"] == first["score"]


def test_style_control_matches_the_hand_solved_logistic_fit(tmp_path):
    """Length is the only style feature that varies: model answers of 3 words against 1
    (difference +0.5) on 6 questions, won 5 times; of 1 word against 3 (-0.5) on 2
    questions, won once. Each verdict counts once, each question twice (both games)."""
    outcomes = [1.0] * 10 + [0.0] * 2 + [1.0] * 2 + [0.0] * 2
    length = [0.5] * 12 + [-0.5] * 4
    style = [[x, 0.0, 0.0, 0.0] for x in length]
    mean = sum(length) / 16
    spread = math.sqrt(sum((x - mean) ** 2 for x in length) / 16)
    long, short = (0.5 - mean) / spread, (-0.5 - mean) / spread
    # logit p = θ + γ x at both design points: θ + γ·long = logit(5/6), θ + γ·short = 0
    theta = (short * math.log(5) - long * 0.0) / (short - long)
    import numpy as np

    score, coefficients = bradley_terry_win_rate(
        np.array(outcomes), np.ones(16, dtype=int), np.array(style)
    )
    assert score == pytest.approx(1 / (1 + math.exp(-theta)), abs=1e-6)
    assert score != pytest.approx(12 / 16)  # without style control it would be the mean
    assert coefficients[0] > 0 and list(coefficients[1:]) == [0.0, 0.0, 0.0]


def test_style_features_and_verdict_weights():
    assert style_counts("## Plan\n1. **first**\n2. second\n```\n# not a header\n```") == [
        12.0,  # words, code included: ## Plan 1. **first** 2. second ``` # not a header ```
        1.0,
        2.0,
        1.0,
    ]
    assert battles("B>>A", model_is_a=False) == (1.0, 3)
    assert battles("B>>A", model_is_a=True) == (0.0, 3)
    assert battles("A>B", model_is_a=True) == (1.0, 1)
    assert parse_verdict("[[A>>>B]]") is None and parse_verdict("[[A=B]] ... [[A=B]]") == "A=B"


def test_bad_input_names_the_file_field_and_ids(tmp_path, chat_server):
    questions, answers, baseline = make_case(tmp_path, KINDS)
    (tmp_path / "broken.jsonl").write_text(json.dumps({"question_id": "q0"}) + "\n")
    with pytest.raises(DataError, match=r"broken.jsonl.*field 'response'"):
        load_answers(tmp_path / "broken.jsonl", what="samples")
    server = chat_server(fair_judge)
    del answers["q3"], answers["q5"]
    with pytest.raises(DataError, match="q3, q5"):
        arena_hard(questions, answers, baseline, make_judge(server), tmp_path / "out")
    assert server.requests == []
