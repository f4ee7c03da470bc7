"""MT-Bench pairwise against the loopback chat server: FastChat's pair prompts for both
turns (math-like categories with the reference answer), both orders, win/tie/loss per
category, caching."""

import json
import re

import pytest

from preftune.errors import DataError
from preftune.evaluate.benchmarks.mtbench_pairwise import load_answers, mtbench_pairwise, swap
from preftune.evaluate.mtbench import mtbench_questions, reference_answers
from preftune.judges.http_chat import ChatClient
from preftune.judges.openai_judge import OpenAIJudge

# what the judge thinks of the model (always the same for both turns, unless stated)
PLAN = {
    "writing": "win",
    "roleplay": "tie",
    "math": "loss",
    "stem": "biased",  # always [[A]]: the orders disagree, a tie
    "humanities": "win",
    "extraction": "win",
    "reasoning": "loss",
    "coding": "turn",  # wins turn 1, loses turn 2
}


def answers(prefix):
    return {
        str(q["question_id"]): [
            f"{prefix} turn-1 {q['question_id']}",
            f"{prefix} turn-2 {q['question_id']}",
        ]
        for q in mtbench_questions()
    }


def judge_reply(messages, attempt):
    text = messages[-1]["content"]
    question_id = re.search(r"MODEL turn-1 (\d+)", text).group(1)
    category = {str(q["question_id"]): q["category"] for q in mtbench_questions()}[question_id]
    plan = PLAN[category]
    if plan == "biased":
        return "[[A]]"
    if plan == "turn":
        plan = "win" if "Conversation with User" not in text else "loss"
    if plan == "tie":
        return "Alike. [[C]]"
    model_is_a = text.index("MODEL turn-1") < text.index("Assistant B")
    model_wins = plan == "win"
    return "[[A]]" if model_wins == model_is_a else "[[B]]"


def make_judge(server):
    return OpenAIJudge(
        ChatClient(server.base_url, "judge", timeout=2.0, backoff=0.01), concurrency=8
    )


def test_win_tie_loss_per_category_both_turns_both_orders(tmp_path, chat_server):
    server = chat_server(judge_reply)
    summary = mtbench_pairwise(answers("MODEL"), answers("BASE"), make_judge(server), tmp_path)
    assert len(server.requests) == 80 * 2 * 2
    categories = summary["categories"]
    assert (categories["writing"]["win"], categories["writing"]["loss"]) == (20, 0)
    assert categories["roleplay"]["tie"] == 20 and categories["stem"]["tie"] == 20
    assert categories["math"]["loss"] == 20 and categories["math"]["win_rate"] == 0
    assert (categories["coding"]["win"], categories["coding"]["loss"]) == (10, 10)
    assert summary["turns"]["1"]["win"] == 40 and summary["turns"]["2"]["win"] == 30
    assert summary["overall"]["win_rate"] == pytest.approx((70 + 40 / 2) / 160)
    # math-like questions are judged against the GPT-4 reference; turn 2 sees both turns
    references = reference_answers()
    math_prompts = [
        r["messages"][-1]["content"]
        for r in server.requests
        if "MODEL turn-1 111" in r["messages"][-1]["content"]
    ]
    assert all(references["111"][0] in text for text in math_prompts)
    assert sum("MODEL turn-2 111" in text for text in math_prompts) == 2  # turn 2, both orders
    written = json.loads((tmp_path / "mtbench_pairwise.json").read_text())
    assert written["overall"] == summary["overall"]


def test_rerun_pays_nothing_and_unparseable_verdicts_are_errors(tmp_path, chat_server):
    stubborn = {"on": True}

    def reply(messages, attempt):
        if stubborn["on"] and "MODEL turn-1 81" in messages[-1]["content"]:
            return "no verdict here"
        return judge_reply(messages, attempt)

    server = chat_server(reply)
    summary = mtbench_pairwise(
        answers("MODEL"), answers("BASE"), make_judge(server), tmp_path, limit=5
    )
    assert summary["overall"]["errors"] == 2 and summary["overall"]["win"] == 8  # q81's 2 turns
    stubborn["on"] = False
    before = len(server.requests)
    summary = mtbench_pairwise(
        answers("MODEL"), answers("BASE"), make_judge(server), tmp_path, limit=5
    )
    assert len(server.requests) - before == 4  # q81: 2 turns x 2 orders, asked again
    assert summary["overall"]["win"] == 10 and summary["cache_hits"] == 8


def test_swap_exchanges_the_assistants_only():
    fields = {"question_1": "q", "answer_a_1": "x", "answer_b_1": "y", "ref_answer_1": "r"}
    assert swap(fields) == {
        "question_1": "q",
        "answer_b_1": "x",
        "answer_a_1": "y",
        "ref_answer_1": "r",
    }


def test_missing_answers_and_bad_files_are_named(tmp_path, chat_server):
    server = chat_server(judge_reply)
    partial = answers("MODEL")
    del partial["85"]
    with pytest.raises(DataError, match="85"):
        mtbench_pairwise(partial, answers("BASE"), make_judge(server), tmp_path)
    (tmp_path / "one_turn.jsonl").write_text(
        json.dumps({"question_id": 81, "choices": [{"turns": ["a"]}]}) + "\n"
    )
    with pytest.raises(DataError, match=r"one_turn.jsonl.*field 'turns'"):
        load_answers(tmp_path / "one_turn.jsonl", what="baseline answers")
    assert server.requests == []
